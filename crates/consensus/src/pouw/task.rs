//! From the on-chain task definition to the ML engine's specs, and the filler tasks every node
//! derives from the chain (SPEC section 3 step 5, design 003).

use super::PouwError;
use pouw_ml::{Init, LayerSpec, ModelSpec, OptimizerSpec};
use pouw_primitives::{
    Activation, ChainSpec, DatasetDef, DatasetFormat, Deadlines, Hash, Initializer, LayerDef,
    ModelDef, OptimizerDef, TaskDefinition, TaskId, TaskPreferences, UpdateRuleDef, WorkersWanted,
    DATASET_SEGMENTS, F32,
};
use std::sync::OnceLock;

/// Hidden width of the filler MLP (784-64-10: about 51,000 parameters).
pub const FILLER_HIDDEN: u32 = 64;
/// Batch size of filler tasks.
pub const FILLER_BATCH: u32 = 32;
/// Learning rate of filler tasks.
pub const FILLER_LEARNING_RATE: f32 = 0.3;
/// Threshold tau of filler tasks.
pub const FILLER_TAU: f32 = 0.01;
/// Epoch count of filler tasks (a bound only: a filler model trains until its filler epoch
/// ends).
pub const FILLER_EPOCHS: u32 = 10_000;

fn activation(a: Activation) -> pouw_ml::Activation {
    match a {
        Activation::Relu => pouw_ml::Activation::Relu,
        Activation::Tanh => pouw_ml::Activation::Tanh,
        Activation::Sigmoid => pouw_ml::Activation::Sigmoid,
        Activation::None => pouw_ml::Activation::None,
    }
}

/// The ML engine's model and optimizer specs of a task (the names mirror each other). Fails
/// on a definition that does not validate or that the engine cannot lay out.
pub fn ml_specs(task: &TaskDefinition) -> Result<(ModelSpec, OptimizerSpec), PouwError> {
    task.validate()?;
    let m = &task.model;
    let model = ModelSpec {
        input_shape: m.input_shape.clone(),
        layers: m
            .layers
            .iter()
            .map(|l| match l {
                LayerDef::Dense { units, activation: a } => {
                    LayerSpec::Dense { units: *units, activation: activation(*a) }
                }
                LayerDef::Conv2d { filters, kernel, stride, padding, activation: a } => {
                    LayerSpec::Conv2d {
                        filters: *filters,
                        kernel: *kernel,
                        stride: *stride,
                        padding: *padding,
                        activation: activation(*a),
                    }
                }
                LayerDef::MaxPool2d { size, stride } => {
                    LayerSpec::MaxPool2d { size: *size, stride: Some(*stride) }
                }
                LayerDef::Flatten => LayerSpec::Flatten,
                LayerDef::Dropout { p } => LayerSpec::Dropout { p: *p },
            })
            .collect(),
        classes: m.classes,
        // Start weights replace the initialiser; the engine's spec only lays the model out.
        init: match m.init {
            Initializer::Xavier | Initializer::Weights(_) => Init::Xavier,
            Initializer::He => Init::He,
        },
        seed: m.seed,
    };
    model.layout().map_err(|e| PouwError::InvalidTask(e.to_string()))?;
    let o = &task.optimizer;
    let optimizer = OptimizerSpec {
        learning_rate: o.learning_rate.get(),
        momentum: o.momentum.get(),
        tau: o.tau.get(),
        batch_size: o.batch_size,
        epochs: o.epochs,
    };
    optimizer.validate().map_err(|e| PouwError::InvalidTask(e.to_string()))?;
    Ok((model, optimizer))
}

/// The engine's local update rule of a task (SGD with its momentum, Adam or AdamW;
/// design/018): what sizes the optimizer state beside the residual
/// ([`pouw_ml::UpdateRule::state_len`]) and what every fresh or replayed `TrainState` of the
/// task must run with.
pub fn ml_update_rule(task: &TaskDefinition) -> pouw_ml::UpdateRule {
    pouw_ml::update_rule_of(&task.optimizer.rule)
}

/// The filler epoch of a block height: `height / spec.filler_epoch_blocks`.
pub fn filler_epoch(spec: &ChainSpec, height: u64) -> u64 {
    height.checked_div(spec.filler_epoch_blocks).unwrap_or(0)
}

/// Height of the block that opens filler epoch `epoch` (`epoch * filler_epoch_blocks`); its
/// hash seeds the filler task of the epoch. `None` on overflow.
pub fn filler_epoch_opening_height(spec: &ChainSpec, epoch: u64) -> Option<u64> {
    epoch.checked_mul(spec.filler_epoch_blocks)
}

/// The task id of the filler task opened by the block with hash `opening_block_hash`.
pub fn filler_task_id(opening_block_hash: &Hash) -> TaskId {
    Hash::tagged("pouw/filler-task", opening_block_hash.as_bytes())
}

/// Segment hashes of the shipped MNIST subset (computed once per process).
pub fn shipped_segment_hashes() -> &'static [Hash] {
    static HASHES: OnceLock<Vec<Hash>> = OnceLock::new();
    HASHES.get_or_init(|| {
        let data = pouw_ml::shipped_mnist_ref();
        data.segments(DATASET_SEGMENTS)
            .map(|segs| segs.iter().map(|s| Hash(data.segment_hash(s).0)).collect())
            .unwrap_or_default()
    })
}

/// The filler task opened by the block with hash `opening_block_hash`: deterministic, the
/// model seed from the block hash, the shipped MNIST subset, a 784-64-10 ReLU MLP, batch 32,
/// tau 0.01, learning rate 0.3, no momentum. Any miner may mine it.
pub fn filler_task(spec: &ChainSpec, opening_block_hash: &Hash) -> (TaskId, TaskDefinition) {
    let seed_hash = Hash::tagged("pouw/filler-seed", opening_block_hash.as_bytes());
    let mut seed = [0u8; 8];
    seed.copy_from_slice(seed_hash.as_bytes().get(..8).unwrap_or(&[0; 8]));
    let data = pouw_ml::shipped_mnist_ref();
    let width = u32::try_from(data.width()).unwrap_or(u32::MAX);
    let task = TaskDefinition {
        model: ModelDef {
            input_shape: vec![width],
            layers: vec![
                LayerDef::Dense { units: FILLER_HIDDEN, activation: Activation::Relu },
                LayerDef::Dense {
                    units: pouw_ml::SHIPPED_MNIST_CLASSES,
                    activation: Activation::None,
                },
            ],
            classes: pouw_ml::SHIPPED_MNIST_CLASSES,
            init: Initializer::Xavier,
            seed: u64::from_le_bytes(seed),
        },
        optimizer: OptimizerDef {
            learning_rate: F32::new(FILLER_LEARNING_RATE),
            momentum: F32::new(0.0),
            tau: F32::new(FILLER_TAU),
            batch_size: FILLER_BATCH,
            epochs: FILLER_EPOCHS,
            rule: UpdateRuleDef::Sgd,
        },
        dataset: DatasetDef {
            format: DatasetFormat::Idx,
            samples: u64::try_from(data.len()).unwrap_or(u64::MAX),
            segment_hashes: shipped_segment_hashes().to_vec(),
            test_permille: 300,
            validation_permille: 0,
        },
        workers: WorkersWanted {
            miners: u16::MAX,
            supervisors: 1,
            evaluators: 1,
            verifiers: 0,
            max_faulty: 0,
        },
        preferences: TaskPreferences::default(),
        deadlines: Deadlines { training_blocks: spec.filler_epoch_blocks, evaluation_blocks: 1 },
    };
    (filler_task_id(opening_block_hash), task)
}
