//! Difficulty retargeting (SPEC section 2).
//!
//! Every `spec.retarget_window` blocks the target moves toward one block per
//! `spec.block_time_ms`: `new = old * actual / expected`, where `expected = gaps * block_time`
//! and `actual` is the sum of the window's block gaps. Rules:
//! - a gap longer than `4 * block_time` counts as one `block_time`: a pause in training (no
//!   client task, a slow filler model) must not make the next window absurdly easy;
//! - gaps are signed (timestamps only need to beat the median time past), so an up-swing and
//!   the following down-swing cancel; a miner cannot ease the difficulty by alternating
//!   timestamps, only by moving them forward, which the future-time rule bounds;
//! - the result is clamped to `[old / 4, old * 4]`, then to at most `spec.max_target` and at
//!   least 1, then normalised to compact form (rounding down);
//! - between retargets the target is the parent's.
//!
//! All integer arithmetic: timespans in `i128`, targets in 256 bits.

use crate::ConsensusError;
use pouw_primitives::{ChainSpec, CompactTarget, Timestamp, Uint256};

/// The most the target moves in one retarget, either way.
pub const MAX_ADJUSTMENT: u64 = 4;
/// A gap longer than this many block times counts as one block time.
pub const MAX_GAP_BLOCKS: u64 = 4;

/// True if the block at `height` is the first of a new window (and gets a new target).
pub fn is_retarget_height(spec: &ChainSpec, height: u64) -> Result<bool, ConsensusError> {
    let rem = height
        .checked_rem(spec.retarget_window)
        .ok_or(ConsensusError::InvalidChainSpec("retarget_window is zero"))?;
    Ok(height > 0 && rem == 0)
}

/// How many timestamps [`next_target`] needs for the block at `height`: at a retarget height
/// those of the blocks at heights `height - retarget_window - 1 ..= height - 1` (clipped at
/// genesis), oldest first; zero elsewhere.
pub fn retarget_window_len(spec: &ChainSpec, height: u64) -> Result<usize, ConsensusError> {
    if !is_retarget_height(spec, height)? {
        return Ok(0);
    }
    let n = spec.retarget_window.saturating_add(1).min(height);
    usize::try_from(n).map_err(|_| ConsensusError::InvalidChainSpec("retarget_window too large"))
}

/// The target of the block at `height`, whose parent has `parent_target`. `window` holds the
/// timestamps described by [`retarget_window_len`] (ignored between retargets).
pub fn next_target(
    spec: &ChainSpec,
    height: u64,
    parent_target: CompactTarget,
    window: &[Timestamp],
) -> Result<CompactTarget, ConsensusError> {
    let needed = retarget_window_len(spec, height)?;
    if needed == 0 {
        return Ok(parent_target);
    }
    if window.len() != needed {
        return Err(ConsensusError::BadRetargetWindow { expected: needed, got: window.len() });
    }
    retarget(spec, parent_target, window)
}

/// The sum of the gaps between consecutive `timestamps`, each gap longer than
/// `MAX_GAP_BLOCKS * block_time` counted as one `block_time` (signed; may be negative).
pub fn capped_timespan(
    block_time_ms: u64,
    timestamps: &[Timestamp],
) -> Result<i128, ConsensusError> {
    let bt = i128::from(block_time_ms);
    let cap = i128::from(MAX_GAP_BLOCKS).saturating_mul(bt);
    let mut total: i128 = 0;
    for pair in timestamps.windows(2) {
        let [a, b] = pair else { continue };
        let gap = i128::from(b.millis()).saturating_sub(i128::from(a.millis()));
        let gap = if gap > cap { bt } else { gap };
        total = total.checked_add(gap).ok_or(ConsensusError::AmountOverflow("timespan"))?;
    }
    Ok(total)
}

/// One retarget step from `old` over the window `timestamps` (at least two, oldest first).
pub fn retarget(
    spec: &ChainSpec,
    old: CompactTarget,
    timestamps: &[Timestamp],
) -> Result<CompactTarget, ConsensusError> {
    let old_target = old.to_target().ok_or(ConsensusError::InvalidTarget(old))?;
    let max_target =
        spec.max_target.to_target().ok_or(ConsensusError::InvalidTarget(spec.max_target))?;
    if spec.block_time_ms == 0 {
        return Err(ConsensusError::InvalidChainSpec("block_time_ms is zero"));
    }
    let gaps = timestamps.len().saturating_sub(1);
    if gaps == 0 {
        return Err(ConsensusError::BadRetargetWindow { expected: 2, got: timestamps.len() });
    }
    let expected = u128::try_from(gaps)
        .ok()
        .and_then(|g| g.checked_mul(u128::from(spec.block_time_ms)))
        .ok_or(ConsensusError::AmountOverflow("expected timespan"))?;
    let actual = capped_timespan(spec.block_time_ms, timestamps)?;
    // Negative or zero spans clamp to the lower bound below; huge ones to the upper bound.
    let actual = u128::try_from(actual.max(0)).unwrap_or(0);
    let actual = actual.min(expected.saturating_mul(u128::from(MAX_ADJUSTMENT)));

    let new = mul_div(old_target, actual, expected);
    let four = Uint256::from(MAX_ADJUSTMENT);
    let lower = old_target.checked_div(four).unwrap_or(Uint256::ZERO);
    let upper = old_target.saturating_mul(four);
    let new = new.clamp(lower, upper).min(max_target).max(Uint256::from(1u8));
    Ok(CompactTarget::from_target(new))
}

