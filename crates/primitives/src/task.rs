//! The on-chain task definition (SPEC section 3): what a client pays to have trained.
//!
//! Hyper-parameters are ML floats, not money; they are stored as IEEE-754 bit patterns
//! ([`F32`]) so that every value, including the ones validation must reject, has exactly one
//! encoding.

use crate::{Amount, Hash};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Number of dataset segments every task is split into.
pub const DATASET_SEGMENTS: usize = 10;

/// A task id: the hash of the PayForTask transaction that registered it.
pub type TaskId = Hash;

/// An `f32` hyper-parameter stored as its bit pattern.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, BorshSerialize, BorshDeserialize)]
pub struct F32(pub u32);

impl F32 {
    /// From a float.
    pub fn new(v: f32) -> Self {
        Self(v.to_bits())
    }
    /// The float.
    pub fn get(self) -> f32 {
        f32::from_bits(self.0)
    }
}

impl std::fmt::Debug for F32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl Serialize for F32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f32(self.get())
    }
}

impl<'de> Deserialize<'de> for F32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <f32 as Deserialize>::deserialize(d).map(Self::new)
    }
}

/// Activation after a layer.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(0, x)
    Relu,
    /// tanh(x)
    Tanh,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// identity
    None,
}

/// One layer of the model. Borsh encodes the variant index first: new kinds are appended, so
/// every existing encoding keeps its bytes (dense = 0, conv2d = 1, maxpool2d = 2, flatten = 3,
/// dropout = 4).
/// Image layers see a sample as `[C, H, W]` (`input_shape` `[H, W]` is one channel).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum LayerDef {
    /// A fully connected layer (flattens its input).
    Dense {
        /// Output width.
        units: u32,
        /// Activation applied to the output.
        activation: Activation,
    },
    /// A 2-D convolution with square kernels and zero padding.
    Conv2d {
        /// Output channels.
        filters: u32,
        /// Kernel side.
        kernel: u32,
        /// Stride.
        stride: u32,
        /// Zero padding on each side (below `kernel`).
        padding: u32,
        /// Activation applied to the output.
        activation: Activation,
    },
    /// Max pooling over `size × size` windows moved by `stride`.
    MaxPool2d {
        /// Window side.
        size: u32,
        /// Stride.
        stride: u32,
    },
    /// Flattens `[C, H, W]` to `[C·H·W]`.
    Flatten,
    /// Inverted dropout while training (each value zeroed with probability `p`, the others
    /// scaled by `1 / (1 - p)`; the mask drawn from the iteration's seed), identity when
    /// evaluating. Keeps the shape.
    Dropout {
        /// Probability of zeroing a value, in `[0, 1)`.
        p: F32,
    },
}

/// What the shapes of a model give: its parameter count and the multiply-accumulates of one
/// sample's forward pass (the products of dense and conv2d layers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelCost {
    /// Trainable parameters.
    pub params: u64,
    /// Multiply-accumulates of one forward pass of one sample.
    pub forward_macs: u64,
    /// The most values a convolution, pooling or dropout layer holds per sample: its input,
    /// its output or a convolution's im2col matrix (0 for a model of dense layers only).
    pub peak_values: u64,
}

/// Weight initialiser. Borsh encodes the variant index first (xavier = 0, he = 1,
/// weights = 2 followed by the 32-byte hash): new kinds are appended, so every existing
/// definition keeps its bytes and its hash.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Initializer {
    /// Xavier/Glorot.
    Xavier,
    /// He/Kaiming.
    He,
    /// The client's own starting weights: a safetensors file (as the model export writes
    /// it) named by the BLAKE3 hash of its exact bytes ([`Hash::digest`]). The client serves
    /// the file to the task's miners and supervisors with the dataset segments; each checks
    /// it against this hash and against the model's shapes before training from it
    /// (design/021). `seed` is then unused.
    Weights(Hash),
}

impl Initializer {
    /// The hash of the start weights, for [`Initializer::Weights`].
    pub fn start_weights(&self) -> Option<Hash> {
        match self {
            Self::Weights(h) => Some(*h),
            Self::Xavier | Self::He => None,
        }
    }
}

/// The model to train.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ModelDef {
    /// Shape of one input sample (e.g. `[784]` or `[28, 28]`).
    pub input_shape: Vec<u32>,
    /// Hidden and output layers in order; the last one has `classes` units.
    pub layers: Vec<LayerDef>,
    /// Number of classes.
    pub classes: u32,
    /// Initialiser.
    pub init: Initializer,
    /// Initialiser seed (unused with [`Initializer::Weights`]).
    pub seed: u64,
}

