//! The data movement of convolution and pooling layers (the arithmetic is the matrix products
//! of [`crate::kernels`] and the element-wise [`crate::ops`]).
//!
//! A convolution runs as one product over the whole batch (im2col): `cols` has one row per
//! (sample, output position) — row `n·P + i·OW + j`, `P = OH·OW` — and one column per kernel
//! tap — column `c·k² + u·k + v` — holding `x[n, c, i·s + u − p, j·s + v − p]` (`+0.0` in the
//! padding). Then `Z = cols · Wᵀ` (`[N·P × F]`, [`crate::kernels::matmul_a_bt`] with `W` stored
//! `[F × C·k·k]`), `+ b`, activation, and a transpose to the channel-major `[N × F·P]` layout
//! every layer sees (PyTorch's `N×C×H×W`, so `flatten` is the identity on the values).
//!
//! Backward: `dZ` back to `[N·P × F]`; `dW = dZᵀ · cols` ([`crate::kernels::matmul_at_b`], the
//! sum over samples and positions in ascending row order); `db` = column sums of `dZ`
//! ([`crate::ops::bias_grad`]); `dcols = dZ · W` ([`crate::kernels::matmul`]); `dx` = col2im:
//! `+0.0` everywhere, then every `dcols` entry that came from an input position is added to it
//! in ascending (row, column) order of `dcols` with plain `+`. Nothing here depends on threads.
//!
//! Max pooling: per sample, channel and output position, the first maximum (`v > m`, scan of
//! the window row by row from its first element) is the output and its input index is kept;
//! backward: `dx = +0.0`, then `dx[argmax] += dy` in ascending output order.

use crate::spec::{ConvLayout, PoolLayout};

/// The im2col matrix (`[rows·P × C·k·k]`) of `x` (`[rows × C·H·W]`, channel-major).
pub(crate) fn im2col(c: &ConvLayout, x: &[f32], rows: usize) -> Vec<f32> {
    let (k, p, s) = (c.kernel, c.padding, c.stride);
    let (h, w) = (c.height, c.width);
    let mut cols = vec![0.0f32; rows * c.positions() * c.patch()];
    let mut out = cols.chunks_exact_mut(c.patch());
    for sample in x.chunks_exact(c.inputs()).take(rows) {
        for i in 0..c.out_height {
            for j in 0..c.out_width {
                let Some(row) = out.next() else { continue };
                let mut q = 0;
                for ch in 0..c.channels {
                    let plane = &sample[ch * h * w..(ch + 1) * h * w];
                    for u in 0..k {
                        let y = (i * s + u).wrapping_sub(p);
                        for v in 0..k {
                            let xx = (j * s + v).wrapping_sub(p);
                            if y < h && xx < w {
                                row[q] = plane[y * w + xx];
                            }
                            q += 1;
                        }
                    }
                }
            }
        }
    }
    cols
}

/// col2im: the input gradient (`[rows × C·H·W]`) from `dcols` (`[rows·P × C·k·k]`).
pub(crate) fn col2im(c: &ConvLayout, dcols: &[f32], rows: usize) -> Vec<f32> {
    let (k, p, s) = (c.kernel, c.padding, c.stride);
    let (h, w) = (c.height, c.width);
    let mut dx = vec![0.0f32; rows * c.inputs()];
    let mut from = dcols.chunks_exact(c.patch());
    for sample in dx.chunks_exact_mut(c.inputs()) {
        for i in 0..c.out_height {
            for j in 0..c.out_width {
                let Some(row) = from.next() else { return dx };
                let mut q = 0;
                for ch in 0..c.channels {
                    let plane = &mut sample[ch * h * w..(ch + 1) * h * w];
                    for u in 0..k {
                        let y = (i * s + u).wrapping_sub(p);
                        for v in 0..k {
                            let xx = (j * s + v).wrapping_sub(p);
                            if y < h && xx < w {
                                plane[y * w + xx] += row[q];
                            }
                            q += 1;
                        }
                    }
                }
            }
        }
    }
    dx
}

/// `[rows·P × F]` (position-major) to `[rows × F·P]` (channel-major).
pub(crate) fn to_channels(z: &[f32], rows: usize, positions: usize, filters: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; z.len()];
    for n in 0..rows {
        let (src, dst) = (n * positions * filters, n * filters * positions);
        for q in 0..positions {
            for f in 0..filters {
                out[dst + f * positions + q] = z[src + q * filters + f];
            }
        }
    }
    out
}

/// `[rows × F·P]` (channel-major) to `[rows·P × F]` (position-major).
pub(crate) fn from_channels(a: &[f32], rows: usize, positions: usize, filters: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    for n in 0..rows {
        let base = n * positions * filters;
        for f in 0..filters {
            for q in 0..positions {
                out[base + q * filters + f] = a[base + f * positions + q];
            }
        }
    }
    out
}

