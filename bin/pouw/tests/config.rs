//! `pouw node` configuration layers (defaults < file < `POUW_*` environment < flags), checked
//! through `--print-config` on the real binary; every bad input exits non-zero with a message
//! naming the culprit. Also the key files of `pouw keys`.

mod support;

use support::pouw;

use std::path::Path;

/// `pouw node --print-config` with `args` and `env`: the printed TOML.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let out = pouw()
        .args(["node", "--print-config"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().parse().unwrap()
}

/// `pouw node --print-config` that must fail: its stderr.
fn config_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = pouw()
        .args(["node", "--print-config"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "expected a failure: {}", String::from_utf8_lossy(&out.stdout));
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

const FILE: &str = r#"
datadir = "/data/from-file"
chain = "devnet"
roles = ["miner", "verifier"]
listen = ["/ip4/0.0.0.0/tcp/1111"]
bootstrap = ["/ip4/10.0.0.1/tcp/30333"]
threads = 2

[rpc]
listen = "127.0.0.1:8645"
token = "from-file"
max_body_bytes = 4096

[mining]
pause_ms = 5
"#;

#[test]
fn defaults() {
    let c = print_config(&["--datadir", "/d"], &[]);
    assert_eq!(c["datadir"].as_str(), Some("/d"));
    assert_eq!(c["chain"].as_str(), Some("devnet"));
    assert_eq!(c["roles"].as_array().unwrap().len(), 1);
    assert_eq!(c["roles"][0].as_str(), Some("miner"));
    assert_eq!(c["listen"][0].as_str(), Some("/ip4/0.0.0.0/tcp/30333"));
    assert_eq!(c["threads"].as_integer(), Some(1));
    assert_eq!(c["dev"].as_bool(), Some(false));
    assert!(c["rpc"].get("listen").is_none(), "no RPC server by default");
    assert_eq!(c["rpc"]["max_body_bytes"].as_integer(), Some(1 << 20));
    assert_eq!(c["mining"]["pause_ms"].as_integer(), Some(0));
    // `--dev` listens on loopback; `--no-mine` drops the miner role.
    let c = print_config(&["--datadir", "/d", "--dev", "--no-mine"], &[]);
    assert_eq!(c["listen"][0].as_str(), Some("/ip4/127.0.0.1/tcp/0"));
    assert_eq!(c["dev"].as_bool(), Some(true));
    assert!(c["roles"].as_array().unwrap().is_empty());
}

#[test]
fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "node.toml", FILE);

    // The file alone.
    let c = print_config(&["--config", &file], &[]);
    assert_eq!(c["datadir"].as_str(), Some("/data/from-file"));
    assert_eq!(c["roles"].as_array().unwrap().len(), 2);
    assert_eq!(c["listen"][0].as_str(), Some("/ip4/0.0.0.0/tcp/1111"));
    assert_eq!(c["bootstrap"][0].as_str(), Some("/ip4/10.0.0.1/tcp/30333"));
    assert_eq!(c["threads"].as_integer(), Some(2));
    assert_eq!(c["rpc"]["listen"].as_str(), Some("127.0.0.1:8645"));
    assert_eq!(c["rpc"]["token"].as_str(), Some("<redacted>"), "the token is never printed");
    assert_eq!(c["rpc"]["max_body_bytes"].as_integer(), Some(4096));
    assert_eq!(c["mining"]["pause_ms"].as_integer(), Some(5));

    // The environment overrides the file ...
    let env = [
        ("POUW_DATADIR", "/data/from-env"),
        ("POUW_THREADS", "3"),
        ("POUW_LISTEN", "/ip4/0.0.0.0/tcp/2222, /ip4/0.0.0.0/tcp/2223"),
        ("POUW_ROLES", "supervisor"),
        ("POUW_RPC", "127.0.0.1:9000"),
        ("POUW_MINING_PAUSE_MS", "7"),
    ];
    let c = print_config(&["--config", &file], &env);
    assert_eq!(c["datadir"].as_str(), Some("/data/from-env"));
    assert_eq!(c["threads"].as_integer(), Some(3));
    assert_eq!(c["listen"].as_array().unwrap().len(), 2);
    assert_eq!(c["listen"][1].as_str(), Some("/ip4/0.0.0.0/tcp/2223"));
    assert_eq!(c["roles"][0].as_str(), Some("supervisor"));
    assert_eq!(c["rpc"]["listen"].as_str(), Some("127.0.0.1:9000"));
    assert_eq!(c["mining"]["pause_ms"].as_integer(), Some(7));
    // ... and keeps what it does not set.
    assert_eq!(c["bootstrap"][0].as_str(), Some("/ip4/10.0.0.1/tcp/30333"));
    assert_eq!(c["rpc"]["max_body_bytes"].as_integer(), Some(4096));

    // Flags override both; the config file may also come from POUW_CONFIG.
    let mut env_with_file = env.to_vec();
    env_with_file.push(("POUW_CONFIG", &file));
    let c = print_config(
        &[
            "--datadir",
            "/data/from-flag",
            "--threads",
            "4",
            "--listen",
            "/ip4/0.0.0.0/tcp/3333",
            "--roles",
            "miner,evaluator,miner",
            "--rpc",
            "127.0.0.1:9001",
        ],
        &env_with_file,
    );
    assert_eq!(c["datadir"].as_str(), Some("/data/from-flag"));
    assert_eq!(c["threads"].as_integer(), Some(4));
    assert_eq!(c["listen"].as_array().unwrap().len(), 1);
    assert_eq!(c["listen"][0].as_str(), Some("/ip4/0.0.0.0/tcp/3333"));
    let roles: Vec<_> = c["roles"].as_array().unwrap().iter().map(|r| r.as_str()).collect();
    assert_eq!(roles, [Some("miner"), Some("evaluator")], "duplicates dropped");
    assert_eq!(c["rpc"]["listen"].as_str(), Some("127.0.0.1:9001"));
    assert_eq!(c["mining"]["pause_ms"].as_integer(), Some(7), "env kept where no flag");
}

