//! The fast products against the naive reference, bit for bit, on every instruction set and
//! thread count.

use pouw_ml::kernels::{self, reference, Exec, Isa, Op};

/// SplitMix64: a dependency-free deterministic generator for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Values of mixed sign and magnitude (2^-20 .. 2^20), a few exact zeros and negative zeros,
    /// so that rounding each product separately would show.
    fn value(&mut self) -> f32 {
        let r = self.next_u64();
        match r % 32 {
            0 => 0.0,
            1 => -0.0,
            _ => {
                let mant = 1.0 + (r >> 40) as f32 / (1u64 << 24) as f32;
                let exp = ((r >> 8) % 41) as i32 - 20;
                let sign = if r & 0x40 != 0 { -1.0 } else { 1.0 };
                sign * mant * 2f32.powi(exp)
            }
        }
    }

    fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.value()).collect()
    }
}

fn isas() -> Vec<Isa> {
    [Isa::Portable, Isa::Avx2Fma].into_iter().filter(|isa| isa.is_available()).collect()
}

fn reference_product(op: Op, a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![f32::NAN; m * n];
    match op {
        Op::AB => reference::matmul(a, b, &mut c, m, k, n),
        Op::AtB => reference::matmul_at_b(a, b, &mut c, m, k, n),
        Op::ABt => reference::matmul_a_bt(a, b, &mut c, m, k, n),
    }
    c
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|x| x.to_bits()).collect()
}

/// Checks every op × instruction set × thread count on one shape.
fn check_shape(rng: &mut Rng, m: usize, k: usize, n: usize, threads: &[usize]) {
    for op in [Op::AB, Op::AtB, Op::ABt] {
        let a = rng.vec(m * k);
        let b = rng.vec(k * n);
        let want = bits(&reference_product(op, &a, &b, m, k, n));
        for isa in isas() {
            for &t in threads {
                // NaN fill: every output must be written.
                let mut c = vec![f32::NAN; m * n];
                kernels::product_with(op, isa, t, &a, &b, &mut c, m, k, n);
                assert!(
                    bits(&c) == want,
                    "{op:?} {isa:?} threads={t} m={m} k={k} n={n} differs from the reference"
                );
            }
        }
    }
}

#[test]
fn odd_and_tile_edge_shapes_match_reference() {
    let mut rng = Rng(1);
    let shapes = [
        (1, 1, 1),
        (1, 7, 1),
        (7, 13, 5),
        (5, 1, 17),
        (6, 16, 16),
        (12, 3, 32),
        (13, 300, 17),
        (17, 257, 33),
        (2, 513, 3),
        (31, 9, 47),
        (33, 784, 129),
        (100, 10, 128),
        (32, 128, 784),
    ];
    for (m, k, n) in shapes {
        check_shape(&mut rng, m, k, n, &[1, 2, 3, 4]);
    }
}

#[test]
fn random_shapes_match_reference() {
    let mut rng = Rng(2);
    for _ in 0..60 {
        let m = 1 + rng.below(70) as usize;
        let k = 1 + rng.below(600) as usize;
        let n = 1 + rng.below(70) as usize;
        check_shape(&mut rng, m, k, n, &[1, 2, 3, 4]);
    }
}

#[test]
fn trainer_shapes_match_reference() {
    let mut rng = Rng(3);
    for batch in [32, 100] {
        // Forward, weight gradient and input gradient of 784-128-64-10 (as AB shapes; the
        // helper runs all three ops on each).
        for (m, k, n) in [(batch, 784, 128), (784, batch, 128), (batch, 128, 64), (batch, 64, 10)] {
            check_shape(&mut rng, m, k, n, &[1, 2, 3, 4, 8]);
        }
    }
}

