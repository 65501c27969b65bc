//! Dropout (`LayerSpec::Dropout`): inverted dropout while training, identity when evaluating.
//!
//! The mask is a function of what every replayer of the iteration has, nothing a miner keeps
//! to itself: the model the gradient is taken on (after the peer updates) and the batch. Exact
//! definitions:
//! - the iteration's dropout seed: BLAKE3 `derive_key("pouw-ml v1 dropout seed", model hash ‖
//!   batch hash)` ([`crate::model_hash`] of that model, [`crate::Batch::hash`]); the model moves
//!   every iteration and the batch changes with it, so the masks of two iterations are
//!   independent;
//! - the mask of the dropout layer at index `l` of the model (its position in `layers`):
//!   [`crate::Rng::derived`]`("pouw-ml v1 dropout mask", seed, l)`, one `next_u64` per value of
//!   the layer's `rows × width` input in row-major order; the value is dropped when the draw's
//!   high 32 bits are below `floor(p · 2^32)` ([`crate::DropoutLayout::threshold`]);
//! - forward: a kept value is `x * scale` with `scale = 1 / (1 - p)` in `f32`
//!   ([`crate::DropoutLayout::scale`]), a dropped one `+0.0`; backward: the same for the
//!   incoming gradient. Integer draws and one rounded product per value: the same bits on every
//!   machine and thread count.

use crate::{batch::Batch, hash::Digest, rng::Rng, spec::DropoutLayout};

/// Context of the seed derivation.
const SEED_CONTEXT: &str = "pouw-ml v1 dropout seed";
/// Context of each layer's mask stream.
const MASK_CONTEXT: &str = "pouw-ml v1 dropout mask";

/// The dropout seed of a training pass over `batch` by the model of hash `model` (module docs).
pub fn dropout_seed(model: &Digest, batch: &Batch) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(SEED_CONTEXT);
    h.update(&model.0);
    h.update(&batch.hash().0);
    *h.finalize().as_bytes()
}

/// The keep mask of the dropout layer at index `layer` over `values` values (module docs).
pub(crate) fn mask(d: &DropoutLayout, seed: &[u8; 32], layer: usize, values: usize) -> Vec<bool> {
    let threshold = d.threshold();
    let mut rng = Rng::derived(MASK_CONTEXT, seed, layer as u64);
    (0..values).map(|_| (rng.next_u64() >> 32) as u32 >= threshold).collect()
}

/// `x` with the mask applied: kept values times the scale, dropped ones `+0.0`.
pub(crate) fn forward(d: &DropoutLayout, x: &[f32], keep: &[bool]) -> Vec<f32> {
    let scale = d.scale();
    x.iter().zip(keep).map(|(&v, &k)| if k { v * scale } else { 0.0 }).collect()
}

/// The gradient through the layer, in place: the same mask and scale as the forward pass.
pub(crate) fn backward(d: &DropoutLayout, dz: &mut [f32], keep: &[bool]) {
    let scale = d.scale();
    for (g, &k) in dz.iter_mut().zip(keep) {
        *g = if k { *g * scale } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_primitives::F32;

    fn layout(p: f32) -> DropoutLayout {
        DropoutLayout { width: 8, p: F32::new(p) }
    }

    #[test]
    fn the_mask_drops_about_p_and_is_a_function_of_its_inputs() {
        let d = layout(0.25);
        assert_eq!(d.threshold(), 1 << 30);
        assert_eq!(d.scale(), 1.0 / 0.75);
        let seed = [7u8; 32];
        let m = mask(&d, &seed, 2, 100_000);
        let dropped = m.iter().filter(|&&k| !k).count();
        assert!((24_000..26_000).contains(&dropped), "{dropped}");
        assert_eq!(mask(&d, &seed, 2, 100_000), m);
        assert_ne!(mask(&d, &seed, 3, 1000), m[..1000]);
        assert_ne!(mask(&d, &[8u8; 32], 2, 1000), m[..1000]);
        // p = 0 keeps everything and scales by exactly 1.
        let zero = layout(0.0);
        assert!(mask(&zero, &seed, 0, 1000).iter().all(|&k| k));
        let x = [1.5f32, -0.0, 3.25, f32::MIN_POSITIVE];
        assert_eq!(forward(&zero, &x, &[true; 4]), x);
    }

    #[test]
    fn forward_and_backward_scale_the_kept_values_and_zero_the_others() {
        let d = layout(0.5);
        let keep = [true, false, true, false];
        assert_eq!(forward(&d, &[1.0, 2.0, -3.0, f32::NAN], &keep), [2.0, 0.0, -6.0, 0.0]);
        let mut g = [0.5, 0.5, 0.25, -1.0];
        backward(&d, &mut g, &keep);
        assert_eq!(g, [1.0, 0.0, 0.5, 0.0]);
        // Pinned bits: the first draws of a fixed seed (a change here changes consensus).
        let m = mask(&layout(0.25), &[1u8; 32], 0, 16);
        let bits: u16 = m.iter().enumerate().map(|(i, &k)| u16::from(k) << i).sum();
        assert_eq!(bits, PINNED_MASK);
    }

    const PINNED_MASK: u16 = 0x4b7f;
}