/// Optimiser and PoUW training parameters.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct OptimizerDef {
    /// Learning rate (SGD's step, or Adam's).
    pub learning_rate: F32,
    /// SGD momentum (0 with Adam and AdamW, whose `beta1` is the momentum).
    pub momentum: F32,
    /// The update threshold tau of the message map.
    pub tau: F32,
    /// Mini-batch size.
    pub batch_size: u32,
    /// Epochs over the training segments.
    pub epochs: u32,
    /// The local update rule fed with the emitted deltas (design/018). In JSON its fields sit
    /// beside the others, as in the task file: `"kind": "adam", "beta1": 0.9, ...`.
    #[serde(flatten)]
    pub rule: UpdateRuleDef,
}

/// The local update rule of a task (design/018). Borsh encodes the variant index first (sgd = 0,
/// adam = 1, adamw = 2), then Adam's four parameters as `f32` bit patterns.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum UpdateRuleDef {
    /// SGD with the optimizer's momentum.
    #[default]
    Sgd,
    /// Adam.
    Adam(AdamDef),
    /// AdamW: Adam with decoupled weight decay.
    AdamW(AdamDef),
}

impl UpdateRuleDef {
    /// Adam's parameters, for Adam and AdamW.
    pub fn adam(&self) -> Option<&AdamDef> {
        match self {
            Self::Sgd => None,
            Self::Adam(a) | Self::AdamW(a) => Some(a),
        }
    }
}

/// Adam's hyper-parameters (PyTorch's names), as `f32` bit patterns.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct AdamDef {
    /// Decay of the first moment, in `[0, 1)`.
    pub beta1: F32,
    /// Decay of the second moment, in `[0, 1)`.
    pub beta2: F32,
    /// Added to the root of the corrected second moment: finite and > 0.
    pub epsilon: F32,
    /// Decoupled weight decay: AdamW finite and >= 0 with `learning_rate * weight_decay` below
    /// 1 (the decay never flips a weight's sign); Adam 0.
    pub weight_decay: F32,
}

/// Dataset file format.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    /// IDX (MNIST-style) image and label files.
    Idx,
    /// CSV with a label column.
    Csv,
}

/// The dataset, identified by the hashes of its segments (the data itself never goes on chain).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DatasetDef {
    /// File format.
    pub format: DatasetFormat,
    /// Total number of samples.
    pub samples: u64,
    /// The hashes of the [`DATASET_SEGMENTS`] segments, in the client's order.
    pub segment_hashes: Vec<Hash>,
    /// Test fraction in per-mille (300 = 30 %); the network picks which segments.
    pub test_permille: u16,
    /// Validation fraction in per-mille of the training data.
    pub validation_permille: u16,
}

impl DatasetDef {
    /// Number of segments in the test set: `round(test_permille * 10 / 1000)` (half up, in
    /// integers), the last ones of the shuffled segment list.
    pub fn test_segments(&self) -> u64 {
        permille_of_segments(self.test_permille)
    }

    /// Number of segments in the validation set (`round(validation_permille * 10 / 1000)`),
    /// taken just before the test segments.
    pub fn validation_segments(&self) -> u64 {
        permille_of_segments(self.validation_permille)
    }

    /// Number of training segments (`10 - test - validation`; 0 if the fractions leave none).
    pub fn train_segments(&self) -> u64 {
        (DATASET_SEGMENTS as u64)
            .saturating_sub(self.test_segments())
            .saturating_sub(self.validation_segments())
    }

    /// Samples per segment (`samples / 10`, remainder dropped as the engine does).
    pub fn segment_samples(&self) -> u64 {
        self.samples / DATASET_SEGMENTS as u64
    }

    /// Samples the miners train on: samples per segment times training segments.
    pub fn train_samples(&self) -> u64 {
        self.segment_samples().saturating_mul(self.train_segments())
    }
}

fn permille_of_segments(permille: u16) -> u64 {
    (u64::from(permille) * DATASET_SEGMENTS as u64 + 500) / 1000
}

/// How many workers of each role the task wants, and how many faults it must tolerate.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct WorkersWanted {
    /// Miners.
    pub miners: u16,
    /// Supervisors.
    pub supervisors: u16,
    /// Evaluators.
    pub evaluators: u16,
    /// Verifiers attesting the task's blocks (0: the blocks get the per-block verifier draw
    /// of design/006 instead). At most [`limits::MAX_VERIFIERS`]; when non-zero, at least
    /// `2 * max_faulty + 1` so that a strict majority of them is honest.
    #[serde(default)]
    pub verifiers: u16,
    /// Byzantine faults the supervisor and evaluator committees must tolerate (n >= 3f + 1).
    pub max_faulty: u16,
}

/// What a worker's machine must offer.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct TaskPreferences {
    /// Workers must have a GPU.
    pub needs_gpu: bool,
    /// Minimum stake per worker ticket.
    pub min_stake: Amount,
}