#[test]
fn relative_paths_in_the_file_are_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "node.toml", "datadir = \"data\"\nkey = \"k.json\"\n");
    let c = print_config(&["--config", &file], &[]);
    assert_eq!(c["datadir"].as_str(), dir.path().join("data").to_str());
    assert_eq!(c["key"].as_str(), dir.path().join("k.json").to_str());
}

#[test]
fn bad_files_name_the_file_the_key_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("datadir = \"/d\"\ncolour = \"blue\"\n", &["node.toml", "`colour`", "unknown key"]),
        ("datadir = \"/d\"\n[rpc]\nport = 1\n", &["node.toml", "`rpc.port`", "unknown key"]),
        ("datadir = \"/d\"\n[extra]\n", &["node.toml", "`extra`", "unknown key"]),
        (
            "datadir = \"/d\"\nlisten = [\"/ip4/1.2.3.4/tcp/1\", \"/ip4/1.2.3.4/tcp/x\"]\n",
            &["node.toml", "`listen[1]`", "`/ip4/1.2.3.4/tcp/x` is not a multiaddr"],
        ),
        (
            "datadir = \"/d\"\nbootstrap = [\"nope\"]\n",
            &["node.toml", "`bootstrap[0]`", "`nope` is not a multiaddr"],
        ),
        (
            "datadir = \"/d\"\nroles = [\"miner\", \"minr\"]\n",
            &["node.toml", "`roles[1]`", "unknown role `minr`"],
        ),
        ("datadir = \"/d\"\nthreads = \"four\"\n", &["node.toml", "`threads`", "\"four\""]),
        ("datadir = \"/d\"\nthreads = -1\n", &["node.toml", "`threads`", "-1"]),
        ("datadir = \"/d\"\nthreads = 0\n", &["node.toml", "`threads`", "at least 1"]),
        (
            "datadir = \"/d\"\n[rpc]\nmax_body_bytes = \"big\"\n",
            &["node.toml", "`rpc.max_body_bytes`", "\"big\""],
        ),
        (
            "datadir = \"/d\"\n[rpc]\nlisten = \"localhost\"\n",
            &["node.toml", "`rpc.listen`", "not a socket address"],
        ),
        ("datadir = \"/d\"\n[mining]\npause_ms = 1.5\n", &["node.toml", "`mining.pause_ms`"]),
        ("datadir = \"/d\nthreads = 1\n", &["node.toml", "malformed TOML", "line 1"]),
        ("datadir = \"/d\"\ndatadir = \"/e\"\n", &["node.toml", "malformed TOML", "line 2"]),
    ];
    for (text, needles) in cases {
        let file = write(dir.path(), "node.toml", text);
        let err = config_error(&["--config", &file], &[]);
        for needle in *needles {
            assert!(err.contains(needle), "{text:?}: `{needle}` not in: {err}");
        }
    }
    let err = config_error(&["--config", &dir.path().join("missing.toml").to_string_lossy()], &[]);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn bad_environment_variables_are_named() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("POUW_THREADS", "many", &["POUW_THREADS", "`many`"]),
        ("POUW_THREADS", "0", &["POUW_THREADS", "at least 1"]),
        ("POUW_LISTEN", "/ip4/0.0.0.0/tcp/1,nope", &["POUW_LISTEN (item 2)", "`nope`"]),
        ("POUW_BOOTSTRAP", "x", &["POUW_BOOTSTRAP (item 1)", "not a multiaddr"]),
        ("POUW_ROLES", "miner,boss", &["POUW_ROLES (item 2)", "unknown role `boss`"]),
        ("POUW_RPC", "8645", &["POUW_RPC", "not a socket address"]),
        ("POUW_DEV", "maybe", &["POUW_DEV", "not a boolean"]),
        ("POUW_RPC_MAX_BODY_BYTES", "-5", &["POUW_RPC_MAX_BODY_BYTES", "`-5`"]),
        ("POUW_MINING_PAUSE_MS", "soon", &["POUW_MINING_PAUSE_MS", "`soon`"]),
    ];
    for (var, value, needles) in cases {
        let err = config_error(&["--datadir", "/d"], &[(var, value)]);
        for needle in *needles {
            assert!(err.contains(needle), "{var}={value}: `{needle}` not in: {err}");
        }
    }
}

