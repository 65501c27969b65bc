//! The HTTP server: accept loop, routing, body limits, admin rights, and the thread-owning
//! [`RpcServer`] handle.
//!
//! ```text
//! accept ─► connection task (hyper http1, header timeout) ─► route
//!   POST / | /rpc ─► body (limit, timeout) ─► parse ─► spawn_blocking(calls) ─► JSON
//!   GET /metrics  ─► spawn_blocking(tip, status) ─► Prometheus text
//!   GET /health   ─► spawn_blocking(tip, status) ─► JSON, 200 ok / 503 degraded
//!   GET / (html), /dashboard, asset paths ─► embedded assets
//! sampler task: every `sample_interval`, process CPU and network bandwidth
//! ```

use crate::{
    api::NodeApi,
    config::RpcConfig,
    jsonrpc::{self, codes, Body, Call, RpcErr},
    methods::{self, Context},
    metrics,
    monitor::Monitor,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{
    body::Incoming,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tracing::{debug, info, warn};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The address could not be bound.
    #[error("cannot bind the RPC server to {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Setting up the listener, runtime or thread failed.
    #[error("cannot start the RPC server")]
    Io(#[from] std::io::Error),
}

/// State shared by every connection.
struct Shared {
    api: Arc<dyn NodeApi>,
    config: RpcConfig,
    monitor: Monitor,
}

type Resp = Response<Full<Bytes>>;

/// Serves the RPC, metrics, health and dashboard routes on `listener` until the task is
/// dropped.
pub async fn serve(listener: TcpListener, api: Arc<dyn NodeApi>, config: RpcConfig) {
    serve_with_shutdown(listener, api, config, std::future::pending()).await;
}

/// [`serve`] until `shutdown` completes; then stops accepting and drops open connections.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    api: Arc<dyn NodeApi>,
    config: RpcConfig,
    shutdown: impl Future<Output = ()>,
) {
    let shared = Arc::new(Shared { api, config, monitor: Monitor::default() });
    let connections = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
    let mut tasks = JoinSet::new();
    tasks.spawn(sample_loop(shared.clone()));
    if let Ok(addr) = listener.local_addr() {
        info!(target: "rpc", %addr, "RPC server listening");
    }
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(target: "rpc", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        let shared = shared.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let svc = service_fn(|req| handle(shared.clone(), peer, req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(shared.config.header_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                debug!(target: "rpc", %peer, error = %e, "connection ended with an error");
            }
        });
    }
    info!(target: "rpc", "RPC server stopped");
    tasks.shutdown().await;
}

async fn sample_loop(shared: Arc<Shared>) {
    let mut tick =
        tokio::time::interval(shared.config.sample_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = shared.clone();
        let r = blocking(&shared.config, move || {
            let status = s.api.status();
            s.monitor.sample(&status);
        })
        .await;
        if let Err(e) = r {
            debug!(target: "rpc", error = %e.message, "sampling failed");
        }
    }
}

/// Runs `f` on a blocking thread with the call timeout; a panic or timeout becomes an error.
async fn blocking<T: Send + 'static>(
    config: &RpcConfig,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RpcErr> {
    let task = tokio::task::spawn_blocking(move || std::panic::catch_unwind(AssertUnwindSafe(f)));
    match tokio::time::timeout(config.call_timeout, task).await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(_))) | Ok(Err(_)) => {
            warn!(target: "rpc", "a node call panicked");
            Err(RpcErr::new(codes::INTERNAL_ERROR, "internal error: the node call panicked"))
        }
        Err(_) => Err(RpcErr::new(
            codes::UNAVAILABLE,
            format!("node unavailable: no answer within {:?}", config.call_timeout),
        )),
    }
}

