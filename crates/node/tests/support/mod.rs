//! What the node's network tests share: logs, waiting, node settings, task files.
// Each test binary uses its own part of it.
#![allow(dead_code)]

use pouw_node::{NodeConfig, NodeHandle};
use pouw_primitives::{ChainSpec, Role, TaskId};
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Test logs at `warn` (or `RUST_LOG`), once per test binary.
pub(crate) fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `ok` until it holds, failing the test after `timeout`.
pub(crate) fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Settings of test node `i` (devnet account `i`, data in `dir/n{i}`): not durable, quick
/// status polls, a 1 ms pause between iterations, bootstrapping to `boot`.
pub(crate) fn node_config(
    dir: &Path,
    i: usize,
    spec: &ChainSpec,
    roles: Vec<Role>,
    mine: bool,
    boot: &[&NodeHandle],
) -> NodeConfig {
    let mut cfg =
        NodeConfig::new(dir.join(format!("n{i}")), spec.clone(), ChainSpec::devnet_key(i));
    cfg.roles = roles;
    cfg.mine = mine;
    cfg.durable = false;
    cfg.mining_pause = Duration::from_millis(1);
    cfg.status_interval = Duration::from_millis(500);
    cfg.bootstrap = boot.iter().flat_map(|n| n.p2p_addrs()).collect();
    cfg
}

/// A client task on the shipped MNIST digits: an MLP 784-`hidden`-10.
#[derive(Debug, Clone)]
pub(crate) struct TaskShape {
    pub(crate) hidden: u32,
    pub(crate) epochs: u32,
    pub(crate) miners: u16,
    pub(crate) supervisors: u16,
    pub(crate) evaluators: u16,
    pub(crate) verifiers: u16,
    pub(crate) training_blocks: u64,
}

impl Default for TaskShape {
    /// 784-64-10, 2 epochs, 3 miners, 3 supervisors, 3 evaluators, no verifiers.
    fn default() -> Self {
        Self {
            hidden: 64,
            epochs: 2,
            miners: 3,
            supervisors: 3,
            evaluators: 3,
            verifiers: 0,
            training_blocks: 400,
        }
    }
}

/// Writes the task file of `shape` to `dir/task.toml`.
pub(crate) fn task_file(dir: &Path, shape: &TaskShape) -> PathBuf {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    let TaskShape { hidden, epochs, miners, supervisors, evaluators, verifiers, training_blocks } =
        shape;
    let text = format!(
        r#"name = "test"
[model]
input_shape = [784]
classes = 10
init = "xavier"
seed = 7
[[model.layers]]
type = "dense"
units = {hidden}
activation = "relu"
[[model.layers]]
type = "dense"
units = 10
activation = "none"
[optimizer]
learning_rate = 0.3
momentum = 0.0
tau = 0.01
batch_size = 32
epochs = {epochs}
[dataset]
format = "idx"
images = "{images}"
labels = "{labels}"
segments = 10
test_fraction = 0.3
validation_fraction = 0.0
segment_hashes = []
[workers]
miners = {miners}
supervisors = {supervisors}
evaluators = {evaluators}
verifiers = {verifiers}
max_faulty = 0
needs_gpu = false
min_stake = "10"
[payment]
fee = "100"
deadline_blocks = {training_blocks}
evaluation_blocks = 100
"#,
        images = data.join("mnist-10k-images-idx3-ubyte.gz").display(),
        labels = data.join("mnist-10k-labels-idx1-ubyte.gz").display(),
    );
    let path = dir.join("task.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Submits the task once the workers' tickets are on chain (before, it cannot be staffed).
pub(crate) fn submit_when_staffed(client: &NodeHandle, file: &Path) -> TaskId {
    let start = Instant::now();
    loop {
        match client.submit_task(file) {
            Ok(id) => return id,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(120), "task never accepted: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}
