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
/// Each variant has its own kind code in the canonical encoding ([`LayerSpec::kind_code`]) and,
/// when it has parameters, its own block in the flat vector, in layer order, so existing
/// encodings and offsets of dense-only models never change.
///
/// Shapes: a sample is `input_shape` row-major. `conv2d` and `maxpool2d` take `[C, H, W]` (or
/// `[H, W]`, one channel) and give `[C', H', W']`; `flatten` gives `[C·H·W]` (the same values in
/// the same order, PyTorch's `nn.Flatten` of an `N×C×H×W` tensor); a dense layer flattens its
/// input implicitly and gives `[units]`.
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
    /// 2-D convolution (cross-correlation, as PyTorch's `nn.Conv2d`) with square kernels:
    /// `y[f, i, j] = act(b[f] + Σ_{c, u, v} W[f, c, u, v] · x[c, i·s + u − p, j·s + v − p])`,
    /// zero padding `p`, stride `s`. `W` stored `[filters × C × kernel × kernel]` row-major
    /// (PyTorch's layout), then `b` `[filters]`.
    Conv2d {
        /// Output channels.
        filters: u32,
        /// Kernel height and width.
        kernel: u32,
        /// Stride (default 1).
        #[serde(default = "one")]
        stride: u32,
        /// Zero padding on each side (default 0).
        #[serde(default)]
        padding: u32,
        /// Activation applied to the convolution plus bias.
        activation: Activation,
    },
    /// Max pooling over `size × size` windows moved by `stride` (default `size`), no padding,
    /// per channel; the first maximum in the window's row-major scan wins (and gets the
    /// gradient).
    #[serde(rename = "maxpool2d")]
    MaxPool2d {
        /// Window height and width.
        size: u32,
        /// Stride (default: `size`, non-overlapping windows).
        #[serde(default)]
        stride: Option<u32>,
    },
    /// Flattens `[C, H, W]` to `[C·H·W]` (no parameters, no arithmetic).
    Flatten,
    /// Inverted dropout (PyTorch's `nn.Dropout`): while training, each value is zeroed with
    /// probability `p` and the others are multiplied by `1 / (1 - p)`, the mask drawn from the
    /// iteration's dropout seed ([`crate::dropout`]); identity when evaluating. Keeps the shape.
    /// In TOML: `{ type = "dropout", p = 0.25 }`.
    Dropout {
        /// Probability of zeroing a value, in `[0, 1)`.
        p: pouw_primitives::F32,
    },
}

fn one() -> u32 {
    1
}

impl LayerSpec {
    /// The byte that identifies the layer kind in canonical encodings (`Dense` = 0,
    /// `Conv2d` = 1, `MaxPool2d` = 2, `Flatten` = 3, `Dropout` = 4).
    pub fn kind_code(&self) -> u8 {
        match self {
            Self::Dense { .. } => 0,
            Self::Conv2d { .. } => 1,
            Self::MaxPool2d { .. } => 2,
            Self::Flatten => 3,
            Self::Dropout { .. } => 4,
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

/// Adam's hyper-parameters (PyTorch's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamSpec {
    /// Decay of the first moment (default 0.9).
    pub beta1: f32,
    /// Decay of the second moment (default 0.999).
    pub beta2: f32,
    /// Added to the root of the corrected second moment (default 1e-8).
    pub epsilon: f32,
    /// Decoupled weight decay of AdamW (default 0.01 for AdamW, 0 for Adam).
    pub weight_decay: f32,
}

/// The local update (step 7 of the iteration) fed with the emitted deltas. In the task file:
/// `[optimizer] kind = "sgd" | "adam" | "adamw"` (`crate::TaskFile`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateRule {
    /// SGD with the optimizer's momentum (state: the velocity, or nothing when it is 0).
    #[default]
    Sgd,
    /// Adam (state: first moments `m`, second moments `v`, then the step count `t`).
    Adam(AdamSpec),
    /// AdamW: Adam with decoupled weight decay.
    #[serde(rename = "adamw")]
    AdamW(AdamSpec),
}

impl UpdateRule {
    /// The Adam parameters, if the rule is Adam or AdamW.
    pub fn adam(&self) -> Option<&AdamSpec> {
        match self {
            Self::Sgd => None,
            Self::Adam(a) | Self::AdamW(a) => Some(a),
        }
    }

