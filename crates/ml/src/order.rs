//! The input order of an iteration: how a PoUW iteration is bound to the header it mines.
//!
//! A miner that mines iteration `i` with a header `H` runs the iteration's first matrix product
//! (`X · W₁`, the forward pass of the first layer) with its reduction over the input features in
//! an order drawn from `H`'s zero-nonce hash (the *order seed*). The sum is mathematically the
//! same in every order, so training is unchanged; its rounding is not, so the bits of every value
//! after it (activations, loss, gradient, residual, map, end model) depend on the seed. A new
//! header therefore needs a new forward and backward pass: trying another header costs a whole
//! iteration, as it does for the honest miner (design/010 in the repository's docs).
//!
//! The order permutes the first layer's input features in runs of [`CHUNK`] consecutive
//! features (the last run may be shorter): the runs are shuffled with the engine's
//! [`Rng`] (Fisher–Yates, [`Rng::shuffle`]) seeded by
//! `derive_key("pouw-ml/input-order/v1", seed || 0u64)`. The product is then computed as
//! `X' · W₁'` where `X'` holds each sample's features run by run in the shuffled order and `W₁'`
//! the rows of `W₁` in the same order, with the usual kernels (ascending-`k` FMA chains over
//! `X'`'s columns). The all-zero seed means the identity order (no copy): an iteration that
//! mines nothing (no committed header) runs in the natural order.
//!
//! Why runs and not single features: two copies of 16 contiguous floats cost a few
//! microseconds per iteration where a per-feature gather costs tens; the number of orders
//! (`49!` ≈ 2^208 for 784 inputs) still leaves no two headers the same order in practice, and
//! a shared prefix of runs is the only work two orders can share, which a grinder cannot steer
//! into cheaply (matching the first run alone takes about `runs` header hashes for `1/runs` of
//! one product).

use crate::rng::Rng;

/// Features per run of the permutation of a 784-input dense layer ([`InputOrder::from_seed`]).
pub const CHUNK: usize = 16;

/// A dense first layer's inputs are shuffled in at most this many runs (`Layout::first_reduction`:
/// runs of `ceil(inputs / 49)` features; 16 for 784 inputs).
pub const DENSE_RUNS: usize = 49;

/// The fewest units (runs or taps) a task's first reduction may have: `9!` = 362,880 orders,
/// so drawing a second header with the same order takes that many header hashes (design/010).
pub const MIN_ORDER_UNITS: usize = 9;

/// Derivation context of the order's random stream.
const CONTEXT: &str = "pouw-ml/input-order/v1";

/// A permutation of the first layer's input features, in runs of [`CHUNK`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputOrder {
    /// `(start, len)` of each run of input features, in the order the reduction visits them.
    runs: Vec<(usize, usize)>,
    inputs: usize,
}

impl InputOrder {
    /// The order for `seed` over `inputs` features; `None` for the all-zero seed (the natural
    /// order) or when there is a single run (nothing to permute).
    pub fn from_seed(seed: &[u8; 32], inputs: usize) -> Option<Self> {
        Self::from_seed_runs(seed, inputs, CHUNK)
    }

    /// The order for `seed` over `inputs` features in runs of `run` (the first layer's
    /// reduction, `Layout::first_reduction`: [`CHUNK`] for a dense layer, 1 for the `C·k·k`
    /// taps of a convolution); the same stream and shuffle as [`InputOrder::from_seed`].
    /// `None` for the all-zero seed or when there is a single run.
    pub fn from_seed_runs(seed: &[u8; 32], inputs: usize, run: usize) -> Option<Self> {
        let run = run.max(1);
        if seed.iter().all(|&b| b == 0) || inputs <= run {
            return None;
        }
        let mut runs: Vec<(usize, usize)> =
            (0..inputs).step_by(run).map(|s| (s, run.min(inputs - s))).collect();
        Rng::derived(CONTEXT, seed, 0).shuffle(&mut runs);
        Some(Self { runs, inputs })
    }

    /// The features' runs in visiting order, as `(first feature, length)`.
    pub fn runs(&self) -> &[(usize, usize)] {
        &self.runs
    }

    /// `x` (`rows × inputs`, row-major) with each row's features in this order.
    pub(crate) fn permute_rows(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows * self.inputs);
        for row in x.chunks_exact(self.inputs).take(rows) {
            for &(start, len) in &self.runs {
                out.extend_from_slice(&row[start..start + len]);
            }
        }
        out
    }

    /// `w` (`inputs × units`, row-major: one row per input feature) with its rows in this
    /// order.
    pub(crate) fn permute_weight_rows(&self, w: &[f32], units: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(w.len());
        for &(start, len) in &self.runs {
            out.extend_from_slice(&w[start * units..(start + len) * units]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_seed_and_single_run_are_the_natural_order() {
        assert_eq!(InputOrder::from_seed(&[0; 32], 784), None);
        assert_eq!(InputOrder::from_seed(&[1; 32], CHUNK), None);
        assert!(InputOrder::from_seed(&[1; 32], CHUNK + 1).is_some());
    }

    #[test]
    fn runs_cover_every_feature_once_and_depend_on_the_seed() {
        let a = InputOrder::from_seed(&[1; 32], 784).unwrap();
        let b = InputOrder::from_seed(&[2; 32], 784).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, InputOrder::from_seed(&[1; 32], 784).unwrap());
        for order in [&a, &b] {
            let mut seen = vec![false; 784];
            for &(s, l) in order.runs() {
                for (f, seen) in seen.iter_mut().enumerate().skip(s).take(l) {
                    assert!(!*seen, "feature {f} twice");
                    *seen = true;
                }
            }
            assert!(seen.iter().all(|&s| s));
        }
        // A width that is not a multiple of the run: the short run is in there once.
        let c = InputOrder::from_seed(&[3; 32], 37).unwrap();
        let mut lens: Vec<usize> = c.runs().iter().map(|r| r.1).collect();
        lens.sort_unstable();
        assert_eq!(lens, vec![5, 16, 16]);
    }

    #[test]
    fn permuted_rows_and_weights_pair_up() {
        let (rows, inputs, units) = (3, 37, 2);
        let x: Vec<f32> = (0..rows * inputs).map(|i| i as f32).collect();
        let w: Vec<f32> = (0..inputs * units).map(|i| -(i as f32)).collect();
        let o = InputOrder::from_seed(&[9; 32], inputs).unwrap();
        let (xp, wp) = (o.permute_rows(&x, rows), o.permute_weight_rows(&w, units));
        // Column q of X' and row q of W' name the same input feature.
        let mut q = 0;
        for &(s, l) in o.runs() {
            for f in s..s + l {
                for r in 0..rows {
                    assert_eq!(xp[r * inputs + q], x[r * inputs + f]);
                }
                for u in 0..units {
                    assert_eq!(wp[q * units + u], w[f * units + u]);
                }
                q += 1;
            }
        }
    }
}
