//! Difficulty retargeting (SPEC section 2).
//!
//! Every `spec.retarget_window` blocks the target moves toward one block per
//! `spec.block_time_ms`: `new = old * actual / expected`, where `expected = gaps * block_time`
//! and `actual` is the sum of the window's block gaps. Rules:
//! - each gap counts at most `MAX_GAP_BLOCKS * block_time` (4 block times): a pause in
//!   training (no client task, a slow filler model) eases the next window by at most
//!   `(MAX_GAP_BLOCKS - 1) / retarget_window` (15 % on the devnet) however long it lasts, while a
//!   window in which every gap is long (hash power fell) still eases by the full
//!   `MAX_ADJUSTMENT`, so a 100x drop is absorbed in four windows (design 010);
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
/// A gap counts as at most this many block times. Equal to [`MAX_ADJUSTMENT`]: a window whose
/// every gap reaches the cap eases by exactly the most one retarget allows, so a larger cap
/// would only let a single pause weigh more.
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

/// The sum of the gaps between consecutive `timestamps`, each gap capped at
/// `MAX_GAP_BLOCKS * block_time` (signed; may be negative: only forward gaps are capped).
pub fn capped_timespan(
    block_time_ms: u64,
    timestamps: &[Timestamp],
) -> Result<i128, ConsensusError> {
    let cap = i128::from(MAX_GAP_BLOCKS).saturating_mul(i128::from(block_time_ms));
    let mut total: i128 = 0;
    for pair in timestamps.windows(2) {
        let [a, b] = pair else { continue };
        let gap = i128::from(b.millis()).saturating_sub(i128::from(a.millis()));
        let gap = gap.min(cap);
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

    /// A training pause of any length counts as `MAX_GAP_BLOCKS` block times: one hour's pause
    /// in an on-schedule window eases it by `(4 - 1) / 20` = 15 %, no more. (Until design 010 a
    /// long gap counted as one block time, which left this window's target unchanged but also
    /// kept a chain that lost most of its hash power from ever easing.)
    #[test]
    fn long_pause_counts_as_max_gap_block_times() {
        let s = spec();
        let mut w = evenly(1_000, s.block_time_ms, 21);
        for t in w.iter_mut().skip(10) {
            t.0 += 3_600_000; // an hour's pause after block 10
        }
        let old = s.initial_target.to_target().unwrap();
        let new = retarget(&s, s.initial_target, &w).unwrap().to_target().unwrap();
        let expected = CompactTarget::from_target(old * Uint256::from(23u8) / Uint256::from(20u8));
        assert_eq!(new, expected.to_target().unwrap());
        // A pause of a few block times weighs the same as its own length up to the cap.
        let mut w = evenly(1_000, s.block_time_ms, 21);
        for t in w.iter_mut().skip(10) {
            t.0 += 2 * s.block_time_ms; // a gap of 3 block times
        }
        let new = retarget(&s, s.initial_target, &w).unwrap().to_target().unwrap();
        let expected = CompactTarget::from_target(old * Uint256::from(22u8) / Uint256::from(20u8));
        assert_eq!(new, expected.to_target().unwrap());
    }

    /// A window in which every block took 100 block times (hash power fell 100x) eases by the
    /// full `MAX_ADJUSTMENT`; the rule before design 010 left it unchanged.
    #[test]
    fn all_slow_window_eases_by_the_full_adjustment() {
        let s = spec();
        let old = s.initial_target.to_target().unwrap();
        let w = evenly(1_000, 100 * s.block_time_ms, 21);
        let new = retarget(&s, s.initial_target, &w).unwrap().to_target().unwrap();
        assert_eq!(new, old * Uint256::from(MAX_ADJUSTMENT));
    }

    /// The simulated clock: a deterministic miner whose block takes
    /// `block_time * reference_target / (target * hash_rate)`: the expected work of a block is
    /// inversely proportional to the target, and the reference target gives one block per
    /// `block_time` at hash rate 1. Drives `next_target` block by block and returns, per block,
    /// (target, gap in ms).
    fn simulate(s: &ChainSpec, hash_rate: impl Fn(u64) -> f64, blocks: u64) -> Vec<(f64, f64)> {
        let reference = f64::from(s.initial_target.to_target().unwrap());
        let mut stamps = vec![Timestamp(1_000_000)];
        let mut parent = s.initial_target;
        let mut out = Vec::new();
        for height in 1..=blocks {
            let len = retarget_window_len(s, height).unwrap();
            let window = &stamps[stamps.len() - len..];
            let target = next_target(s, height, parent, window).unwrap();
            let t = f64::from(target.to_target().unwrap());
            let gap = s.block_time_ms as f64 * reference / (t * hash_rate(height));
            let last = stamps.last().unwrap().0;
            stamps.push(Timestamp(last + gap.round().max(1.0) as u64));
            out.push((t, gap));
            parent = target;
        }
        out
    }

    /// From steady state through a 100x drop in hash power, a 100x rise back, and another 100x
    /// rise. The criteria, per phase (each change falls mid-window, at block 7 of a window):
    /// - recovery: within `N = 5` retargets after the change, a whole window's blocks each take
    ///   within 25 % of `block_time` (the deterministic model needs 4: the change's own window,
    ///   then x4 clamped steps, then the exact remainder);
    /// - no overshoot: every adjustment larger than 1 % in the phase moves the same way (the
    ///   sign of the significant adjustments never alternates, not even once), and once
    ///   recovered the block time stays within 25 % and every later adjustment is under 1 %
    ///   (compact-form rounding).
    #[test]
    fn recovers_from_a_100x_drop_and_rise_without_oscillating() {
        let s = spec();
        let w = s.retarget_window;
        let phases: [(u64, f64); 4] =
            [(0, 1.0), (10 * w + 7, 0.01), (25 * w + 7, 1.0), (40 * w + 7, 100.0)];
        let end = 55 * w;
        let rate = |h: u64| phases.iter().rev().find(|(from, _)| h >= *from).map_or(1.0, |p| p.1);
        let blocks = simulate(&s, rate, end);
        let bt = s.block_time_ms as f64;
        let within = |gap: f64| (gap / bt - 1.0).abs() <= 0.25;
        // Window `i` holds heights i*w ..= i*w + w - 1 (blocks[h - 1] is height h).
        let window = |i: u64| &blocks[(i * w).max(1) as usize - 1..(i * w + w - 1) as usize];
        // Steady state before the drop.
        for i in 1..10 {
            assert!(window(i).iter().all(|b| within(b.1)), "steady window {i}");
        }
        const N: u64 = 5;
        for index in 1..phases.len() {
            let from = phases[index].0;
            let until = phases.get(index + 1).map_or(end, |p| p.0);
            let first_retarget = from / w + 1;
            let last_window = until / w; // the next change's window is not this phase's
            let recovered = (first_retarget..last_window)
                .find(|&i| window(i).iter().all(|b| within(b.1)))
                .unwrap_or_else(|| panic!("phase from block {from} never recovers"));
            assert!(
                recovered - first_retarget < N,
                "phase from block {from}: recovered after {} retargets",
                recovered - first_retarget + 1
            );
            for i in recovered..last_window {
                assert!(window(i).iter().all(|b| within(b.1)), "phase {from}: window {i} drifts");
            }
            // The adjustments at each retarget of the phase.
            let mut direction = 0i8;
            for i in first_retarget..last_window {
                let before = blocks[(i * w - 2) as usize].0;
                let after = blocks[(i * w - 1) as usize].0;
                let ratio = after / before;
                if i > recovered {
                    assert!((ratio - 1.0).abs() < 0.01, "phase {from}: window {i} moved {ratio}");
                }
                if (ratio - 1.0).abs() >= 0.01 {
                    let sign = if ratio > 1.0 { 1 } else { -1 };
                    assert!(
                        direction == 0 || direction == sign,
                        "phase {from}: window {i} reverses"
                    );
                    direction = sign;
                }
            }
            assert_ne!(direction, 0, "phase {from}: the target never moved");
        }
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

        /// A pause of any length gives exactly the target of a `MAX_GAP_BLOCKS`-block-time gap
        /// there.
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
            let capped = retarget(&s, old, &build(MAX_GAP_BLOCKS * s.block_time_ms)).unwrap();
            prop_assert_eq!(paused, capped);
        }
    }
}
