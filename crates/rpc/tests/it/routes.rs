//! `/metrics`, `/health`, the dashboard hook, admin rights and shutdown.

use crate::{
    client::{call, err, ok, post_with, raw, request},
    node::Fixture,
};
use pouw_rpc::{codes, RpcConfig};
use serde_json::{json, Value};
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

#[test]
fn metrics_lists_every_metric() {
    let f = Fixture::new(3);
    ok(f.addr(), "pouw_tip", json!([]));
    let r = request(f.addr(), "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    for (name, kind, _) in pouw_rpc::METRICS {
        assert!(text.contains(&format!("# HELP {name} ")), "{name} missing:\n{text}");
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} type:\n{text}");
    }
    for line in [
        "pouw_height 3\n",
        "pouw_peers 1\n",
        "pouw_iterations_per_second 12.5\n",
        "pouw_block_verification_seconds 0.042\n",
        "pouw_mempool_size 0\n",
        "pouw_pending_own_transactions 0\n",
        "pouw_bans_total 5\n",
        "pouw_blocks_mined_total 1\n",
        "pouw_blocks_verified_total 3\n",
        "pouw_blocks_rejected_total 2\n",
        "pouw_network_bytes_out_total 7000\n",
        "pouw_rewards_earned_units_total 1250000000\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    let rpc_requests = text
        .lines()
        .find_map(|l| l.strip_prefix("pouw_rpc_requests_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(rpc_requests >= 1);
    // Every sample line is `name value` with a number.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.split_once(' ').unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    assert!(text.contains("process_resident_memory_bytes "));
    assert!(text.contains("process_cpu_seconds_total "));
}

#[test]
fn health_ok_and_degraded() {
    let f = Fixture::new(2);
    ok(f.addr(), "pouw_tip", json!([]));
    // Wait for the sampler (100 ms) to take two samples: then the CPU percent is known. The
    // process's CPU time is counted in clock ticks (10 ms): a young test process can read 0,
    // so the wait spins rather than sleeps until a tick is counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = request(f.addr(), "GET", "/health", &[], b"");
        let process = &r.json()["process"];
        let sampled = process["cpu_percent"].is_number()
            && process["cpu_seconds"].as_f64().is_some_and(|s| s > 0.0);
        if sampled || Instant::now() > deadline {
            break r;
        }
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::spin_loop();
        }
    };
    assert_eq!(r.status, 200, "{}", r.text());
    let h = r.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["reasons"], json!([]));
    assert_eq!(h["height"], 2);
    assert_eq!(h["peers"], 1);
    assert_eq!(h["node_id"], "12D3KooWtest");
    assert_eq!(h["node"]["node_id"], "12D3KooWtest");
    assert_eq!(h["node"]["tasks_completed_per_hour"], 108.0);
    assert!(h["process"]["memory_bytes"].as_u64().unwrap() > 0, "{h}");
    assert!(h["process"]["cpu_percent"].as_f64().unwrap() >= 0.0, "{h}");
    assert!(h["process"]["cpu_seconds"].as_f64().unwrap() > 0.0, "{h}");
    assert!(h["bandwidth"]["out_bytes_per_sec"].as_f64().unwrap() >= 0.0, "{h}");
    let rpc = &h["rpc"];
    assert!(rpc["requests"].as_u64().unwrap() >= 1, "{h}");
    assert!(rpc["avg_response_ms"].as_f64().unwrap() > 0.0, "{h}");
    assert!(rpc["last_response_ms"].as_f64().unwrap() > 0.0, "{h}");
    for key in [
        "blocks_mined",
        "blocks_verified",
        "blocks_rejected",
        "tasks_completed",
        "tasks_completed_per_hour",
        "rewards_earned",
        "security_alerts",
        "messages_in",
        "messages_out",
        "bytes_in",
        "bytes_out",
        "peer_count",
        "bans",
        "mempool_size",
        "iterations_per_second",
        "last_block_verification_ms",
        "uptime_secs",
        "syncing",
        "no_peers",
    ] {
        assert!(h["node"].get(key).is_some(), "node.{key} missing: {h}");
    }

    f.node.no_peers.store(true, Ordering::Relaxed);
    let r = request(f.addr(), "GET", "/health", &[], b"");
    assert_eq!(r.status, 503);
    let h = r.json();
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["reasons"], json!(["no peers"]));
    assert_eq!(h["peers"], 0);
    f.node.syncing.store(true, Ordering::Relaxed);
    let h = request(f.addr(), "GET", "/health", &[], b"").json();
    assert_eq!(h["reasons"], json!(["syncing", "no peers"]));
    // The JSON-RPC method reports the same (and stays a successful call).
    assert_eq!(ok(f.addr(), "pouw_health", json!([]))["status"], "degraded");
}

