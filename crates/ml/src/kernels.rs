//! Deterministic kernels: the arithmetic contract of the consensus path.
//!
//! Rules every kernel keeps, on every code path (scalar, SIMD, threaded):
//! - **Matrix products**: each output element is `acc = 0.0; for p in 0..k (ascending) { acc =
//!   fma(a[i,p], b[p,j], acc) }` with a *fused* multiply-add (`f32::mul_add`, correctly rounded).
//!   Vector paths may compute many outputs at once, and may block over `k`, but each output's
//!   chain of fused multiply-adds runs in ascending `p` from `0.0`. CPU-feature dispatch picks
//!   the instruction (AVX2+FMA `vfmadd`, or the exact software `fmaf`), never the arithmetic.
//! - **Other sums** (bias gradients, losses, accuracy counts) run in ascending index order with
//!   plain `+`, never fused, never reassociated.
//! - **Transcendentals** (`exp`, `ln`, `tanh`) come from `libm`, one portable implementation.
//! - **Threads** split the *outputs* (rows of the result); no reduction is ever split, so the
//!   result never depends on the thread count.
//!
//! Layouts are row-major. A dense layer's weight `W` is stored `[in × out]`, so the forward pass
//! is `Y = X · W` with `X` of shape `[batch × in]`.

/// How much parallelism a kernel may use. The result never depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exec {
    /// Number of worker threads (at least 1).
    pub threads: usize,
}

impl Exec {
    /// One thread.
    pub const SINGLE: Self = Self { threads: 1 };

    /// `threads` worker threads (0 is treated as 1).
    pub fn new(threads: usize) -> Self {
        Self { threads: threads.max(1) }
    }
}

impl Default for Exec {
    fn default() -> Self {
        Self::SINGLE
    }
}

/// `C[m×n] = A[m×k] · B[k×n]`.
pub fn matmul(exec: Exec, a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    let _ = exec;
    assert_eq!(a.len(), m * k);
    assert_eq!(b.len(), k * n);
    assert_eq!(c.len(), m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc = a[i * k + p].mul_add(b[p * n + j], acc);
            }
            c[i * n + j] = acc;
        }
    }
}

/// `C[m×n] = Aᵀ · B` where `A` is stored `[k×m]` and `B` is `[k×n]` (weight gradient `Xᵀ·dY`).
pub fn matmul_at_b(exec: Exec, a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    let _ = exec;
    assert_eq!(a.len(), k * m);
    assert_eq!(b.len(), k * n);
    assert_eq!(c.len(), m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc = a[p * m + i].mul_add(b[p * n + j], acc);
            }
            c[i * n + j] = acc;
        }
    }
}

/// `C[m×n] = A · Bᵀ` where `A` is `[m×k]` and `B` is stored `[n×k]` (input gradient `dY·Wᵀ`).
pub fn matmul_a_bt(exec: Exec, a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    let _ = exec;
    assert_eq!(a.len(), m * k);
    assert_eq!(b.len(), n * k);
    assert_eq!(c.len(), m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc = a[i * k + p].mul_add(b[j * k + p], acc);
            }
            c[i * n + j] = acc;
        }
    }
}
