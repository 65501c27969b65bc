//! Three `pouw node` processes on loopback find each other through `--bootstrap`, mine, agree
//! on one tip (read over JSON-RPC), and stop cleanly on SIGTERM with their data intact.

mod support;

use support::free_port;

use pouw_primitives::ChainSpec;
use serde_json::{json, Value};
use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A JSON-RPC call over a plain HTTP/1.1 connection.
fn rpc(port: u16, method: &str, params: Value) -> Option<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    let v: Value = serde_json::from_str(body).ok()?;
    v.get("result").cloned()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm(child: &Child) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

#[test]
fn three_node_processes_agree_on_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ChainSpec::devnet();
    spec.retarget_window = 1_000_000;
    // About 150 filler iterations per block, whatever the filler's nonce budget.
    spec.initial_target = pouw_node::local_spec(300).initial_target;
    let chain = dir.path().join("spec.toml");
    std::fs::write(&chain, spec.to_toml()).unwrap();
    let p2p: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let rpcp: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut procs = Vec::new();
    for i in 0..3 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pouw"));
        cmd.args(["node", "--datadir"])
            .arg(dir.path().join(format!("n{i}")))
            .arg("--chain")
            .arg(&chain)
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{}", p2p[i])])
            .args(["--rpc", &format!("127.0.0.1:{}", rpcp[i])])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if i > 0 {
            // Without the peer id: the node learns it in the handshake.
            cmd.args(["--bootstrap", &format!("/ip4/127.0.0.1/tcp/{}", p2p[i - 1])]);
        }
        procs.push(Proc(cmd.spawn().unwrap()));
    }
    let tip = |i: usize| rpc(rpcp[i], "pouw_tip", json!([]));
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(240), "no common tip at height >= 5");
        let tips: Vec<Option<Value>> = (0..3).map(tip).collect();
        let ok = tips.iter().all(|t| t.as_ref().is_some_and(|t| t["height"].as_u64() >= Some(5)));
        if ok
            && tips
                .windows(2)
                .all(|w| w[0].as_ref().map(|t| &t["hash"]) == w[1].as_ref().map(|t| &t["hash"]))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, port) in rpcp.iter().enumerate() {
        let peers = rpc(*port, "pouw_peers", json!([])).unwrap();
        assert!(!peers.as_array().unwrap().is_empty(), "node {i} has peers");
        let health = rpc(*port, "pouw_health", json!([])).unwrap();
        assert!(health.to_string().contains("blocks_verified"), "{health}");
    }
    for p in &procs {
        sigterm(&p.0);
    }
    for (i, p) in procs.iter_mut().enumerate() {
        let status = p.0.wait().unwrap();
        assert!(status.success(), "node {i} exited with {status}");
    }
    // Each datadir reopens with a chain of at least the common height.
    for i in 0..3 {
        let out = Command::new(env!("CARGO_BIN_EXE_pouw"))
            .args(["chain", "tip", "--json", "--datadir"])
            .arg(dir.path().join(format!("n{i}")))
            .arg("--chain")
            .arg(&chain)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["height"].as_u64().unwrap() >= 5);
    }
}