/// Deadlines, in blocks after the block holding the task.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Deadlines {
    /// Training must finish (SubmitModel) within this many blocks.
    pub training_blocks: u64,
    /// Evaluation (ChargeForTask) must finish this many blocks after training.
    pub evaluation_blocks: u64,
}

/// A complete task definition, as carried by a PayForTask transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TaskDefinition {
    /// Model.
    pub model: ModelDef,
    /// Optimiser.
    pub optimizer: OptimizerDef,
    /// Dataset.
    pub dataset: DatasetDef,
    /// Workers wanted.
    pub workers: WorkersWanted,
    /// Worker preferences.
    pub preferences: TaskPreferences,
    /// Deadlines.
    pub deadlines: Deadlines,
}

/// Why a task definition is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskDefError {
    /// A field is out of its allowed range.
    #[error("task field `{field}` is invalid: {reason}")]
    Field {
        /// Field path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The mini-batch is larger than the training set.
    #[error(
        "task field `optimizer.batch_size` is invalid: batch of {batch} samples is larger than \
         the {train_samples} training samples of the dataset"
    )]
    BatchLargerThanTrainingSet {
        /// The batch size.
        batch: u32,
        /// Training samples (samples per segment x training segments).
        train_samples: u64,
    },
    /// Adam or AdamW with a non-zero SGD momentum (Adam's momentum is `beta1`).
    #[error(
        "task field `optimizer.momentum` is invalid: {momentum:?} with kind {kind}; it must be 0 \
         (beta1 is Adam's momentum)"
    )]
    MomentumWithAdam {
        /// `adam` or `adamw`.
        kind: &'static str,
        /// The momentum given.
        momentum: F32,
    },
    /// A supervisor or evaluator committee cannot tolerate the declared faults.
    #[error(
        "task field `{field}` is invalid: {n} cannot tolerate {max_faulty} faults (needs n >= 3f + 1)"
    )]
    CommitteeTooSmall {
        /// `workers.supervisors` or `workers.evaluators`.
        field: &'static str,
        /// The committee size.
        n: u16,
        /// `workers.max_faulty`.
        max_faulty: u16,
    },
}

/// Limits on task definitions, to keep every task trainable and verifiable.
pub mod limits {
    /// At most this many layers.
    pub const MAX_LAYERS: usize = 16;
    /// At most this many units per layer.
    pub const MAX_UNITS: u32 = 8192;
    /// At most this many parameters in the model (fits the 31-bit map index).
    pub const MAX_PARAMS: u64 = 1 << 26;
    /// Largest batch.
    pub const MAX_BATCH: u32 = 4096;
    /// Most epochs.
    pub const MAX_EPOCHS: u32 = 10_000;
    /// Most verifiers a task may select.
    pub const MAX_VERIFIERS: u16 = 64;
    /// Largest convolution kernel or pooling window side, stride and padding.
    pub const MAX_KERNEL: u32 = 32;
    /// Most values one layer may output per sample (and, for convolution and pooling layers,
    /// take as input or hold as an im2col matrix).
    pub const MAX_ACTIVATIONS: u64 = 1 << 22;
    /// Most values a convolution or pooling layer may hold for a whole batch (1 GiB of `f32`):
    /// `batch_size × ModelCost::peak_values`.
    pub const MAX_BATCH_VALUES: u64 = 1 << 28;
}

impl TaskDefinition {
    /// Number of trainable parameters (dense: in*out + out per layer; conv2d:
    /// filters*C*k*k + filters); `None` on overflow or a layer that does not fit its input.
    pub fn parameter_count(&self) -> Option<u64> {
        self.model_cost().ok().map(|c| c.params)
    }

