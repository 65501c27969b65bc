//! What the server measures itself: process CPU and memory ([`ProcessStats`]), network
//! bandwidth between samples, and its own response times; and the `/health` report built
//! from them and the node's counters.

use crate::api::{NodeStatus, TipView};
use serde::Serialize;
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

/// One reading of the process's resource use (Linux `/proc`; `None` elsewhere).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ProcessSample {
    /// User plus system CPU time used since the process started, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_bytes: u64,
    /// Threads.
    pub threads: u64,
}

impl ProcessSample {
    /// Reads `/proc/self/stat` (CPU time) and `/proc/self/status` (memory, threads).
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Self::parse(&stat, &status, clock_ticks_per_sec())
    }

    /// Parses the two files; `ticks` is the kernel's `USER_HZ`.
    fn parse(stat: &str, status: &str, ticks: f64) -> Option<Self> {
        // The command name (field 2) is in parentheses and may contain spaces: the fields
        // that follow start after the last ')'. Field 3 (state) is index 0 there, so field n
        // is index n - 3: utime (14) = 11, stime (15) = 12.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        let kib = |key: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(key))?;
            line[key.len()..].split_whitespace().next()?.parse().ok()
        };
        Some(Self {
            cpu_seconds: (utime + stime) / ticks,
            resident_bytes: kib("VmRSS:").unwrap_or(0) * 1024,
            virtual_bytes: kib("VmSize:").unwrap_or(0) * 1024,
            threads: kib("Threads:").unwrap_or(0),
        })
    }
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU percent of this process between consecutive samples (100 = one core busy).
#[derive(Debug, Default)]
pub struct ProcessStats {
    last: Option<(Instant, ProcessSample)>,
    cpu_percent: Option<f64>,
}

impl ProcessStats {
    /// No sample yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a sample; the CPU percent is then the use since the previous sample.
    pub fn sample(&mut self) -> Option<ProcessSample> {
        let now = Instant::now();
        let s = ProcessSample::read()?;
        if let Some((t, prev)) = self.last {
            let wall = now.duration_since(t).as_secs_f64();
            if wall > 0.0 {
                self.cpu_percent =
                    Some(((s.cpu_seconds - prev.cpu_seconds) / wall * 100.0).max(0.0));
            }
        }
        self.last = Some((now, s));
        Some(s)
    }

    /// CPU percent between the last two samples (`None` before the second sample).
    pub fn cpu_percent(&self) -> Option<f64> {
        self.cpu_percent
    }

    /// The last sample.
    pub fn last(&self) -> Option<ProcessSample> {
        self.last.map(|(_, s)| s)
    }
}

#[derive(Debug, Default)]
struct Samples {
    process: ProcessStats,
    /// Time and network byte counters of the last sample.
    net_last: Option<(Instant, u64, u64)>,
    bytes_in_per_sec: Option<f64>,
    bytes_out_per_sec: Option<f64>,
}

/// The server's own measurements, shared by every connection.
#[derive(Debug, Default)]
pub(crate) struct Monitor {
    /// Sampled state; the lock is held only to update or copy a few numbers.
    samples: Mutex<Samples>,
    rpc_requests: AtomicU64,
    rpc_errors: AtomicU64,
    rpc_micros_total: AtomicU64,
    rpc_micros_last: AtomicU64,
    rpc_micros_max: AtomicU64,
}

/// Response-time statistics of the JSON-RPC endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct RpcTimes {
    /// JSON-RPC HTTP requests served.
    pub(crate) requests: u64,
    /// Of those, how many answered with at least one error object.
    pub(crate) errors: u64,
    /// Share of requests without an error (1 before the first request).
    pub(crate) success_rate: f64,
    /// Mean response time, ms.
    pub(crate) avg_response_ms: f64,
    /// Last response time, ms.
    pub(crate) last_response_ms: f64,
    /// Slowest response, ms.
    pub(crate) max_response_ms: f64,
    /// Total time spent answering, seconds.
    pub(crate) total_seconds: f64,
}

