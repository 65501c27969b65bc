//! Matrix-product benchmarks: the trainer's shapes, large squares (GFLOP/s) and the core's peak.
//!
//! `cargo bench -p pouw-ml --bench matmul` (filter with a name, e.g. `-- square`). The `peak`
//! group times a register-only FMA loop: its throughput (two flops per lane per `vfmadd`) is the
//! ceiling the products are measured against.
//!
//! `POUW_BENCH_TABLE=1 cargo bench -p pouw-ml --bench matmul` prints a table instead: the best of
//! many runs per product (wall clock, and for one thread also the thread's CPU clock, which a
//! busy shared machine does not inflate) as ms, GFLOP/s and percent of the measured peak.

use std::hint::black_box;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
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

fn main() {
    if std::env::var_os("POUW_BENCH_TABLE").is_some() {
        table();
    } else {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}

/// CPU time consumed by the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the OS knows.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Best-of-runs table on stdout (see the module docs).
#[allow(clippy::disallowed_macros)] // a bench's table is its result
fn table() {
    use std::time::Instant;
    #[cfg(target_arch = "x86_64")]
    let peak = if Isa::Avx2Fma.is_available() {
        let iters = 200_000u64;
        let mut best = f64::MAX;
        for _ in 0..50 {
            let t = Instant::now();
            // SAFETY: AVX2 and FMA were detected above.
            black_box(unsafe { fma_peak_loop(black_box(iters), black_box(1e-3)) });
            best = best.min(t.elapsed().as_secs_f64());
        }
        (iters * 12 * 8 * 2) as f64 / best / 1e9
    } else {
        f64::NAN
    };
    #[cfg(not(target_arch = "x86_64"))]
    let peak = f64::NAN;
    println!("isa {:?}; peak {peak:.1} GFLOP/s per core (12 vfmadd chains)", Isa::detect());
    println!(
        "{:22} {:>3} {:>10} {:>10} {:>8} {:>7}",
        "product", "thr", "wall ms", "cpu ms", "GFLOP/s", "% peak"
    );
    let mut cases = Vec::new();
    for batch in [32, 100, 256] {
        for (name, op, m, k, n) in trainer_shapes(batch) {
            cases.push((format!("{name}/b{batch}"), op, m, k, n));
        }
    }
    for (name, op) in [("ab", Op::AB), ("atb", Op::AtB), ("abt", Op::ABt)] {
        cases.push((format!("square_{name}/1024"), op, 1024, 1024, 1024));
    }
    for (name, op, m, k, n) in cases {
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let mut c = vec![0.0; m * n];
        let runs = if m * k * n > 100_000_000 { 10 } else { 300 };
        for threads in [1, 2] {
            let (mut wall, mut cpu) = (f64::MAX, f64::MAX);
            for _ in 0..runs {
                let (t, c0) = (Instant::now(), thread_cpu_seconds());
                run(Exec::new(threads), op, black_box(&a), &b, &mut c, m, k, n);
                cpu = cpu.min(thread_cpu_seconds() - c0);
                wall = wall.min(t.elapsed().as_secs_f64());
            }
            // With one thread the product runs on this thread, so its CPU clock is the product's
            // time minus preemption; with more, only the wall clock means anything.
            let (best, cpu_col) = if threads == 1 {
                (cpu, format!("{:10.3}", cpu * 1e3))
            } else {
                (wall, format!("{:>10}", "-"))
            };
            let gflops = 2.0 * (m * k * n) as f64 / best / 1e9;
            println!(
                "{name:22} {threads:>3} {:10.3} {cpu_col} {gflops:8.1} {:6.1}%",
                wall * 1e3,
                100.0 * gflops / (peak * threads as f64),
            );
        }
    }
}
