//! Security handlers an operator configures (`[[security.handlers]]` in the node config,
//! `docs/node-config.md`): run a program, or POST to a webhook, for each verified alert of the
//! kinds given. They sit beside the built-in confiscation handler, never instead of it.
//!
//! [`SecurityHandler::handle`] runs on the node's thread, so these handlers only queue the
//! alert (a bounded queue of [`QUEUE`] alerts; when it is full the alert is dropped for this
//! handler, with a warning for the first drop and every 100th) and one worker thread per
//! handler does the slow part:
//! - [`ExecHandler`]: runs the program with the alert as one JSON object on stdin
//!   ([`alert_json`]), stdout and stderr discarded; a run past its timeout is killed.
//! - [`WebhookHandler`]: POSTs the JSON (`Content-Type: application/json`) to an `http://`
//!   URL; a failure (no connection, timeout, a status other than 2xx) is retried
//!   [`WEBHOOK_TRIES`] times in all, 1 s, 2 s, 4 s ... apart.

use crate::security::{SecurityHandler, VerifiedAlert};
use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Alerts waiting for one handler's worker; more are dropped (with a warning).
pub(crate) const QUEUE: usize = 64;
/// Tries of one webhook delivery.
pub(crate) const WEBHOOK_TRIES: u32 = 4;

/// The alert as the handlers receive it: one JSON object.
///
/// `{"id", "kind", "chain_id", "task_id", "reporter", "accused", "evidence": [...], "detail",
/// "supervisors"}` (hashes and keys as hex; `supervisors` is the size of the task's supervisor
/// committee).
pub fn alert_json(alert: &VerifiedAlert) -> serde_json::Value {
    let b = &alert.alert.body;
    serde_json::json!({
        "id": b.id(),
        "kind": b.kind,
        "chain_id": b.chain_id,
        "task_id": b.task_id,
        "reporter": b.reporter,
        "accused": b.accused,
        "evidence": b.evidence,
        "detail": b.detail,
        "supervisors": alert.supervisors,
    })
}

/// A queue to one worker thread.
#[derive(Debug)]
struct Worker {
    name: String,
    queue: flume::Sender<serde_json::Value>,
    /// Alerts dropped so far (the warning is logged for the first and every 100th).
    dropped: std::sync::atomic::AtomicU64,
}

impl Worker {
    fn start(name: String, mut work: impl FnMut(&serde_json::Value) + Send + 'static) -> Self {
        let (queue, rx) = flume::bounded::<serde_json::Value>(QUEUE);
        let thread = format!("alert-{name}");
        let spawned = std::thread::Builder::new().name(thread).spawn(move || {
            // Ends when the handler (the only sender) is dropped with the node.
            for alert in rx.iter() {
                work(&alert);
            }
        });
        if let Err(e) = spawned {
            tracing::error!(target: "security", handler = %name, error = %e, "cannot start the handler's thread: its alerts are dropped");
        }
        Self { name, queue, dropped: Default::default() }
    }

    fn push(&self, alert: &VerifiedAlert) {
        if let Err(e) = self.queue.try_send(alert_json(alert)) {
            let why = match e {
                flume::TrySendError::Full(_) => "queue full",
                flume::TrySendError::Disconnected(_) => "handler thread gone",
            };
            let dropped =
                self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed).saturating_add(1);
            if dropped == 1 || dropped % 100 == 0 {
                tracing::warn!(target: "security", handler = %self.name, alert = %alert.alert.body.id(), why, dropped, "alert dropped for this handler (the count is of all drops so far)");
            }
        }
    }
}

/// Runs a program for each alert (the alert as JSON on its stdin).
#[derive(Debug)]
pub struct ExecHandler {
    worker: Worker,
}

impl ExecHandler {
    /// A handler running `program` (no arguments) with at most `timeout` per alert.
    pub fn new(program: PathBuf, timeout: Duration) -> Self {
        let name = format!("exec:{}", program.display());
        let worker = Worker::start(name.clone(), move |alert| {
            match run_program(&program, alert, timeout) {
                Ok(status) if status.success() => {
                    tracing::info!(target: "security", handler = %name, "alert handler ran")
                }
                Ok(status) => {
                    tracing::warn!(target: "security", handler = %name, %status, "alert handler failed")
                }
                Err(e) => {
                    tracing::warn!(target: "security", handler = %name, error = %e, "alert handler did not run")
                }
            }
        });
        Self { worker }
    }
}

fn run_program(
    program: &PathBuf,
    alert: &serde_json::Value,
    timeout: Duration,
) -> Result<std::process::ExitStatus, String> {
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that does not read its stdin gets a broken pipe here: not an error.
        let _ = stdin.write_all(alert.to_string().as_bytes());
        let _ = stdin.write_all(b"\n");
    }
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

impl SecurityHandler for ExecHandler {
    fn name(&self) -> &str {
        &self.worker.name
    }
    fn handle(&self, alert: &VerifiedAlert) {
        self.worker.push(alert);
    }
}

/// POSTs each alert to an `http://` webhook, with retries.
#[derive(Debug)]
pub struct WebhookHandler {
    worker: Worker,
}

