//! `pouw node --attack tiny-task` (hostile; design/010, attack 2): the node, as a client, pays
//! for a self-dealt task of the shape that buys the most nonces per CPU-second under the
//! chain's budget, for a GPU-only miner seat (`needs_gpu`: only an accomplice claims a GPU), and
//! so gets its accomplice a task of its own choosing to mine. The budget follows the measured
//! time of an iteration, so the best shape it can pick (784-16-10 at batch 1,000, from
//! `cargo bench -p pouw-consensus --bench budget`) should buy its nonces at about the honest
//! price; `pouw devnet --attack tiny-task` measures it.

use std::path::{Path, PathBuf};

/// The self-dealt task: the budget bench's best shape on the shipped digits, one miner.
const TINY_TASK: &str = r#"# Self-dealt by `pouw node --attack tiny-task` (hostile): the shape that buys the most
# nonces per CPU-second under the chain's budget (design/010).
name = "tiny-task"

[model]
input_shape = [784]
classes = 10
init = "xavier"
seed = 7

[[model.layers]]
type = "dense"
units = 16
activation = "relu"

[[model.layers]]
type = "dense"
units = 10
activation = "none"

[optimizer]
learning_rate = 0.1
momentum = 0.0
tau = 0.01
batch_size = 1000
epochs = 40

[dataset]
format = "idx"
images = "mnist-10k-images-idx3-ubyte.gz"
labels = "mnist-10k-labels-idx1-ubyte.gz"
segments = 10
test_fraction = 0.3
validation_fraction = 0.0
segment_hashes = []

[workers]
miners = 1
supervisors = 3
evaluators = 3
verifiers = 0
needs_gpu = true
min_stake = "10"

[payment]
fee = "1000"
deadline_blocks = 300
evaluation_blocks = 100
"#;

/// Writes the task file and the shipped digits it names under `datadir/tiny-task/`; returns
/// the task file's path.
pub(crate) fn write(datadir: &Path) -> std::io::Result<PathBuf> {
    let dir = datadir.join("tiny-task");
    pouw_ml::write_shipped_mnist(&dir)?;
    let path = dir.join("task.toml");
    std::fs::write(&path, TINY_TASK)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tiny_task_loads_and_passes_the_minimum_task_cost() {
        let dir = tempfile::tempdir().unwrap();
        let path = super::write(dir.path()).unwrap();
        let task = pouw_ml::load_client_task(&path, path.parent().unwrap()).unwrap();
        let spec = pouw_primitives::ChainSpec::devnet();
        pouw_consensus::check_pay_for_task(&task.definition, task.fee, &spec).unwrap();
        let a = pouw_consensus::pouw::task_nonce_budget(&spec, &task.definition);
        assert!(a >= spec.min_task_nonces, "{a}");
        assert!(task.definition.preferences.needs_gpu);
    }
}
