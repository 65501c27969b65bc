//! Header and body rules, median time past and the retarget rule.
//!
//! NOTE: moves to pouw-consensus. These are pure consensus functions written here while the
//! consensus crate gains `check_header`, `check_block_body` and `next_target`; swap them at
//! merge time (the signatures take only headers, timestamps and the spec).

use crate::BlockError;
use pouw_primitives::{
    meets_target, Block, ChainSpec, CompactTarget, Header, Timestamp, Uint256, HEADER_VERSION,
    MAX_BLOCK_BYTES,
};

/// Number of ancestors whose median timestamp a new block must exceed.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// Median of `timestamps` (the last up to 11 ancestors, any order).
// NOTE: moves to pouw-consensus
pub fn median_time_past(timestamps: &[Timestamp]) -> Timestamp {
    let mut ts = timestamps.to_vec();
    ts.sort_unstable();
    ts.get(ts.len() / 2).copied().unwrap_or_default()
}

/// True if the block at `height` starts a new retarget window.
// NOTE: moves to pouw-consensus
pub fn is_retarget_height(spec: &ChainSpec, height: u64) -> bool {
    height > 0 && height % spec.retarget_window == 0
}

/// The target a block at `parent.height + 1` must carry.
///
/// `window` holds the timestamps of the ancestors ending at `parent` (oldest first): the last
/// `min(retarget_window, parent.height) + 1` of them. Off a retarget height the target is the
/// parent's. At a retarget height, each interval between consecutive window blocks counts as
/// its real length, or as one `block_time` if longer than 4 x `block_time` (training pauses do
/// not crash the difficulty); the new target is `old * actual / expected`, with `actual`
/// clamped to `[expected / 4, expected * 4]` and the result capped at `max_target`.
// NOTE: moves to pouw-consensus (as `next_target`)
pub fn next_target(spec: &ChainSpec, parent: &Header, window: &[Timestamp]) -> CompactTarget {
    let height = parent.height.saturating_add(1);
    if !is_retarget_height(spec, height) {
        return parent.target;
    }
    let (Some(old), Some(max)) = (parent.target.to_target(), spec.max_target.to_target()) else {
        return spec.max_target;
    };
    let bt = spec.block_time_ms;
    let long_gap = bt.saturating_mul(4);
    let mut actual: u64 = 0;
    let mut intervals: u64 = 0;
    for pair in window.windows(2) {
        if let [a, b] = pair {
            let gap = b.0.saturating_sub(a.0);
            actual = actual.saturating_add(if gap > long_gap { bt } else { gap });
            intervals = intervals.saturating_add(1);
        }
    }
    let expected = intervals.saturating_mul(bt).max(1);
    let actual = actual.clamp((expected / 4).max(1), expected.saturating_mul(4));
    // old * actual / expected, exactly, without a 512-bit product:
    // old = q * expected + r  =>  old * actual / expected = q * actual + r * actual / expected.
    let e = Uint256::from(expected);
    let a = Uint256::from(actual);
    let (q, r) = (old / e, old % e);
    let new = q
        .checked_mul(a)
        .and_then(|qa| qa.checked_add(r.checked_mul(a)? / e))
        .unwrap_or(max)
        .min(max)
        .max(Uint256::from(1u8));
    CompactTarget::from_target(new)
}

/// Header rules given the parent, the window/median timestamps and the local clock.
// NOTE: moves to pouw-consensus (as `check_header`)
pub fn check_header(
    spec: &ChainSpec,
    header: &Header,
    parent: &Header,
    median: Timestamp,
    expected_target: CompactTarget,
    now: Timestamp,
) -> Result<(), BlockError> {
    if header.version != HEADER_VERSION {
        return Err(BlockError::BadVersion { expected: HEADER_VERSION, got: header.version });
    }
    let expected = parent.height.saturating_add(1);
    if header.height != expected {
        return Err(BlockError::BadHeight { expected, got: header.height });
    }
    if header.timestamp <= median {
        return Err(BlockError::TimestampTooOld { timestamp: header.timestamp, median });
    }
    let max = Timestamp(now.0.saturating_add(spec.max_future_ms));
    if header.timestamp > max {
        return Err(BlockError::TimestampInFuture { timestamp: header.timestamp, max });
    }
    if header.target != expected_target {
        return Err(BlockError::BadTarget { expected: expected_target, got: header.target });
    }
    let hash = header.hash();
    let ok = header.target.to_target().is_some_and(|t| meets_target(&hash, t));
    if !ok {
        return Err(BlockError::InsufficientWork { hash, target: header.target });
    }
    Ok(())
}

