//! Element-wise and reduction operations of the consensus path (everything but the matrix
//! products, which live in [`crate::kernels`]).
//!
//! Arithmetic rules (the contract; each function documents its exact expression):
//! - every sum runs in ascending index order with plain `+` (no fusing, no reassociation);
//! - `exp`, `ln`, `tanh` are `libm::expf`, `libm::logf`, `libm::tanhf`;
//! - matrices are row-major `[rows × cols]`;
//! - none of these use threads, so thread count cannot matter.

use crate::spec::Activation;

/// `z[i, j] += bias[j]` for every row `i` (one rounding per element).
pub fn bias_add(z: &mut [f32], bias: &[f32]) {
    assert!(!bias.is_empty() && z.len() % bias.len() == 0, "bias_add: shape mismatch");
    for row in z.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// `relu(z) = if z > 0 { z } else { +0.0 }` in place (NaN becomes `+0.0`).
pub fn relu(z: &mut [f32]) {
    for v in z {
        *v = if *v > 0.0 { *v } else { 0.0 };
    }
}

/// `tanh(z) = libm::tanhf(z)` in place.
pub fn tanh(z: &mut [f32]) {
    for v in z {
        *v = libm::tanhf(*v);
    }
}

/// `sigmoid(z) = 1 / (1 + libm::expf(-z))` in place.
pub fn sigmoid(z: &mut [f32]) {
    for v in z {
        *v = 1.0 / (1.0 + libm::expf(-*v));
    }
}

/// Applies `act` in place.
pub fn activate(act: Activation, z: &mut [f32]) {
    match act {
        Activation::Relu => relu(z),
        Activation::Tanh => tanh(z),
        Activation::Sigmoid => sigmoid(z),
        Activation::None => {}
    }
}

/// Backward of `act`, in place: turns `grad = dL/da` into `dL/dz`, from the forward *outputs*
/// `a`:
/// - relu: `if a > 0 { g } else { +0.0 }`;
/// - tanh: `g * (1 - a * a)` (evaluated as `t = a * a; t = 1 - t; g * t`);
/// - sigmoid: `g * (a * (1 - a))` (evaluated as `t = 1 - a; t = a * t; g * t`);
/// - none: unchanged.
pub fn activation_backward(act: Activation, a: &[f32], grad: &mut [f32]) {
    assert_eq!(a.len(), grad.len(), "activation_backward: shape mismatch");
    match act {
        Activation::Relu => {
            for (g, &a) in grad.iter_mut().zip(a) {
                *g = if a > 0.0 { *g } else { 0.0 };
            }
        }
        Activation::Tanh => {
            for (g, &a) in grad.iter_mut().zip(a) {
                let t = 1.0 - a * a;
                *g *= t;
            }
        }
        Activation::Sigmoid => {
            for (g, &a) in grad.iter_mut().zip(a) {
                let t = a * (1.0 - a);
                *g *= t;
            }
        }
        Activation::None => {}
    }
}

/// Mean softmax cross-entropy of `logits` (`[rows × classes]`) against `labels`, and optionally
/// its gradient with respect to the logits (written to `grad`, same shape).
///
/// Per row `i` with label `y`:
/// `m = max_j z_j` (ascending scan, first maximum), `e_j = expf(z_j - m)`,
/// `s = e_0 + e_1 + …` (ascending), `loss_i = logf(s) - (z_y - m)`;
/// `grad_ij = (e_j / s - [j == y]) / rows`.
/// The result is `(loss_0 + loss_1 + …) / rows` (ascending sum, then one division).
///
/// Labels must be `< classes` (checked by [`crate::Batch::validate`]; panics otherwise).
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    mut grad: Option<&mut [f32]>,
) -> f32 {
    let rows = labels.len();
    assert_eq!(logits.len(), rows * classes, "softmax_cross_entropy: shape mismatch");
    if let Some(g) = grad.as_deref() {
        assert_eq!(g.len(), logits.len(), "softmax_cross_entropy: grad shape mismatch");
    }
    let n = rows as f32;
    let mut e = vec![0.0f32; classes];
    let mut total = 0.0f32;
    for (i, (z, &y)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let y = y as usize;
        assert!(y < classes, "label {y} out of range");
        let mut m = z[0];
        for &v in &z[1..] {
            if v > m {
                m = v;
            }
        }
        let mut s = 0.0f32;
        for (ej, &zj) in e.iter_mut().zip(z) {
            *ej = libm::expf(zj - m);
            s += *ej;
        }
        total += libm::logf(s) - (z[y] - m);
        if let Some(g) = grad.as_deref_mut() {
            let row = &mut g[i * classes..(i + 1) * classes];
            for (j, (gj, &ej)) in row.iter_mut().zip(&e).enumerate() {
                let p = ej / s;
                let t = if j == y { p - 1.0 } else { p };
                *gj = t / n;
            }
        }
    }
    total / n
}

/// Number of rows whose argmax (first maximum in ascending order) equals the label.
pub fn correct_count(logits: &[f32], labels: &[u32], classes: usize) -> u32 {
    assert_eq!(logits.len(), labels.len() * classes, "correct_count: shape mismatch");
    let mut correct = 0u32;
    for (z, &y) in logits.chunks_exact(classes).zip(labels) {
        let mut best = 0usize;
        for (j, &v) in z.iter().enumerate().skip(1) {
            if v > z[best] {
                best = j;
            }
        }
        if best == y as usize {
            correct += 1;
        }
    }
    correct
}

/// Accuracy `correct as f32 / rows as f32` (see [`correct_count`]).
pub fn accuracy(logits: &[f32], labels: &[u32], classes: usize) -> f32 {
    correct_count(logits, labels, classes) as f32 / labels.len() as f32
}

/// Bias gradient: column sums of `dz` (`[rows × cols]`), each summed over rows in ascending
/// order from `+0.0` with plain `+`, into `out` (`cols`).
pub fn bias_grad(dz: &[f32], out: &mut [f32]) {
    let cols = out.len();
    assert!(cols > 0 && dz.len() % cols == 0, "bias_grad: shape mismatch");
    out.fill(0.0);
    for row in dz.chunks_exact(cols) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_matches_reference() {
        let logits = [1000.0f32, 0.0, -1000.0, 1.0, 2.0, 3.0];
        let mut g = [0.0f32; 6];
        let loss = softmax_cross_entropy(&logits, &[0, 2], 3, Some(&mut g));
        assert!(loss.is_finite());
        // Row 1: log(e^1 + e^2 + e^3) - 3 = 0.40760596.
        assert!((loss - 0.407_606 / 2.0).abs() < 1e-6);
        let row_sum: f32 = g[3..].iter().sum();
        assert!(row_sum.abs() < 1e-7);
        assert_eq!(correct_count(&logits, &[0, 2], 3), 2);
    }

    #[test]
    fn bias_grad_sums_columns() {
        let mut out = [0.0; 2];
        bias_grad(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut out);
        assert_eq!(out, [9.0, 12.0]);
    }

    #[test]
    fn activation_backward_uses_outputs() {
        let mut a = [-1.0f32, 0.5];
        relu(&mut a);
        let mut g = [1.0, 1.0];
        activation_backward(Activation::Relu, &a, &mut g);
        assert_eq!(g, [0.0, 1.0]);
        let mut s = [0.0f32];
        sigmoid(&mut s);
        assert_eq!(s, [0.5]);
    }
}