#[test]
fn bad_flags_and_a_missing_datadir() {
    let err = config_error(&[], &[]);
    assert!(err.contains("no data directory") && err.contains("POUW_DATADIR"), "{err}");
    let err = config_error(&["--datadir", "/d", "--listen", "/ip4/1.2.3.4/tcp/x"], &[]);
    assert!(err.contains("--listen") && err.contains("is not a multiaddr"), "{err}");
    let err = config_error(&["--datadir", "/d", "--roles", "miner,boss"], &[]);
    assert!(err.contains("--roles") && err.contains("unknown role `boss`"), "{err}");
    let err = config_error(&["--datadir", "/d", "--chain", "/no/such/spec.toml"], &[]);
    assert!(err.contains("/no/such/spec.toml"), "{err}");
    let err = config_error(&["--datadir", "/d", "--threads", "0"], &[]);
    assert!(err.contains("--threads") && err.contains("at least 1"), "{err}");
    // An empty variable counts as unset; the datadir may come from the environment alone.
    let c = print_config(&[], &[("POUW_DATADIR", "/env"), ("POUW_THREADS", "")]);
    assert_eq!(c["datadir"].as_str(), Some("/env"));
    assert_eq!(c["threads"].as_integer(), Some(1));
}

#[test]
fn the_example_file_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/node.example.toml");
    let c = print_config(&["--config", example], &[]);
    assert_eq!(c["rpc"]["listen"].as_str(), Some("127.0.0.1:8645"));
}

#[test]
fn keys_new_writes_a_private_file_and_show_prints_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let p = path.to_str().unwrap();
    let out = pouw().args(["keys", "new", "--out", p, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let address = made["address"].as_str().unwrap().to_string();
    assert_eq!(address.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }
    let out = pouw().args(["keys", "show", p]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), address);
    let out = pouw().args(["keys", "show", p, "--json"]).output().unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["address"].as_str(), Some(address.as_str()));
    // Never overwritten.
    let out = pouw().args(["keys", "new", "--out", p]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must not exist"));
}