/// Max pooling of `x` (`[rows × C·H·W]`): the outputs (`[rows × C·OH·OW]`) and, for each, the
/// index of its input within the sample.
pub(crate) fn maxpool(p: &PoolLayout, x: &[f32], rows: usize) -> (Vec<f32>, Vec<u32>) {
    let (h, w) = (p.height, p.width);
    let mut out = Vec::with_capacity(rows * p.outputs());
    let mut arg = Vec::with_capacity(rows * p.outputs());
    for sample in x.chunks_exact(p.inputs()).take(rows) {
        for ch in 0..p.channels {
            let plane = ch * h * w;
            for i in 0..p.out_height {
                for j in 0..p.out_width {
                    let first = plane + i * p.stride * w + j * p.stride;
                    let (mut best, mut m) = (first, sample[first]);
                    for u in 0..p.size {
                        for v in 0..p.size {
                            let at = first + u * w + v;
                            if sample[at] > m {
                                (best, m) = (at, sample[at]);
                            }
                        }
                    }
                    out.push(m);
                    arg.push(best as u32);
                }
            }
        }
    }
    (out, arg)
}

/// Backward of [`maxpool`]: `dx` (`[rows × C·H·W]`) from `dy` and the kept indices.
pub(crate) fn maxpool_backward(p: &PoolLayout, dy: &[f32], arg: &[u32], rows: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; rows * p.inputs()];
    let per = p.outputs();
    for ((sample, dys), args) in
        dx.chunks_exact_mut(p.inputs()).zip(dy.chunks(per)).zip(arg.chunks(per))
    {
        for (&g, &a) in dys.iter().zip(args) {
            sample[a as usize] += g;
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Activation;

    fn conv(
        channels: usize,
        hw: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> ConvLayout {
        let out = (hw + 2 * padding - kernel) / stride + 1;
        ConvLayout {
            channels,
            height: hw,
            width: hw,
            filters: 1,
            kernel,
            stride,
            padding,
            out_height: out,
            out_width: out,
            activation: Activation::None,
            weight_offset: 0,
            bias_offset: channels * kernel * kernel,
        }
    }

    #[test]
    fn im2col_picks_the_window_and_pads_with_zero() {
        let c = conv(1, 3, 2, 1, 1); // 3x3 input, 2x2 kernel, padding 1: 4x4 outputs
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let cols = im2col(&c, &x, 1);
        assert_eq!(cols.len(), 16 * 4);
        assert_eq!(&cols[..4], &[0.0, 0.0, 0.0, 1.0]); // top-left: only x[0,0]
        assert_eq!(&cols[5 * 4..6 * 4], &[1.0, 2.0, 4.0, 5.0]); // output (1,1)
        assert_eq!(&cols[15 * 4..], &[9.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), d> == <x, col2im(d)> for integer-valued data (exact sums).
        let c = conv(2, 5, 3, 2, 1);
        let x: Vec<f32> = (0..2 * 2 * 25).map(|v| (v % 7) as f32 - 3.0).collect();
        let cols = im2col(&c, &x, 2);
        let d: Vec<f32> = (0..cols.len()).map(|v| (v % 5) as f32 - 2.0).collect();
        let dx = col2im(&c, &d, 2);
        let lhs: f32 = cols.iter().zip(&d).map(|(a, b)| a * b).sum();
        let rhs: f32 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
    }

    #[test]
    fn channel_transposes_invert_each_other() {
        let z: Vec<f32> = (0..2 * 6 * 3).map(|v| v as f32).collect();
        let a = to_channels(&z, 2, 6, 3);
        assert_eq!(a[1], z[3]); // sample 0, filter 0, position 1
        assert_eq!(from_channels(&a, 2, 6, 3), z);
    }

    #[test]
    fn maxpool_takes_the_first_maximum_and_routes_the_gradient_there() {
        let p = PoolLayout {
            channels: 1,
            height: 4,
            width: 4,
            size: 2,
            stride: 2,
            out_height: 2,
            out_width: 2,
        };
        let x = [1.0, 3.0, 0.0, 0.0, 3.0, 2.0, 0.0, -1.0, 5.0, 5.0, 7.0, 8.0, 5.0, 5.0, 9.0, 6.0];
        let (y, arg) = maxpool(&p, &x, 1);
        assert_eq!(y, vec![3.0, 0.0, 5.0, 9.0]);
        assert_eq!(arg, vec![1, 2, 8, 14]);
        let dx = maxpool_backward(&p, &[1.0, 2.0, 3.0, 4.0], &arg, 1);
        assert_eq!(dx[1], 1.0);
        assert_eq!(dx[2], 2.0);
        assert_eq!(dx[8], 3.0);
        assert_eq!(dx[14], 4.0);
        assert_eq!(dx.iter().filter(|&&v| v != 0.0).count(), 4);
    }
}