/// Body rules: size, transaction count, tx root, miner signature.
// NOTE: moves to pouw-consensus (as `check_block_body`)
pub fn check_body(spec: &ChainSpec, block: &Block) -> Result<(), BlockError> {
    let count = block.transactions.len() as u64;
    if count > u64::from(spec.max_block_txs) {
        return Err(BlockError::TooManyTxs { count, max: u64::from(spec.max_block_txs) });
    }
    let size = block.size() as u64;
    let max = spec.max_block_bytes.min(MAX_BLOCK_BYTES as u64);
    if size > max {
        return Err(BlockError::TooLarge { size, max });
    }
    let expected = Block::compute_tx_root(&block.transactions);
    if block.header.tx_root != expected {
        return Err(BlockError::BadTxRoot { expected, got: block.header.tx_root });
    }
    block.verify_signature()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_primitives::ChainSpec;

    fn spec() -> ChainSpec {
        let mut s = ChainSpec::devnet();
        s.initial_target = CompactTarget(0x1e00ffff);
        s.max_target = CompactTarget(0x2100ffff);
        s
    }

    fn parent(height: u64, target: CompactTarget) -> Header {
        let mut h = pouw_consensus::genesis_block(&spec()).unwrap().header;
        h.height = height;
        h.target = target;
        h
    }

    fn window(gaps: &[u64]) -> Vec<Timestamp> {
        let mut t = 1_000_000;
        let mut out = vec![Timestamp(t)];
        for g in gaps {
            t += g;
            out.push(Timestamp(t));
        }
        out
    }

    #[test]
    fn median_of_eleven() {
        let ts: Vec<_> = [5u64, 1, 9, 3, 7].iter().map(|&t| Timestamp(t)).collect();
        assert_eq!(median_time_past(&ts), Timestamp(5));
        assert_eq!(median_time_past(&[]), Timestamp(0));
    }

    #[test]
    fn no_retarget_inside_a_window() {
        let s = spec();
        let p = parent(5, CompactTarget(0x1e00ffff));
        assert_eq!(next_target(&s, &p, &window(&[1; 5])), p.target);
    }

    #[test]
    fn on_time_keeps_target_and_fast_is_harder_clamped() {
        let s = spec();
        let t0 = CompactTarget(0x1e00ffff);
        let p = parent(39, t0);
        let on_time = window(&[s.block_time_ms; 20]);
        assert_eq!(next_target(&s, &p, &on_time), t0);
        let twice_fast = window(&[s.block_time_ms / 2; 20]);
        let half = t0.to_target().unwrap() / Uint256::from(2u8);
        assert_eq!(next_target(&s, &p, &twice_fast), CompactTarget::from_target(half));
        let instant = window(&[1; 20]);
        let quarter = t0.to_target().unwrap() / Uint256::from(4u8);
        assert_eq!(next_target(&s, &p, &instant), CompactTarget::from_target(quarter));
    }

    #[test]
    fn slow_is_easier_clamped_and_capped() {
        let s = spec();
        let t0 = CompactTarget(0x1e00ffff);
        let p = parent(39, t0);
        // Gaps of 3.9 x block time count fully, so the clamp at x4 applies.
        let slow = window(&[s.block_time_ms * 39 / 10; 20]);
        let x = next_target(&s, &p, &slow).to_target().unwrap();
        assert!(x > t0.to_target().unwrap() * Uint256::from(3u8));
        assert!(x <= t0.to_target().unwrap() * Uint256::from(4u8));
        // At max target it stays at the max.
        let p = parent(39, s.max_target);
        assert_eq!(next_target(&s, &p, &slow), s.max_target);
    }

    #[test]
    fn long_pause_counts_as_one_block_time() {
        let s = spec();
        let t0 = CompactTarget(0x1e00ffff);
        let p = parent(39, t0);
        let mut gaps = vec![s.block_time_ms; 20];
        gaps[7] = s.block_time_ms * 1000; // a training pause
        assert_eq!(next_target(&s, &p, &window(&gaps)), t0);
    }

    #[test]
    fn first_window_counts_its_intervals() {
        let s = spec();
        let t0 = CompactTarget(0x1e00ffff);
        let p = parent(19, t0); // next is height 20: 19 intervals from genesis
        assert_eq!(next_target(&s, &p, &window(&[s.block_time_ms; 19])), t0);
    }
}
