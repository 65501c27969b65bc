//! A hostile miner that grinds headers (`pouw node --attack grind`; design/010), and the
//! counters every miner keeps so that its nonce attempts per CPU-second can be compared.
//!
//! Two strategies, run by one [`Grinder`]:
//! - **Bound grinding** (the best strategy under the binding): on every filler iteration that
//!   mines, after the honest attempt, try `variants` other headers (the committed header with
//!   its timestamp moved 1, 2, ... ms, a field the miner chooses freely within its window). Each
//!   variant has its own order seed, so it re-runs the iteration from the saved start state,
//!   then tries its `a` nonces; the committing message is signed after the fact, only for a
//!   variant that wins. Every such attempt is valid (its block passes every honest check). It
//!   skips, per variant, what does not change between variants of one iteration (the batch, the
//!   start hashes) and the signature of the messages that do not win.
//! - **Unbound grinding** (the strategy of the rules before the binding), once, after
//!   `forge_after` blocks: keep the iteration's outputs and re-roll the header's timestamp until
//!   a variant's hash meets the target, claim the variant's order seed, sign a committing message
//!   for it after the fact, and send the block. The honest nodes replay it in the variant's order
//!   and refuse it; its attempts are not valid attempts and are not counted.

use pouw_consensus::pouw::{iteration_body, mine_iteration, order_seed};
use pouw_ml::{Batch, Exec, IterationOutput, TrainState};
use pouw_primitives::{meets_target, Hash, Header, IterationBody, Timestamp, Uint256};

/// A miner's counters of nonce attempts and of the CPU time its training steps took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MiningStats {
    /// Valid nonce attempts: `a` per iteration that mined (honest and bound-grinding alike).
    pub attempts: u64,
    /// CPU time of the training steps on the miner's thread, nanoseconds (forging excluded).
    pub cpu_ns: u64,
    /// Blocks found (valid ones).
    pub blocks_found: u64,
    /// Of `blocks_found`, those found by a header variant (bound grinding).
    pub variant_blocks: u64,
    /// Forged blocks sent (the unbound strategy; every one is refused).
    pub forged_sent: u64,
    /// CPU time spent forging, nanoseconds (not in `cpu_ns`).
    pub forge_cpu_ns: u64,
    /// Of `attempts`, those made on the filler task.
    pub filler_attempts: u64,
    /// Of `cpu_ns`, the steps on the filler task.
    pub filler_cpu_ns: u64,
}

/// Attempts per CPU-second (0 without CPU time).
fn rate(attempts: u64, cpu_ns: u64) -> f64 {
    if cpu_ns == 0 {
        return 0.0;
    }
    attempts as f64 / (cpu_ns as f64 / 1e9)
}

impl MiningStats {
    /// Valid attempts per CPU-second of training steps (0 before any).
    pub fn attempts_per_cpu_second(&self) -> f64 {
        rate(self.attempts, self.cpu_ns)
    }

    /// The same, on the filler task only.
    pub fn filler_attempts_per_cpu_second(&self) -> f64 {
        rate(self.filler_attempts, self.filler_cpu_ns)
    }
}

/// The CPU time of the calling thread, nanoseconds (0 where the clock is not available).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// The grinding miner's settings and state.
#[derive(Debug, Clone)]
pub struct Grinder {
    /// Header variants tried per mining iteration beyond the honest one (bound grinding).
    pub variants: u32,
    /// Forge one unbound block after this many valid blocks found (`None`: never).
    pub forge_after: Option<u64>,
    /// Header variants an unbound forgery may try before giving up.
    pub forge_budget: u64,
    /// The forgery waits this long after the grinder starts (so that the network has formed
    /// and the honest nodes receive it).
    pub forge_delay: std::time::Duration,
    pub(crate) started: std::time::Instant,
    pub(crate) forged: bool,
}

impl Grinder {
    /// Bound grinding with `variants` extra headers per iteration; one unbound forgery after
    /// `forge_after` blocks.
    pub fn new(variants: u32, forge_after: Option<u64>) -> Self {
        Self {
            variants,
            forge_after,
            forge_budget: 4_000_000,
            forge_delay: std::time::Duration::from_secs(15),
            started: std::time::Instant::now(),
            forged: false,
        }
    }
}