/// `floor(x * num / den)` without overflowing 256 bits in the intermediate product
/// (saturating at the maximum if the result itself does not fit); `den > 0`.
fn mul_div(x: Uint256, num: u128, den: u128) -> Uint256 {
    let num = Uint256::from(num);
    let den = Uint256::from(den);
    let (Some(q), Some(r)) = (x.checked_div(den), x.checked_rem(den)) else {
        return Uint256::ZERO;
    };
    // r < den < 2^128 and num < 2^130, so r * num fits.
    let low = r.checked_mul(num).and_then(|p| p.checked_div(den)).unwrap_or(Uint256::ZERO);
    q.checked_mul(num).and_then(|hi| hi.checked_add(low)).unwrap_or(Uint256::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec() -> ChainSpec {
        ChainSpec::devnet()
    }

    fn evenly(start: u64, gap: u64, n: usize) -> Vec<Timestamp> {
        (0..n as u64).map(|i| Timestamp(start + i * gap)).collect()
    }

    #[test]
    fn on_schedule_keeps_the_target() {
        let s = spec();
        let w = evenly(1_000, s.block_time_ms, 21);
        assert_eq!(retarget(&s, s.initial_target, &w).unwrap(), s.initial_target);
    }

    #[test]
    fn twice_as_fast_halves_the_target() {
        let s = spec();
        let w = evenly(1_000, s.block_time_ms / 2, 21);
        let new = retarget(&s, s.initial_target, &w).unwrap().to_target().unwrap();
        let old = s.initial_target.to_target().unwrap();
        let half = CompactTarget::from_target(old / Uint256::from(2u8)).to_target().unwrap();
        assert_eq!(new, half);
    }

    #[test]
    fn between_retargets_target_is_unchanged() {
        let s = spec();
        let t = CompactTarget(0x1f00_ffff);
        for h in [1, 5, 19, 21, 39] {
            assert_eq!(next_target(&s, h, t, &[]).unwrap(), t);
        }
        assert!(matches!(
            next_target(&s, 20, t, &[]),
            Err(ConsensusError::BadRetargetWindow { expected: 20, .. })
        ));
        assert_eq!(retarget_window_len(&s, 40).unwrap(), 21);
        let w = evenly(0, s.block_time_ms, 21);
        assert_eq!(next_target(&s, 40, t, &w).unwrap(), t);
    }

    #[test]
    fn clamps_and_max_target() {
        let s = spec();
        let hard = CompactTarget(0x1d00_ffff);
        let old = hard.to_target().unwrap();
        // Instant blocks: at most 4x harder.
        let fast = retarget(&s, hard, &evenly(1_000, 0, 21)).unwrap().to_target().unwrap();
        assert_eq!(fast, CompactTarget::from_target(old / Uint256::from(4u8)).to_target().unwrap());
        // Each gap just under the cap: 4x easier, not more.
        let slow = retarget(&s, hard, &evenly(1_000, 4 * s.block_time_ms, 21)).unwrap();
        assert_eq!(slow.to_target().unwrap(), old * Uint256::from(4u8));
        // Already at the max: stays there.
        let easiest = retarget(&s, s.max_target, &evenly(1_000, 4 * s.block_time_ms, 21)).unwrap();
        assert_eq!(easiest, s.max_target);
    }

    #[test]
    fn long_pause_counts_as_one_block_time() {
        let s = spec();
        let mut w = evenly(1_000, s.block_time_ms, 21);
        for t in w.iter_mut().skip(10) {
            t.0 += 3_600_000; // an hour's pause after block 10
        }
        assert_eq!(retarget(&s, s.initial_target, &w).unwrap(), s.initial_target);
    }

    fn targets() -> impl Strategy<Value = CompactTarget> {
        (1u64..=u64::MAX, 0usize..200).prop_map(|(m, shift)| {
            let t = Uint256::from(m) << shift.min(190);
            CompactTarget::from_target(t.min(spec().max_target.to_target().unwrap()))
        })
    }

    proptest! {
        #[test]
        fn stays_within_bounds(
            old in targets(),
            gaps in proptest::collection::vec(-30_000i64..200_000, 1..40),
        ) {
            let s = spec();
            let mut t = 10_000_000i64;
            let mut w = vec![Timestamp(t as u64)];
            for g in gaps {
                t += g;
                w.push(Timestamp(t as u64));
            }
            let o = old.to_target().unwrap();
            let new = retarget(&s, old, &w).unwrap().to_target().unwrap();
            let four = Uint256::from(4u8);
            let lower = CompactTarget::from_target((o / four).max(Uint256::from(1u8)))
                .to_target()
                .unwrap();
            prop_assert!(new >= lower);
            prop_assert!(new <= o.saturating_mul(four));
            prop_assert!(new <= s.max_target.to_target().unwrap());
        }

        /// A pause of any length gives exactly the target of a one-block-time gap there.
        #[test]
        fn pause_is_no_easier_than_the_rule(
            old in targets(),
            gaps in proptest::collection::vec(0u64..20_000, 2..30),
            at in any::<prop::sample::Index>(),
            pause in 20_001u64..100_000_000,
        ) {
            let s = spec();
            let i = at.index(gaps.len());
            let build = |pause_gap: u64| {
                let mut t = 1_000u64;
                let mut w = vec![Timestamp(t)];
                for (j, g) in gaps.iter().enumerate() {
                    t += if j == i { pause_gap } else { *g };
                    w.push(Timestamp(t));
                }
                w
            };
            let paused = retarget(&s, old, &build(pause)).unwrap();
            let one_block = retarget(&s, old, &build(s.block_time_ms)).unwrap();
            prop_assert_eq!(paused, one_block);
        }
    }
}