#[test]
fn bandwidth_is_measured_between_samples() {
    let f = Fixture::new(0);
    // Traffic keeps coming; the rate appears once two samples (100 ms apart) saw it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bytes = 0;
    let rate = loop {
        bytes += 10_000;
        f.node.bytes_in.store(bytes, Ordering::Relaxed);
        let h = request(f.addr(), "GET", "/health", &[], b"").json();
        let rate = h["bandwidth"]["in_bytes_per_sec"].as_f64().unwrap_or(0.0);
        if rate > 0.0 {
            assert_eq!(h["bandwidth"]["out_bytes_per_sec"], 0.0, "{h}");
            break rate;
        }
        assert!(Instant::now() < deadline, "no bandwidth measured: {h}");
        std::thread::sleep(Duration::from_millis(20));
    };
    // 10 kB every 20 ms or more: at most 500 kB/s.
    assert!(rate <= 600_000.0, "{rate}");
}

#[test]
fn idle_connections_are_closed() {
    let config = RpcConfig { header_timeout: Duration::from_millis(300), ..RpcConfig::test() };
    let f = Fixture::with_config(0, config);
    let started = std::time::Instant::now();
    let answer = raw(f.addr(), b"");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"), "{answer:?}");
    // A keep-alive connection is closed too after its last answer.
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "pouw_tip" }).to_string();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = std::time::Instant::now();
    let answer = String::from_utf8_lossy(&raw(f.addr(), req.as_bytes())).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn admin_rights() {
    // Loopback trusted (the default): allowed without a token.
    let f = Fixture::new(0);
    let info = ok(f.addr(), "admin_nodeInfo", json!([]));
    assert_eq!(info["chain"], "test");
    assert!(!info["datadir"].as_str().unwrap().is_empty());
    drop(f);

    // Loopback not trusted and no token: refused.
    let f = Fixture::with_config(0, RpcConfig { trust_loopback: false, ..RpcConfig::test() });
    let v = call(f.addr(), "admin_nodeInfo", json!([]));
    assert_eq!(v["error"]["code"], codes::UNAUTHORIZED, "{v}");
    // Public methods still work.
    ok(f.addr(), "pouw_tip", json!([]));
    drop(f);

    // With a token: only the right bearer token is allowed.
    let config = RpcConfig {
        trust_loopback: false,
        admin_token: Some("s3cret".into()),
        ..RpcConfig::test()
    };
    let f = Fixture::with_config(0, config);
    let req = json!({ "jsonrpc": "2.0", "id": 1, "method": "admin_nodeInfo" });
    let v = post_with(f.addr(), &req, &[]).json();
    assert_eq!(v["error"]["code"], codes::UNAUTHORIZED);
    let v = post_with(f.addr(), &req, &[("Authorization", "Bearer wrong")]).json();
    assert_eq!(v["error"]["code"], codes::UNAUTHORIZED);
    let v = post_with(f.addr(), &req, &[("Authorization", "s3cret")]).json();
    assert_eq!(v["error"]["code"], codes::UNAUTHORIZED);
    let v = post_with(f.addr(), &req, &[("Authorization", "Bearer s3cret")]).json();
    assert_eq!(v["result"]["chain"], "test", "{v}");
    assert_eq!(v["result"]["roles"], json!(["miner"]));
    drop(f);

    // Loopback trust needs a local Host (a DNS-rebound name is not local).
    let f = Fixture::new(0);
    let body = req.to_string();
    let local = [("Content-Type", "application/json"), ("Host", "localhost:8545")];
    let v = request(f.addr(), "POST", "/", &local, body.as_bytes()).json();
    assert_eq!(v["result"]["chain"], "test", "{v}");
    let v6 = [("Content-Type", "application/json"), ("Host", "[::1]:8545")];
    let v = request(f.addr(), "POST", "/", &v6, body.as_bytes()).json();
    assert_eq!(v["result"]["chain"], "test", "{v}");
    let rebound = [("Content-Type", "application/json"), ("Host", "evil.example:8545")];
    let v = request(f.addr(), "POST", "/", &rebound, body.as_bytes()).json();
    assert_eq!(v["error"]["code"], codes::UNAUTHORIZED, "{v}");
}

