//! `pouw chain tip|block|account|task` on a stopped node's data directory and over JSON-RPC
//! against a running node (same answers), the not-found errors, the locked-database message
//! while a node runs, and the unreachable-node message.

mod support;

use support::{free_port, pouw};

use pouw_primitives::{ChainSpec, CompactTarget, Uint256};
use serde_json::Value;
use std::{
    process::{Output, Stdio},
    time::{Duration, Instant},
};

fn run(args: &[&str]) -> Output {
    pouw().args(args).output().unwrap()
}

fn json(out: Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn failure(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

use support::Killed as Node;

fn without_timing(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("verification_ms");
    }
    v
}

#[test]
fn queries_on_a_datadir_and_over_rpc() {
    let dir = tempfile::tempdir().unwrap();
    // The devnet with a fixed easy target (about 3 nonces a block, no retargeting).
    let mut spec = ChainSpec::devnet();
    spec.retarget_window = 1_000_000;
    spec.initial_target = CompactTarget::from_target(Uint256::MAX / Uint256::from(3u64));
    let spec_path = dir.path().join("spec.toml");
    std::fs::write(&spec_path, spec.to_toml()).unwrap();
    let chain = spec_path.to_str().unwrap();
    let datadir = dir.path().join("node");
    let d = datadir.to_str().unwrap();
    let status =
        pouw().args(["node", "--dev", "--datadir", d, "--chain", chain, "--blocks", "2"]).status();
    assert!(status.unwrap().success());
    let local = ["--datadir", d, "--chain", chain];

    // ---- offline, on the data directory ----
    let tip = json(run(&[&["chain", "tip", "--json"], &local[..]].concat()));
    assert_eq!(tip["height"], 2);
    // The node recorded its chain spec in the data directory: no --chain needed there.
    let recorded = std::fs::read_to_string(datadir.join("chainspec.toml")).unwrap();
    assert_eq!(ChainSpec::from_toml(&recorded, "chainspec.toml").unwrap(), spec);
    assert_eq!(json(run(&["chain", "tip", "--json", "--datadir", d])), tip);
    let verified = json(run(&["chain", "verify", "--json", "--datadir", d]));
    assert_eq!((verified["verified"].as_u64(), verified["failed"].as_u64()), (Some(2), Some(0)));
    let block = json(run(&[&["chain", "block", "1", "--json"], &local[..]].concat()));
    assert_eq!(block["height"], 1);
    let hash = block["hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    assert!(block["proof"].is_object(), "a mined block carries its proof summary");
    let by_hash = json(run(&[&["chain", "block", &hash, "--json"], &local[..]].concat()));
    assert_eq!(by_hash, block);
    let latest = json(run(&[&["chain", "block", "latest", "--json"], &local[..]].concat()));
    assert_eq!(latest["hash"], tip["hash"]);
    let readable = run(&[&["chain", "block", "1"], &local[..]].concat());
    assert!(readable.status.success());
    let text = String::from_utf8(readable.stdout).unwrap();
    assert!(text.starts_with(&format!("block 1 {hash}")), "{text}");

    let err = failure(run(&[&["chain", "block", "99"], &local[..]].concat()));
    assert!(err.contains("no block at height 99"), "{err}");
    let err = failure(run(&[&["chain", "block", "one"], &local[..]].concat()));
    assert!(err.contains("`one` is not a block"), "{err}");

    let address = ChainSpec::devnet_key(0).public().to_string();
    let account = json(run(&[&["chain", "account", &address, "--json"], &local[..]].concat()));
    assert_eq!(account["address"].as_str(), Some(address.as_str()));
    assert_eq!(account["balance"].as_str(), Some("1000000"));
    assert_eq!(account["nonce"], 0);
    let err = failure(run(&[&["chain", "account", "abc"], &local[..]].concat()));
    assert!(err.contains("`abc` is not an address"), "{err}");

    let unknown_task = "ab".repeat(32);
    let err = failure(run(&[&["chain", "task", &unknown_task], &local[..]].concat()));
    assert!(err.contains(&format!("no task {unknown_task}")), "{err}");

    let err = failure(run(&["chain", "tip"]));
    assert!(err.contains("--datadir") && err.contains("--rpc"), "{err}");

    // ---- a running node (not mining: the chain stays at height 2) over JSON-RPC ----
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let node = Node(
        pouw()
            .args(["node", "--dev", "--no-mine", "--datadir", d, "--chain", chain])
            .args(["--rpc", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let remote = ["--rpc", url.as_str()];
    let started = Instant::now();
    let tip_rpc = loop {
        let out = run(&[&["chain", "tip", "--json"], &remote[..]].concat());
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the node's RPC never answered: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(tip_rpc, tip);
    let block_rpc = json(run(&[&["chain", "block", "1", "--json"], &remote[..]].concat()));
    assert_eq!(without_timing(block_rpc), without_timing(block));
    let by_hash = json(run(&[&["chain", "block", &hash, "--json"], &remote[..]].concat()));
    assert_eq!(by_hash["height"], 1);
    let err = failure(run(&[&["chain", "block", "99"], &remote[..]].concat()));
    assert!(err.contains("no block at height 99"), "{err}");
    let account_rpc = json(run(&[&["chain", "account", &address, "--json"], &remote[..]].concat()));
    assert_eq!(account_rpc, account);
    let err = failure(run(&[&["chain", "task", &unknown_task], &remote[..]].concat()));
    assert!(err.contains(&format!("no task {unknown_task}")), "{err}");

    // The data directory of a running node is locked: the message says so and points to --rpc.
    let err = failure(run(&[&["chain", "tip"], &local[..]].concat()));
    assert!(err.contains("locked") && err.contains("--rpc"), "{err}");

    drop(node);
    let err = failure(run(&[&["chain", "tip"], &remote[..]].concat()));
    assert!(err.contains(&format!("no node answers at {url}")), "{err}");
    // Stopped again, the data directory reads offline.
    assert_eq!(json(run(&[&["chain", "tip", "--json"], &local[..]].concat())), tip);
}
