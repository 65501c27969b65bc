//! Each method's result against the chain behind the server.

use crate::{
    client::{err, ok},
    node::{known_task, Fixture},
};
use pouw_chain::test_utils::{devnet_key, transfer};
use pouw_primitives::{encode, Hash, Keypair};
use pouw_rpc::codes;
use serde_json::{json, Value};

#[test]
fn tip_and_blocks() {
    let f = Fixture::new(3);
    let (tip_hash, block2) = {
        let g = f.node.lock();
        let c = &g.harness.chain;
        (c.tip(), c.block_at(2).unwrap().unwrap())
    };
    let tip = ok(f.addr(), "pouw_tip", json!([]));
    assert_eq!(tip["height"], 3);
    assert_eq!(tip["hash"], tip_hash.to_string());
    assert!(tip["total_work"].as_str().unwrap().parse::<u128>().unwrap() > 0);
    assert!(tip["target"].as_str().unwrap().starts_with("0x"));
    // No params at all is the same as an empty list.
    assert_eq!(ok(f.addr(), "pouw_tip", Value::Null), tip);

    let by_height = ok(f.addr(), "pouw_block", json!([2]));
    assert_eq!(by_height["hash"], block2.hash().to_string());
    assert_eq!(by_height["height"], 2);
    assert_eq!(by_height["prev_hash"], block2.header.prev_hash.to_string());
    let txs = by_height["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0]["kind"], "transfer");
    assert_eq!(txs[0]["hash"], block2.transactions[0].hash().to_string());
    assert_eq!(txs[0]["fee"], "0.0000001");
    assert_eq!(by_height["proof"], Value::Null);

    let by_hash = ok(f.addr(), "pouw_block", json!([block2.hash().to_string()]));
    assert_eq!(by_hash, by_height);
    let named = ok(f.addr(), "pouw_block", json!({ "block": format!("0x{}", block2.hash()) }));
    assert_eq!(named, by_height);
    assert_eq!(ok(f.addr(), "pouw_block", json!(["latest"]))["hash"], tip_hash.to_string());
    assert_eq!(ok(f.addr(), "pouw_block", json!(["0"]))["height"], 0);

    assert_eq!(ok(f.addr(), "pouw_block", json!([99])), Value::Null);
    assert_eq!(ok(f.addr(), "pouw_block", json!([Hash::digest(b"x").to_string()])), Value::Null);

    let (code, msg) = err(f.addr(), "pouw_block", json!([]));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("`block`"), "{msg}");
    let (code, msg) = err(f.addr(), "pouw_block", json!(["nope"]));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("`block`"), "{msg}");
    let (code, msg) = err(f.addr(), "pouw_block", json!([-1]));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("`block`"), "{msg}");
    let (code, msg) = err(f.addr(), "pouw_block", json!(["zz".repeat(32)]));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("`block`"), "{msg}");
    let (code, msg) = err(f.addr(), "pouw_tip", json!([1]));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("at most 0"), "{msg}");
}

#[test]
fn accounts() {
    let f = Fixture::new(1);
    let key = devnet_key(3);
    let expected = f.node.lock().harness.chain.account(&key.public());
    let a = ok(f.addr(), "pouw_account", json!([key.public().to_string()]));
    assert_eq!(a["address"], key.public().to_string());
    assert_eq!(a["balance"], expected.balance.to_string());
    assert_eq!(a["nonce"], expected.nonce);
    assert_eq!(a["locked_stake"], "0");
    let fresh = Keypair::from_label("nobody").public();
    let a = ok(f.addr(), "pouw_account", json!({ "address": fresh.to_string() }));
    assert_eq!((a["balance"].as_str(), a["nonce"].as_u64()), (Some("0"), Some(0)));

    let (code, msg) = err(f.addr(), "pouw_account", json!(["abc"]));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("`address`"), "{msg}");
    let (code, msg) = err(f.addr(), "pouw_account", json!([12]));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("`address`"), "{msg}");
    let (code, msg) = err(f.addr(), "pouw_account", json!({ "addr": fresh.to_string() }));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("unknown parameter `addr`"), "{msg}");
}

#[test]
fn tasks() {
    let f = Fixture::new(0);
    let t = ok(f.addr(), "pouw_task", json!([known_task().to_string()]));
    assert_eq!(t["state"], "training");
    assert_eq!(ok(f.addr(), "pouw_task", json!([Hash::digest(b"other").to_string()])), Value::Null);
    let (code, msg) = err(f.addr(), "pouw_task", json!(["12"]));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("`task_id`"), "{msg}");
}