    /// Length of the optimizer state carried beside the residual (and hashed with it) for a
    /// model of `params` parameters: SGD `params` (0 when `momentum` is 0); Adam and AdamW
    /// `2 · params + 1` (`m`, `v`, then `t` as an `f32`, exact up to 2^24).
    pub fn state_len(&self, params: usize, momentum: f32) -> usize {
        match self {
            Self::Sgd if momentum == 0.0 => 0,
            Self::Sgd => params,
            Self::Adam(_) | Self::AdamW(_) => params.saturating_mul(2).saturating_add(1),
        }
    }

    /// Checks Adam's ranges: `beta1`, `beta2` in `[0, 1)`, `epsilon` finite and > 0,
    /// `weight_decay` finite and >= 0.
    pub fn validate(&self) -> Result<(), SpecError> {
        let Some(a) = self.adam() else { return Ok(()) };
        if !(0.0..1.0).contains(&a.beta1) || !(0.0..1.0).contains(&a.beta2) {
            return Err(SpecError::Optimizer("beta1 and beta2 must be in [0, 1)"));
        }
        if !(a.epsilon.is_finite() && a.epsilon > 0.0) {
            return Err(SpecError::Optimizer("epsilon must be finite and > 0"));
        }
        if !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
            return Err(SpecError::Optimizer("weight_decay must be finite and >= 0"));
        }
        Ok(())
    }
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
    /// A convolution or pooling layer that does not fit its input.
    #[error("layer {layer}: {reason}")]
    BadLayer {
        /// Layer index.
        layer: usize,
        /// What is wrong.
        reason: String,
    },
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

/// Where a convolution lives in the flat parameter vector, and its shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvLayout {
    /// Input channels, height, width.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Output channels.
    pub filters: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// Output height `(height + 2·padding − kernel) / stride + 1`.
    pub out_height: usize,
    /// Output width.
    pub out_width: usize,
    /// Activation.
    pub activation: Activation,
    /// Offset of `W` (`filters × channels × kernel × kernel`, row-major).
    pub weight_offset: usize,
    /// Offset of `b` (`filters`), right after `W`.
    pub bias_offset: usize,
}

impl ConvLayout {
    /// Reduction length of one output: `channels · kernel · kernel`.
    pub fn patch(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }
    /// Output positions per channel: `out_height · out_width`.
    pub fn positions(&self) -> usize {
        self.out_height * self.out_width
    }
    /// Input values per sample.
    pub fn inputs(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// Output values per sample.
    pub fn outputs(&self) -> usize {
        self.filters * self.positions()
    }
}

/// The shapes of a max-pooling layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLayout {
    /// Channels (unchanged).
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Window side.
    pub size: usize,
    /// Stride.
    pub stride: usize,
    /// Output height `(height − size) / stride + 1`.
    pub out_height: usize,
    /// Output width.
    pub out_width: usize,
}

impl PoolLayout {
    /// Input values per sample.
    pub fn inputs(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// Output values per sample.
    pub fn outputs(&self) -> usize {
        self.channels * self.out_height * self.out_width
    }
}

/// A dropout layer of a validated layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropoutLayout {
    /// Values per sample (unchanged).
    pub width: usize,
    /// Probability of zeroing a value, in `[0, 1)`.
    pub p: pouw_primitives::F32,
}

impl DropoutLayout {
    /// A value is dropped when its 32-bit draw is below this: `floor(p · 2^32)` (exact: `p` is
    /// an `f32` below 1, so the product is exact in `f64` and below 2^32).
    pub fn threshold(&self) -> u32 {
        let t = (f64::from(self.p.get()) * 4_294_967_296.0).floor();
        if (0.0..4_294_967_296.0).contains(&t) {
            t as u32
        } else {
            0
        }
    }

    /// The factor of a kept value: `1 / (1 - p)` in `f32` (two roundings, in that order).
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.p.get())
    }
}

/// One layer of a validated layout, in model order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerLayout {
    /// A dense layer.
    Dense(DenseLayout),
    /// A convolution.
    Conv2d(ConvLayout),
    /// Max pooling.
    MaxPool2d(PoolLayout),
    /// Flatten of `width` values (nothing to compute).
    Flatten {
        /// Values per sample.
        width: usize,
    },
    /// Dropout (training only).
    Dropout(DropoutLayout),
}

