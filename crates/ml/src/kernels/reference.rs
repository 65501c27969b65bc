//! Naive reference products: the executable statement of the contract.
//!
//! One output at a time, `p` ascending from `+0.0`, one `f32::mul_add` per step. The fast paths
//! in [`super`] must match these bit for bit; tests and tools use them as the oracle.

/// `C[m×n] = A[m×k] · B[k×n]`, naively.
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
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

/// `C[m×n] = Aᵀ · B` where `A` is stored `[k×m]` and `B` is `[k×n]`, naively.
pub fn matmul_at_b(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
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

/// `C[m×n] = A · Bᵀ` where `A` is `[m×k]` and `B` is stored `[n×k]`, naively.
pub fn matmul_a_bt(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
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
