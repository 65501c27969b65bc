//! pouw-ml: the deterministic training engine.
//!
//! Everything on the consensus path of a training iteration lives here: tensors as flat `f32`
//! buffers, kernels with a fixed arithmetic order ([`kernels`]), models built from a task's layer
//! list, datasets (IDX, CSV), and one PoUW training iteration.
//!
//! Determinism contract: every function on the consensus path gives the same bits on any x86-64
//! CPU and any thread count. See the module docs of [`kernels`] for the arithmetic rules.
//!
//! # Map
//! - [`kernels`]: the three matrix products (ascending-`k` FMA chains) and [`Exec`].
//! - [`ops`]: bias add, activations and their backward, softmax cross-entropy, accuracy, bias
//!   gradient; fixed summation order, `libm` transcendentals.
//! - conv: im2col/col2im and max pooling, the data movement of `conv2d` and `maxpool2d`.
//! - spec: [`ModelSpec`], [`LayerSpec`], [`Activation`], [`Init`], [`OptimizerSpec`], [`Layout`].
//! - model: [`Model`] (one flat parameter vector), its initialiser, forward and gradient.
//! - order: [`InputOrder`], the seeded order of the first layer's reduction that binds an
//!   iteration to the header it mines.
//! - merkle: the Merkle tree over a segment's samples whose root is the segment hash, and its
//!   proofs ([`merkle::SegmentTree`], [`merkle::root_from_proof`]).
//! - rng: [`Rng`] (xoshiro256**), the only random source (init, split, batch order).
//! - hash: [`Digest`] and the canonical hashes ([`model_hash`], [`residual_hash`],
//!   [`map_hash`]; batch and segment hashes via [`Batch::hash`], [`Dataset::segment_hash`]).
//! - batch: [`Batch`] and its canonical bytes.
//! - iteration: [`TrainState::iterate`], the PoUW iteration, giving an [`IterationOutput`];
//!   [`TrainState::sgd_step`] for comparison.
//! - dataset: [`Dataset`] loaders, [`Split`], [`BatchSchedule`].
//! - export: safetensors [`save_safetensors`] / [`load_safetensors`].
//! - task: the client's [`TaskFile`] (TOML).
//! - shipped: the MNIST subset embedded in the binary ([`shipped_mnist`]).
//!
//! # Data flow of one iteration
//! ```text
//! Dataset ──BatchSchedule──▶ Batch ─┐
//! peer maps (in order) ─────────────┼─▶ TrainState::iterate ─▶ IterationOutput
//! TrainState (w, R, v) ─────────────┘        │                  (hashes, map, loss, accuracy)
//!                                             └─▶ TrainState (w', R', v')
//! ```
//! Byte layouts and the exact arithmetic are in `docs/ml.md` and in each module's docs.

pub mod kernels;
pub mod ops;

mod batch;
mod client_task;
mod conv;
mod dataset;
mod dropout;
mod export;
mod hash;
mod iteration;
pub mod merkle;
mod model;
mod order;
mod rng;
mod shipped;
mod spec;
mod task;

pub use batch::{Batch, BatchError};
pub use client_task::{
    client_task, load_client_task, update_rule_def, update_rule_of, ClientTask, ClientTaskError,
    MAX_START_WEIGHTS_BYTES,
};
pub use dataset::{
    pixel, pixel_byte, pixel_bytes, segment_hash_of_bytes, BatchSchedule, Dataset, DatasetError,
    Segment, Split, SplitError,
};
pub use dropout::dropout_seed;
pub use export::{
    from_safetensors, load_safetensors, save_safetensors, to_safetensors, ExportError,
};
pub use hash::{map_hash, model_hash, residual_hash, Digest};
pub use iteration::{
    pack_entry, unpack_entry, IterationError, IterationOutput, TrainState, MAP_INDEX_MASK,
    MAP_SIGN_BIT,
};
pub use kernels::Exec;
pub use model::{Metrics, Model, ModelError};
pub use order::{InputOrder, CHUNK as INPUT_ORDER_CHUNK, DENSE_RUNS, MIN_ORDER_UNITS};
pub use rng::{Rng, SplitMix64};
pub use shipped::{shipped_mnist, shipped_mnist_ref, write_shipped_mnist, SHIPPED_MNIST_CLASSES};
pub use spec::{
    Activation, AdamSpec, ConvLayout, DenseLayout, DropoutLayout, Init, LayerLayout, LayerSpec,
    Layout, ModelSpec, OptimizerSpec, PoolLayout, SpecError, UpdateRule, MAX_PARAMS,
};
pub use task::{
    start_model_from_bytes, Coins, DatasetFormat, DatasetSpec, LabelColumn, PaymentSpec,
    StartWeightsError, TaskError, TaskFile, WorkersSpec, BASE_UNITS_PER_COIN,
};
