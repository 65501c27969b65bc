//! A damaged data directory or a full disk gives a clear error naming the database file and
//! what is wrong, never a panic, a hang, or a node running on bad or partial data
//! (`docs/storage-faults.md`).
//!
//! A dev node mines a few blocks once; each case damages a copy of its data directory, then
//! `pouw chain tip --datadir` and `pouw node` must both refuse it with the expected message.
//! The full-disk case runs a mining node with its file size limit lowered (writes fail with
//! `EFBIG`): it must stop with a non-zero status and a message naming the database and the
//! cause, and after the limit is lifted the restarted node finds the chain it had stored.

mod support;

use support::pouw;

use pouw_primitives::{ChainSpec, CompactTarget};
use pouw_storage::{DB_FILE, PROOFS_FILE};
use serde_json::Value;
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// A data directory with a few mined blocks (made once), and its chain spec.
struct Mined {
    _dir: tempfile::TempDir,
    datadir: PathBuf,
    spec: PathBuf,
    /// Canonical block hashes by height (genesis first).
    hashes: Vec<String>,
}

const MINED_BLOCKS: u64 = 3;

fn spec_arg(m: &Mined) -> &str {
    m.spec.to_str().unwrap()
}

fn mined() -> &'static Mined {
    static MINED: OnceLock<Mined> = OnceLock::new();
    MINED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // The devnet with the easiest target: a block on almost every training iteration.
        let mut spec = ChainSpec::devnet();
        spec.retarget_window = 1_000_000;
        spec.initial_target = CompactTarget(0x2100_ffff);
        spec.max_target = CompactTarget(0x2100_ffff);
        let spec_path = dir.path().join("spec.toml");
        std::fs::write(&spec_path, spec.to_toml()).unwrap();
        let datadir = dir.path().join("node");
        let out = pouw()
            .args(["node", "--dev", "--datadir", datadir.to_str().unwrap()])
            .args(["--chain", spec_path.to_str().unwrap(), "--blocks"])
            .arg(MINED_BLOCKS.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut m = Mined { _dir: dir, datadir, spec: spec_path, hashes: Vec::new() };
        m.hashes = hashes(&m.datadir, spec_arg(&m));
        assert!(m.hashes.len() as u64 > MINED_BLOCKS);
        m
    })
}

