//! Cost of one training iteration: the full PoUW iteration (peer updates, gradient, residual,
//! message map, local update, four hashes) against a plain SGD step on the same batch, for the
//! MLPs 784-128-10 and 784-128-64-10, batches of 32 and 100, on 1 and 2 kernel threads.
//!
//! The parts of the PoUW overhead are measured alone too: the model hash, the residual hash
//! (momentum 0: the residual only), the batch hash, and plain BLAKE3 over as many bytes as the
//! model hash covers (the speed limit of any hash of the parameters).
//!
//! `cargo bench -p pouw-ml --bench iteration -- --warm-up-time 1 --measurement-time 3`
//!
//! `POUW_BENCH_TABLE=1 cargo bench -p pouw-ml --bench iteration` prints a table instead: per
//! model, batch and thread count the best of many runs of each (PoUW iteration and plain step
//! alternating, so a busy shared machine slows both alike), wall clock and, on one thread, the
//! thread's CPU clock (which preemption does not inflate); then the hashes alone.

use std::{hint::black_box, time::Duration};

use criterion::{criterion_group, BenchmarkId, Criterion};
use pouw_ml::{
    pack_entry, Activation, Batch, Exec, Model, ModelSpec, OptimizerSpec, Rng, TrainState,
};

fn batch(rng: &mut Rng, rows: usize) -> Batch {
    // MNIST-like inputs: most pixels 0, the rest in (0, 1].
    let x = (0..rows * 784).map(|_| if rng.below(5) == 0 { rng.next_f32() } else { 0.0 }).collect();
    let y = (0..rows).map(|_| rng.below(10) as u32).collect();
    Batch::new(x, y, 784).unwrap()
}

/// Two peers' maps of the size the default task sends (about 2.7% of the coordinates).
fn peer_maps(rng: &mut Rng, params: usize) -> Vec<Vec<u32>> {
    (0..2)
        .map(|_| {
            let mut m: Vec<u32> = (0..params * 27 / 1000)
                .map(|_| pack_entry(rng.below(params as u64) as u32, rng.below(2) == 0))
                .collect();
            m.sort_unstable_by_key(|&e| e & 0x7fff_ffff);
            m
        })
        .collect()
}

