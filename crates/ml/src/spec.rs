//! Model and optimizer specifications: the part of a task definition the engine needs.
//!
//! These are plain data types (serde for the task file; other crates mirror them in the on-chain
//! task definition, so the names are part of the contract). [`ModelSpec::layout`] validates a
//! spec and computes where each layer's parameters live in the flat parameter vector.

use serde::{Deserialize, Serialize};

/// A layer's element-wise activation. Exact formulas in [`crate::ops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(z, 0)`.
    Relu,
    /// `libm::tanhf(z)`.
    Tanh,
    /// `1 / (1 + libm::expf(-z))`.
    Sigmoid,
    /// Identity (typical for the output layer, whose outputs are the logits).
    None,
}

impl Activation {
    /// The byte that stands for this activation in canonical encodings (model hash).
    pub fn code(self) -> u8 {
        match self {
            Self::Relu => 0,
            Self::Tanh => 1,
            Self::Sigmoid => 2,
            Self::None => 3,
        }
    }
}

/// One layer of a model. In TOML: `{ type = "dense", units = 128, activation = "relu" }`.
///
/// Only `Dense` exists in v1. `Conv2d`, `MaxPool` and `Flatten` are planned: each new variant
/// gets its own kind code in the canonical encoding ([`LayerSpec::kind_code`]) and its own
/// parameter block in the flat vector, appended in layer order, so existing encodings and
/// offsets of dense-only models never change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum LayerSpec {
    /// Fully connected: `y = act(x · W + b)`, `W` stored `[in × units]` row-major, then `b`.
    /// Its input is the previous layer's output flattened row-major (for the first layer, the
    /// sample as laid out by the dataset).
    Dense {
        /// Output width.
        units: u32,
        /// Activation applied to `x · W + b`.
        activation: Activation,
    },
}

impl LayerSpec {
    /// The byte that identifies the layer kind in canonical encodings (`Dense` = 0).
    pub fn kind_code(&self) -> u8 {
        match self {
            Self::Dense { .. } => 0,
        }
    }
}

/// Weight initialiser. Biases always start at `+0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Xavier/Glorot uniform: `U[-a, a)`, `a = sqrtf(6 / (fan_in + fan_out))`.
    Xavier,
    /// He uniform: `U[-a, a)`, `a = sqrtf(6 / fan_in)`.
    He,
}

/// The model a task trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Shape of one sample, e.g. `[784]` (or `[28, 28]`: a dense layer flattens it).
    pub input_shape: Vec<u32>,
    /// Layers in order; the last one's `units` must equal `classes` (its outputs are the logits).
    pub layers: Vec<LayerSpec>,
    /// Number of classes; labels are `0..classes`.
    pub classes: u32,
    /// Weight initialiser.
    #[serde(default = "default_init")]
    pub init: Init,
    /// Seed of the initialiser ([`crate::Rng::from_u64`]).
    #[serde(default)]
    pub seed: u64,
}

fn default_init() -> Init {
    Init::Xavier
}

/// The optimizer of a task: thresholded SGD with momentum (SPEC section 4).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    /// SGD learning rate `lr`.
    pub learning_rate: f32,
    /// Momentum `mu` (0 = plain SGD; the local update then touches only emitted coordinates).
    #[serde(default)]
    pub momentum: f32,
    /// Threshold `tau` of the message map, in units of the batch-mean gradient.
    pub tau: f32,
    /// Samples per mini-batch.
    pub batch_size: u32,
    /// Passes over the training set.
    pub epochs: u32,
}

/// Why a spec is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// `input_shape` is empty or has a zero dimension.
    #[error("input_shape must be non-empty with non-zero dimensions, got {0:?}")]
    BadInputShape(Vec<u32>),
    /// No layers.
    #[error("the model has no layers")]
    NoLayers,
    /// A layer with zero units.
    #[error("layer {0} has zero units")]
    ZeroUnits(usize),
    /// Fewer than two classes.
    #[error("classes must be at least 2, got {0}")]
    TooFewClasses(u32),
    /// The last layer does not output one logit per class.
    #[error("the last layer has {units} units but the model has {classes} classes")]
    OutputMismatch {
        /// Units of the last layer.
        units: u32,
        /// `classes`.
        classes: u32,
    },
    /// More parameters than a message-map index (31 bits) can address.
    #[error("the model has more than 2^31 parameters")]
    TooManyParameters,
    /// A parameter vector of the wrong length.
    #[error("expected {expected} parameters, got {actual}")]
    ParamCount {
        /// From the spec.
        expected: usize,
        /// Given.
        actual: usize,
    },
    /// An optimizer field out of range.
    #[error("optimizer: {0}")]
    Optimizer(&'static str),
}

/// Where one dense layer lives in the flat parameter vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenseLayout {
    /// Input width (product of the previous shape).
    pub inputs: usize,
    /// Output width.
    pub units: usize,
    /// Activation.
    pub activation: Activation,
    /// Offset of `W` (`inputs × units`, row-major).
    pub weight_offset: usize,
    /// Offset of `b` (`units`), right after `W`.
    pub bias_offset: usize,
}

