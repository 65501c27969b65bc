//! `pouw wallet` against a running dev node: a transfer signed with the node's own key file
//! reaches a new key's address (seen with `pouw chain account`), the history lists it on both
//! sides, `unstake` says the chain has no such transaction, and a key file others can read is
//! refused.

mod support;

use support::{free_port, pouw};

use pouw_primitives::{ChainSpec, CompactTarget, Uint256};
use serde_json::Value;
use std::{
    path::Path,
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use support::Killed as Node;

fn run(args: &[&str]) -> Output {
    pouw().args(args).output().unwrap()
}

fn json(out: Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
}

#[test]
fn a_transfer_signed_with_the_node_key_reaches_a_new_address() {
    let dir = tempfile::tempdir().unwrap();
    // The devnet with a fixed easy target: blocks (and rewards to the node key) come fast.
    let mut spec = ChainSpec::devnet();
    spec.retarget_window = 1_000_000;
    spec.initial_target = CompactTarget::from_target(Uint256::MAX / Uint256::from(3u64));
    let spec_path = dir.path().join("spec.toml");
    std::fs::write(&spec_path, spec.to_toml()).unwrap();
    let datadir = dir.path().join("node");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let _node = Node(
        pouw()
            .args(["node", "--dev", "--datadir", datadir.to_str().unwrap()])
            .args(["--chain", spec_path.to_str().unwrap()])
            .args(["--rpc", &format!("127.0.0.1:{port}"), "--mining-pause-ms", "50"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let node_key = datadir.join("node.key");
    let key = node_key.to_str().unwrap();

    // The node creates its key (mode 0600, so the wallet accepts it) and mines rewards to it.
    let started = Instant::now();
    loop {
        let out = run(&["wallet", "balance", "--rpc", &url, "--key", key, "--json"]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            if v["balance"].as_str().is_some_and(|b| b != "0") {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the node key never had a balance: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_of(dir.path())
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let new_key = dir.path().join("new.key");
    let made = json(run(&["keys", "new", "--out", new_key.to_str().unwrap(), "--json"]));
    let address = made["address"].as_str().unwrap().to_string();

    let sent = json(run(&[
        "wallet", "transfer", "--to", &address, "--amount", "5", "--rpc", &url, "--key", key,
        "--json",
    ]));
    assert_eq!(sent["included"], true, "{sent}");
    assert_eq!(sent["amount"], "5");
    assert_eq!(sent["to"].as_str(), Some(address.as_str()));
    let tx_hash = sent["hash"].as_str().unwrap().to_string();
    let height = sent["block_height"].as_u64().unwrap();
    assert!(height >= 1, "{sent}");

    let account = json(run(&["chain", "account", &address, "--rpc", &url, "--json"]));
    assert_eq!(account["balance"], "5", "{account}");

    // The recipient's history holds the incoming transfer; the sender's holds it too.
    let history = json(run(&[
        "wallet",
        "history",
        "--rpc",
        &url,
        "--key",
        new_key.to_str().unwrap(),
        "--json",
    ]));
    let list = history.as_array().unwrap();
    assert_eq!(list.len(), 1, "{history}");
    assert_eq!(list[0]["hash"].as_str(), Some(tx_hash.as_str()));
    assert_eq!(list[0]["height"].as_u64(), Some(height));
    assert_eq!(list[0]["amount"], "5");
    let history = json(run(&["wallet", "history", "--rpc", &url, "--key", key, "--json"]));
    assert!(
        history.as_array().unwrap().iter().any(|t| t["hash"].as_str() == Some(&tx_hash)),
        "{history}"
    );

    // A ticket bought from the wallet, with the worker's preferences.
    let node_address =
        json(run(&["keys", "show", key, "--json"]))["address"].as_str().unwrap().to_string();
    let staked = json(run(&[
        "wallet",
        "stake",
        "--role",
        "verifier",
        "--amount",
        "12.5",
        "--gpu",
        "--min-fee",
        "0.25",
        "--blocks",
        "100",
        "--rpc",
        &url,
        "--key",
        key,
        "--json",
    ]));
    assert_eq!(staked["included"], true, "{staked}");
    assert_eq!(staked["stake"], "12.5");
    let account = json(run(&["chain", "account", &node_address, "--rpc", &url, "--json"]));
    let tickets = account["tickets"].as_array().unwrap();
    let ticket = tickets.iter().find(|t| t["id"] == staked["hash"]).expect("the bought ticket");
    assert_eq!(ticket["role"], "verifier", "{account}");
    assert_eq!(ticket["stake"], "12.5");
    assert_eq!(ticket["gpu"], true);
    assert_eq!(ticket["min_fee"], "0.25");
    assert_eq!(ticket["expires_at"], staked["expires_at"]);
    // Below the chain's minimum stake: the node's refusal is shown.
    let out =
        run(&["wallet", "stake", "--role", "miner", "--amount", "1", "--rpc", &url, "--key", key]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused"), "{err}");

    // No transaction returns a ticket early: said, not invented.
    let out = run(&["wallet", "unstake", "--rpc", &url, "--key", key]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no transaction that returns a ticket"), "{err}");

    // A key file group or others can read is refused, naming the file and the fix.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&new_key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let out = run(&["wallet", "balance", "--rpc", &url, "--key", new_key.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("chmod 600") && err.contains("new.key"), "{err}");
    }
}