fn optimizer(rows: usize) -> OptimizerSpec {
    OptimizerSpec {
        learning_rate: 0.3,
        momentum: 0.0,
        tau: 0.01,
        batch_size: rows as u32,
        epochs: 1,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("iteration");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for hidden in [&[128u32][..], &[128, 64][..]] {
        let name =
            format!("784-{}-10", hidden.iter().map(u32::to_string).collect::<Vec<_>>().join("-"));
        let spec = ModelSpec::mlp(784, hidden, 10, Activation::Relu, 1);
        let model = Model::new(spec).unwrap();
        let params = model.param_count();
        let mut rng = Rng::from_u64(5);
        let peers = peer_maps(&mut rng, params);
        let peer_refs: Vec<&[u32]> = peers.iter().map(Vec::as_slice).collect();
        for rows in [32usize, 100] {
            let b = batch(&mut rng, rows);
            let opt = optimizer(rows);
            if hidden.len() == 1 {
                group.bench_function(BenchmarkId::new("batch_hash", format!("b{rows}")), |bch| {
                    bch.iter(|| b.hash())
                });
            }
            for threads in [1usize, 2] {
                let exec = Exec::new(threads);
                let id = format!("{name}/b{rows}/t{threads}");
                let mut state = TrainState::new(model.clone(), opt).unwrap();
                group.bench_function(BenchmarkId::new("pouw", &id), |bch| {
                    bch.iter(|| state.iterate(exec, &b, &peer_refs).unwrap())
                });
                let mut state = TrainState::new(model.clone(), opt).unwrap();
                group.bench_function(BenchmarkId::new("sgd", &id), |bch| {
                    bch.iter(|| state.sgd_step(exec, &b).unwrap())
                });
            }
        }
        group
            .bench_function(BenchmarkId::new("model_hash", &name), |bch| bch.iter(|| model.hash()));
        let zero = vec![0.0f32; params];
        group.bench_function(BenchmarkId::new("residual_hash", &name), |bch| {
            bch.iter(|| pouw_ml::residual_hash(&zero, &[]))
        });
        let bytes: Vec<u8> = model.params().iter().flat_map(|v| v.to_le_bytes()).collect();
        group.bench_function(BenchmarkId::new("blake3_raw", &name), |bch| {
            bch.iter(|| blake3::hash(&bytes))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);

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

/// Best (wall, thread CPU) seconds of `f` over the runs it is given, one run per call.
#[derive(Clone, Copy)]
struct Best(f64, f64);

impl Best {
    const NONE: Self = Self(f64::MAX, f64::MAX);

    fn run<T>(&mut self, f: impl FnOnce() -> T) {
        let (t, c) = (std::time::Instant::now(), thread_cpu_seconds());
        black_box(f());
        self.1 = self.1.min(thread_cpu_seconds() - c);
        self.0 = self.0.min(t.elapsed().as_secs_f64());
    }
}

/// Best-of-runs table on stdout (see the module docs).
#[allow(clippy::disallowed_macros)] // a bench's table is its result
fn table() {
    const RUNS: usize = 400;
    println!(
        "{:24} {:>3} {:>11} {:>11} {:>6} {:>11} {:>11} {:>6}",
        "model/batch", "thr", "pouw wall", "sgd wall", "ratio", "pouw cpu", "sgd cpu", "ratio"
    );
    for hidden in [&[128u32][..], &[128, 64][..]] {
        let name =
            format!("784-{}-10", hidden.iter().map(u32::to_string).collect::<Vec<_>>().join("-"));
        let model = Model::new(ModelSpec::mlp(784, hidden, 10, Activation::Relu, 1)).unwrap();
        let params = model.param_count();
        let mut rng = Rng::from_u64(5);
        let peers = peer_maps(&mut rng, params);
        let peer_refs: Vec<&[u32]> = peers.iter().map(Vec::as_slice).collect();
        for rows in [32usize, 100] {
            let b = batch(&mut rng, rows);
            for threads in [1usize, 2] {
                let exec = Exec::new(threads);
                let mut pouw = TrainState::new(model.clone(), optimizer(rows)).unwrap();
                let mut sgd = pouw.clone();
                let (mut p, mut s) = (Best::NONE, Best::NONE);
                for _ in 0..RUNS {
                    p.run(|| pouw.iterate(exec, &b, &peer_refs).unwrap());
                    s.run(|| sgd.sgd_step(exec, &b).unwrap());
                }
                let ms = |x: f64| format!("{:8.3} ms", x * 1e3);
                let cpu = |x: Best| if threads == 1 { ms(x.1) } else { format!("{:>11}", "-") };
                let cpu_ratio = if threads == 1 {
                    format!("{:5.2}x", p.1 / s.1)
                } else {
                    format!("{:>6}", "-")
                };
                println!(
                    "{:24} {threads:>3} {} {} {:5.2}x {} {} {cpu_ratio}",
                    format!("{name}/b{rows}"),
                    ms(p.0),
                    ms(s.0),
                    p.0 / s.0,
                    cpu(p),
                    cpu(s),
                );
            }
        }
        let zero = vec![0.0f32; params];
        let bytes: Vec<u8> = model.params().iter().flat_map(|v| v.to_le_bytes()).collect();
        let b32 = batch(&mut rng, 32);
        let b100 = batch(&mut rng, 100);
        let (mut mh, mut rh, mut raw, mut bh32, mut bh100) =
            (Best::NONE, Best::NONE, Best::NONE, Best::NONE, Best::NONE);
        for _ in 0..RUNS {
            mh.run(|| model.hash());
            rh.run(|| pouw_ml::residual_hash(&zero, &[]));
            raw.run(|| blake3::hash(&bytes));
            bh32.run(|| b32.hash());
            bh100.run(|| b100.hash());
        }
        let us = |x: Best| format!("{:.1} us", x.1 * 1e6);
        println!(
            "{name}: thread CPU, best of {RUNS}: model hash {}, residual hash {}, plain BLAKE3 \
             of the {} parameter bytes {}, batch hash b32 {}, b100 {}",
            us(mh),
            us(rh),
            bytes.len(),
            us(raw),
            us(bh32),
            us(bh100),
        );
    }
}
