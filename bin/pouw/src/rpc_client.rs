//! A small blocking JSON-RPC 2.0 client over HTTP/1.1 on a std `TcpStream`: one connection per
//! call (`Connection: close`), with connect, read and write timeouts. Plain `http://` only.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

/// Largest response body read (a block of the largest size, as JSON, fits many times over).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A JSON-RPC error answered by the node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonRpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

impl std::fmt::Display for JsonRpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JSON-RPC error {}: {}", self.code, self.message)?;
        match &self.data {
            Some(Value::String(s)) if !self.message.contains(s.as_str()) => write!(f, " ({s})"),
            Some(v) if !v.is_null() && !v.is_string() => write!(f, " ({v})"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for JsonRpcError {}

/// One call to the node at `addr`, waiting up to 90 s for slow methods (a task submission
/// loads its dataset).
pub(crate) fn call_at(addr: SocketAddr, method: &str, params: Value) -> Result<Value> {
    RpcClient::new(&addr.to_string())?.with_timeout(Duration::from_secs(90)).call(method, params)
}

/// A node's JSON-RPC endpoint.
#[derive(Debug, Clone)]
pub(crate) struct RpcClient {
    /// As given, for messages.
    url: String,
    /// `host:port` for the `Host` header and for resolving.
    authority: String,
    /// Request path (`/`).
    path: String,
    timeout: Duration,
}

impl RpcClient {
    /// An endpoint from `http://host:port[/path]` or `host:port`.
    pub(crate) fn new(url: &str) -> Result<Self> {
        let trimmed = url.trim();
        let rest = if let Some(r) = trimmed.strip_prefix("http://") {
            r
        } else if trimmed.contains("://") {
            bail!("`{url}`: only http:// RPC endpoints are supported, e.g. http://127.0.0.1:8645")
        } else {
            trimmed
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if authority.is_empty() || !has_port {
            bail!("`{url}` is not an RPC endpoint: expected http://HOST:PORT, e.g. http://127.0.0.1:8645");
        }
        Ok(Self {
            url: trimmed.to_string(),
            authority: authority.to_string(),
            path: path.to_string(),
            timeout: Duration::from_secs(10),
        })
    }

    fn connect(&self) -> Result<TcpStream> {
        let addrs: Vec<SocketAddr> = self
            .authority
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve the RPC address {}", self.url))?
            .collect();
        let mut last = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, self.timeout) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        let e = last.ok_or_else(|| anyhow!("{} resolves to no address", self.url))?;
        Err(match e.kind() {
            std::io::ErrorKind::ConnectionRefused => anyhow!(
                "no node answers at {} (connection refused): is a node running with `--rpc`?",
                self.url
            ),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                anyhow!("no node answers at {} (no connection within {:?})", self.url, self.timeout)
            }
            _ => anyhow!("no node answers at {} ({e})", self.url),
        })
    }

    /// Calls `method` with `params` (an array or object); the `result` of the answer, or the
    /// node's JSON-RPC error as a [`JsonRpcError`] (downcastable from the returned error).
    /// The same endpoint with another connect/read/write timeout.
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Calls `method`: its `result`, or an error naming the endpoint and, for a JSON-RPC
    /// error, its code and message ([`JsonRpcError`] in the chain).
    pub(crate) fn call(&self, method: &str, params: Value) -> Result<Value> {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
                .to_string();
        let mut stream = self.connect()?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.authority,
            body.len()
        );
        let io = |e: std::io::Error| self.io_error(e);
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body.as_bytes()).map_err(io)?;
        stream.flush().map_err(io)?;
        let (status, body) = self.read_response(stream)?;
        let answer: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) if status != 200 => bail!(
                "{} answered HTTP {status}: {}",
                self.url,
                String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
            ),
            Err(e) => bail!("{} answered with a body that is not JSON ({e})", self.url),
        };
        if let Some(err) = answer.get("error").filter(|e| !e.is_null()) {
            let e = JsonRpcError {
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                data: err.get("data").cloned(),
            };
            return Err(anyhow::Error::new(e).context(format!("{method} at {}", self.url)));
        }
        if status != 200 {
            bail!("{} answered HTTP {status}", self.url);
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| anyhow!("{} answered without a result or an error", self.url))
    }

    fn io_error(&self, e: std::io::Error) -> anyhow::Error {
        match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                anyhow!("{} did not answer within {:?}", self.url, self.timeout)
            }
            _ => anyhow!("talking to {}: {e}", self.url),
        }
    }

    /// Status code and body of an HTTP/1.1 response (`Content-Length`, chunked, or until
    /// the connection closes).
    fn read_response(&self, stream: TcpStream) -> Result<(u16, Vec<u8>)> {
        let io = |e: std::io::Error| self.io_error(e);
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        r.read_line(&mut line).map_err(io)?;
        let status: u16 = line
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| {
                anyhow!("{} is not an HTTP server (answered `{}`)", self.url, line.trim())
            })?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            if r.read_line(&mut line).map_err(io)? == 0 {
                bail!("{} closed the connection in the response head", self.url);
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.to_ascii_lowercase().contains("chunked");
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line).map_err(io)?;
                let size_text = line.trim().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| anyhow!("{}: bad chunk size `{size_text}`", self.url))?;
                if size == 0 {
                    break;
                }
                if body.len() + size > MAX_RESPONSE_BYTES {
                    bail!("{}: response larger than {MAX_RESPONSE_BYTES} bytes", self.url);
                }
                let start = body.len();
                body.resize(start + size, 0);
                r.read_exact(&mut body[start..]).map_err(io)?;
                line.clear();
                r.read_line(&mut line).map_err(io)?;
            }
        } else if let Some(n) = length {
            if n > MAX_RESPONSE_BYTES {
                bail!("{}: response larger than {MAX_RESPONSE_BYTES} bytes", self.url);
            }
            body.resize(n, 0);
            r.read_exact(&mut body).map_err(io)?;
        } else {
            r.take(MAX_RESPONSE_BYTES as u64).read_to_end(&mut body).map_err(io)?;
        }
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls() {
        let c = RpcClient::new("http://127.0.0.1:8645").unwrap();
        assert_eq!((c.authority.as_str(), c.path.as_str()), ("127.0.0.1:8645", "/"));
        let c = RpcClient::new("localhost:1/rpc").unwrap();
        assert_eq!((c.authority.as_str(), c.path.as_str()), ("localhost:1", "/rpc"));
        assert!(RpcClient::new("https://x:1").is_err());
        assert!(RpcClient::new("http://x").is_err());
    }

    /// Serves one canned HTTP response on a loopback port; returns the URL.
    fn serve_once(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            s.write_all(response.as_bytes()).unwrap();
        });
        format!("http://{addr}")
    }

    #[test]
    fn results_errors_and_chunks() {
        let ok = |body: &str| -> &'static str {
            Box::leak(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    .into_boxed_str(),
            )
        };
        let resp = ok(r#"{"jsonrpc":"2.0","id":1,"result":{"height":2}}"#);
        let r = RpcClient::new(&serve_once(resp)).unwrap().call("pouw_tip", Value::Null);
        assert_eq!(r.unwrap()["height"], 2);

        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                       10\r\n{\"jsonrpc\":\"2.0\"\r\nf\r\n,\"id\":1,\"result\r\n4\r\n\":7}\r\n0\r\n\r\n";
        let r = RpcClient::new(&serve_once(chunked)).unwrap().call("x", Value::Null);
        assert_eq!(r.unwrap(), 7);

        let err = ok(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no method x"}}"#);
        let e = RpcClient::new(&serve_once(err)).unwrap().call("x", Value::Null).unwrap_err();
        let rpc = e.downcast_ref::<JsonRpcError>().unwrap();
        assert_eq!(rpc.code, -32601);
        assert!(format!("{e:#}").contains("-32601: no method x"), "{e:#}");
    }

    #[test]
    fn refused_connection_is_named() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = RpcClient::new(&format!("127.0.0.1:{port}")).unwrap();
        let e = c.call("pouw_tip", Value::Null).unwrap_err();
        assert!(e.to_string().contains("no node answers at"), "{e}");
    }
}