/// The validated layout of a model's flat parameter vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Dense layers in order.
    pub dense: Vec<DenseLayout>,
    /// Input width of the model (product of `input_shape`).
    pub inputs: usize,
    /// Number of classes.
    pub classes: usize,
    /// Total number of parameters (at most 2^31).
    pub params: usize,
}

/// The largest parameter count: message-map indices have 31 bits.
pub const MAX_PARAMS: usize = 1 << 31;

impl ModelSpec {
    /// A multi-layer perceptron `input - hidden… - classes` with `activation` on the hidden
    /// layers and none on the output.
    pub fn mlp(
        input: u32,
        hidden: &[u32],
        classes: u32,
        activation: Activation,
        seed: u64,
    ) -> Self {
        let mut layers: Vec<LayerSpec> =
            hidden.iter().map(|&units| LayerSpec::Dense { units, activation }).collect();
        layers.push(LayerSpec::Dense { units: classes, activation: Activation::None });
        Self { input_shape: vec![input], layers, classes, init: Init::Xavier, seed }
    }

    /// Validates the spec and computes its parameter layout.
    pub fn layout(&self) -> Result<Layout, SpecError> {
        if self.input_shape.is_empty() || self.input_shape.contains(&0) {
            return Err(SpecError::BadInputShape(self.input_shape.clone()));
        }
        if self.classes < 2 {
            return Err(SpecError::TooFewClasses(self.classes));
        }
        let inputs = self
            .input_shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
            .filter(|&n| n <= MAX_PARAMS)
            .ok_or(SpecError::TooManyParameters)?;
        let mut width = inputs;
        let mut offset = 0usize;
        let mut dense = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            match *layer {
                LayerSpec::Dense { units, activation } => {
                    if units == 0 {
                        return Err(SpecError::ZeroUnits(i));
                    }
                    let units = units as usize;
                    let weight_offset = offset;
                    let bias_offset = width
                        .checked_mul(units)
                        .and_then(|w| w.checked_add(offset))
                        .ok_or(SpecError::TooManyParameters)?;
                    offset = bias_offset.checked_add(units).ok_or(SpecError::TooManyParameters)?;
                    if offset > MAX_PARAMS {
                        return Err(SpecError::TooManyParameters);
                    }
                    dense.push(DenseLayout {
                        inputs: width,
                        units,
                        activation,
                        weight_offset,
                        bias_offset,
                    });
                    width = units;
                }
            }
        }
        let Some(last) = dense.last() else { return Err(SpecError::NoLayers) };
        if last.units != self.classes as usize {
            return Err(SpecError::OutputMismatch {
                units: last.units as u32,
                classes: self.classes,
            });
        }
        Ok(Layout { dense, inputs, classes: self.classes as usize, params: offset })
    }
}

impl OptimizerSpec {
    /// Checks the ranges: `learning_rate` and `tau` finite and > 0, `momentum` in `[0, 1)`,
    /// `batch_size` and `epochs` > 0.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(SpecError::Optimizer("learning_rate must be finite and > 0"));
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(SpecError::Optimizer("tau must be finite and > 0"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(SpecError::Optimizer("momentum must be in [0, 1)"));
        }
        if self.batch_size == 0 {
            return Err(SpecError::Optimizer("batch_size must be > 0"));
        }
        if self.epochs == 0 {
            return Err(SpecError::Optimizer("epochs must be > 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlp_layout_offsets() {
        let l = ModelSpec::mlp(784, &[128], 10, Activation::Relu, 0).layout().unwrap();
        assert_eq!(l.params, 784 * 128 + 128 + 128 * 10 + 10);
        assert_eq!(l.dense[0].bias_offset, 784 * 128);
        assert_eq!(l.dense[1].weight_offset, 784 * 128 + 128);
        assert_eq!(l.dense[1].inputs, 128);
    }

    #[test]
    fn rejects_bad_specs() {
        let mut s = ModelSpec::mlp(4, &[3], 2, Activation::Relu, 0);
        s.classes = 3;
        assert!(matches!(s.layout(), Err(SpecError::OutputMismatch { .. })));
        s.layers.clear();
        assert_eq!(s.layout(), Err(SpecError::NoLayers));
        let s = ModelSpec::mlp(1 << 20, &[1 << 12], 2, Activation::Relu, 0);
        assert_eq!(s.layout(), Err(SpecError::TooManyParameters));
    }

    #[test]
    fn layer_toml_shape() {
        let l: LayerSpec =
            toml::from_str("type = \"dense\"\nunits = 5\nactivation = \"tanh\"").unwrap();
        assert_eq!(l, LayerSpec::Dense { units: 5, activation: Activation::Tanh });
        assert!(toml::from_str::<LayerSpec>(
            "type = \"dense\"\nunits = 5\nactivation = \"tanh\"\nx = 1"
        )
        .is_err());
    }
}