async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let resp = match (&method, path.as_str()) {
        (&Method::POST, "/" | "/rpc") => rpc(&shared, peer, req).await,
        (&Method::GET, "/metrics") => metrics_route(&shared).await,
        (&Method::GET, "/health") => health_route(&shared).await,
        (&Method::GET, "/") if accepts_html(&req) => asset(&shared, "/index.html")
            .unwrap_or_else(|| text(StatusCode::OK, "pouw node: POST JSON-RPC 2.0 to / or /rpc\n")),
        (&Method::GET, "/dashboard" | "/dashboard/") => asset(&shared, "/index.html")
            .unwrap_or_else(|| text(StatusCode::NOT_FOUND, "no dashboard in this build\n")),
        (&Method::GET, "/") => text(StatusCode::OK, "pouw node: POST JSON-RPC 2.0 to / or /rpc\n"),
        (&Method::GET, p) => {
            asset(&shared, p).unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"))
        }
        (_, "/" | "/rpc" | "/metrics" | "/health") => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            let allow = if path == "/" || path == "/rpc" { "GET, POST" } else { "GET" };
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    debug!(target: "rpc", %peer, %method, %path, status = resp.status().as_u16(), "request");
    Ok(resp)
}

async fn rpc(shared: &Arc<Shared>, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    // Only `application/json`: a browser cannot send that cross-origin without a CORS
    // preflight (which this server never grants), so web pages cannot post to a local node.
    if !is_json(&req) {
        let mut r = text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "JSON-RPC requests need `Content-Type: application/json`\n",
        );
        r.headers_mut().insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        return r;
    }
    let admin = is_admin(&shared.config, peer, &req);
    let max = shared.config.max_body_bytes;
    let too_large = || {
        let err = RpcErr::new(
            codes::LIMIT_EXCEEDED,
            format!("request body over the limit of {max} bytes"),
        );
        json(StatusCode::PAYLOAD_TOO_LARGE, &jsonrpc::response(&Value::Null, Err(err)))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        shared.monitor.record_rpc(started.elapsed(), true);
        return too_large();
    }
    let body = Limited::new(req.into_body(), max).collect();
    let bytes = match tokio::time::timeout(shared.config.call_timeout, body).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            shared.monitor.record_rpc(started.elapsed(), true);
            return too_large();
        }
        Ok(Err(e)) => {
            debug!(target: "rpc", %peer, error = %e, "reading the body failed");
            return text(StatusCode::BAD_REQUEST, "cannot read the request body\n");
        }
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "request body too slow\n"),
    };
    let (single, calls) = match jsonrpc::parse_body(&bytes, shared.config.max_batch) {
        Body::Error(resp) => {
            shared.monitor.record_rpc(started.elapsed(), true);
            return json(StatusCode::OK, &resp);
        }
        Body::Single(call) => (true, vec![call]),
        Body::Batch(calls) => (false, calls),
    };
    let ids: Vec<Option<Value>> = calls.iter().map(|c| c.response_id().cloned()).collect();
    let s = shared.clone();
    let responses = blocking(&shared.config, move || run_calls(&s, admin, calls)).await;
    let responses = match responses {
        Ok(r) => r,
        // Timed out (or, never expected, the batch runner panicked): every request gets the error.
        Err(e) => ids.iter().flatten().map(|id| jsonrpc::response(id, Err(e.clone()))).collect(),
    };
    let error = responses.iter().any(|r| r.get("error").is_some());
    shared.monitor.record_rpc(started.elapsed(), error);
    match jsonrpc::collect_responses(single, responses) {
        Some(v) => json(StatusCode::OK, &v),
        None => empty(StatusCode::NO_CONTENT),
    }
}

/// Runs every call of a body (on a blocking thread); a panicking call answers with an
/// internal error and the others still run.
fn run_calls(shared: &Shared, admin: bool, calls: Vec<Call>) -> Vec<Value> {
    let ctx =
        Context { api: &*shared.api, config: &shared.config, monitor: &shared.monitor, admin };
    let mut out = Vec::with_capacity(calls.len());
    for call in calls {
        match call {
            Call::Invalid { id, error } => out.push(jsonrpc::response(&id, Err(error))),
            Call::Request { id, method, params } => {
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    methods::call(ctx, &method, params.as_ref())
                }))
                .unwrap_or_else(|_| {
                    warn!(target: "rpc", %method, "RPC method panicked");
                    Err(RpcErr::new(codes::INTERNAL_ERROR, "internal error"))
                });
                if let Some(id) = id {
                    out.push(jsonrpc::response(&id, result));
                }
            }
        }
    }
    out
}

