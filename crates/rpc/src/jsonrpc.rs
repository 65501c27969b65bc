//! JSON-RPC 2.0: request parsing, batches and notifications, error objects.
//!
//! Parsing happens on the async side (cheap, bounded by the body limit); the calls themselves
//! run on a blocking thread ([`run_calls`]) because every [`NodeApi`](crate::NodeApi) method may
//! block.

use serde_json::{json, Value};

/// The JSON-RPC error codes this server answers with.
pub mod codes {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid request object (or an empty batch).
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// A parameter is missing, unknown or malformed; the message names it.
    pub const INVALID_PARAMS: i64 = -32602;
    /// A failure inside the server or the node.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The node refused the transaction; `data` holds the reason.
    pub const TX_REJECTED: i64 = -32000;
    /// An admin method called without the right to (not loopback, no valid bearer token).
    pub const UNAUTHORIZED: i64 = -32001;
    /// The node did not answer in time or is shutting down.
    pub const UNAVAILABLE: i64 = -32002;
    /// A request limit was exceeded (body size, batch size).
    pub const LIMIT_EXCEEDED: i64 = -32005;
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RpcErr {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

impl RpcErr {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    pub(crate) fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMS, message)
    }

    pub(crate) fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    fn to_json(&self) -> Value {
        let mut e = json!({ "code": self.code, "message": self.message });
        if let (Some(d), Some(obj)) = (&self.data, e.as_object_mut()) {
            obj.insert("data".into(), d.clone());
        }
        e
    }
}

/// A response object.
pub(crate) fn response(id: &Value, result: Result<Value, RpcErr>) -> Value {
    match result {
        Ok(r) => json!({ "jsonrpc": "2.0", "id": id, "result": r }),
        Err(e) => json!({ "jsonrpc": "2.0", "id": id, "error": e.to_json() }),
    }
}

/// One parsed call: a valid request to dispatch, or an invalid one to answer with an error.
#[derive(Debug)]
pub(crate) enum Call {
    /// A valid request. `id` is `None` for a notification (no response).
    Request { id: Option<Value>, method: String, params: Option<Value> },
    /// An invalid request: answered with this error and id (null when unknown).
    Invalid { id: Value, error: RpcErr },
}

impl Call {
    /// The id a response to this call carries, `None` for a notification.
    pub(crate) fn response_id(&self) -> Option<&Value> {
        match self {
            Self::Request { id, .. } => id.as_ref(),
            Self::Invalid { id, .. } => Some(id),
        }
    }
}

/// A parsed body.
#[derive(Debug)]
pub(crate) enum Body {
    /// One request (object).
    Single(Call),
    /// A batch (non-empty array).
    Batch(Vec<Call>),
    /// Nothing to dispatch: answer with this single response (parse error, empty or
    /// oversized batch).
    Error(Value),
}

/// Parses a request body.
pub(crate) fn parse_body(bytes: &[u8], max_batch: usize) -> Body {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            let err = RpcErr::new(codes::PARSE_ERROR, format!("parse error: {e}"));
            return Body::Error(response(&Value::Null, Err(err)));
        }
    };
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                let err = RpcErr::new(codes::INVALID_REQUEST, "invalid request: empty batch");
                return Body::Error(response(&Value::Null, Err(err)));
            }
            if items.len() > max_batch {
                let err = RpcErr::new(
                    codes::LIMIT_EXCEEDED,
                    format!("batch of {} requests, over the limit of {max_batch}", items.len()),
                );
                return Body::Error(response(&Value::Null, Err(err)));
            }
            Body::Batch(items.into_iter().map(parse_call).collect())
        }
        other => Body::Single(parse_call(other)),
    }
}

fn parse_call(value: Value) -> Call {
    let invalid = |id: Value, why: &str| Call::Invalid {
        id,
        error: RpcErr::new(codes::INVALID_REQUEST, format!("invalid request: {why}")),
    };
    let Value::Object(mut obj) = value else {
        return invalid(Value::Null, "expected a request object");
    };
    // The id, if present, must be a string, a number or null.
    let id = match obj.remove("id") {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(v),
        Some(_) => return invalid(Value::Null, "`id` must be a string, a number or null"),
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(reply_id, "`jsonrpc` must be \"2.0\"");
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => return invalid(reply_id, "`method` must be a string"),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => None,
        Some(p @ (Value::Array(_) | Value::Object(_))) => Some(p),
        Some(_) => return invalid(reply_id, "`params` must be an array or an object"),
    };
    Call::Request { id, method, params }
}

/// Positional (array) or named (object) parameters.
#[derive(Debug)]
pub(crate) struct Params<'a> {
    params: Option<&'a Value>,
}

