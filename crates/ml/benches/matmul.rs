//! Matrix-product benchmarks: the trainer's shapes, large squares (GFLOP/s) and the core's peak.
//!
//! `cargo bench -p pouw-ml --bench matmul` (filter with a name, e.g. `-- square`). The `peak`
//! group times a register-only FMA loop: its throughput (two flops per lane per `vfmadd`) is the
//! ceiling the products are measured against.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pouw_ml::kernels::{self, Exec, Isa, Op};

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// (name, op, m, k, n) of one layer's three products in the 784-128-… MLPs.
fn trainer_shapes(batch: usize) -> [(&'static str, Op, usize, usize, usize); 3] {
    [
        ("fwd_x_w1", Op::AB, batch, 784, 128),
        ("wgrad_xt_dy", Op::AtB, 784, batch, 128),
        ("igrad_dy_w1t", Op::ABt, batch, 128, 784),
    ]
}

#[allow(clippy::too_many_arguments)] // the product's arguments plus its choice
fn run(exec: Exec, op: Op, a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    match op {
        Op::AB => kernels::matmul(exec, a, b, c, m, k, n),
        Op::AtB => kernels::matmul_at_b(exec, a, b, c, m, k, n),
        Op::ABt => kernels::matmul_a_bt(exec, a, b, c, m, k, n),
    }
}

fn bench_trainer(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("trainer");
    for batch in [32, 100, 256] {
        for (name, op, m, k, n) in trainer_shapes(batch) {
            let (a, b) = (data(m * k, 1), data(k * n, 2));
            let mut c = vec![0.0; m * n];
            g.throughput(Throughput::Elements((2 * m * k * n) as u64));
            for threads in [1, 2] {
                let id = BenchmarkId::new(format!("{name}/b{batch}"), format!("t{threads}"));
                g.bench_function(id, |bn| {
                    bn.iter(|| run(Exec::new(threads), op, black_box(&a), &b, &mut c, m, k, n))
                });
            }
        }
    }
    g.finish();
}

fn bench_square(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("square");
    g.sample_size(10);
    let s = 1024;
    let (a, b) = (data(s * s, 1), data(s * s, 2));
    let mut c = vec![0.0; s * s];
    g.throughput(Throughput::Elements((2 * s * s * s) as u64));
    for (name, op) in [("ab", Op::AB), ("atb", Op::AtB), ("abt", Op::ABt)] {
        for threads in [1, 2] {
            let id = BenchmarkId::new(format!("{name}/{s}"), format!("t{threads}"));
            g.bench_function(id, |bn| {
                bn.iter(|| run(Exec::new(threads), op, black_box(&a), &b, &mut c, s, s, s))
            });
        }
    }
    // The portable path (software or hardware `fmaf` per multiply-add) on a smaller square.
    let s = 256;
    let (a, b) = (data(s * s, 1), data(s * s, 2));
    let mut c = vec![0.0; s * s];
    g.throughput(Throughput::Elements((2 * s * s * s) as u64));
    g.bench_function(BenchmarkId::new(format!("ab_portable/{s}"), "t1"), |bn| {
        bn.iter(|| {
            kernels::product_with(Op::AB, Isa::Portable, 1, black_box(&a), &b, &mut c, s, s, s)
        })
    });
    g.finish();
}

/// Twelve independent FMA chains on registers only; 2 × 8 × 12 flops per iteration.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_peak_loop(iters: u64, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let x = _mm256_set1_ps(seed);
    let y = _mm256_set1_ps(0.999_999);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, y, x);
        }
    }
    let mut s = _mm256_setzero_ps();
    for a in acc {
        s = _mm256_add_ps(s, a);
    }
    _mm256_cvtss_f32(s)
}

fn bench_peak(cr: &mut Criterion) {
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx2Fma.is_available() {
        let mut g = cr.benchmark_group("peak");
        let iters = 100_000u64;
        g.throughput(Throughput::Elements(iters * 12 * 8 * 2));
        g.bench_function("fma_ymm_12_chains", |bn| {
            // SAFETY: AVX2 and FMA were detected above.
            bn.iter(|| unsafe { fma_peak_loop(black_box(iters), black_box(1e-3)) })
        });
        g.finish();
    }
    let _ = cr;
}

criterion_group!(benches, bench_peak, bench_trainer, bench_square);
criterion_main!(benches);
