//! Network benchmarks on loopback, printed as a table:
//! - block propagation: one node mines, the others verify (replay included); time from the
//!   miner's import to each other node's import, p50 and p95, for 5 and 10 nodes;
//! - sync: a fresh node catches up with a 200-block chain, blocks per second with full
//!   verification.
//!
//! `cargo bench -p pouw-node --bench propagation` (set `POUW_BENCH_BLOCKS` to change the
//! number of blocks measured per network, default 30).

use pouw_node::{local_spec, NodeConfig, NodeHandle};
use pouw_primitives::Keypair;
use std::time::{Duration, Instant};

fn start(
    dir: &std::path::Path,
    name: &str,
    spec: &pouw_primitives::ChainSpec,
    boot: &[&NodeHandle],
    mine: bool,
) -> NodeHandle {
    let mut cfg = NodeConfig::new(dir.join(name), spec.clone(), Keypair::from_label(name));
    cfg.bootstrap = boot.iter().flat_map(|n| n.p2p_addrs()).collect();
    cfg.mine = mine;
    cfg.durable = false;
    cfg.status_interval = Duration::from_millis(500);
    NodeHandle::start(cfg).expect("node starts")
}

fn wait(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while !ok() {
        if t.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn propagation(n: usize, blocks: u64) -> (Vec<f64>, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    // About one block per 150 iterations of the single miner.
    let spec = local_spec(300);
    let miner = start(dir.path(), "m", &spec, &[], true);
    let mut others: Vec<NodeHandle> = Vec::new();
    for i in 1..n {
        // A chain of bootstraps plus the miner: blocks travel over several hops.
        let prev: Vec<&NodeHandle> = match others.last() {
            Some(p) if i % 2 == 0 => vec![p],
            _ => vec![&miner],
        };
        others.push(start(dir.path(), &format!("v{i}"), &spec, &prev, false));
    }
    std::thread::sleep(Duration::from_secs(2));
    let first = miner.tip().0;
    let mut delays = Vec::new();
    let mut missing = 0;
    let mut seen = first;
    while seen < first + blocks {
        if !wait(Duration::from_secs(60), || miner.tip().0 > seen) {
            break;
        }
        seen = miner.tip().0;
        let hash = miner.tip().1;
        let Some(mined) = miner.stats().imported_at(&hash) else { continue };
        for o in &others {
            if wait(Duration::from_secs(10), || o.stats().imported_at(&hash).is_some()) {
                let got = o.stats().imported_at(&hash).expect("checked");
                delays.push(got.at.saturating_duration_since(mined.at).as_secs_f64() * 1e3);
            } else {
                missing += 1;
            }
        }
    }
    delays.sort_by(f64::total_cmp);
    (delays, missing)
}

fn sync_speed(blocks: u64) -> (f64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = local_spec(3);
    let mut cfg = NodeConfig::new(dir.path().join("src"), spec.clone(), Keypair::from_label("src"));
    cfg.durable = false;
    cfg.max_blocks = Some(blocks);
    let src = NodeHandle::start(cfg).expect("node starts");
    wait(Duration::from_secs(600), || src.tip().0 >= blocks);
    let t = Instant::now();
    let late = start(dir.path(), "late", &spec, &[&src], false);
    wait(Duration::from_secs(600), || late.tip() == src.tip());
    let secs = t.elapsed().as_secs_f64();
    (late.tip().0 as f64 / secs, late.stats().snapshot().blocks_verified)
}

#[allow(clippy::disallowed_macros)] // a bench's table is its result
fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of criterion benchmarks
    }
    let blocks: u64 =
        std::env::var("POUW_BENCH_BLOCKS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    println!("| network | blocks | deliveries | p50 ms | p95 ms | max ms | missed |");
    println!("|---|---|---|---|---|---|---|");
    for n in [5, 10] {
        let (d, missing) = propagation(n, blocks);
        println!(
            "| {n} nodes | {blocks} | {} | {:.1} | {:.1} | {:.1} | {missing} |",
            d.len(),
            percentile(&d, 0.5),
            percentile(&d, 0.95),
            d.last().copied().unwrap_or(f64::NAN)
        );
    }
    let (rate, verified) = sync_speed(200);
    println!();
    println!("| sync | blocks verified | blocks/s (full verification, replay included) |");
    println!("|---|---|---|");
    println!("| 200-block chain | {verified} | {rate:.1} |");
}