    /// Parameters and forward multiply-accumulates per sample, walking the layer shapes; an
    /// error names the first layer that does not fit its input or a limit it breaks.
    pub fn model_cost(&self) -> Result<ModelCost, TaskDefError> {
        fn bad(reason: impl Into<String>) -> TaskDefError {
            TaskDefError::Field { field: "model.layers", reason: reason.into() }
        }
        let overflow = || bad("sizes overflow");
        let dims: Vec<u64> = self.model.input_shape.iter().map(|&d| u64::from(d)).collect();
        let mut shape: Vec<u64> = match dims.as_slice() {
            [h, w] => vec![1, *h, *w],
            [c, h, w] => vec![*c, *h, *w],
            _ => vec![dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(overflow)?],
        };
        let mut params: u64 = 0;
        let mut macs: u64 = 0;
        let mut peak: u64 = 0;
        for (i, layer) in self.model.layers.iter().enumerate() {
            let flat =
                shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(overflow)?;
            let image = |shape: &[u64]| match *shape {
                [c, h, w] => Ok((c, h, w)),
                _ => Err(bad(format!("layer {i} needs a [C, H, W] input"))),
            };
            match *layer {
                LayerDef::Dense { units, .. } => {
                    let units = u64::from(units);
                    let w = flat.checked_mul(units).ok_or_else(overflow)?;
                    params = params
                        .checked_add(w)
                        .and_then(|p| p.checked_add(units))
                        .ok_or_else(overflow)?;
                    macs = macs.checked_add(w).ok_or_else(overflow)?;
                    shape = vec![units];
                }
                LayerDef::Conv2d { filters, kernel, stride, padding, .. } => {
                    let (c, h, w) = image(&shape)?;
                    if filters == 0 || filters > limits::MAX_UNITS {
                        return Err(bad(format!(
                            "layer {i}: filters need 1..={}",
                            limits::MAX_UNITS
                        )));
                    }
                    if kernel == 0
                        || kernel > limits::MAX_KERNEL
                        || stride == 0
                        || stride > limits::MAX_KERNEL
                    {
                        return Err(bad(format!(
                            "layer {i}: kernel and stride need 1..={}",
                            limits::MAX_KERNEL
                        )));
                    }
                    if padding >= kernel {
                        return Err(bad(format!("layer {i}: padding must be below the kernel")));
                    }
                    let (k, s, p) = (u64::from(kernel), u64::from(stride), u64::from(padding));
                    let out = |n: u64| {
                        let padded = n.checked_add(2 * p).ok_or_else(overflow)?;
                        padded.checked_sub(k).map(|r| r / s + 1).ok_or_else(|| {
                            bad(format!("layer {i}: kernel larger than its padded input"))
                        })
                    };
                    let (oh, ow) = (out(h)?, out(w)?);
                    let f = u64::from(filters);
                    let patch = c.checked_mul(k * k).ok_or_else(overflow)?;
                    let weights = patch.checked_mul(f).ok_or_else(overflow)?;
                    params = params
                        .checked_add(weights)
                        .and_then(|q| q.checked_add(f))
                        .ok_or_else(overflow)?;
                    let positions = oh.checked_mul(ow).ok_or_else(overflow)?;
                    let cols = positions.checked_mul(patch).ok_or_else(overflow)?;
                    if flat.max(cols) > limits::MAX_ACTIVATIONS {
                        return Err(bad(format!(
                            "layer {i}: input or im2col of more than {} values per sample",
                            limits::MAX_ACTIVATIONS
                        )));
                    }
                    peak = peak.max(flat).max(cols);
                    macs = positions
                        .checked_mul(weights)
                        .and_then(|m| m.checked_add(macs))
                        .ok_or_else(overflow)?;
                    shape = vec![f, oh, ow];
                }
                LayerDef::MaxPool2d { size, stride } => {
                    let (c, h, w) = image(&shape)?;
                    if size == 0
                        || size > limits::MAX_KERNEL
                        || stride == 0
                        || stride > limits::MAX_KERNEL
                    {
                        return Err(bad(format!(
                            "layer {i}: size and stride need 1..={}",
                            limits::MAX_KERNEL
                        )));
                    }
                    let size = u64::from(size);
                    if size > h || size > w {
                        return Err(bad(format!("layer {i}: window larger than its input")));
                    }
                    if flat > limits::MAX_ACTIVATIONS {
                        return Err(bad(format!(
                            "layer {i}: input of more than {} values per sample",
                            limits::MAX_ACTIVATIONS
                        )));
                    }
                    peak = peak.max(flat);
                    let s = u64::from(stride);
                    shape = vec![c, (h - size) / s + 1, (w - size) / s + 1];
                }
                LayerDef::Flatten => shape = vec![flat],
                LayerDef::Dropout { p } => {
                    if !(0.0..1.0).contains(&p.get()) {
                        return Err(bad(format!("layer {i}: dropout p must be in [0, 1)")));
                    }
                }
            }
            let values =
                shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(overflow)?;
            if values > limits::MAX_ACTIVATIONS {
                return Err(bad(format!(
                    "layer {i}: more than {} outputs per sample",
                    limits::MAX_ACTIVATIONS
                )));
            }
            // Dropout holds its values, a copy and a mask per value while training.
            if !matches!(layer, LayerDef::Dense { .. } | LayerDef::Flatten) {
                peak = peak.max(values);
            }
        }
        Ok(ModelCost { params, forward_macs: macs, peak_values: peak })
    }

