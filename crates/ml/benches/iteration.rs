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
//! model, batch (32 and 100; 256 too for 784-128-10) and thread count the best of many runs of each (PoUW iteration and plain step
//! alternating, so a busy shared machine slows both alike), wall clock and, on one thread, the
//! thread's CPU clock (which preemption does not inflate); then the hashes alone; then, for
//! 784-128-10 on one thread, where the time of one iteration goes (each part timed alone, best
//! of many) and two prototypes priced the same way (docs/design/019-iteration-overhead.md):
//! - `checkpoint K`: the training of an iteration with the hashes a checkpointed message format
//!   would need: the map hash, a hash of the batch's sample indices, a 3-hash chain link per
//!   iteration and the full model and residual hashes every K-th iteration (K = 16, 64);
//! - `start-residual variant`: what a grinder pays per variant of the start residual once the
//!   gradient of the mined header is known (the residual, map and update pass, written to new
//!   buffers, and the four full hashes a variant's message and nonces need; no gradient).

use std::{hint::black_box, time::Duration};

use criterion::{criterion_group, BatchSize, BenchmarkId, Criterion};
use pouw_ml::{
    pack_entry, Activation, Batch, Exec, InputOrder, Model, ModelSpec, OptimizerSpec, Rng,
    TrainState,
};

fn batch(rng: &mut Rng, rows: usize) -> Batch {
    // MNIST-like inputs: most pixels 0, the rest in (0, 1].
    let x = (0..rows * 784).map(|_| if rng.below(5) == 0 { rng.next_f32() } else { 0.0 }).collect();
    let y = (0..rows).map(|_| rng.below(10) as u32).collect();
    Batch::new(x, y, 784).unwrap()
}

