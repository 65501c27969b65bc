//! `pouw devnet --json` as a user runs it: ten node processes, two real tasks one after the
//! other (`--tasks 2`) from submission to the delivered model, and a report whose numbers the
//! test checks against the nodes' RPC (with `--keep`, the network stays up for the checks; then
//! SIGINT stops every process).

use serde_json::{json, Value};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

fn rpc(url: &str, method: &str) -> Value {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (_, body) = out.split_once("\r\n\r\n").unwrap();
    serde_json::from_str::<Value>(body).unwrap()["result"].clone()
}

/// What a failed run says about itself (a timeout, a full disk, a node that stopped): the last
/// lines of the devnet's own output, and each node's last warnings and errors.
fn tails(dir: &Path) -> String {
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let last = |lines: Vec<&str>, n: usize| lines[lines.len().saturating_sub(n)..].join("\n");
    let devnet = read(&dir.join("devnet.err"));
    let mut out = format!("devnet's output:\n{}\n", last(devnet.lines().collect(), 20));
    let mut logs: Vec<_> = std::fs::read_dir(dir.join("net/logs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    logs.sort();
    for log in logs {
        let text = read(&log);
        let bad = text.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
        out += &format!("{} (last warnings):\n{}\n", log.display(), last(bad, 5));
    }
    out
}

#[test]
fn devnet_trains_two_tasks_in_a_row_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    // The devnet task, lighter for a debug build: 2 epochs of a 784-64-10 MLP.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let task = std::fs::read_to_string(root.join("tasks/devnet.toml"))
        .unwrap()
        .replace("epochs = 10", "epochs = 2")
        .replace("units = 128", "units = 64")
        .replace("../data/mnist/", &format!("{}/", root.join("data/mnist").display()));
    let task_file = dir.path().join("task.toml");
    std::fs::write(&task_file, task).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pouw"))
        .args(["devnet", "--json", "--keep", "--tasks", "2", "--timeout", "500", "--dir"])
        .arg(dir.path().join("net"))
        .arg("--task")
        .arg(&task_file)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("devnet.err")).unwrap())
        .spawn()
        .unwrap();
    // The JSON report comes on stdout before the network is left running.
    let mut text = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        text.push_str(&line);
        if line.starts_with('}') {
            break;
        }
        line.clear();
    }
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", tails(dir.path())));
    for key in [
        "test_accuracy",
        "blocks_mined",
        "blocks_rejected",
        "nodes",
        "payouts",
        "supply_check_ok",
        "wall_seconds",
    ] {
        assert!(report.get(key).is_some(), "report has `{key}`");
    }
    assert!(report["test_accuracy"].as_f64().unwrap() > 0.85, "{}", report["test_accuracy"]);
    // Both tasks ran, one after the other; the top-level keys describe the last one.
    assert_eq!(report["tasks_completed"], json!(2));
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_ne!(tasks[0]["task_id"], tasks[1]["task_id"]);
    assert_eq!(tasks[1]["task_id"], report["task_id"]);
    for t in tasks {
        assert_eq!(t["completed"], json!(true), "{t}");
        assert!(t["test_accuracy"].as_f64().unwrap() > 0.85, "{t}");
        // The in-order reference of the same task and split, and the gap to it in points.
        let reference = t["reference_accuracy"].as_f64().unwrap();
        assert!(reference > 0.85, "{t}");
        let gap = (reference - t["test_accuracy"].as_f64().unwrap()) * 100.0;
        assert!((t["reference_gap"].as_f64().unwrap() - gap).abs() < 0.01, "{t}");
    }
    assert_eq!(report["reference_accuracy"], tasks[1]["reference_accuracy"]);
    assert_eq!(report["supply_check_ok"], json!(true));
    assert_eq!(report["blocks_rejected"], json!(0));
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 10);
    assert!(!report["payouts"].as_array().unwrap().is_empty());
    // The network is still up (`--keep`): each node answers over RPC and saw every block.
    for n in nodes {
        assert_eq!(n["every_block_checked"], json!(true), "{n}");
        assert!(n["bytes_in"].as_u64().unwrap() > 0, "{n}");
        let tip = rpc(n["rpc"].as_str().unwrap(), "pouw_tip");
        assert!(tip["height"].as_u64().unwrap() >= report["blocks"].as_u64().unwrap());
    }
    // The client sent each worker each segment it needs once per task (6 training copies of 7
    // segments, 3 test copies of 3, about 3.2 MB each) and little else: a worker that fetched
    // its segments again and again would send gigabytes.
    let client_out = nodes[0]["bytes_out"].as_u64().unwrap();
    assert!(client_out < 2 * 51 * 3_200_000 + 50_000_000, "client sent {client_out} bytes");
    // After the tasks ended no supervisor fetches anything of them again.
    let supervisor = nodes.iter().find(|n| n["roles"] == json!("supervisor")).unwrap();
    let received = || {
        rpc(supervisor["rpc"].as_str().unwrap(), "pouw_health")["node"]["bytes_in"]
            .as_u64()
            .unwrap()
    };
    let before = received();
    std::thread::sleep(Duration::from_secs(5));
    let idle = received() - before;
    assert!(idle < 10_000_000, "a supervisor received {idle} bytes in 5 s after the tasks");
    let task_id = report["task_id"].as_str().unwrap();
    let client = nodes[0]["rpc"].as_str().unwrap();
    let addr = client.trim_start_matches("http://").trim_end_matches('/');
    let out = Command::new(env!("CARGO_BIN_EXE_pouw"))
        .args(["client", "--rpc", addr, "status", task_id, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(status["phase"].to_string().to_lowercase().contains("completed"), "{status}");
    // Ctrl-C stops every process cleanly.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success(), "devnet exited with {status}");
    assert!(TcpStream::connect(addr).is_err(), "the client node stopped");
}