impl LayerLayout {
    /// Output values per sample.
    pub fn outputs(&self) -> usize {
        match self {
            Self::Dense(d) => d.units,
            Self::Conv2d(c) => c.outputs(),
            Self::MaxPool2d(p) => p.outputs(),
            Self::Flatten { width } => *width,
            Self::Dropout(d) => d.width,
        }
    }
}

/// The validated layout of a model's flat parameter vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Every layer in order.
    pub layers: Vec<LayerLayout>,
    /// The dense layers in order (the same entries as in `layers`).
    pub dense: Vec<DenseLayout>,
    /// Input width of the model (product of `input_shape`).
    pub inputs: usize,
    /// Number of classes.
    pub classes: usize,
    /// Total number of parameters (at most 2^31).
    pub params: usize,
}

impl Layout {
    /// The reduction the order seed permutes (`crate::order`): the width of the first layer's
    /// forward product and the run length its order shuffles. Dense: the input features in at
    /// most [`crate::order::DENSE_RUNS`] runs (`ceil(inputs / 49)` features each: 16 for 784
    /// inputs, single features up to 49); conv2d: the `C·k·k` taps of the im2col product one by
    /// one (a 3 × 3 kernel on one channel has only 9); `None` if the first layer has no product.
    pub fn first_reduction(&self) -> Option<(usize, usize)> {
        match self.layers.first()? {
            LayerLayout::Dense(d) => {
                Some((d.inputs, d.inputs.div_ceil(crate::order::DENSE_RUNS).max(1)))
            }
            LayerLayout::Conv2d(c) => Some((c.patch(), 1)),
            _ => None,
        }
    }

