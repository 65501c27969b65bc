//! Cost of one training iteration: the full PoUW iteration (peer updates, gradient, residual,
//! message map, local update, four hashes) against a plain SGD step on the same batch, for the
//! MLPs 784-128-10 and 784-128-64-10, batches of 32 and 100, on 1 and 2 kernel threads.
//!
//! `cargo bench -p pouw-ml --bench iteration`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pouw_ml::{
    pack_entry, Activation, Batch, Exec, Model, ModelSpec, OptimizerSpec, Rng, TrainState,
};

fn batch(rng: &mut Rng, rows: usize) -> Batch {
    // MNIST-like inputs: most pixels 0, the rest in (0, 1].
    let x = (0..rows * 784).map(|_| if rng.below(5) == 0 { rng.next_f32() } else { 0.0 }).collect();
    let y = (0..rows).map(|_| rng.below(10) as u32).collect();
    Batch::new(x, y, 784).unwrap()
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
        // Two peers' maps of the size the default task sends (about 2.7% of the coordinates).
        let peers: Vec<Vec<u32>> = (0..2)
            .map(|_| {
                let mut m: Vec<u32> = (0..params * 27 / 1000)
                    .map(|_| pack_entry(rng.below(params as u64) as u32, rng.below(2) == 0))
                    .collect();
                m.sort_unstable_by_key(|&e| e & 0x7fff_ffff);
                m
            })
            .collect();
        let peer_refs: Vec<&[u32]> = peers.iter().map(Vec::as_slice).collect();
        for rows in [32usize, 100] {
            let b = batch(&mut rng, rows);
            let opt = OptimizerSpec {
                learning_rate: 0.3,
                momentum: 0.0,
                tau: 0.01,
                batch_size: rows as u32,
                epochs: 1,
            };
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
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