/// The canonical hashes of a stopped node's data directory, genesis first.
fn hashes(datadir: &Path, spec: &str) -> Vec<String> {
    let tip = tip(datadir, spec);
    (0..=tip["height"].as_u64().unwrap())
        .map(|h| {
            let out = pouw()
                .args(["chain", "block", &h.to_string(), "--json", "--chain", spec])
                .args(["--datadir", datadir.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            v["hash"].as_str().unwrap().to_string()
        })
        .collect()
}

fn tip(datadir: &Path, spec: &str) -> Value {
    let out = pouw()
        .args(["chain", "tip", "--json", "--chain", spec])
        .args(["--datadir", datadir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A copy of the mined data directory.
fn copy() -> (tempfile::TempDir, PathBuf) {
    let m = mined();
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("node");
    std::fs::create_dir(&datadir).unwrap();
    for entry in std::fs::read_dir(&m.datadir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), datadir.join(entry.file_name())).unwrap();
    }
    (dir, datadir)
}

/// Runs `cmd` to its end; fails the test if it is still running after `limit` (a hang).
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: plain kill(2) of the child this test started.
            unsafe { libc::kill(id as i32, libc::SIGKILL) };
            panic!("the command was still running after {limit:?}");
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `pouw chain tip` and `pouw node` both refuse `datadir` (status 1), and their errors name
/// `file` followed by `what`.
fn refused(datadir: &Path, file: &str, what: &str) {
    let spec = spec_arg(mined());
    let d = datadir.to_str().unwrap();
    let path = datadir.join(file);
    let expected = format!("{}{what}", path.display());
    let mut query = pouw();
    query.args(["chain", "tip", "--datadir", d, "--chain", spec]);
    let mut node = pouw();
    node.args(["node", "--dev", "--no-mine", "--datadir", d, "--chain", spec]);
    let runs = if file == DB_FILE {
        vec![("chain tip", query), ("node", node)]
    } else {
        vec![("node", node)]
    };
    for (name, cmd) in runs {
        let out = run_bounded(cmd, Duration::from_secs(30));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "pouw {name}: {err}");
        assert!(err.contains(&expected), "pouw {name}: expected `{expected}` in: {err}");
        assert!(!err.contains("node started"), "pouw {name} started anyway: {err}");
        assert!(!err.contains("panicked"), "pouw {name} printed a panic: {err}");
    }
}

/// Like [`refused`], or the file still opens and holds exactly the mined chain (the damage hit
/// bytes the database does not use, or the engine fell back to its previous commit: then the
/// chain must be a prefix of the mined one). Returns true if refused.
fn refused_or_intact(datadir: &Path, file: &str) -> bool {
    let m = mined();
    let d = datadir.to_str().unwrap();
    let mut query = pouw();
    query.args(["chain", "tip", "--datadir", d, "--chain", spec_arg(m)]);
    let out = run_bounded(query, Duration::from_secs(30));
    if out.status.success() {
        let got = hashes(datadir, spec_arg(m));
        assert!(!got.is_empty() && got.len() <= m.hashes.len());
        assert_eq!(got[..], m.hashes[..got.len()], "the chain changed");
        return false;
    }
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let path = datadir.join(file);
    assert!(err.contains(&format!("chain database {}", path.display())), "{err}");
    true
}

fn flip(path: &Path, at: usize, len: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let end = (at + len).min(bytes.len());
    for b in &mut bytes[at..end] {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn damaged_header_is_refused() {
    let (_dir, datadir) = copy();
    flip(&datadir.join(DB_FILE), 0, 8); // the file's magic number
    refused(&datadir, DB_FILE, " is corrupt: ");
}

#[test]
fn flipped_bytes_anywhere_are_refused_or_harmless() {
    // Across the whole file (header, commit slots, pages): refused with the file named, or
    // the very chain that was stored (never a different one).
    let len = std::fs::metadata(mined().datadir.join(DB_FILE)).unwrap().len() as usize;
    let mut refusals = 0;
    for at in [16, 64, 200, 700, 4096, len / 4, len / 2, len * 3 / 4, len - 300] {
        let (_dir, datadir) = copy();
        flip(&datadir.join(DB_FILE), at, 64);
        if refused_or_intact(&datadir, DB_FILE) {
            refusals += 1;
        }
    }
    eprintln!("{refusals} of 9 flips refused, the others hit unused bytes");
}

#[test]
fn damaged_records_are_refused() {
    // Every place the tip's hash is stored (a key of the block and header tables, the
    // canonical index, the tip record) is overwritten.
    let (_dir, datadir) = copy();
    let path = datadir.join(DB_FILE);
    let tip = hex::decode(mined().hashes.last().unwrap()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let hits: Vec<usize> =
        bytes.windows(32).enumerate().filter(|(_, w)| *w == tip).map(|(i, _)| i).collect();
    assert!(!hits.is_empty());
    for at in hits {
        flip(&path, at, 32);
    }
    refused(&datadir, DB_FILE, " is corrupt: ");
}

#[test]
fn truncated_file_is_refused() {
    let (_dir, datadir) = copy();
    let path = datadir.join(DB_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
    refused(&datadir, DB_FILE, " is corrupt: ");
}

#[test]
fn garbage_file_is_refused() {
    let (_dir, datadir) = copy();
    let path = datadir.join(DB_FILE);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    let mut x = 0x1234_5678_u32;
    let garbage: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(&path, garbage).unwrap();
    refused(&datadir, DB_FILE, " is corrupt: ");
}

#[test]
fn empty_file_is_refused_not_replaced_by_a_new_chain() {
    let (_dir, datadir) = copy();
    std::fs::write(datadir.join(DB_FILE), b"").unwrap();
    refused(&datadir, DB_FILE, " is corrupt: the file is empty (0 bytes)");
    assert_eq!(
        std::fs::metadata(datadir.join(DB_FILE)).unwrap().len(),
        0,
        "the file was rewritten"
    );
}

#[test]
fn directory_in_place_of_the_file_is_refused() {
    let (_dir, datadir) = copy();
    std::fs::remove_file(datadir.join(DB_FILE)).unwrap();
    std::fs::create_dir(datadir.join(DB_FILE)).unwrap();
    refused(&datadir, DB_FILE, " is not a database file: it is a directory");
}

#[test]
fn unreadable_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, datadir) = copy();
    let path = datadir.join(DB_FILE);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&path).is_ok() {
        // Privileged (root): permissions do not apply to this process, nor to the node.
        eprintln!("skipped: file permissions do not restrict this user");
        return;
    }
    refused(&datadir, DB_FILE, ": I/O error: Permission denied");
}

#[test]
fn damaged_proof_database_is_refused() {
    let (_dir, datadir) = copy();
    flip(&datadir.join(PROOFS_FILE), 0, 8);
    refused(&datadir, PROOFS_FILE, " is corrupt: ");
    let (_dir, datadir) = copy();
    std::fs::write(datadir.join(PROOFS_FILE), b"").unwrap();
    refused(&datadir, PROOFS_FILE, " is corrupt: the file is empty (0 bytes)");
}

#[test]
fn full_disk_while_mining_stops_the_node_and_a_restart_finds_the_stored_chain() {
    let m = mined();
    let (_dir, datadir) = copy();
    let d = datadir.to_str().unwrap();
    let size = |f: &str| std::fs::metadata(datadir.join(f)).unwrap().len();
    // No file may grow: the first write past the current sizes fails with EFBIG.
    let limit = size(DB_FILE).max(size(PROOFS_FILE));
    let mut node = pouw();
    node.args(["node", "--dev", "--datadir", d, "--chain", spec_arg(m), "--blocks", "100000"]);
    // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
    unsafe {
        node.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Writes past the limit fail with EFBIG instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let started = Instant::now();
    let out = run_bounded(node, Duration::from_secs(120));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let named = [DB_FILE, PROOFS_FILE].iter().any(|f| {
        err.contains(&format!("{} could not be written: File too large", datadir.join(f).display()))
    });
    assert!(named, "the error names neither database and its cause: {err}");
    assert!(err.contains("free space and restart"), "{err}");
    assert!(err.contains("node stopped on an error"), "{err}");
    eprintln!("the node stopped {:?} after its start", started.elapsed());

    // Space freed: the stored chain is the mined one, possibly longer, never different.
    let after = hashes(&datadir, spec_arg(m));
    assert!(after.len() >= m.hashes.len());
    assert_eq!(after[..m.hashes.len()], m.hashes[..]);
    // The node starts and mines on top of it, and every stored block re-verifies.
    let out = pouw()
        .args(["node", "--dev", "--datadir", d, "--chain", spec_arg(m), "--blocks", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let grown = hashes(&datadir, spec_arg(m));
    assert_eq!(grown.len(), after.len() + 1);
    assert_eq!(grown[..after.len()], after[..]);
    let out = pouw()
        .args(["chain", "verify", "--json", "--datadir", d, "--chain", spec_arg(m)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], 0);
    assert_eq!(report["verified"], (grown.len() - 1) as u64);
}