/// A header variant that met the target, with the iteration run for it.
pub(crate) struct GroundBlock {
    pub(crate) header: Header,
    pub(crate) body: IterationBody,
    pub(crate) end: TrainState,
}

/// The committed header with its timestamp moved by `delta` ms (another zero-nonce hash).
fn variant(committed: &Header, delta: u64) -> Header {
    let mut h = committed.clone();
    h.timestamp = Timestamp(h.timestamp.0.saturating_add(delta));
    h
}

/// What one bound variant needs of the iteration.
pub(crate) struct Iteration<'a> {
    /// The iteration's nonce budget `a`.
    pub(crate) budget: u64,
    pub(crate) exec: Exec,
    pub(crate) start: &'a TrainState,
    pub(crate) batch: &'a Batch,
    pub(crate) peer_maps: &'a [&'a [u32]],
    /// The honest message body of the iteration (identity, peers, epoch).
    pub(crate) body: &'a IterationBody,
    pub(crate) target: Uint256,
}

/// Bound grinding: `variants` headers, each with its own iteration. Returns the first that
/// wins, and counts the valid attempts made into `attempts`.
pub(crate) fn grind_bound(
    it: &Iteration<'_>,
    committed: &Header,
    variants: u32,
    now: Timestamp,
    max_future_ms: u64,
    attempts: &mut u64,
) -> Option<GroundBlock> {
    let a = it.budget;
    for delta in 1..=u64::from(variants) {
        let header = variant(committed, delta);
        if header.timestamp.0 > now.0.saturating_add(max_future_ms) {
            break;
        }
        let seed = Hash(order_seed(&header));
        let mut state = it.start.clone();
        let Ok(out) = state.iterate_bound(it.exec, it.batch, it.peer_maps, &seed.0) else {
            return None;
        };
        let mut body = body_of(it.body, &out);
        body.order_seed = seed;
        *attempts = attempts.saturating_add(a);
        let found = mine_iteration(
            &header,
            body.id(),
            Hash(out.end_model_hash.0),
            Hash(out.map_hash.0),
            Hash(out.end_residual_hash.0),
            a,
            it.target,
        );
        if let Some(header) = found {
            return Some(GroundBlock { header, body, end: state });
        }
    }
    None
}

/// The honest body's identity with another run's outputs.
fn body_of(honest: &IterationBody, out: &IterationOutput) -> IterationBody {
    let mut body =
        iteration_body(honest.task_id, honest.miner, honest.epoch, honest.iteration, out);
    body.peer_msgs = honest.peer_msgs.clone();
    body
}

/// Unbound grinding (the old rules' strategy): the iteration's outputs `out` reused for header
/// variants until one meets the target, claiming each variant's order seed without re-running.
/// The variants move the timestamp back by up to a second, then fill the reserved
/// `msg_history_root` (the free field of the old rules). Returns the header
/// found and the winning body that claims it.
pub(crate) fn forge_unbound(
    committed: &Header,
    honest: &IterationBody,
    out: &IterationOutput,
    a: u64,
    target: Uint256,
    variants: u64,
) -> Option<(Header, IterationBody)> {
    // Timestamps earlier than the committed one (down to a second back, above the median time
    // past of a chain with blocks every few seconds) pass every honest header check, so only
    // the replay can refuse such a block.
    let window = 1_000u64.min(committed.timestamp.0);
    for n in 1..=variants {
        let header = if n <= window {
            let mut h = committed.clone();
            h.timestamp = Timestamp(committed.timestamp.0 - n);
            h
        } else {
            let mut h = committed.clone();
            h.msg_history_root.0[..8].copy_from_slice(&n.to_le_bytes());
            h
        };
        let mut body = body_of(honest, out);
        body.order_seed = Hash(order_seed(&header));
        let found = mine_iteration(
            &header,
            body.id(),
            Hash(out.end_model_hash.0),
            Hash(out.map_hash.0),
            Hash(out.end_residual_hash.0),
            a,
            target,
        );
        if let Some(h) = found.filter(|h| meets_target(&h.hash(), target)) {
            return Some((h, body));
        }
    }
    None
}
