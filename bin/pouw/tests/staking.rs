//! `pouw node --roles miner --stake 50 --gpu` buys a miner ticket of 50 coins offering a GPU
//! (seen with `pouw chain account`), and buys the next one before the live one expires
//! (`[staking] ticket_blocks` / `renew_blocks` in the config file).

mod support;

use support::{free_port, pouw};

use pouw_primitives::{ChainSpec, CompactTarget, Uint256};
use serde_json::Value;
use std::{
    io::Write,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use support::Killed as Node;

fn logs(dir: &Path) -> String {
    ["a.log", "b.log"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

#[test]
fn a_worker_stakes_what_it_is_told_and_renews_before_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ChainSpec::devnet();
    spec.retarget_window = 1_000_000;
    spec.initial_target = CompactTarget::from_target(Uint256::MAX / Uint256::from(3u64));
    let spec_path = dir.path().join("spec.toml");
    std::fs::write(&spec_path, spec.to_toml()).unwrap();
    let chain = spec_path.to_str().unwrap();

    // The worker's key: a funded devnet account, in a private key file.
    let key = ChainSpec::devnet_key(1);
    let key_path = dir.path().join("worker.key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .unwrap();
        let body = serde_json::json!({
            "public": key.public().to_string(),
            "secret": hex_of(&key.secret_bytes()),
        });
        f.write_all(body.to_string().as_bytes()).unwrap();
    }
    let config = dir.path().join("worker.toml");
    std::fs::write(&config, "[staking]\nticket_blocks = 20\nrenew_blocks = 6\n").unwrap();

    let (p2p, rpc) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{rpc}");
    let a_dir = dir.path().join("a");
    let _a = Node(
        pouw()
            .args(["node", "--dev", "--chain", chain, "--datadir", a_dir.to_str().unwrap()])
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
            // Another pace than the worker's: two miners at one pace on this very easy target
            // find a block every k + 1 iterations each, in step, and two chains of equal work
            // never resolve (each node keeps the first it saw); at a slower pace this node
            // follows the worker's heavier chain.
            .args(["--rpc", &format!("127.0.0.1:{rpc}"), "--mining-pause-ms", "300"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("a.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let b_dir = dir.path().join("b");
    let _b = Node(
        pouw()
            .args(["node", "--dev", "--chain", chain, "--datadir", b_dir.to_str().unwrap()])
            .args(["--config", config.to_str().unwrap()])
            .args(["--key", key_path.to_str().unwrap()])
            .args(["--roles", "miner", "--stake", "50", "--gpu", "--mining-pause-ms", "100"])
            .args(["--bootstrap", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("b.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let address = key.public().to_string();
    let account = || -> Option<Value> {
        let out =
            pouw().args(["chain", "account", &address, "--rpc", &url, "--json"]).output().ok()?;
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    };
    let started = Instant::now();
    let wait = |what: &str, done: &mut dyn FnMut(&Value) -> bool| -> Value {
        loop {
            if let Some(v) = account() {
                if done(&v) {
                    return v;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "{what} never happened:\n{}",
                logs(dir.path())
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    let first =
        wait("a first ticket", &mut |v| v["tickets"].as_array().is_some_and(|t| !t.is_empty()));
    assert_eq!(first["locked_stake"], "50", "{first}");
    let ticket = first["tickets"][0].clone();
    assert_eq!(ticket["role"], "miner", "{first}");
    assert_eq!(ticket["stake"], "50", "{first}");
    assert_eq!(ticket["gpu"], true, "{first}");
    let first_id = ticket["id"].as_str().unwrap().to_string();
    let first_expiry = ticket["expires_at"].as_u64().unwrap();
    // Bought at the tip to last 20 blocks, included in a block after it.
    let created = ticket["created_at"].as_u64().unwrap();
    assert!(first_expiry > created && first_expiry <= created + 20, "{first}");

    // The next ticket is bought before the first expires.
    let renewed = wait("a renewal", &mut |v| {
        v["tickets"].as_array().is_some_and(|t| t.iter().any(|t| t["id"] != first_id.as_str()))
    });
    let next = renewed["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] != first_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(next["stake"], "50", "{renewed}");
    assert_eq!(next["gpu"], true, "{renewed}");
    assert!(
        next["created_at"].as_u64().unwrap() < first_expiry,
        "renewed at {} after the first expired at {first_expiry}",
        next["created_at"]
    );
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