async fn metrics_route(shared: &Arc<Shared>) -> Resp {
    let s = shared.clone();
    let r = blocking(&shared.config, move || {
        let tip = s.api.tip();
        let status = s.api.status();
        let (process, _) = s.monitor.process();
        metrics::render(&tip, &status, process, &s.monitor.rpc_times())
    })
    .await;
    match r {
        Ok(body) => with_type(StatusCode::OK, metrics::CONTENT_TYPE, body.into()),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{}\n", e.message)),
    }
}

async fn health_route(shared: &Arc<Shared>) -> Resp {
    let s = shared.clone();
    let r = blocking(&shared.config, move || {
        let tip = s.api.tip();
        s.monitor.health(&tip, s.api.status())
    })
    .await;
    match r {
        Ok(h) => {
            let code = if h.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            match serde_json::to_value(&h) {
                Ok(v) => json(code, &v),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
            }
        }
        Err(e) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "unavailable", "reasons": [e.message] }),
        ),
    }
}

/// Admin methods: from loopback when `trust_loopback` (and the `Host` is an IP address or
/// `localhost`, so that a web page behind a DNS-rebound name cannot use them), or with the
/// configured bearer token.
fn is_admin(config: &RpcConfig, peer: SocketAddr, req: &Request<Incoming>) -> bool {
    if config.trust_loopback && peer.ip().to_canonical().is_loopback() && local_host(req) {
        return true;
    }
    let Some(token) = config.admin_token.as_deref().filter(|t| !t.is_empty()) else {
        return false;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()))
}

/// Compares without an early exit on the first differing byte (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Host` header names this machine by address or as `localhost` (absent: HTTP/1.0).
fn local_host(req: &Request<Incoming>) -> bool {
    let Some(host) = req.headers().get(header::HOST) else { return true };
    let Ok(host) = host.to_str() else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

fn is_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

fn accepts_html(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

fn asset(shared: &Shared, path: &str) -> Option<Resp> {
    let (_, content_type, bytes) = shared.config.assets.iter().find(|(p, _, _)| *p == path)?;
    Some(with_type(StatusCode::OK, content_type, Bytes::from_static(bytes)))
}

fn json(status: StatusCode, v: &Value) -> Resp {
    with_type(status, "application/json", Bytes::from(v.to_string()))
}

fn text(status: StatusCode, body: &str) -> Resp {
    with_type(status, "text/plain; charset=utf-8", Bytes::from(body.to_owned()))
}

fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn with_type(status: StatusCode, content_type: &str, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let ct = HeaderValue::from_str(content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    r.headers_mut().insert(header::CONTENT_TYPE, ct);
    r
}

/// A running server on its own thread (with its own tokio runtime). Dropping it shuts the
/// server down too.
#[derive(Debug)]
pub struct RpcServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RpcServer {
    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drops open connections and joins the server thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!(target: "rpc", "the RPC server thread panicked");
            }
        }
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Binds `addr` (port 0 picks a free port) and serves on a new thread with its own runtime.
pub fn spawn(
    addr: SocketAddr,
    api: Arc<dyn NodeApi>,
    config: RpcConfig,
) -> Result<RpcServer, RpcError> {
    let std_listener =
        std::net::TcpListener::bind(addr).map_err(|source| RpcError::Bind { addr, source })?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let listener = {
        let _guard = rt.enter();
        TcpListener::from_std(std_listener)?
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("pouw-rpc".into()).spawn(move || {
        rt.block_on(serve_with_shutdown(listener, api, config, async {
            let _ = stopped.await;
        }));
        // A node call still blocking (hung chain thread) must not hold up the shutdown.
        rt.shutdown_timeout(Duration::from_secs(1));
    })?;
    Ok(RpcServer { addr: local, stop: Some(stop), thread: Some(thread) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
