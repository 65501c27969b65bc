//! The dashboard end to end: a `pouw node --dev --rpc` process serves the page, and headless
//! Chromium (driven over W3C WebDriver by `chromedriver`) shows the tip height rising and
//! training points arriving on the chart, opens a block, lays out at 1280 px and 390 px
//! without horizontal scrolling (screenshots saved as test artifacts) and shows the
//! "unreachable" banner once the node is gone.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`: installed with apt-get when
//! missing and running as root; otherwise the browser part is skipped with a message.
//! `POUW_CHROMIUM` and `POUW_CHROMEDRIVER` override the binaries.

mod support;

use support::free_port;

use pouw_primitives::ChainSpec;
use serde_json::{json, Value};
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A minimal HTTP/1.1 exchange (`Connection: close`): status, head, body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes())?;
    // Read the head, then the body by its length (chromedriver keeps connections open).
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let body_start = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            break raw.len();
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..body_start]).trim_end().to_string();
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    loop {
        let have = raw.len() - body_start;
        let done = match length {
            Some(len) => have >= len,
            None if chunked => raw.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[body_start..]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = if chunked { dechunk(&rest) } else { rest };
    Ok((status, head, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn rpc(addr: &str, method: &str, params: Value) -> std::io::Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let (_, _, text) =
        http(addr, "POST", "/", &[("Content-Type", "application/json")], Some(&body))?;
    serde_json::from_str::<Value>(&text)
        .map(|v| v["result"].clone())
        .map_err(|e| std::io::Error::other(format!("{e}: {text}")))
}

/// A W3C WebDriver session.
struct Driver {
    addr: String,
    session: String,
}

impl Driver {
    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = (method == "POST").then(|| body.to_string());
        let (status, _, text) = http(
            &self.addr,
            method,
            &path,
            &[("Content-Type", "application/json; charset=utf-8")],
            body.as_deref(),
        )
        .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(status == 200, "webdriver {path}: HTTP {status}: {text}");
        v["value"].clone()
    }

    fn js(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": script, "args": []}))
    }

    fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd("POST", "/goog/cdp/execute", json!({"cmd": cmd, "params": params}))
    }

    /// Lays the page out `width` CSS pixels wide and saves a full-page PNG at `path`.
    fn screenshot(&self, width: u32, path: &Path) -> Value {
        let emulate = |height: u64| {
            self.cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1,
                       "mobile": width < 600}),
            )
        };
        emulate(900);
        std::thread::sleep(Duration::from_millis(600)); // a relayout and a redraw of the chart
        let m = self.js("window.dispatchEvent(new Event('resize'));
             const d = document.documentElement;
             return {scrollWidth: d.scrollWidth, clientWidth: d.clientWidth,
                     innerWidth: window.innerWidth, height: d.scrollHeight};");
        let height = m["height"].as_u64().unwrap_or(900).clamp(400, 6000);
        emulate(height);
        std::thread::sleep(Duration::from_millis(600));
        let shot = self
            .cdp("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true}));
        let png = base64(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
        m
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = http(&self.addr, "DELETE", &path, &[], None);
    }
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> =
        s.bytes().filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(val(c)) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Chromium and chromedriver, installed with apt-get if missing and possible.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = || {
        let chromium = std::env::var_os("POUW_CHROMIUM")
            .map(PathBuf::from)
            .or_else(|| which("chromium"))
            .or_else(|| which("chromium-browser"))?;
        let driver = std::env::var_os("POUW_CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| which("chromedriver"))?;
        Some((chromium, driver))
    };
    if let Some(found) = find() {
        return Some(found);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || which("apt-get").is_none() {
        eprintln!("SKIPPED the browser checks: chromium/chromedriver are missing and apt-get cannot run here (needs root); install the Debian packages `chromium chromium-driver`");
        return None;
    }
    eprintln!("installing chromium and chromium-driver with apt-get ...");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["install", "-y", "-qq", "chromium", "chromium-driver"]) {
        let _ = apt(&["update", "-qq"]);
        apt(&["install", "-y", "-qq", "chromium", "chromium-driver"]);
    }
    let found = find();
    if found.is_none() {
        eprintln!(
            "SKIPPED the browser checks: apt-get could not install chromium and chromium-driver"
        );
    }
    found
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn dashboard_shows_a_live_dev_node() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // The devnet with an easy fixed target: a block every second or so, even in a debug build.
    let mut spec = ChainSpec::devnet();
    spec.retarget_window = 1_000_000;
    // About 150 filler iterations per block, whatever the filler's nonce budget.
    spec.initial_target = pouw_node::local_spec(300).initial_target;
    let spec_path = dir.path().join("spec.toml");
    std::fs::write(&spec_path, spec.to_toml()).unwrap();

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut node = Proc(
        Command::new(env!("CARGO_BIN_EXE_pouw"))
            .args(["node", "--dev", "--datadir"])
            .arg(dir.path().join("node"))
            .arg("--chain")
            .arg(&spec_path)
            .args(["--rpc", &addr])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for("the node's RPC", Duration::from_secs(20), || {
        rpc(&addr, "pouw_tip", json!([])).ok().filter(|t| t["height"].is_u64())
    });

    // Every node with --rpc serves the dashboard.
    let (status, _, html) = http(&addr, "GET", "/", &[("Accept", "text/html")], None).unwrap();
    assert_eq!(status, 200);
    assert!(html.contains("/app.js") && html.contains("<canvas"), "{html}");
    let (status, _, same) = http(&addr, "GET", "/dashboard", &[], None).unwrap();
    assert_eq!((status, same.as_str()), (200, html.as_str()));
    for (path, kind) in [("/app.js", "javascript"), ("/app.css", "text/css")] {
        let (status, head, _) = http(&addr, "GET", path, &[], None).unwrap();
        assert_eq!(status, 200, "{path}");
        assert!(head.to_ascii_lowercase().contains(kind), "{path}: {head}");
    }

    let Some((chromium, chromedriver)) = browser() else { return };
    let driver_port = free_port();
    let _chromedriver = Proc(
        Command::new(&chromedriver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let driver_addr = format!("127.0.0.1:{driver_port}");
    wait_for("chromedriver", Duration::from_secs(15), || {
        let (_, _, body) = http(&driver_addr, "GET", "/status", &[], None).ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["value"]["ready"].as_bool().filter(|r| *r)
    });
    let profile = dir.path().join("chromium-profile");
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--hide-scrollbars",
                     "--window-size=1280,900",
                     format!("--user-data-dir={}", profile.display())],
        },
    }}});
    let (status, _, text) = http(
        &driver_addr,
        "POST",
        "/session",
        &[("Content-Type", "application/json")],
        Some(&caps.to_string()),
    )
    .unwrap();
    assert_eq!(status, 200, "new session: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let driver = Driver {
        addr: driver_addr,
        session: v["value"]["sessionId"].as_str().unwrap().to_string(),
    };

    driver.cmd("POST", "/url", json!({"url": format!("http://{addr}/dashboard")}));
    assert_eq!(driver.cmd("GET", "/title", json!(null)), "PoUW node");

    // The shown tip height rises, without a reload.
    let read = "const s = window.__dashboard; if (!s) return null;
        return {shown: document.getElementById('tip-height').dataset.height,
                points: Number(document.getElementById('chart').dataset.points),
                rows: document.querySelectorAll('#blocks tr').length,
                online: s.online, polls: s.polls};";
    let first = wait_for("a tip height on the page", Duration::from_secs(15), || {
        let s = driver.js(read);
        s["shown"].as_str()?.parse::<u64>().ok()
    });
    let state = wait_for("the shown tip height to rise", Duration::from_secs(40), || {
        let s = driver.js(read);
        let h = s["shown"].as_str()?.parse::<u64>().ok()?;
        (h > first).then_some(s)
    });
    eprintln!("tip height shown: {first} -> {}", state["shown"]);
    // The training chart has points (polled from pouw_training).
    let points = wait_for("training points on the chart", Duration::from_secs(20), || {
        driver.js(read)["points"].as_u64().filter(|p| *p > 0)
    });
    eprintln!("training points on the chart: {points}");
    assert!(state["rows"].as_u64().unwrap() >= 2, "{state}");
    assert_eq!(state["online"], true);

    // A block opens in the detail view with its header and proof.
    driver.js("document.querySelector('#blocks tr').click();");
    let detail = wait_for("the block detail", Duration::from_secs(10), || {
        let t = driver.js("const d = document.getElementById('detail');
             return d.hidden ? null : document.getElementById('detail-body').innerText;");
        t.as_str().filter(|t| t.contains("Proof") && t.contains("state root")).map(str::to_string)
    });
    assert!(detail.starts_with("Block "), "{detail}");

    // Screenshots: the detail view, then the page, at both widths.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&artifacts).unwrap();
    driver.screenshot(1280, &artifacts.join("dashboard-1280-block.png"));
    driver.screenshot(390, &artifacts.join("dashboard-390-block.png"));
    driver.js("document.getElementById('detail-close').click();");
    for width in [1280u32, 390] {
        let path = artifacts.join(format!("dashboard-{width}.png"));
        let m = driver.screenshot(width, &path);
        eprintln!("screenshot {width} px: {} ({m})", path.display());
        assert!(
            m["scrollWidth"].as_u64().unwrap() <= m["innerWidth"].as_u64().unwrap(),
            "horizontal scrolling at {width} px: {m}"
        );
    }

    // A task id entered in the box is looked up with pouw_task.
    driver.js("document.getElementById('task-input').value = 'ab'.repeat(32);
         document.querySelector('#task-form button').click();");
    wait_for("the unknown task's card", Duration::from_secs(10), || {
        let t = driver.js("return document.getElementById('task-list').innerText;");
        t.as_str().filter(|t| t.contains("no such task record")).map(drop)
    });

    // The node goes away: the page says so.
    drop(node.0.kill());
    let _ = node.0.wait();
    let banner = wait_for("the unreachable banner", Duration::from_secs(15), || {
        let t = driver.js("const b = document.getElementById('banner');
             return b.hidden ? null : b.textContent;");
        t.as_str().map(str::to_string)
    });
    assert!(banner.contains("unreachable"), "{banner}");
    // A task record in the shape `pouw_task` returns renders with its phase, committee and
    // payouts; amounts stay the exact decimal strings the node sent.
    let h = |b: &str| b.repeat(64);
    let seat = |w: &str, t: &str| json!({"worker": h(w), "ticket": h(t)});
    let task = json!({
        "id": h("7"), "phase": {"Completed": {"at": 41, "verdict": h("e")}},
        "client": h("c"), "fee": "90071992547409930.00000001", "escrow": "0",
        "created_at": 12, "seed": h("5"),
        "split": {"order": [2, 0, 1, 3], "train": [2, 0], "validation": [1], "test": [3]},
        "training_deadline": 30, "finalisation_deadline": 60,
        "participants": {"miners": [seat("1", "a"), seat("2", "b")],
                         "supervisors": [seat("3", "d")], "evaluators": [seat("4", "f")]},
        "models": [{"miner": h("1"), "model_hash": h("9")}],
        "history_committers": [h("3")],
        "verdicts": [{"evaluator": h("4"), "verdict": h("e")}],
        "settlement": {"payouts": [{"to": h("1"), "amount": "60.00000001"},
                                   {"to": h("3"), "amount": "20"}],
                       "confiscated": [], "confiscated_stake": "0", "refund": "9.99999999"},
    });
    driver.cmd(
        "POST",
        "/execute/sync",
        json!({"script": "window.__dashboard.showTask(arguments[0], arguments[1]);",
               "args": [h("7"), task]}),
    );
    let text = driver.js("return document.querySelector('[data-task]').innerText;");
    let text = text.as_str().unwrap();
    for want in ["Completed", "90071992547409930.00000001", "60.00000001", "miners (2)"] {
        assert!(text.contains(want), "{want} missing from the task card: {text}");
    }
    driver.js("document.getElementById('tasks').scrollIntoView();");
    driver.screenshot(390, &artifacts.join("dashboard-390-offline.png"));
    driver.screenshot(1280, &artifacts.join("dashboard-1280-offline.png"));
    eprintln!("artifacts in {} ({:.1} s)", artifacts.display(), started.elapsed().as_secs_f64());
}