impl Monitor {
    /// Records one JSON-RPC request's handling time.
    pub(crate) fn record_rpc(&self, took: Duration, error: bool) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.rpc_requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.rpc_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.rpc_micros_total.fetch_add(us, Ordering::Relaxed);
        self.rpc_micros_last.store(us, Ordering::Relaxed);
        self.rpc_micros_max.fetch_max(us, Ordering::Relaxed);
    }

    pub(crate) fn rpc_times(&self) -> RpcTimes {
        let n = self.rpc_requests.load(Ordering::Relaxed);
        let errors = self.rpc_errors.load(Ordering::Relaxed);
        let total = self.rpc_micros_total.load(Ordering::Relaxed) as f64;
        RpcTimes {
            requests: n,
            errors,
            success_rate: if n == 0 { 1.0 } else { 1.0 - errors as f64 / n as f64 },
            avg_response_ms: if n == 0 { 0.0 } else { total / n as f64 / 1000.0 },
            last_response_ms: self.rpc_micros_last.load(Ordering::Relaxed) as f64 / 1000.0,
            max_response_ms: self.rpc_micros_max.load(Ordering::Relaxed) as f64 / 1000.0,
            total_seconds: total / 1e6,
        }
    }

    /// Samples the process and the node's network counters (called periodically).
    pub(crate) fn sample(&self, status: &NodeStatus) {
        let now = Instant::now();
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.process.sample();
        if let Some((t, bin, bout)) = s.net_last {
            let wall = now.duration_since(t).as_secs_f64();
            if wall > 0.0 {
                s.bytes_in_per_sec = Some(status.bytes_in.saturating_sub(bin) as f64 / wall);
                s.bytes_out_per_sec = Some(status.bytes_out.saturating_sub(bout) as f64 / wall);
            }
        }
        s.net_last = Some((now, status.bytes_in, status.bytes_out));
    }

    /// The current process reading (fresh) and the CPU percent of the last interval.
    pub(crate) fn process(&self) -> (Option<ProcessSample>, Option<f64>) {
        let cpu = self.samples.lock().unwrap_or_else(|p| p.into_inner()).process.cpu_percent();
        (ProcessSample::read(), cpu)
    }

    fn bandwidth(&self) -> (Option<f64>, Option<f64>) {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        (s.bytes_in_per_sec, s.bytes_out_per_sec)
    }

    /// The `/health` report.
    pub(crate) fn health(&self, tip: &TipView, status: NodeStatus) -> Health {
        let mut reasons = Vec::new();
        if status.syncing {
            reasons.push("syncing".to_owned());
        }
        if status.no_peers {
            reasons.push("no peers".to_owned());
        }
        let (process, cpu_percent) = self.process();
        let (bin, bout) = self.bandwidth();
        Health {
            status: if reasons.is_empty() { "ok" } else { "degraded" },
            reasons,
            node_id: status.node_id.clone(),
            height: tip.height,
            tip: tip.hash.to_string(),
            tip_timestamp: tip.timestamp.millis(),
            peers: status.peer_count,
            process: ProcessHealth {
                cpu_percent,
                cpu_seconds: process.map(|p| p.cpu_seconds),
                memory_bytes: process.map(|p| p.resident_bytes),
                virtual_memory_bytes: process.map(|p| p.virtual_bytes),
                threads: process.map(|p| p.threads),
            },
            bandwidth: Bandwidth { in_bytes_per_sec: bin, out_bytes_per_sec: bout },
            rpc: self.rpc_times(),
            node: status,
        }
    }
}

/// The `/health` report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Health {
    /// `ok` or `degraded`.
    pub(crate) status: &'static str,
    /// Why degraded (empty when ok).
    pub(crate) reasons: Vec<String>,
    /// The node's network id (libp2p peer id).
    pub(crate) node_id: String,
    pub(crate) height: u64,
    pub(crate) tip: String,
    pub(crate) tip_timestamp: u64,
    pub(crate) peers: u64,
    pub(crate) process: ProcessHealth,
    pub(crate) bandwidth: Bandwidth,
    pub(crate) rpc: RpcTimes,
    pub(crate) node: NodeStatus,
}

impl Health {
    pub(crate) fn is_ok(&self) -> bool {
        self.reasons.is_empty()
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct ProcessHealth {
    cpu_percent: Option<f64>,
    cpu_seconds: Option<f64>,
    memory_bytes: Option<u64>,
    virtual_memory_bytes: Option<u64>,
    threads: Option<u64>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Bandwidth {
    in_bytes_per_sec: Option<f64>,
    out_bytes_per_sec: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 \
                    7 0 100 123456789 2000 18446744073709551615";
        let status = "Name:\tx\nVmSize:\t  20480 kB\nVmRSS:\t    8192 kB\nThreads:\t7\n";
        let s = ProcessSample::parse(stat, status, 100.0).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.resident_bytes, 8192 * 1024);
        assert_eq!(s.virtual_bytes, 20480 * 1024);
        assert_eq!(s.threads, 7);
        assert!(ProcessSample::parse("garbage", status, 100.0).is_none());
    }

    #[test]
    fn cpu_percent_between_samples() {
        let mut p = ProcessStats::new();
        if p.sample().is_none() {
            return; // not Linux
        }
        assert_eq!(p.cpu_percent(), None);
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        p.sample();
        let cpu = p.cpu_percent().unwrap();
        // How much of a core the loop got depends on the machine's load: only that it was
        // seen at all, and not more than every core, is certain.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!(cpu > 0.0 && cpu <= 100.0 * cores + 1.0, "busy loop measured {cpu}%");
    }

    #[test]
    fn bandwidth_between_samples() {
        let m = Monitor::default();
        let mut st = NodeStatus { bytes_in: 1000, bytes_out: 10, ..NodeStatus::default() };
        m.sample(&st);
        std::thread::sleep(Duration::from_millis(100));
        st.bytes_in += 10_000;
        m.sample(&st);
        let (bin, bout) = m.bandwidth();
        let bin = bin.unwrap();
        assert!(bin > 10_000.0 && bin <= 100_000.0, "{bin}");
        assert_eq!(bout, Some(0.0));
    }
}
