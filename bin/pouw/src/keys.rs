//! `pouw keys new|show`: ed25519 key files.
//!
//! A key file is JSON `{"public": "<hex>", "secret": "<hex>"}` written with mode 0600. A key
//! file that group or others may read or write is refused (as ssh refuses such a private key):
//! the error names the file and the fix, `chmod 600 FILE`.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use pouw_primitives::Keypair;
use serde::{Deserialize, Serialize};
use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// `pouw keys`.
#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Creates a new key file (mode 0600); refuses to overwrite one.
    New {
        /// Where to write the key.
        #[arg(long, short)]
        out: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Shows the public key (address) of a key file.
    Show {
        /// The key file.
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    public: String,
    secret: String,
}

/// Reads a key file, checking that its public key matches its secret.
pub(crate) fn read_key(path: &Path) -> Result<Keypair> {
    check_private(path)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let file: KeyFile = serde_json::from_str(&text)
        .with_context(|| format!("key file {} is not valid JSON of a key", path.display()))?;
    let secret: [u8; 32] =
        hex::decode(file.secret.trim()).ok().and_then(|b| b.try_into().ok()).with_context(
            || format!("key file {}: `secret` must be 64 hex characters", path.display()),
        )?;
    let key = Keypair::from_secret(secret);
    if key.public().to_string() != file.public.trim().to_lowercase() {
        bail!("key file {}: `public` does not match `secret`", path.display());
    }
    Ok(key)
}

/// Refuses a key file that group or others have any access to (Unix only).
fn check_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "key file {} is accessible by group or others (mode {mode:03o}): a private key \
                 must be readable by its owner only; run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

pub(crate) fn write_key(path: &Path, key: &Keypair) -> Result<()> {
    let body = serde_json::to_string_pretty(&KeyFile {
        public: key.public().to_string(),
        secret: hex::encode(key.secret_bytes()),
    })?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).with_context(|| {
        format!("cannot create key file {} (it must not exist)", path.display())
    })?;
    f.write_all(body.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

pub(crate) fn run(args: KeysArgs) -> Result<()> {
    let (key, json) = match args.command {
        KeysCommand::New { out, json } => {
            let key = Keypair::generate();
            write_key(&out, &key)?;
            (key, json)
        }
        KeysCommand::Show { file, json } => (read_key(&file)?, json),
    };
    if json {
        println!("{}", serde_json::json!({ "address": key.public().to_string() }));
    } else {
        println!("{}", key.public());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let key = Keypair::generate();
        write_key(&path, &key).unwrap();
        assert_eq!(read_key(&path).unwrap().public(), key.public());
        assert!(write_key(&path, &key).is_err(), "must not overwrite");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "{\"public\":\"00\",\"secret\":\"zz\"}").unwrap();
        let err = format!("{:#}", read_key(&path).unwrap_err());
        assert!(err.contains("secret"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let key = Keypair::generate();
        write_key(&path, &key).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", read_key(&path).unwrap_err());
        assert!(err.contains("chmod 600") && err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("644"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key(&path).unwrap().public(), key.public());
    }
}