/// A copy of `b` that has not hashed itself yet: a miner's every iteration trains a new batch,
/// so each timed iteration gets one (a [`Batch`] keeps its hash once computed).
fn unhashed(b: &Batch) -> Batch {
    Batch::new(b.features().to_vec(), b.labels().to_vec(), b.width()).unwrap()
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
                    bch.iter_batched(|| unhashed(&b), |b| b.hash(), BatchSize::LargeInput)
                });
            }
            for threads in [1usize, 2] {
                let exec = Exec::new(threads);
                let id = format!("{name}/b{rows}/t{threads}");
                let mut state = TrainState::new(model.clone(), opt).unwrap();
                group.bench_function(BenchmarkId::new("pouw", &id), |bch| {
                    bch.iter_batched(
                        || unhashed(&b),
                        |b| state.iterate(exec, &b, &peer_refs).unwrap(),
                        BatchSize::LargeInput,
                    )
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
        breakdown();
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
        // Batch 256 for the comparison with PyTorch (scripts/bench_torch_matmul.py).
        let batches: &[usize] = if hidden.len() == 1 { &[32, 100, 256] } else { &[32, 100] };
        for &rows in batches {
            let b = batch(&mut rng, rows);
            for threads in [1usize, 2] {
                let exec = Exec::new(threads);
                let mut pouw = TrainState::new(model.clone(), optimizer(rows)).unwrap();
                let mut sgd = pouw.clone();
                let (mut p, mut s) = (Best::NONE, Best::NONE);
                for _ in 0..RUNS {
                    let fresh = unhashed(&b);
                    p.run(|| pouw.iterate(exec, &fresh, &peer_refs).unwrap());
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
            let (f32_, f100) = (unhashed(&b32), unhashed(&b100));
            bh32.run(|| f32_.hash());
            bh100.run(|| f100.hash());
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

/// The residual, map and update pass of an SGD iteration without momentum (the engine's
/// definition, module docs of `iteration.rs`), from `r0` and `w0` into `r1` and `w1`, branch-free
/// like the engine's: what a grinder runs per variant of the start residual.
fn residual_pass(
    (r0, g, w0): (&[f32], &[f32], &[f32]),
    (r1, w1): (&mut [f32], &mut [f32]),
    (lr, tau): (f32, f32),
    flags: &mut [u8],
    map: &mut Vec<u32>,
) {
    for (((((&r, &gj), &w), r_out), w_out), f) in
        r0.iter().zip(g).zip(w0).zip(r1.iter_mut()).zip(w1.iter_mut()).zip(flags.iter_mut())
    {
        let v = r + gj;
        let positive = v > tau;
        let negative = !positive & (v < -tau);
        let d = if positive {
            tau
        } else if negative {
            -tau
        } else {
            0.0
        };
        *r_out = if positive | negative { v - d } else { v };
        *w_out = if positive | negative { w - lr * d } else { w };
        *f = u8::from(positive) | (u8::from(negative) << 1);
    }
    map.clear();
    for (j, &f) in flags.iter().enumerate() {
        if f != 0 {
            map.push(pack_entry(j as u32, f == 1));
        }
    }
}

/// Where one iteration's time goes, and the two prototypes (module docs).
#[allow(clippy::disallowed_macros)] // a bench's table is its result
fn breakdown() {
    const RUNS: usize = 300;
    let exec = Exec::SINGLE;
    let spec = ModelSpec::mlp(784, &[128], 10, Activation::Relu, 1);
    let model = Model::new(spec.clone()).unwrap();
    let params = model.param_count();
    let mut rng = Rng::from_u64(5);
    let peers = peer_maps(&mut rng, params);
    let peer_refs: Vec<&[u32]> = peers.iter().map(Vec::as_slice).collect();
    let seed = [7u8; 32];
    let order = InputOrder::from_seed(&seed, 784);
    let us = |x: Best| x.1 * 1e6;
    for rows in [32usize, 100] {
        let b = batch(&mut rng, rows);
        let opt = optimizer(rows);
        let fresh = || TrainState::new(model.clone(), opt).unwrap();
        let (mut sgd, mut t_np, mut t_p, mut t_ps, mut p_n, mut p_s) =
            (fresh(), fresh(), fresh(), fresh(), fresh(), fresh());
        let mut g = vec![0.0f32; params];
        let [mut plain, mut grad_n, mut grad_s, mut train_np, mut train_p, mut train_ps] =
            [Best::NONE; 6];
        let [mut pouw_n, mut pouw_s, mut mh, mut rh, mut bh, mut maph] = [Best::NONE; 6];
        let mut map = Vec::new();
        for _ in 0..RUNS {
            plain.run(|| sgd.sgd_step(exec, &b).unwrap());
            grad_n.run(|| model.gradient(exec, &b, &mut g));
            grad_s.run(|| model.gradient_in_order(exec, &b, &mut g, order.as_ref()));
            train_np.run(|| t_np.train_unhashed(exec, &b, &[], &[0; 32]).unwrap());
            train_p.run(|| t_p.train_unhashed(exec, &b, &peer_refs, &[0; 32]).unwrap());
            train_ps.run(|| t_ps.train_unhashed(exec, &b, &peer_refs, &seed).unwrap());
            let fresh = [unhashed(&b), unhashed(&b), unhashed(&b)];
            pouw_n.run(|| p_n.iterate(exec, &fresh[0], &peer_refs).unwrap());
            pouw_s.run(|| {
                map = p_s.iterate_bound(exec, &fresh[1], &peer_refs, &seed).unwrap().map;
            });
            mh.run(|| p_s.model().hash());
            rh.run(|| p_s.residual_hash());
            bh.run(|| fresh[2].hash());
            maph.run(|| pouw_ml::map_hash(&map));
        }

        // Prototype 1: checkpoints every K iterations (hashes of the proposed format only).
        let indices: Vec<u32> = (0..rows as u32).map(|i| i * 7919 % 60_000).collect();
        let index_bytes = bytes_of_u32(&indices);
        let checkpoint = |k: usize| {
            let mut state = fresh();
            let mut best = f64::MAX;
            let mut link = [0u8; 32];
            for _ in 0..(RUNS / k).max(8) {
                let c = thread_cpu_seconds();
                for i in 0..k {
                    let (m, metrics) = state.train_unhashed(exec, &b, &peer_refs, &seed).unwrap();
                    let map_hash = pouw_ml::map_hash(&m);
                    let batch_ref = blake3::hash(&index_bytes);
                    let mut h = blake3::Hasher::new();
                    h.update(&link);
                    h.update(map_hash.as_bytes());
                    h.update(batch_ref.as_bytes());
                    h.update(&metrics.loss.to_bits().to_le_bytes());
                    link = *h.finalize().as_bytes();
                    if i + 1 == k {
                        black_box((state.model().hash(), state.residual_hash()));
                    }
                }
                best = best.min((thread_cpu_seconds() - c) / k as f64);
            }
            best * 1e6
        };
        let (cp16, cp64) = (checkpoint(16), checkpoint(64));

        // Prototype 2: a grinder's start-residual variant (no gradient: it is the same).
        let w0 = p_s.model().params().to_vec();
        let mut r0 = p_s.residual().to_vec();
        model.gradient_in_order(exec, &b, &mut g, order.as_ref());
        let (mut r1, mut w1) = (vec![0.0f32; params], vec![0.0f32; params]);
        let mut flags = vec![0u8; params];
        let mut variant = Best::NONE;
        let mut vmap = Vec::new();
        for v in 0..RUNS {
            // A new start residual: one coordinate moved (any finite start replays).
            r0[v % params] += 1e-7;
            variant.run(|| {
                let start = pouw_ml::residual_hash(&r0, &[]);
                residual_pass(
                    (&r0, &g, &w0),
                    (&mut r1, &mut w1),
                    (0.3, 0.01),
                    &mut flags,
                    &mut vmap,
                );
                (start, pouw_ml::model_hash(&spec, &w1), pouw_ml::residual_hash(&r1, &[]))
            });
            black_box(pouw_ml::map_hash(&vmap));
        }

        // The same variant when the grinder keeps the BLAKE3 trees of its start residual, end
        // residual and end model: a start residual moved in one coordinate by less than the
        // emission margin changes one 1 KiB chunk of each stream and nothing in the map, so each
        // hash is one chunk plus the ~9 parent nodes above it (proxy: one 1 KiB hash and nine
        // 64-byte hashes per tree, three trees), and the pass covers one chunk.
        let chunk = [0x5au8; 1024];
        let node = [0xa5u8; 64];
        let mut incremental = Best::NONE;
        for _ in 0..RUNS {
            incremental.run(|| {
                for _ in 0..3 {
                    black_box(blake3::hash(black_box(&chunk)));
                    for _ in 0..9 {
                        black_box(blake3::hash(black_box(&node)));
                    }
                }
            });
        }

        // Prototype 3: a digest of the gradient that needs every bit of it and no hash pass:
        // sum of (2j + 1) * bits(g_j) mod 2^64 (each term a bijection of g_j's bits).
        let mut sketch = Best::NONE;
        for _ in 0..RUNS {
            sketch.run(|| gradient_sketch(black_box(&g)));
        }

        let hashes = us(mh) + us(rh) + us(bh) + us(maph);
        println!();
        println!("784-128-10/b{rows}, 1 thread, thread CPU in us, best of {RUNS} each:");
        let rows_out = [
            ("plain SGD step", us(plain)),
            ("gradient (natural order)", us(grad_n)),
            ("gradient (seeded order)", us(grad_s)),
            ("train: peers, gradient, residual/map/update, no hash (no peers)", us(train_np)),
            ("train, 2 peer maps", us(train_p)),
            ("train, 2 peer maps, seeded order", us(train_ps)),
            ("PoUW iteration, natural order (the table's)", us(pouw_n)),
            ("PoUW iteration, seeded order (a mining iteration)", us(pouw_s)),
            ("  model hash", us(mh)),
            ("  residual hash", us(rh)),
            ("  batch hash", us(bh)),
            ("  map hash", us(maph)),
            ("  sum of the four hashes", hashes),
            ("  order permutation (gradient seeded - natural)", us(grad_s) - us(grad_n)),
            ("  peer maps (train with - without)", us(train_p) - us(train_np)),
            ("  residual/map/update pass (train no peers - gradient)", us(train_np) - us(grad_n)),
            ("prototype: checkpoint K=16, per iteration", cp16),
            ("prototype: checkpoint K=64, per iteration", cp64),
            ("start-residual variant (grinder, no gradient)", us(variant)),
            ("  its hashes kept as trees (proxy: 3 x (1 KiB + 9 nodes))", us(incremental)),
            ("prototype: gradient sketch, sum (2j+1)*bits(g_j) mod 2^64", us(sketch)),
        ];
        for (name, t) in rows_out {
            println!("  {name:64} {t:8.1}");
        }
        println!(
            "  ratios to the plain step: mining iteration {:.2}x, checkpoint K=16 {:.2}x, \
             K=64 {:.2}x; mining iteration / start-residual variant {:.2}",
            us(pouw_s) / us(plain),
            cp16 / us(plain),
            cp64 / us(plain),
            us(pouw_s) / us(variant),
        );
    }
}

/// `sum over j of (2j + 1) * bits(g_j)`, wrapping (design/019, prototype 3), in eight lanes.
fn gradient_sketch(g: &[f32]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut chunks = g.chunks_exact(8);
    let mut j = 0u64;
    for c in &mut chunks {
        for (k, (lane, &v)) in lanes.iter_mut().zip(c).enumerate() {
            let odd = 2 * (j + k as u64) + 1;
            *lane = lane.wrapping_add(odd.wrapping_mul(u64::from(v.to_bits())));
        }
        j += 8;
    }
    for (k, &v) in chunks.remainder().iter().enumerate() {
        let odd = 2 * (j + k as u64) + 1;
        lanes[0] = lanes[0].wrapping_add(odd.wrapping_mul(u64::from(v.to_bits())));
    }
    lanes.iter().fold(0u64, |a, &l| a.wrapping_add(l))
}

/// The memory of `values` as bytes (little-endian targets, as the engine's hashes).
fn bytes_of_u32(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
