//! JSON-RPC 2.0 framing, error codes and limits; the server survives every bad request.

use crate::{
    client::{call, err, ok, post, raw, request},
    node::{panicking_task, slow_task, Fixture},
};
use pouw_rpc::{codes, RpcConfig};
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn parse_error_and_invalid_requests() {
    let f = Fixture::new(0);
    let json_ct = [("Content-Type", "application/json")];
    let r = request(f.addr(), "POST", "/", &json_ct, b"{\"jsonrpc\": \"2.0\", \"method\"");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["error"]["code"], codes::PARSE_ERROR);
    assert_eq!(v["id"], Value::Null);

    let r = post(f.addr(), &json!({ "jsonrpc": "2.0", "id": 4, "method": 1 }));
    assert_eq!(r.json()["error"]["code"], codes::INVALID_REQUEST);
    assert_eq!(r.json()["id"], 4);
    let r = post(f.addr(), &json!({ "jsonrpc": "1.0", "id": "a", "method": "pouw_tip" }));
    assert_eq!(r.json()["error"]["code"], codes::INVALID_REQUEST);
    assert_eq!(r.json()["id"], "a");
    let r =
        post(f.addr(), &json!({ "jsonrpc": "2.0", "id": 1, "method": "pouw_tip", "params": 7 }));
    assert_eq!(r.json()["error"]["code"], codes::INVALID_REQUEST);
    let r = post(f.addr(), &json!("hello"));
    assert_eq!(r.json()["error"]["code"], codes::INVALID_REQUEST);
    let r = post(f.addr(), &json!([]));
    assert_eq!(r.json()["error"]["code"], codes::INVALID_REQUEST);

    let (code, msg) = err(f.addr(), "pouw_nope", json!([]));
    assert_eq!(code, codes::METHOD_NOT_FOUND);
    assert!(msg.contains("pouw_nope"));

    // Still serving.
    assert_eq!(ok(f.addr(), "pouw_tip", json!([]))["height"], 0);
}

#[test]
fn batches_and_notifications() {
    let f = Fixture::new(2);
    let batch = json!([
        { "jsonrpc": "2.0", "id": 1, "method": "pouw_tip" },
        { "jsonrpc": "2.0", "method": "pouw_tip" },
        { "jsonrpc": "2.0", "id": "b", "method": "pouw_block", "params": [1] },
        { "jsonrpc": "2.0", "id": 3, "method": "nope" },
        { "foo": "boo" },
        5
    ]);
    let r = post(f.addr(), &batch);
    assert_eq!(r.status, 200);
    let v = r.json();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 5, "{v}"); // the notification gets no response
    assert_eq!(items[0]["id"], 1);
    assert_eq!(items[0]["result"]["height"], 2);
    assert_eq!(items[1]["id"], "b");
    assert_eq!(items[1]["result"]["height"], 1);
    assert_eq!(items[2]["error"]["code"], codes::METHOD_NOT_FOUND);
    assert_eq!(items[3]["error"]["code"], codes::INVALID_REQUEST);
    assert_eq!(items[3]["id"], Value::Null);
    assert_eq!(items[4]["error"]["code"], codes::INVALID_REQUEST);

    // Only notifications: nothing to answer.
    let r = post(f.addr(), &json!({ "jsonrpc": "2.0", "method": "pouw_tip" }));
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = post(f.addr(), &json!([{ "jsonrpc": "2.0", "method": "pouw_tip" }]));
    assert_eq!((r.status, r.body.len()), (204, 0));
    // A null id is a request, answered with a null id.
    let r = post(f.addr(), &json!({ "jsonrpc": "2.0", "id": null, "method": "pouw_tip" }));
    assert_eq!(r.json()["id"], Value::Null);
    assert_eq!(r.json()["result"]["height"], 2);
    // The /rpc path works too.
    let body = json!({ "jsonrpc": "2.0", "id": 9, "method": "pouw_tip" }).to_string();
    let r =
        request(f.addr(), "POST", "/rpc", &[("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(r.json()["result"]["height"], 2);
}

#[test]
fn limits() {
    let config = RpcConfig { max_body_bytes: 4096, max_batch: 3, ..RpcConfig::test() };
    let f = Fixture::with_config(0, config);
    let batch: Vec<Value> =
        (0..4).map(|i| json!({ "jsonrpc": "2.0", "id": i, "method": "pouw_tip" })).collect();
    let r = post(f.addr(), &Value::Array(batch.clone()));
    assert_eq!(r.json()["error"]["code"], codes::LIMIT_EXCEEDED);
    let r = post(f.addr(), &Value::Array(batch[..3].to_vec()));
    assert_eq!(r.json().as_array().unwrap().len(), 3);

    let big =
        json!({ "jsonrpc": "2.0", "id": 1, "method": "pouw_tip", "params": ["x".repeat(5000)] });
    let r = post(f.addr(), &big);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], codes::LIMIT_EXCEEDED);

    // Chunked, without a length: cut off at the limit while reading.
    let chunk = "x".repeat(3000);
    let mut req = String::from(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..2 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    let answer = String::from_utf8_lossy(&raw(f.addr(), req.as_bytes())).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    assert_eq!(ok(f.addr(), "pouw_tip", json!([]))["height"], 0);
}

#[test]
fn default_body_limit_is_one_mib() {
    let f = Fixture::new(0);
    let big =
        json!({ "jsonrpc": "2.0", "id": 1, "method": "pouw_tip", "params": ["x".repeat(1 << 20)] });
    let r = post(f.addr(), &big);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], codes::LIMIT_EXCEEDED);
}

#[test]
fn node_panics_and_timeouts_do_not_stop_the_server() {
    // The default call timeout: printing the panic's backtrace can take a while.
    let f = Fixture::new(0);
    let (code, _) = err(f.addr(), "pouw_task", json!([panicking_task().to_string()]));
    assert_eq!(code, codes::INTERNAL_ERROR);
    // In a batch, the other calls still answer.
    let r = post(
        f.addr(),
        &json!([
            { "jsonrpc": "2.0", "id": 1, "method": "pouw_task", "params": [panicking_task().to_string()] },
            { "jsonrpc": "2.0", "id": 2, "method": "pouw_tip" }
        ]),
    );
    let v = r.json();
    assert_eq!(v[0]["error"]["code"], codes::INTERNAL_ERROR);
    assert_eq!(v[1]["result"]["height"], 0);

    drop(f);

    let config = RpcConfig { call_timeout: Duration::from_millis(300), ..RpcConfig::test() };
    let f = Fixture::with_config(0, config);
    let v = call(f.addr(), "pouw_task", json!([slow_task().to_string()]));
    assert_eq!(v["error"]["code"], codes::UNAVAILABLE, "{v}");
    assert_eq!(ok(f.addr(), "pouw_tip", json!([]))["height"], 0);
}

#[test]
fn malformed_http_is_answered() {
    let f = Fixture::new(0);
    let answer = String::from_utf8_lossy(&raw(f.addr(), b"GARBAGE\r\n\r\n")).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let r = request(f.addr(), "PUT", "/", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    let r = request(f.addr(), "GET", "/nope", &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(ok(f.addr(), "pouw_tip", json!([]))["height"], 0);
}
