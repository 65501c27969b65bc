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
//! - **Threads** split the *outputs* (blocks of rows or columns of the result); no reduction is
//!   ever split, so the result never depends on the thread count.
//!
//! Layouts are row-major. A dense layer's weight `W` is stored `[in × out]`, so the forward pass
//! is `Y = X · W` with `X` of shape `[batch × in]`.
//!
//! # How the products are fast and still exact
//! The three products share one blocked driver (`kernels/gemm.rs`): a tile of up to 6 × 16 outputs
//! lives in registers while `p` runs over a block of `k`; the next block of `k` reloads the
//! partial sums from `C` and carries on, so each output is still one chain of fused
//! multiply-adds in ascending `p` from `+0.0`. Storing an `f32` partial sum and loading it back
//! is exact, so blocking changes nothing. The tile kernel is chosen once per call:
//! - [`Isa::Avx2Fma`]: `vfmadd231ps` on 12 `ymm` accumulators (x86-64 with AVX2 and FMA);
//! - [`Isa::Portable`]: the same tiles with `f32::mul_add` (software `fmaf` where the CPU has
//!   no FMA unit: slow, same bits).
//!
//! Threads take disjoint blocks of output tiles; a small product runs on the calling thread
//! (the choice changes speed, never bits). [`reference`](mod@reference) keeps the naive loops
//! as the oracle.

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

    /// How many threads a product of `m×k` by `k×n` actually uses: at most `self.threads`, and
    /// one for small products, whose time would go to waking workers. Speed only, never bits.
    pub fn threads_for(self, m: usize, k: usize, n: usize) -> usize {
        /// Multiply-adds a worker should get at least: about 10 µs on one AVX2 core, several
        /// times what waking a pool worker costs.
        const MIN_WORK_PER_THREAD: usize = 1 << 19;
        let work = m.saturating_mul(k).saturating_mul(n);
        self.threads.max(1).min(work / MIN_WORK_PER_THREAD).max(1)
    }
}

impl Default for Exec {
    fn default() -> Self {
        Self::SINGLE
    }
}

#[doc(hidden)]
pub mod reference;

mod gemm;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Which instructions a product runs on. Every variant gives the same bits.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Scalar `f32::mul_add`: runs everywhere.
    Portable,
    /// x86-64 AVX2 + FMA: 256-bit fused multiply-adds.
    Avx2Fma,
}

impl Isa {
    /// The fastest variant this CPU supports.
    pub fn detect() -> Self {
        if Self::Avx2Fma.is_available() {
            Self::Avx2Fma
        } else {
            Self::Portable
        }
    }

    /// Whether this CPU can run `self`.
    pub fn is_available(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx2Fma => false,
        }
    }
}

/// Which of the three products; names the layouts of `A` and `B`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `C = A · B`, `A` `[m×k]`, `B` `[k×n]`.
    AB,
    /// `C = Aᵀ · B`, `A` stored `[k×m]`, `B` `[k×n]`.
    AtB,
    /// `C = A · Bᵀ`, `A` `[m×k]`, `B` stored `[n×k]`.
    ABt,
}

/// Any of the three products on a chosen instruction set with exactly `threads` output blocks
/// (no size heuristic), for tests and benchmarks. Panics if `isa` is not available.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // mirrors the public products plus the two choices
pub fn product_with(
    op: Op,
    isa: Isa,
    threads: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    assert!(isa.is_available(), "{isa:?} is not supported by this CPU");
    // Checked products: a wrapped length could let the kernels' raw reads past a short slice.
    let len = |x: usize, y: usize| x.checked_mul(y).expect("matrix size overflows usize");
    let (a_len, b_len) = match op {
        Op::AB | Op::ABt => (len(m, k), len(k, n)),
        Op::AtB => (len(k, m), len(k, n)),
    };
    assert_eq!(a.len(), a_len, "A has the wrong length");
    assert_eq!(b.len(), b_len, "B has the wrong length");
    assert_eq!(c.len(), len(m, n), "C has the wrong length");
    gemm::run(op, isa, threads.max(1), a, b, c, m, k, n);
}

/// `C[m×n] = A[m×k] · B[k×n]`.
pub fn matmul(exec: Exec, a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    product_with(Op::AB, Isa::detect(), exec.threads_for(m, k, n), a, b, c, m, k, n);
}

/// `C[m×n] = Aᵀ · B` where `A` is stored `[k×m]` and `B` is `[k×n]` (weight gradient `Xᵀ·dY`).
pub fn matmul_at_b(exec: Exec, a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    product_with(Op::AtB, Isa::detect(), exec.threads_for(m, k, n), a, b, c, m, k, n);
}

/// `C[m×n] = A · Bᵀ` where `A` is `[m×k]` and `B` is stored `[n×k]` (input gradient `dY·Wᵀ`).
pub fn matmul_a_bt(exec: Exec, a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    product_with(Op::ABt, Isa::detect(), exec.threads_for(m, k, n), a, b, c, m, k, n);
}
