//! The nonce budget and the PoUW overhead of the models clients train (issue 23): the CNN of
//! `tasks/mnist-cnn.toml` (with dropout), an MLP 784-1024-256-10 of about a million parameters
//! with SGD and with Adam, and the filler's 784-64-10 for comparison, all at batch 32 on the
//! shipped digits. For each: the budget `a` the chain gives a full batch, the CPU time of one
//! honest PoUW iteration (bound to a header, its IT_RES id and its `a` nonce attempts, as the
//! budget bench times it) and of a plain training step on the same batch (`sgd_step`: the
//! gradient and the optimizer's own update, no residual, map or hash), their ratio, and the
//! attempts per CPU-second the budget buys. Best of many runs on one thread, the two kinds
//! alternating so that a busy shared machine slows both alike.
//!
//! `cargo bench -p pouw-consensus --bench client_models`

use pouw_consensus::pouw::{
    filler_task, iteration_body, mine_iteration, ml_specs, ml_update_rule, nonce_budget,
    IterationCost,
};
use pouw_ml::{Exec, Model, TrainState};
use pouw_primitives::{
    Activation, AdamDef, ChainSpec, Hash, LayerDef, TaskDefinition, Uint256, UpdateRuleDef, F32,
};
use std::{hint::black_box, io::Write, path::Path};

fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Thread CPU seconds of `f`.
fn cpu<T>(f: impl FnOnce() -> T) -> f64 {
    let t = thread_cpu_s();
    black_box(f());
    thread_cpu_s() - t
}

fn mlp(spec: &ChainSpec, hidden: &[u32], adam: bool) -> TaskDefinition {
    let (_, mut task) = filler_task(spec, &Hash::digest(b"client models"));
    let mut layers: Vec<LayerDef> = hidden
        .iter()
        .map(|&units| LayerDef::Dense { units, activation: Activation::Relu })
        .collect();
    layers.push(LayerDef::Dense { units: 10, activation: Activation::None });
    task.model.layers = layers;
    if adam {
        task.optimizer.learning_rate = F32::new(0.001);
        task.optimizer.rule = UpdateRuleDef::Adam(AdamDef {
            beta1: F32::new(0.9),
            beta2: F32::new(0.999),
            epsilon: F32::new(1e-8),
            weight_decay: F32::new(0.0),
        });
    }
    task
}

fn main() {
    let spec = ChainSpec::devnet();
    let data = pouw_ml::shipped_mnist_ref();
    let key = ChainSpec::devnet_key(1);
    let header = pouw_consensus::genesis_block(&spec).unwrap().header;
    let tasks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks");
    let (cnn, _) = pouw_ml::client_task(&tasks.join("mnist-cnn.toml"), &tasks).unwrap();
    let models = [
        ("cnn (tasks/mnist-cnn.toml)", cnn),
        ("mlp 784-1024-256-10 sgd", mlp(&spec, &[1024, 256], false)),
        ("mlp 784-1024-256-10 adam", mlp(&spec, &[1024, 256], true)),
        ("filler mlp 784-64-10", mlp(&spec, &[64], false)),
    ];
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:28} {:>9} {:>5} {:>11} {:>11} {:>6} {:>12}",
        "model (batch 32)", "params", "a", "pouw us", "step us", "ratio", "attempts/s"
    )
    .unwrap();
    for (name, task) in models {
        task.validate().unwrap();
        let (model_spec, opt) = ml_specs(&task).unwrap();
        let rule = ml_update_rule(&task);
        let fresh = || TrainState::with_rule(Model::new(model_spec.clone()).unwrap(), opt, rule);
        let (mut pouw, mut plain) = (fresh().unwrap(), fresh().unwrap());
        let idx: Vec<u32> = (0..32).collect();
        let b = data.gather(&idx);
        let cost = IterationCost::of(&task, b.len() as u64, b.byte_len() as u64);
        let a = nonce_budget(&spec, &cost);
        let mut iteration = |i: u64| {
            // A new batch object each time: a miner hashes every batch it trains.
            let b = data.gather(&idx);
            let seed = Hash::digest(&i.to_le_bytes());
            cpu(|| {
                let out = pouw.iterate_bound(Exec::SINGLE, &b, &[], &seed.0).unwrap();
                let body = iteration_body(Hash::ZERO, key.public(), 0, i, &out);
                mine_iteration(
                    &header,
                    body.id(),
                    Hash(out.end_model_hash.0),
                    Hash(out.map_hash.0),
                    Hash(out.end_residual_hash.0),
                    a,
                    Uint256::ZERO,
                )
            })
        };
        let mut step = || cpu(|| plain.sgd_step(Exec::SINGLE, &b).unwrap());
        for i in 0..2 {
            iteration(i);
            step();
        }
        let (mut best_pouw, mut best_step, mut spent, mut n) = (f64::MAX, f64::MAX, 0.0, 0u64);
        while spent < 4.0 || n < 10 {
            let (p, s) = (iteration(100 + n), step());
            best_pouw = best_pouw.min(p);
            best_step = best_step.min(s);
            spent += p + s;
            n += 1;
        }
        writeln!(
            out,
            "{:28} {:>9} {:>5} {:>11.0} {:>11.0} {:>6.2} {:>12.0}",
            name,
            task.parameter_count().unwrap_or(0),
            a,
            best_pouw * 1e6,
            best_step * 1e6,
            best_pouw / best_step,
            a as f64 / best_pouw
        )
        .unwrap();
    }
}