/// Where a webhook URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    authority: String,
    path: String,
}

impl std::str::FromStr for WebhookUrl {
    type Err = String;

    /// `http://HOST:PORT[/path]` (plain HTTP only).
    fn from_str(url: &str) -> Result<Self, String> {
        let rest = url.trim().strip_prefix("http://").ok_or_else(|| {
            format!(
                "`{url}`: only http:// webhooks are supported, e.g. http://127.0.0.1:9000/alerts"
            )
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !p.is_empty() && p.parse::<u16>().is_ok());
        if !has_port {
            return Err(format!("`{url}`: expected http://HOST:PORT[/path]"));
        }
        Ok(Self { authority: authority.to_string(), path: path.to_string() })
    }
}

impl WebhookHandler {
    /// A handler posting to `url`, each try bounded by `timeout`.
    pub fn new(url: WebhookUrl, timeout: Duration) -> Self {
        let name = format!("webhook:http://{}{}", url.authority, url.path);
        let worker = Worker::start(name.clone(), move |alert| {
            let body = alert.to_string();
            let mut wait = Duration::from_secs(1);
            for attempt in 1..=WEBHOOK_TRIES {
                match post(&url, &body, timeout) {
                    Ok(()) => {
                        tracing::info!(target: "security", handler = %name, attempt, "alert posted");
                        return;
                    }
                    Err(e) if attempt == WEBHOOK_TRIES => {
                        tracing::warn!(target: "security", handler = %name, error = %e, "alert not delivered: giving up");
                    }
                    Err(e) => {
                        tracing::warn!(target: "security", handler = %name, attempt, error = %e, "alert not delivered: retrying");
                        std::thread::sleep(wait);
                        wait = wait.saturating_mul(2);
                    }
                }
            }
        });
        Self { worker }
    }
}

/// One POST; `Ok` on a 2xx status.
fn post(url: &WebhookUrl, body: &str, timeout: Duration) -> Result<(), String> {
    let addrs: Vec<SocketAddr> =
        url.authority.to_socket_addrs().map_err(|e| format!("cannot resolve: {e}"))?.collect();
    let addr = addrs.first().ok_or("resolves to no address")?;
    let mut s = TcpStream::connect_timeout(addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        url.path,
        url.authority,
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body.as_bytes()).map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).map_err(|e| e.to_string())?;
    let status: u16 = line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: `{}`", line.trim()))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

impl SecurityHandler for WebhookHandler {
    fn name(&self) -> &str {
        &self.worker.name
    }
    fn handle(&self, alert: &VerifiedAlert) {
        self.worker.push(alert);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_primitives::{AlertKind, Hash, Keypair, SecurityAlertBody};
    use std::io::Read;

    fn alert() -> VerifiedAlert {
        let reporter = Keypair::from_secret([1; 32]);
        let accused = Keypair::from_secret([2; 32]).public();
        let body = SecurityAlertBody {
            chain_id: 7,
            task_id: Hash([3; 32]),
            reporter: reporter.public(),
            accused,
            kind: AlertKind::InvalidIteration,
            evidence: vec![Hash([4; 32])],
            detail: "replay differs".into(),
        };
        VerifiedAlert { alert: body.sign(&reporter), supervisors: 3 }
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(20), "{what} never happened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[cfg(unix)]
    #[test]
    fn exec_handler_gets_the_alert_on_stdin_and_is_killed_past_its_timeout() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.json");
        let script = dir.path().join("h.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\ncat > {}.tmp && mv {0}.tmp {0}\n", out.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let a = alert();
        let h = ExecHandler::new(script, Duration::from_secs(10));
        h.handle(&a);
        wait_for("the handler's output", || out.exists());
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(got["accused"], a.alert.body.accused.to_string());
        assert_eq!(got["kind"], "invalid_iteration");
        assert_eq!(got["supervisors"], 3);
        assert_eq!(got["id"], a.alert.body.id().to_string());

        let slow = dir.path().join("slow.sh");
        std::fs::write(&slow, "#!/bin/sh\nsleep 30\n").unwrap();
        std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o700)).unwrap();
        let started = Instant::now();
        let r = run_program(&slow, &alert_json(&a), Duration::from_millis(200));
        assert!(r.unwrap_err().contains("killed"));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn webhook_posts_and_retries() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = flume::unbounded();
        std::thread::spawn(move || {
            // First answer 503 (retried), then 200.
            for status in ["503 Busy", "200 OK"] {
                let (mut s, _) = listener.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !String::from_utf8_lossy(&buf).contains('}') {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                tx.send(String::from_utf8_lossy(&buf).to_string()).unwrap();
            }
        });
        let url: WebhookUrl = format!("http://{addr}/alerts").parse().unwrap();
        let a = alert();
        let h = WebhookHandler::new(url, Duration::from_secs(5));
        h.handle(&a);
        let first = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(first.starts_with("POST /alerts HTTP/1.1"), "{first}");
        let second = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(second.contains(&a.alert.body.accused.to_string()), "{second}");
        assert!("https://x:1".parse::<WebhookUrl>().is_err());
        assert!("http://x".parse::<WebhookUrl>().is_err());
    }
}
