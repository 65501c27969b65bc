//! A small blocking JSON-RPC 2.0 client over HTTP/1.1 (std sockets), for the commands that
//! talk to a running node (`devnet`, `client`).

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// Calls `method` with `params` on the node at `addr`; the `result`, or an error naming the
/// JSON-RPC error code and message.
pub(crate) fn call(addr: SocketAddr, method: &str, params: Value) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("no node answers at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(90)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).with_context(|| format!("reading the answer of {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (_, payload) =
        text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("malformed HTTP answer from {addr}"))?;
    let v: Value = serde_json::from_str(payload)
        .with_context(|| format!("the answer of {addr} to {method} is not JSON"))?;
    if let Some(err) = v.get("error") {
        bail!(
            "{method} failed: {} (code {}){}",
            err["message"].as_str().unwrap_or("?"),
            err["code"],
            err.get("data").map(|d| format!(": {d}")).unwrap_or_default()
        );
    }
    Ok(v.get("result").cloned().unwrap_or(Value::Null))
}
