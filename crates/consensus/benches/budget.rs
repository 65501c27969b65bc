//! The nonce budget against the real cost of an iteration (design/010, attack 2): for a grid of
//! task shapes (784-H-10 MLPs at batch B on the shipped digits), the CPU time of one honest PoUW
//! iteration (bound to a header, its IT_RES id and its nonce attempts) on one thread, the
//! budget `a` the chain gives it, and the attempts per CPU-second that buys. A shape whose rate
//! is well above the shipped tasks' is one a self-dealing client would pick (`--attack
//! tiny-task`). Prints a table; `cargo bench -p pouw-consensus --bench budget`.

use pouw_consensus::pouw::{iteration_body, mine_iteration, nonce_budget, IterationCost};
use pouw_ml::{Activation, Exec, Model, ModelSpec, OptimizerSpec, TrainState};
use pouw_primitives::{ChainSpec, Hash, Uint256};
use std::{hint::black_box, io::Write};

fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let spec = ChainSpec::devnet();
    let data = pouw_ml::shipped_mnist_ref();
    let key = ChainSpec::devnet_key(1);
    let header = pouw_consensus::genesis_block(&spec).unwrap().header;
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:>8} {:>6} {:>9} {:>10} {:>12} {:>5} {:>10} {:>12}",
        "hidden", "batch", "params", "bytes", "flops", "a", "us/iter", "attempts/s"
    )
    .unwrap();
    for &hidden in &[8u32, 16, 31, 32, 64, 128, 256, 512] {
        for &batch in &[16usize, 32, 64, 128, 256, 512, 1000] {
            let name = format!("{hidden}x{batch}");
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            let model =
                Model::new(ModelSpec::mlp(784, &[hidden], 10, Activation::Relu, 1)).unwrap();
            let params = model.param_count() as u64;
            let opt = OptimizerSpec {
                learning_rate: 0.1,
                momentum: 0.0,
                tau: 0.01,
                batch_size: batch as u32,
                epochs: 1,
            };
            let mut state = TrainState::new(model, opt).unwrap();
            let idx: Vec<u32> = (0..batch as u32).collect();
            let b = data.gather(&idx);
            let bytes = b.byte_len() as u64;
            let flops = 4 * batch as u64 * (784 * u64::from(hidden) + u64::from(hidden) * 10);
            let a = nonce_budget(&spec, &IterationCost { batch_bytes: bytes, params, flops });
            let mut run = |i: u64| {
                let seed = Hash::digest(&i.to_le_bytes());
                let out = state.iterate_bound(Exec::SINGLE, &b, &[], &seed.0).unwrap();
                let body = iteration_body(Hash::ZERO, key.public(), 0, i, &out);
                black_box(mine_iteration(
                    &header,
                    body.id(),
                    Hash(out.end_model_hash.0),
                    Hash(out.map_hash.0),
                    Hash(out.end_residual_hash.0),
                    a,
                    Uint256::ZERO,
                ));
            };
            for i in 0..3 {
                run(i);
            }
            let (t0, mut n) = (thread_cpu_s(), 0u64);
            while thread_cpu_s() - t0 < 0.4 || n < 5 {
                run(100 + n);
                n += 1;
            }
            let per = (thread_cpu_s() - t0) / n as f64;
            writeln!(
                out,
                "{:>8} {:>6} {:>9} {:>10} {:>12} {:>5} {:>10.1} {:>12.0}",
                hidden,
                batch,
                params,
                bytes,
                flops,
                a,
                per * 1e6,
                a as f64 / per
            )
            .unwrap();
        }
    }
}