#[test]
fn public_entries_match_reference_for_any_exec() {
    let mut rng = Rng(4);
    let (m, k, n) = (70, 300, 90);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let want_ab = bits(&reference_product(Op::AB, &a, &b, m, k, n));
    let want_atb = bits(&reference_product(Op::AtB, &a, &b, m, k, n));
    let want_abt = bits(&reference_product(Op::ABt, &a, &b, m, k, n));
    for t in [0, 1, 2, 3, 4, 8] {
        let exec = Exec::new(t);
        let mut c = vec![f32::NAN; m * n];
        kernels::matmul(exec, &a, &b, &mut c, m, k, n);
        assert_eq!(bits(&c), want_ab, "matmul threads={t}");
        kernels::matmul_at_b(exec, &a, &b, &mut c, m, k, n);
        assert_eq!(bits(&c), want_atb, "matmul_at_b threads={t}");
        kernels::matmul_a_bt(exec, &a, &b, &mut c, m, k, n);
        assert_eq!(bits(&c), want_abt, "matmul_a_bt threads={t}");
    }
}

#[test]
fn empty_dimensions() {
    for isa in isas() {
        // k = 0: every output is the empty sum +0.0.
        let mut c = vec![f32::NAN; 6];
        kernels::product_with(Op::AB, isa, 2, &[], &[], &mut c, 2, 0, 3);
        assert!(c.iter().all(|x| x.to_bits() == 0), "{isa:?}");
        kernels::product_with(Op::AB, isa, 2, &[], &[1.0; 3], &mut [], 0, 1, 3);
        kernels::product_with(Op::ABt, isa, 2, &[1.0; 3], &[], &mut [], 1, 3, 0);
    }
}

#[test]
fn negative_zero_products_start_from_positive_zero() {
    // fma(-1, 0, +0.0) = +0.0: an accumulator started from the first product would give -0.0.
    for isa in isas() {
        for op in [Op::AB, Op::AtB, Op::ABt] {
            let mut c = [f32::NAN; 1];
            kernels::product_with(op, isa, 1, &[-1.0], &[0.0], &mut c, 1, 1, 1);
            assert_eq!(c[0].to_bits(), 0, "{op:?} {isa:?}");
        }
    }
}

/// The data of these tests can tell a fused chain from an unfused one (or a reordered one), so
/// the bit comparisons above would catch a wrong path.
#[test]
fn tests_detect_unfused_and_reordered_arithmetic() {
    let mut rng = Rng(5);
    let (m, k, n) = (33, 784, 129);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let want = reference_product(Op::AB, &a, &b, m, k, n);
    let mut unfused = vec![0.0f32; m * n];
    let mut reversed = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a[i * k + p] * b[p * n + j];
            }
            unfused[i * n + j] = acc;
            let mut acc = 0.0f32;
            for p in (0..k).rev() {
                acc = a[i * k + p].mul_add(b[p * n + j], acc);
            }
            reversed[i * n + j] = acc;
        }
    }
    let differ =
        |x: &[f32]| x.iter().zip(&want).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
    assert!(differ(&unfused) > m * n / 2, "unfused differs in only {} outputs", differ(&unfused));
    assert!(differ(&reversed) > m * n / 2, "reversed differs in only {}", differ(&reversed));

    // A minimal case: 1 + 2^-24 rounds differently fused and unfused.
    let x = 1.0 + f32::EPSILON; // 1 + 2^-23
    let (p0, p1) = (x * x, -(1.0 + 2.0 * f32::EPSILON)); // x² = 1 + 2^-22 + 2^-46
    assert_ne!(x.mul_add(x, p1).to_bits(), (p0 + p1).to_bits());
}

#[test]
fn portable_equals_avx2_on_large_products() {
    if !Isa::Avx2Fma.is_available() {
        return;
    }
    let mut rng = Rng(6);
    let (m, k, n) = (96, 700, 200);
    for op in [Op::AB, Op::AtB, Op::ABt] {
        let a = rng.vec(m * k);
        let b = rng.vec(k * n);
        let mut fast = vec![f32::NAN; m * n];
        let mut slow = vec![f32::NAN; m * n];
        kernels::product_with(op, Isa::Avx2Fma, 3, &a, &b, &mut fast, m, k, n);
        kernels::product_with(op, Isa::Portable, 1, &a, &b, &mut slow, m, k, n);
        assert_eq!(bits(&fast), bits(&slow), "{op:?}");
    }
}