#[test]
fn send_transaction() {
    let f = Fixture::new(2);
    let key = devnet_key(5);
    let to = Keypair::from_label("recipient").public();
    let (spec, nonce) = {
        let g = f.node.lock();
        (g.harness.chain.spec().clone(), g.harness.chain.account(&key.public()).nonce)
    };

    // Canonical hex.
    let tx = transfer(&spec, &key, nonce, to, 1_000, 10);
    let hash = ok(f.addr(), "pouw_sendTransaction", json!([hex::encode(encode(&tx))]));
    assert_eq!(hash, tx.hash().to_string());
    assert!(f.node.lock().mempool.contains(&tx.hash()));

    // Again: the mempool refuses, with its reason.
    let v =
        crate::client::call(f.addr(), "pouw_sendTransaction", json!([hex::encode(encode(&tx))]));
    assert_eq!(v["error"]["code"], codes::TX_REJECTED);
    assert!(v["error"]["data"].as_str().unwrap().contains("already"), "{v}");

    // A JSON transaction object, with a 0x-less named param.
    let tx2 = transfer(&spec, &key, nonce + 1, to, 2_000, 10);
    let hash =
        ok(f.addr(), "pouw_sendTransaction", json!({ "tx": serde_json::to_value(&tx2).unwrap() }));
    assert_eq!(hash, tx2.hash().to_string());
    let health = ok(f.addr(), "pouw_health", json!([]));
    assert_eq!(health["node"]["mempool_size"], 2);
    assert_eq!(health["node"]["pending_own_txs"], 2);
    assert_eq!(health["node"]["oldest_own_tx_secs"], 0);
    let own = ok(f.addr(), "pouw_pendingOwnTransactions", json!([]));
    let own = own.as_array().unwrap();
    assert_eq!(own.len(), 2);
    assert_eq!(own[1]["hash"], tx2.hash().to_string());
    assert_eq!(own[1]["kind"], "transfer");
    assert_eq!(own[1]["nonce"], nonce + 1);
    assert_eq!(own[1]["announces"], 0);

    // A bad signature is rejected (-32000) before it reaches the node.
    let mut bad = transfer(&spec, &key, nonce + 2, to, 3_000, 10);
    bad.signature.0[0] ^= 1;
    let (code, msg) =
        err(f.addr(), "pouw_sendTransaction", json!([format!("0x{}", hex::encode(encode(&bad)))]));
    assert_eq!(code, codes::TX_REJECTED);
    assert!(msg.contains("signature"), "{msg}");
    assert!(!f.node.lock().mempool.contains(&bad.hash()));

    // Wrong nonce: the mempool's rule.
    let future = transfer(&spec, &key, nonce + 1000, to, 1, 10);
    let (code, msg) = err(f.addr(), "pouw_sendTransaction", json!([hex::encode(encode(&future))]));
    assert_eq!(code, codes::TX_REJECTED);
    assert!(msg.contains("nonce"), "{msg}");

    // Garbage: invalid params naming `tx`.
    for garbage in [json!(["zz"]), json!(["00ff"]), json!([5]), json!([{ "body": 1 }]), json!([])] {
        let (code, msg) = err(f.addr(), "pouw_sendTransaction", garbage.clone());
        assert_eq!(code, codes::INVALID_PARAMS, "{garbage}");
        assert!(msg.contains("`tx`"), "{garbage}: {msg}");
    }
    // Trailing bytes after a valid encoding.
    let mut long = encode(&tx2);
    long.push(0);
    let (code, msg) = err(f.addr(), "pouw_sendTransaction", json!([hex::encode(long)]));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("trailing"), "{msg}");
    // Over the transaction size limit.
    let huge = "00".repeat(pouw_primitives::MAX_TX_BYTES + 1);
    let (code, msg) = err(f.addr(), "pouw_sendTransaction", json!([huge]));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("over the limit"), "{msg}");
}

#[test]
fn peers_recent_blocks_and_training() {
    let f = Fixture::new(4);
    let peers = ok(f.addr(), "pouw_peers", json!([]));
    assert_eq!(peers[0]["peer_id"], "12D3KooWTestPeer");

    let recent = ok(f.addr(), "pouw_recentBlocks", json!([3]));
    let heights: Vec<u64> =
        recent.as_array().unwrap().iter().map(|b| b["height"].as_u64().unwrap()).collect();
    assert_eq!(heights, [4, 3, 2]);
    let all = ok(f.addr(), "pouw_recentBlocks", json!([]));
    assert_eq!(all.as_array().unwrap().len(), 5); // default 10, chain has 5
    let (code, msg) = err(f.addr(), "pouw_recentBlocks", json!(["many"]));
    assert_eq!(code, codes::INVALID_PARAMS);
    assert!(msg.contains("`count`"), "{msg}");

    let points = ok(f.addr(), "pouw_training", json!([2]));
    let seqs: Vec<u64> =
        points.as_array().unwrap().iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(points[0]["task_id"], known_task().to_string());
    assert_eq!(points[0]["iteration"], 30);
    let limited = ok(f.addr(), "pouw_training", json!({ "since": 0, "limit": 2 }));
    assert_eq!(limited.as_array().unwrap().len(), 2);
    assert_eq!(ok(f.addr(), "pouw_training", json!([])).as_array().unwrap().len(), 5);
}

#[test]
fn health_method() {
    let f = Fixture::new(1);
    let h = ok(f.addr(), "pouw_health", json!([]));
    assert_eq!(h["status"], "ok");
    assert_eq!(h["height"], 1);
    assert_eq!(h["node"]["blocks_verified"], 1);
    assert_eq!(h["node"]["rewards_earned"], "12.5");
    assert_eq!(h["node"]["pending_own_txs"], 0);
    assert_eq!(h["node"]["oldest_own_tx_secs"], Value::Null);
    assert_eq!(ok(f.addr(), "pouw_pendingOwnTransactions", json!([])), json!([]));
}