#[test]
fn rpc_needs_json_content_type() {
    let f = Fixture::new(0);
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "pouw_tip" }).to_string();
    let r = request(f.addr(), "POST", "/", &[("Content-Type", "text/plain")], body.as_bytes());
    assert_eq!(r.status, 415);
    let r = request(f.addr(), "POST", "/", &[], body.as_bytes());
    assert_eq!(r.status, 415);
    let ct = [("Content-Type", "application/json; charset=utf-8")];
    let r = request(f.addr(), "POST", "/", &ct, body.as_bytes());
    assert_eq!(r.json()["result"]["height"], 0);
}

static INDEX: &[u8] = b"<!doctype html><title>pouw</title>";
static APP: &[u8] = b"console.log('pouw')";
static ASSETS: &[pouw_rpc::Asset] =
    &[("/index.html", "text/html; charset=utf-8", INDEX), ("/app.js", "text/javascript", APP)];

#[test]
fn dashboard_assets() {
    let f = Fixture::new(0);
    let r = request(f.addr(), "GET", "/dashboard", &[], b"");
    assert_eq!(r.status, 404);
    let r = request(f.addr(), "GET", "/", &[("Accept", "text/html")], b"");
    assert_eq!(r.status, 200);
    drop(f);

    let config = RpcConfig { assets: ASSETS, ..RpcConfig::test() };
    let f = Fixture::with_config(0, config);
    let r = request(f.addr(), "GET", "/", &[("Accept", "text/html,application/xhtml+xml")], b"");
    assert_eq!((r.status, r.body.as_slice()), (200, INDEX));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = request(f.addr(), "GET", "/dashboard", &[], b"");
    assert_eq!(r.body, INDEX);
    let r = request(f.addr(), "GET", "/app.js", &[], b"");
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/javascript")));
    assert_eq!(r.body, APP);
    // POST / is still JSON-RPC.
    assert_eq!(ok(f.addr(), "pouw_tip", json!([]))["height"], 0);
}

#[test]
fn shutdown_stops_listening_and_port_zero_is_reported() {
    let f = Fixture::new(0);
    let addr = f.addr();
    assert_ne!(addr.port(), 0);
    ok(addr, "pouw_tip", json!([]));
    f.server.shutdown();
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn peer_admin_methods_check_rights_and_params() {
    let f = Fixture::with_config(0, RpcConfig { trust_loopback: false, ..RpcConfig::test() });
    for (method, params) in [
        ("admin_peers", json!([])),
        ("admin_addPeer", json!(["/ip4/127.0.0.1/tcp/1"])),
        ("admin_removePeer", json!(["12D3KooW"])),
    ] {
        let v = call(f.addr(), method, params);
        assert_eq!(v["error"]["code"], codes::UNAUTHORIZED, "{method}: {v}");
    }
    drop(f);

    let f = Fixture::new(0);
    let (code, _) = err(f.addr(), "admin_addPeer", json!([7]));
    assert_eq!(code, codes::INVALID_PARAMS);
    let (code, _) = err(f.addr(), "admin_removePeer", json!([]));
    assert_eq!(code, codes::INVALID_PARAMS);
    let (code, _) = err(f.addr(), "admin_peers", json!(["extra"]));
    assert_eq!(code, codes::INVALID_PARAMS);
    // A node without a network (this test node) says so.
    let (code, message) = err(f.addr(), "admin_addPeer", json!(["/ip4/127.0.0.1/tcp/1"]));
    assert_eq!(code, codes::UNAVAILABLE, "{message}");
    assert_eq!(ok(f.addr(), "admin_peers", json!([])), Value::Null);
}
