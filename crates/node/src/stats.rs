//! Node counters, shared with whoever reads them (CLI, RPC, tests, benchmarks).

use pouw_primitives::Hash;
use pouw_rpc::TrainingPoint;
use serde::Serialize;
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    time::Instant,
};

/// How many recent imports are remembered.
const RECENT_IMPORTS: usize = 4096;

pub(crate) use pouw_work::thread_cpu_ns;

/// One block this node imported (or mined).
#[derive(Clone, Debug)]
pub struct ImportRecord {
    /// Block hash.
    pub hash: Hash,
    /// Height.
    pub height: u64,
    /// When it was imported.
    pub at: Instant,
    /// Time spent in the import (checks, replay, execution, commit), microseconds.
    pub verify_us: u64,
    /// Mined by this node.
    pub mined: bool,
    /// Accepted without replay on its verifiers' attestations (light mode).
    pub attested: bool,
}

/// Live counters of one node.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Blocks this node mined.
    pub blocks_mined: AtomicU64,
    /// Blocks from peers imported after full verification.
    pub blocks_verified: AtomicU64,
    /// Blocks from peers imported without replay, on a quorum of their verifiers'
    /// attestations (light mode, design/006).
    pub blocks_attested: AtomicU64,
    /// Attestations this node (a verifier) gossiped.
    pub attestations_sent: AtomicU64,
    /// Blocks refused (invalid).
    pub blocks_rejected: AtomicU64,
    /// Training iterations run.
    pub iterations: AtomicU64,
    /// Transactions accepted into the mempool.
    pub txs_accepted: AtomicU64,
    /// Mempool size.
    pub mempool: AtomicU64,
    /// Security alerts received.
    pub alerts: AtomicU64,
    /// Peers this node banned.
    pub bans: AtomicU64,
    /// Requests refused for exceeding their peer's rate limit.
    pub requests_refused: AtomicU64,
    /// Microseconds spent on the last verified block.
    pub last_verify_us: AtomicU64,
    /// Syncing from a peer that is ahead.
    pub syncing: AtomicBool,
    /// Tip height (updated on every tip change).
    pub height: AtomicU64,
    /// Tasks this node saw completed.
    pub tasks_completed: AtomicU64,
    /// Block rewards and fees earned by this node's account, base units.
    pub rewards_earned: AtomicU64,
    recent: Mutex<VecDeque<ImportRecord>>,
    training: Mutex<Training>,
}

/// Training points kept for live curves (one point per [`TRAINING_EVERY`] iterations).
#[derive(Debug, Default)]
struct Training {
    points: VecDeque<TrainingPoint>,
    next_seq: u64,
    /// (iterations, when) of the last rate sample and the rate then.
    rate_mark: Option<(u64, Instant)>,
    rate: f64,
}

/// Most training points kept.
const TRAINING_POINTS: usize = 20_000;
/// One training point per this many iterations.
pub(crate) const TRAINING_EVERY: u64 = 10;

/// A snapshot of [`NodeStats`].
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct NodeCounters {
    /// Blocks mined.
    pub blocks_mined: u64,
    /// Blocks verified.
    pub blocks_verified: u64,
    /// Blocks accepted on attestations (light mode).
    pub blocks_attested: u64,
    /// Attestations sent (verifier).
    pub attestations_sent: u64,
    /// Blocks rejected.
    pub blocks_rejected: u64,
    /// Iterations.
    pub iterations: u64,
    /// Transactions accepted.
    pub txs_accepted: u64,
    /// Mempool size.
    pub mempool: u64,
    /// Alerts.
    pub alerts: u64,
    /// Bans.
    pub bans: u64,
    /// Requests refused by the per-peer rate limit.
    pub requests_refused: u64,
    /// Last verification, microseconds.
    pub last_verify_us: u64,
    /// Syncing.
    pub syncing: bool,
    /// Tip height.
    pub height: u64,
}

impl NodeStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn record_import(&self, record: ImportRecord) {
        if let Ok(mut r) = self.recent.lock() {
            if r.len() >= RECENT_IMPORTS {
                r.pop_front();
            }
            r.push_back(record);
        }
    }

    pub(crate) fn record_training(&self, mut point: TrainingPoint) {
        if let Ok(mut t) = self.training.lock() {
            t.next_seq = t.next_seq.saturating_add(1);
            point.seq = t.next_seq;
            if t.points.len() >= TRAINING_POINTS {
                t.points.pop_front();
            }
            t.points.push_back(point);
        }
    }

    /// Training points with a sequence number above `since`, oldest first, at most `limit`.
    pub fn training_since(&self, since: u64, limit: usize) -> Vec<TrainingPoint> {
        self.training
            .lock()
            .map(|t| t.points.iter().filter(|p| p.seq > since).take(limit).cloned().collect())
            .unwrap_or_default()
    }

    /// Training iterations per second, measured over the time since the previous call (at
    /// least one second apart; between calls the last rate is returned).
    pub fn iteration_rate(&self) -> f64 {
        let now_iters = self.iterations.load(Ordering::Relaxed);
        let Ok(mut t) = self.training.lock() else { return 0.0 };
        match t.rate_mark {
            Some((iters, at)) if at.elapsed().as_secs_f64() >= 1.0 => {
                t.rate = now_iters.saturating_sub(iters) as f64 / at.elapsed().as_secs_f64();
                t.rate_mark = Some((now_iters, Instant::now()));
            }
            Some(_) => {}
            None => t.rate_mark = Some((now_iters, Instant::now())),
        }
        t.rate
    }

    /// When this node imported `hash`, if it still remembers.
    pub fn imported_at(&self, hash: &Hash) -> Option<ImportRecord> {
        self.recent.lock().ok()?.iter().rev().find(|r| r.hash == *hash).cloned()
    }

    /// The most recent imports, newest last.
    pub fn recent_imports(&self, n: usize) -> Vec<ImportRecord> {
        self.recent
            .lock()
            .map(|r| r.iter().rev().take(n).rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> NodeCounters {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NodeCounters {
            blocks_mined: r(&self.blocks_mined),
            blocks_verified: r(&self.blocks_verified),
            blocks_attested: r(&self.blocks_attested),
            attestations_sent: r(&self.attestations_sent),
            blocks_rejected: r(&self.blocks_rejected),
            iterations: r(&self.iterations),
            txs_accepted: r(&self.txs_accepted),
            mempool: r(&self.mempool),
            alerts: r(&self.alerts),
            bans: r(&self.bans),
            requests_refused: r(&self.requests_refused),
            last_verify_us: r(&self.last_verify_us),
            syncing: self.syncing.load(Ordering::Relaxed),
            height: r(&self.height),
        }
    }
}