    /// Checks every field's range (stateless rules).
    pub fn validate(&self) -> Result<(), TaskDefError> {
        fn bad(field: &'static str, reason: impl Into<String>) -> TaskDefError {
            TaskDefError::Field { field, reason: reason.into() }
        }
        let m = &self.model;
        if m.input_shape.is_empty() || m.input_shape.contains(&0) {
            return Err(bad("model.input_shape", "must be non-empty with positive dimensions"));
        }
        if m.layers.is_empty() || m.layers.len() > limits::MAX_LAYERS {
            return Err(bad("model.layers", format!("need 1..={} layers", limits::MAX_LAYERS)));
        }
        for layer in &m.layers {
            if let LayerDef::Dense { units, .. } = layer {
                if *units == 0 || *units > limits::MAX_UNITS {
                    let reason = format!("need 1..={}", limits::MAX_UNITS);
                    return Err(bad("model.layers.units", reason));
                }
            }
        }
        match m.layers.last() {
            Some(LayerDef::Dense { units, .. }) if *units == m.classes && m.classes >= 2 => {}
            _ => {
                return Err(bad("model.classes", "the last layer must have `classes` (>= 2) units"))
            }
        }
        let peak_values = match self.model_cost() {
            Ok(c) if c.params <= limits::MAX_PARAMS => c.peak_values,
            Err(e @ TaskDefError::Field { field: "model.layers", .. }) => return Err(e),
            _ => return Err(bad("model", format!("more than {} parameters", limits::MAX_PARAMS))),
        };
        let o = &self.optimizer;
        let positive = |v: F32| v.get().is_finite() && v.get() > 0.0;
        if !positive(o.learning_rate) {
            return Err(bad("optimizer.learning_rate", "must be a positive finite number"));
        }
        if !(o.momentum.get().is_finite() && (0.0..1.0).contains(&o.momentum.get())) {
            return Err(bad("optimizer.momentum", "must be in [0, 1)"));
        }
        if !positive(o.tau) {
            return Err(bad("optimizer.tau", "must be a positive finite number"));
        }
        if let Some(a) = o.rule.adam() {
            let kind = if matches!(o.rule, UpdateRuleDef::AdamW(_)) { "adamw" } else { "adam" };
            if o.momentum.get() != 0.0 {
                return Err(TaskDefError::MomentumWithAdam { kind, momentum: o.momentum });
            }
            let unit = |v: F32| (0.0..1.0).contains(&v.get());
            if !unit(a.beta1) {
                return Err(bad("optimizer.beta1", "must be in [0, 1)"));
            }
            if !unit(a.beta2) {
                return Err(bad("optimizer.beta2", "must be in [0, 1)"));
            }
            if !positive(a.epsilon) {
                return Err(bad("optimizer.epsilon", "must be a positive finite number"));
            }
            let wd = a.weight_decay.get();
            if !(wd.is_finite() && wd >= 0.0) {
                return Err(bad("optimizer.weight_decay", "must be a finite number >= 0"));
            }
            if matches!(o.rule, UpdateRuleDef::Adam(_)) && wd != 0.0 {
                return Err(bad(
                    "optimizer.weight_decay",
                    "must be 0 with adam (decay is adamw's)",
                ));
            }
            if wd * o.learning_rate.get() >= 1.0 {
                return Err(bad(
                    "optimizer.weight_decay",
                    "learning_rate * weight_decay must be below 1",
                ));
            }
        }
        if o.batch_size == 0 || o.batch_size > limits::MAX_BATCH {
            return Err(bad("optimizer.batch_size", format!("need 1..={}", limits::MAX_BATCH)));
        }
        if peak_values.saturating_mul(u64::from(o.batch_size)) > limits::MAX_BATCH_VALUES {
            return Err(bad(
                "optimizer.batch_size",
                format!(
                    "a convolution or pooling layer would hold more than {} values for the batch",
                    limits::MAX_BATCH_VALUES
                ),
            ));
        }
        if o.epochs == 0 || o.epochs > limits::MAX_EPOCHS {
            return Err(bad("optimizer.epochs", format!("need 1..={}", limits::MAX_EPOCHS)));
        }
        let d = &self.dataset;
        if d.segment_hashes.len() != DATASET_SEGMENTS {
            return Err(bad("dataset.segment_hashes", format!("need {DATASET_SEGMENTS} hashes")));
        }
        if d.samples < DATASET_SEGMENTS as u64 {
            return Err(bad("dataset.samples", "fewer samples than segments"));
        }
        if d.test_permille == 0 || d.test_permille >= 1000 {
            return Err(bad("dataset.test_permille", "must be in 1..=999"));
        }
        if d.validation_permille >= 1000 {
            return Err(bad("dataset.validation_permille", "must be below 1000"));
        }
        if d.test_segments() == 0 {
            return Err(bad("dataset.test_permille", "leaves no test segment out of 10"));
        }
        if d.train_segments() == 0 {
            return Err(bad(
                "dataset.test_permille",
                "test and validation leave no training segment",
            ));
        }
        if u64::from(o.batch_size) > d.train_samples() {
            return Err(TaskDefError::BatchLargerThanTrainingSet {
                batch: o.batch_size,
                train_samples: d.train_samples(),
            });
        }
        let w = &self.workers;
        if w.miners == 0 {
            return Err(bad("workers.miners", "need at least one miner"));
        }
        let needed = w.max_faulty.checked_mul(3).and_then(|v| v.checked_add(1));
        for (field, n) in
            [("workers.supervisors", w.supervisors), ("workers.evaluators", w.evaluators)]
        {
            match needed {
                Some(needed) if n >= needed => {}
                _ => {
                    return Err(TaskDefError::CommitteeTooSmall {
                        field,
                        n,
                        max_faulty: w.max_faulty,
                    })
                }
            }
        }
        if w.verifiers > limits::MAX_VERIFIERS {
            return Err(bad("workers.verifiers", format!("need 0..={}", limits::MAX_VERIFIERS)));
        }
        let honest_majority = w.max_faulty.checked_mul(2).and_then(|v| v.checked_add(1));
        if w.verifiers != 0 && honest_majority.is_none_or(|needed| w.verifiers < needed) {
            return Err(bad(
                "workers.verifiers",
                format!(
                    "{} cannot outvote {} faults (needs 0 or at least 2f + 1)",
                    w.verifiers, w.max_faulty
                ),
            ));
        }
        if self.deadlines.training_blocks == 0 || self.deadlines.evaluation_blocks == 0 {
            return Err(bad("deadlines", "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cnn() -> TaskDefinition {
        let mut t = crate::test_utils::valid_task(1);
        t.model.input_shape = vec![1, 28, 28];
        t.model.classes = 10;
        t.model.layers = vec![
            LayerDef::Conv2d {
                filters: 8,
                kernel: 3,
                stride: 1,
                padding: 0,
                activation: Activation::Relu,
            },
            LayerDef::MaxPool2d { size: 2, stride: 2 },
            LayerDef::Conv2d {
                filters: 16,
                kernel: 3,
                stride: 1,
                padding: 0,
                activation: Activation::Relu,
            },
            LayerDef::MaxPool2d { size: 2, stride: 2 },
            LayerDef::Flatten,
            LayerDef::Dense { units: 10, activation: Activation::None },
        ];
        t
    }

    #[test]
    fn new_layer_kinds_append_codes_and_keep_dense_bytes() {
        let dense = LayerDef::Dense { units: 7, activation: Activation::Tanh };
        assert_eq!(borsh::to_vec(&dense).unwrap(), [0, 7, 0, 0, 0, 1]);
        let conv = LayerDef::Conv2d {
            filters: 2,
            kernel: 3,
            stride: 1,
            padding: 1,
            activation: Activation::Relu,
        };
        assert_eq!(
            borsh::to_vec(&conv).unwrap(),
            [1, 2, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]
        );
        let pool = LayerDef::MaxPool2d { size: 2, stride: 2 };
        assert_eq!(borsh::to_vec(&pool).unwrap(), [2, 2, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(borsh::to_vec(&LayerDef::Flatten).unwrap(), [3]);
        let dropout = LayerDef::Dropout { p: F32::new(0.25) };
        assert_eq!(borsh::to_vec(&dropout).unwrap(), [4, 0, 0, 0x80, 0x3e]);
        let json = serde_json::to_string(&dropout).unwrap();
        assert_eq!(json, r#"{"type":"dropout","p":0.25}"#);
        let toml = serde_json::to_string(&pool).unwrap();
        assert_eq!(toml, r#"{"type":"maxpool2d","size":2,"stride":2}"#);
    }

    #[test]
    fn start_weights_append_an_initialiser_and_keep_the_named_ones_bytes() {
        assert_eq!(borsh::to_vec(&Initializer::Xavier).unwrap(), [0]);
        assert_eq!(borsh::to_vec(&Initializer::He).unwrap(), [1]);
        let h = Hash::digest(b"start.safetensors");
        let weights = Initializer::Weights(h);
        let bytes = borsh::to_vec(&weights).unwrap();
        assert_eq!(bytes.len(), 33);
        assert_eq!(bytes.first(), Some(&2));
        assert_eq!(bytes.get(1..), Some(&h.as_bytes()[..]));
        assert_eq!(borsh::from_slice::<Initializer>(&bytes).unwrap(), weights);
        assert!(borsh::from_slice::<Initializer>(&[3]).is_err(), "unknown kind refused");
        assert_eq!(weights.start_weights(), Some(h));
        assert_eq!(Initializer::He.start_weights(), None);
        // A definition naming start weights validates like any other and hashes apart.
        let mut t = valid_sgd();
        let named = borsh::to_vec(&t).unwrap();
        t.model.init = weights;
        t.validate().unwrap();
        assert_ne!(borsh::to_vec(&t).unwrap(), named);
        let json = serde_json::to_value(&t.model).unwrap();
        assert_eq!(json["init"]["weights"], h.to_string());
        assert_eq!(serde_json::from_value::<ModelDef>(json).unwrap(), t.model);
        let json = serde_json::to_value(valid_sgd().model).unwrap();
        assert_eq!(json["init"], "xavier");
    }

    fn adam(weight_decay: f32) -> AdamDef {
        AdamDef {
            beta1: F32::new(0.9),
            beta2: F32::new(0.999),
            epsilon: F32::new(1e-8),
            weight_decay: F32::new(weight_decay),
        }
    }

    #[test]
    fn the_update_rule_is_encoded_after_the_sgd_fields() {
        let mut t = crate::test_utils::valid_task(1);
        let sgd = borsh::to_vec(&t.optimizer).unwrap();
        // learning_rate, momentum, tau, batch_size, epochs, then the rule's variant index.
        assert_eq!(sgd.len(), 21);
        assert_eq!(sgd.last(), Some(&0));
        t.optimizer.rule = UpdateRuleDef::AdamW(adam(0.01));
        let bytes = borsh::to_vec(&t.optimizer).unwrap();
        assert_eq!(bytes.get(..20), sgd.get(..20));
        assert_eq!(bytes.get(20), Some(&2));
        assert_eq!(bytes.get(21..25), Some(&0.9f32.to_bits().to_le_bytes()[..]));
        assert_eq!(bytes.get(33..37), Some(&0.01f32.to_bits().to_le_bytes()[..]));
        assert_eq!(bytes.len(), 37);
        let back: OptimizerDef = borsh::from_slice(&bytes).unwrap();
        assert_eq!(back, t.optimizer);
        // An unknown variant is refused.
        let mut bad = sgd;
        if let Some(b) = bad.last_mut() {
            *b = 3;
        }
        assert!(borsh::from_slice::<OptimizerDef>(&bad).is_err());
        // JSON: the rule's fields sit beside the others, as in the task file.
        let json = serde_json::to_value(&t.optimizer).unwrap();
        assert_eq!(json["kind"], "adamw");
        assert!((json["beta2"].as_f64().unwrap() - 0.999).abs() < 1e-6);
        let back: OptimizerDef = serde_json::from_value(json).unwrap();
        assert_eq!(back, t.optimizer);
        let json = serde_json::to_value(&valid_sgd().optimizer).unwrap();
        assert_eq!(json["kind"], "sgd");
        assert!(json.get("beta1").is_none());
    }

    fn valid_sgd() -> TaskDefinition {
        crate::test_utils::valid_task(1)
    }

    #[test]
    fn adam_fields_are_validated_with_named_errors() {
        let with = |rule: UpdateRuleDef, momentum: f32| {
            let mut t = valid_sgd();
            t.optimizer.rule = rule;
            t.optimizer.momentum = F32::new(momentum);
            t.validate()
        };
        with(UpdateRuleDef::Adam(adam(0.0)), 0.0).unwrap();
        with(UpdateRuleDef::AdamW(adam(0.01)), 0.0).unwrap();
        assert_eq!(
            with(UpdateRuleDef::Adam(adam(0.0)), 0.9),
            Err(TaskDefError::MomentumWithAdam { kind: "adam", momentum: F32::new(0.9) })
        );
        assert!(matches!(
            with(UpdateRuleDef::AdamW(adam(0.01)), 0.5),
            Err(TaskDefError::MomentumWithAdam { kind: "adamw", .. })
        ));
        let field = |rule: UpdateRuleDef| match with(rule, 0.0) {
            Err(TaskDefError::Field { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let edit = |f: &dyn Fn(&mut AdamDef)| {
            let mut a = adam(0.01);
            f(&mut a);
            UpdateRuleDef::AdamW(a)
        };
        for bad in [1.0, -0.1, f32::NAN, f32::INFINITY] {
            assert_eq!(field(edit(&|a| a.beta1 = F32::new(bad))), "optimizer.beta1", "{bad}");
            assert_eq!(field(edit(&|a| a.beta2 = F32::new(bad))), "optimizer.beta2", "{bad}");
        }
        for bad in [0.0, -1e-8, f32::NAN, f32::INFINITY] {
            assert_eq!(field(edit(&|a| a.epsilon = F32::new(bad))), "optimizer.epsilon", "{bad}");
        }
        for bad in [-0.01, f32::NAN, f32::INFINITY, 10.0] {
            let f = field(edit(&|a| a.weight_decay = F32::new(bad)));
            assert_eq!(f, "optimizer.weight_decay", "{bad}");
        }
        // Adam has no decay (AdamW's is decoupled).
        assert_eq!(field(UpdateRuleDef::Adam(adam(0.01))), "optimizer.weight_decay");
        // beta1 = 0 (no first moment) is a valid Adam.
        with(edit(&|a| a.beta1 = F32::new(0.0)), 0.0).unwrap();
    }

    #[test]
    fn a_cnn_counts_its_parameters_and_products() {
        let t = cnn();
        t.validate().unwrap();
        // conv 8x(1x3x3)+8 on 26x26, pool to 13x13, conv 16x(8x3x3)+16 on 11x11, pool to 5x5,
        // dense 400 -> 10.
        let cost = t.model_cost().unwrap();
        assert_eq!(cost.params, 80 + 1168 + 4010);
        assert_eq!(cost.forward_macs, 26 * 26 * 72 + 11 * 11 * 16 * 72 + 400 * 10);
        assert_eq!(t.parameter_count(), Some(5258));
    }

    #[test]
    fn dropout_keeps_the_shape_and_needs_p_below_one() {
        let mut t = cnn();
        let cost = t.model_cost().unwrap();
        t.model.layers.insert(4, LayerDef::Dropout { p: F32::new(0.25) });
        t.model.layers.insert(1, LayerDef::Dropout { p: F32::new(0.0) });
        t.validate().unwrap();
        assert_eq!(t.model_cost().unwrap(), cost, "no parameters, no products, no new peak");
        // Its values count toward the batch's memory bound like a pooling layer's (here on a
        // 1024 x 1024 input, whose dense layer alone holds no more than its 10 outputs).
        let mut wide = crate::test_utils::valid_task(1);
        wide.model.input_shape = vec![1, 1024, 1024];
        wide.model.layers = vec![
            LayerDef::Dropout { p: F32::new(0.5) },
            LayerDef::Dense { units: 3, activation: Activation::None },
        ];
        wide.dataset.samples = 1 << 20;
        assert_eq!(wide.model_cost().unwrap().peak_values, 1 << 20);
        wide.optimizer.batch_size = 256;
        wide.validate().unwrap();
        wide.optimizer.batch_size = 257;
        let e = wide.validate().unwrap_err().to_string();
        assert!(e.contains("optimizer.batch_size"), "{e}");
        for bad in [1.0, -0.1, f32::NAN, f32::INFINITY] {
            t.model.layers[1] = LayerDef::Dropout { p: F32::new(bad) };
            let e = t.validate().unwrap_err();
            assert!(
                matches!(&e, TaskDefError::Field { field: "model.layers", reason } if reason.contains("dropout")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn image_layers_that_do_not_fit_are_refused() {
        let mut t = cnn();
        t.model.input_shape = vec![784];
        assert!(matches!(t.validate(), Err(TaskDefError::Field { field: "model.layers", .. })));
        let mut t = cnn();
        t.model.layers[0] = LayerDef::Conv2d {
            filters: 8,
            kernel: 3,
            stride: 1,
            padding: 3,
            activation: Activation::Relu,
        };
        assert!(t.validate().is_err(), "padding must be below the kernel");
        let mut t = cnn();
        t.model.layers[3] = LayerDef::MaxPool2d { size: 12, stride: 1 };
        assert!(t.validate().is_err(), "a window larger than its 11x11 input");
        let mut t = cnn();
        t.model.layers[0] = LayerDef::Conv2d {
            filters: 0,
            kernel: 3,
            stride: 1,
            padding: 0,
            activation: Activation::Relu,
        };
        assert!(t.validate().is_err());
        let mut t = cnn();
        t.model.layers.pop();
        assert!(t.validate().is_err(), "the last layer must be dense");
        // Memory: a wide kernel on many positions, or a batch of large feature maps.
        let mut t = cnn();
        t.model.input_shape = vec![64, 512, 512];
        t.model.layers[0] = LayerDef::Conv2d {
            filters: 1,
            kernel: 8,
            stride: 1,
            padding: 0,
            activation: Activation::Relu,
        };
        let e = t.validate().unwrap_err().to_string();
        assert!(e.contains("values per sample"), "{e}");
        let mut t = cnn();
        // The second convolution's im2col: 11 x 11 positions of 8 x 3 x 3 taps.
        assert_eq!(t.model_cost().unwrap().peak_values, 121 * 72);
        t.optimizer.batch_size = 4096;
        t.model.input_shape = vec![1, 256, 256];
        let e = t.validate().unwrap_err().to_string();
        assert!(e.contains("optimizer.batch_size"), "{e}");
    }
}