impl<'a> Params<'a> {
    pub(crate) fn new(params: Option<&'a Value>) -> Self {
        Self { params }
    }

    /// Checks that only the parameters `names` (in this positional order) are given.
    pub(crate) fn expect(&self, names: &[&str]) -> Result<(), RpcErr> {
        match self.params {
            Some(Value::Array(a)) if a.len() > names.len() => Err(RpcErr::invalid_params(format!(
                "expected at most {} parameters ({}), got {}",
                names.len(),
                list(names),
                a.len()
            ))),
            Some(Value::Object(o)) => match o.keys().find(|k| !names.contains(&k.as_str())) {
                Some(k) => Err(RpcErr::invalid_params(format!(
                    "unknown parameter `{k}` (expected {})",
                    list(names)
                ))),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Parameter `name` at position `index`; `None` when absent or null.
    pub(crate) fn get(&self, index: usize, name: &str) -> Option<&'a Value> {
        let v = match self.params {
            Some(Value::Array(a)) => a.get(index),
            Some(Value::Object(o)) => o.get(name),
            _ => None,
        };
        v.filter(|v| !v.is_null())
    }

    /// Parameter `name` at position `index`, required.
    pub(crate) fn required(&self, index: usize, name: &str) -> Result<&'a Value, RpcErr> {
        self.get(index, name)
            .ok_or_else(|| RpcErr::invalid_params(format!("missing parameter `{name}`")))
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// Reads a non-negative integer parameter (a JSON number, or a decimal or `0x` hex string).
pub(crate) fn as_u64(v: &Value, name: &str) -> Result<u64, RpcErr> {
    let bad = || RpcErr::invalid_params(format!("`{name}`: expected a non-negative integer"));
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        Value::String(s) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).map_err(|_| bad()),
            None => s.parse().map_err(|_| bad()),
        },
        _ => Err(bad()),
    }
}

/// Reads a string parameter and parses it with `FromStr`.
pub(crate) fn parse_str<T>(v: &Value, name: &str, what: &str) -> Result<T, RpcErr>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let s = v
        .as_str()
        .ok_or_else(|| RpcErr::invalid_params(format!("`{name}`: expected {what} as a string")))?;
    s.parse().map_err(|e| RpcErr::invalid_params(format!("`{name}`: invalid {what}: {e}")))
}

/// Wraps results into a batch or single response body; `None` when nothing is to be sent.
pub(crate) fn collect_responses(single: bool, responses: Vec<Value>) -> Option<Value> {
    if responses.is_empty() {
        return None;
    }
    if single {
        responses.into_iter().next()
    } else {
        Some(Value::Array(responses))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_notifications_and_errors() {
        let Body::Single(Call::Request { id, method, params }) =
            parse_body(br#"{"jsonrpc":"2.0","id":7,"method":"m","params":[1]}"#, 10)
        else {
            panic!("expected a request")
        };
        assert_eq!((id, method.as_str(), params), (Some(json!(7)), "m", Some(json!([1]))));
        let Body::Single(Call::Request { id: None, .. }) =
            parse_body(br#"{"jsonrpc":"2.0","method":"m"}"#, 10)
        else {
            panic!("expected a notification")
        };
        for bad in [
            &br#"{"jsonrpc":"1.0","id":1,"method":"m"}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            br#"{"jsonrpc":"2.0","id":[1],"method":"m"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"m","params":3}"#,
            br#"7"#,
        ] {
            match parse_body(bad, 10) {
                Body::Single(Call::Invalid { error, .. }) => {
                    assert_eq!(error.code, codes::INVALID_REQUEST)
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(parse_body(b"{", 10), Body::Error(_)));
        assert!(matches!(parse_body(b"[]", 10), Body::Error(_)));
        assert!(matches!(parse_body(b"[1,2,3]", 2), Body::Error(_)));
    }

    #[test]
    fn params_by_position_or_name() {
        let arr = json!([5, null]);
        let p = Params::new(Some(&arr));
        assert_eq!(p.get(0, "a"), Some(&json!(5)));
        assert_eq!(p.get(1, "b"), None);
        assert!(p.expect(&["a"]).is_err());
        assert!(p.expect(&["a", "b"]).is_ok());
        let obj = json!({"b": "x"});
        let p = Params::new(Some(&obj));
        assert_eq!(p.get(1, "b"), Some(&json!("x")));
        assert!(p.expect(&["a"]).unwrap_err().message.contains("`b`"));
        assert!(p.required(0, "a").unwrap_err().message.contains("`a`"));
        assert_eq!(as_u64(&json!("0x10"), "n"), Ok(16));
        assert_eq!(as_u64(&json!("12"), "n"), Ok(12));
        assert!(as_u64(&json!(-1), "n").is_err());
    }
}