/// FNV-1a over the bits of every output: a fingerprint small enough to pin in the source.
fn digest(outputs: &[Vec<f32>]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for x in outputs.iter().flatten() {
        for byte in x.to_bits().to_le_bytes() {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Pinned bits: every CPU (AVX2+FMA or not, e.g. Nehalem under `qemu-x86_64 -cpu Nehalem`) and
/// every thread count must give exactly these outputs. If this fails on one machine only, that
/// machine's path breaks the contract; if the contract itself ever changes, re-pin knowingly.
#[test]
fn golden_digest_is_the_same_on_every_cpu() {
    const GOLDEN: u64 = 0x1834_51a1_2231_57b7;
    eprintln!("products run on {:?}", Isa::detect());
    let mut rng = Rng(7);
    let mut outputs = Vec::new();
    for (m, k, n) in [(32, 784, 128), (784, 32, 128), (32, 128, 784), (7, 13, 5), (33, 300, 129)] {
        let a = rng.vec(m * k);
        let b = rng.vec(k * n);
        for threads in [1, 3] {
            let exec = Exec::new(threads);
            let mut c = vec![f32::NAN; m * n];
            kernels::matmul(exec, &a, &b, &mut c, m, k, n);
            outputs.push(c.clone());
            let (at, bt) = (rng.vec(k * m), rng.vec(n * k));
            kernels::matmul_at_b(exec, &at, &b, &mut c, m, k, n);
            outputs.push(c.clone());
            kernels::matmul_a_bt(exec, &a, &bt, &mut c, m, k, n);
            outputs.push(c);
        }
    }
    assert_eq!(digest(&outputs), GOLDEN, "on {:?}", Isa::detect());
}

/// Subnormal inputs and products, and sums that overflow to infinity: still the reference bits
/// (no flush-to-zero on any path). Outputs that are NaN (∞ − ∞) need only be NaN: their payload
/// is the hardware's default NaN, not part of the contract.
#[test]
fn subnormals_and_overflow_match_reference() {
    let mut rng = Rng(8);
    let mut extreme = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                let r = rng.next_u64();
                let mant = 1.0 + (r >> 40) as f32 / (1u64 << 24) as f32;
                let sign = if r & 1 != 0 { -1.0f32 } else { 1.0 };
                match r % 8 {
                    0 | 1 => sign * f32::from_bits(1 + ((r >> 8) as u32 % 0x007f_ffff)), // subnormal
                    2 | 3 => sign * mant * 2f32.powi(-(((r >> 16) % 60) as i32) - 60),   // tiny
                    4 => sign * mant * 2f32.powi(((r >> 16) % 68) as i32), // up to 2^67
                    _ => sign * mant,
                }
            })
            .collect()
    };
    let (mut overflowed, mut subnormal) = (false, false);
    for (m, k, n) in [(7, 13, 5), (13, 300, 17), (32, 128, 70), (9, 40, 33)] {
        for op in [Op::AB, Op::AtB, Op::ABt] {
            let mut a = extreme(m * k);
            let b = extreme(k * n);
            if m == 9 {
                // Only subnormal A: every product and sum stays in the subnormal range.
                a.iter_mut().for_each(|x| *x = f32::from_bits(x.to_bits() & 0x8000_ffff));
            }
            let want = reference_product(op, &a, &b, m, k, n);
            overflowed |= want.iter().any(|x| x.is_infinite());
            subnormal |= want.iter().any(|x| x.is_subnormal());
            for isa in isas() {
                for t in [1, 3] {
                    let mut c = vec![0.0; m * n];
                    kernels::product_with(op, isa, t, &a, &b, &mut c, m, k, n);
                    for (got, want) in c.iter().zip(&want) {
                        assert!(
                            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                            "{op:?} {isa:?} threads={t} {m}x{k}x{n}: {got:e} vs {want:e}"
                        );
                    }
                }
            }
        }
    }
    assert!(overflowed && subnormal, "the data must reach both ends of the range");
}