    /// How many units the order seed shuffles in the first layer's reduction (runs or taps):
    /// `n!` orders. 0 if the first layer has no product. A task must have at least
    /// [`crate::order::MIN_ORDER_UNITS`] (design/010).
    pub fn order_units(&self) -> usize {
        self.first_reduction().map_or(0, |(width, run)| width.div_ceil(run.max(1)))
    }
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
        // The current sample shape: `[width]` (flat) or `[channels, height, width]`.
        let mut shape: Vec<usize> = match self.input_shape.as_slice() {
            [h, w] => vec![1, *h as usize, *w as usize],
            [c, h, w] => vec![*c as usize, *h as usize, *w as usize],
            _ => vec![inputs],
        };
        let mut offset = 0usize;
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut dense = Vec::new();
        let add = |a: usize, b: usize| a.checked_add(b).ok_or(SpecError::TooManyParameters);
        let mul = |a: usize, b: usize| a.checked_mul(b).ok_or(SpecError::TooManyParameters);
        for (i, layer) in self.layers.iter().enumerate() {
            let bad = |reason: String| SpecError::BadLayer { layer: i, reason };
            let image = |shape: &[usize]| match *shape {
                [c, h, w] => Ok((c, h, w)),
                _ => Err(bad(format!("needs a [C, H, W] or [H, W] input, got {shape:?}"))),
            };
            let entry = match *layer {
                LayerSpec::Dense { units, activation } => {
                    if units == 0 {
                        return Err(SpecError::ZeroUnits(i));
                    }
                    let units = units as usize;
                    let width = shape.iter().product::<usize>();
                    let weight_offset = offset;
                    let bias_offset = add(mul(width, units)?, offset)?;
                    offset = add(bias_offset, units)?;
                    let d = DenseLayout {
                        inputs: width,
                        units,
                        activation,
                        weight_offset,
                        bias_offset,
                    };
                    dense.push(d);
                    shape = vec![units];
                    LayerLayout::Dense(d)
                }
                LayerSpec::Conv2d { filters, kernel, stride, padding, activation } => {
                    let (channels, height, width) = image(&shape)?;
                    if filters == 0 || kernel == 0 || stride == 0 {
                        return Err(bad("filters, kernel and stride must be positive".into()));
                    }
                    let (kernel, stride, padding) =
                        (kernel as usize, stride as usize, padding as usize);
                    if padding >= kernel {
                        return Err(bad("padding must be smaller than the kernel".into()));
                    }
                    let out = |n: usize| -> Result<usize, SpecError> {
                        let padded = add(n, mul(2, padding)?)?;
                        if padded < kernel {
                            return Err(bad(format!(
                                "kernel {kernel} larger than the padded input {padded}"
                            )));
                        }
                        Ok((padded - kernel) / stride + 1)
                    };
                    let (out_height, out_width) = (out(height)?, out(width)?);
                    let filters = filters as usize;
                    let patch = mul(mul(channels, kernel)?, kernel)?;
                    let weight_offset = offset;
                    let bias_offset = add(offset, mul(filters, patch)?)?;
                    offset = add(bias_offset, filters)?;
                    mul(mul(filters, out_height)?, out_width)?;
                    shape = vec![filters, out_height, out_width];
                    LayerLayout::Conv2d(ConvLayout {
                        channels,
                        height,
                        width,
                        filters,
                        kernel,
                        stride,
                        padding,
                        out_height,
                        out_width,
                        activation,
                        weight_offset,
                        bias_offset,
                    })
                }
                LayerSpec::MaxPool2d { size, stride } => {
                    let (channels, height, width) = image(&shape)?;
                    let stride = stride.unwrap_or(size);
                    if size == 0 || stride == 0 {
                        return Err(bad("size and stride must be positive".into()));
                    }
                    let (size, stride) = (size as usize, stride as usize);
                    if size > height || size > width {
                        return Err(bad(format!(
                            "window {size} larger than the input {height}x{width}"
                        )));
                    }
                    let (out_height, out_width) =
                        ((height - size) / stride + 1, (width - size) / stride + 1);
                    shape = vec![channels, out_height, out_width];
                    LayerLayout::MaxPool2d(PoolLayout {
                        channels,
                        height,
                        width,
                        size,
                        stride,
                        out_height,
                        out_width,
                    })
                }
                LayerSpec::Flatten => {
                    let width = shape.iter().product::<usize>();
                    shape = vec![width];
                    LayerLayout::Flatten { width }
                }
                LayerSpec::Dropout { p } => {
                    if !(0.0..1.0).contains(&p.get()) {
                        return Err(bad(format!("dropout p must be in [0, 1), got {p:?}")));
                    }
                    LayerLayout::Dropout(DropoutLayout { width: shape.iter().product(), p })
                }
            };
            if offset > MAX_PARAMS {
                return Err(SpecError::TooManyParameters);
            }
            layers.push(entry);
        }
        let Some(last) = layers.last() else { return Err(SpecError::NoLayers) };
        let LayerLayout::Dense(last) = last else {
            return Err(SpecError::BadLayer {
                layer: layers.len() - 1,
                reason: "the last layer must be dense (its outputs are the logits)".into(),
            });
        };
        if last.units != self.classes as usize {
            return Err(SpecError::OutputMismatch {
                units: last.units as u32,
                classes: self.classes,
            });
        }
        Ok(Layout { layers, dense, inputs, classes: self.classes as usize, params: offset })
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
    fn dropout_parses_keeps_the_shape_and_needs_p_below_one() {
        let l: LayerSpec = toml::from_str("type = \"dropout\"\np = 0.25").unwrap();
        assert_eq!(l, LayerSpec::Dropout { p: pouw_primitives::F32::new(0.25) });
        assert_eq!(l.kind_code(), 4);
        assert!(toml::from_str::<LayerSpec>("type = \"dropout\"").is_err(), "p is required");
        let mut s = ModelSpec::mlp(6, &[5], 3, Activation::Relu, 0);
        let plain = s.layout().unwrap();
        s.layers.insert(1, l);
        let layout = s.layout().unwrap();
        assert_eq!(layout.params, plain.params);
        assert_eq!(layout.dense, plain.dense);
        let LayerLayout::Dropout(d) = layout.layers[1] else { panic!("{:?}", layout.layers) };
        assert_eq!((d.width, d.threshold(), d.scale()), (5, 1 << 30, 1.0 / 0.75));
        for bad in [1.0, -0.5, f32::NAN] {
            s.layers[1] = LayerSpec::Dropout { p: pouw_primitives::F32::new(bad) };
            assert!(matches!(s.layout(), Err(SpecError::BadLayer { layer: 1, .. })), "{bad}");
        }
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
