//! A model: its spec, its layout, and ALL its parameters in one flat `Vec<f32>`.
//!
//! Flat layout: for each dense layer in order, `W` (`inputs × units`, row-major) then `b`
//! (`units`). A message-map index is an offset in this vector.
//!
//! Forward pass of a dense layer: `Z = X · W` ([`kernels::matmul`]), `Z += b`
//! ([`ops::bias_add`]), `A = act(Z)` ([`ops::activate`]). Backward, from
//! `dA` of the output layer = the softmax cross-entropy gradient: `dZ = act'(A) ⊙ dA`
//! ([`ops::activation_backward`]), `dW = Xᵀ · dZ` ([`kernels::matmul_at_b`]),
//! `db = column sums of dZ` ([`ops::bias_grad`]), `dX = dZ · Wᵀ` ([`kernels::matmul_a_bt`],
//! skipped for the first layer).

use crate::{
    batch::Batch,
    conv, dropout,
    hash::{self, Digest},
    kernels::{self, Exec},
    ops,
    order::InputOrder,
    rng::Rng,
    spec::{Init, LayerLayout, Layout, ModelSpec, SpecError},
};

/// A model with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    spec: ModelSpec,
    layout: Layout,
    params: Vec<f32>,
}

/// Why a model cannot run on the given samples, or does not fit a task: every shape, label
/// and parameter that comes from outside (a peer's model, a client's test set, a file) is
/// checked against these before the engine touches it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The input is not `rows × inputs` values.
    #[error("input shape: {values} values for {rows} samples of width {width}")]
    InputShape {
        /// Values given.
        values: usize,
        /// Samples given.
        rows: usize,
        /// The model's input width.
        width: usize,
    },
    /// A label `>= classes`.
    #[error("sample {index}: label {label} out of range (the model has {classes} classes)")]
    Label {
        /// Sample index.
        index: usize,
        /// The label.
        label: u32,
        /// The model's class count.
        classes: usize,
    },
    /// The model's layers, input width or class count differ from the task's.
    #[error("the model does not fit the task: {0}")]
    Shape(String),
    /// A parameter is NaN or infinite.
    #[error("parameter {index} is NaN or infinite")]
    NonFinite {
        /// Index in the flat parameter vector.
        index: usize,
    },
}

/// One layer's forward result: its output (`[rows × outputs]`, channel-major for images) and
/// what its backward pass needs (a convolution's im2col matrix, a pooling layer's argmax, a
/// dropout layer's keep mask).
struct Act {
    out: Vec<f32>,
    cols: Vec<f32>,
    arg: Vec<u32>,
    keep: Vec<bool>,
}

impl Act {
    fn out(out: Vec<f32>) -> Self {
        Self { out, cols: Vec::new(), arg: Vec::new(), keep: Vec::new() }
    }
}

/// Loss and correct count of a model on some samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// Mean softmax cross-entropy ([`ops::softmax_cross_entropy`]).
    pub loss: f32,
    /// Samples whose argmax equals the label.
    pub correct: u32,
    /// Samples evaluated.
    pub samples: u32,
}

impl Metrics {
    /// `correct as f32 / samples as f32`.
    pub fn accuracy(&self) -> f32 {
        self.correct as f32 / self.samples as f32
    }
}

impl Model {
    /// A freshly initialised model (see [`Init`]): one [`Rng::from_u64`]`(spec.seed)` stream,
    /// one [`Rng::uniform_sym`] draw per weight, layers in order, each `W` in row-major order;
    /// biases `+0.0`. The bound `a` is computed in `f32`: Xavier `libm::sqrtf(6.0 / (fan_in +
    /// fan_out) as f32)`, He `libm::sqrtf(6.0 / fan_in as f32)`.
    pub fn new(spec: ModelSpec) -> Result<Self, SpecError> {
        let layout = spec.layout()?;
        let mut params = vec![0.0f32; layout.params];
        let mut rng = Rng::from_u64(spec.seed);
        for layer in &layout.layers {
            // (fan_in, fan_out, weights): a convolution's fans count the taps, as PyTorch's.
            let (fan_in, fan_out, start, end) = match layer {
                LayerLayout::Dense(d) => (d.inputs, d.units, d.weight_offset, d.bias_offset),
                LayerLayout::Conv2d(c) => {
                    (c.patch(), c.filters * c.kernel * c.kernel, c.weight_offset, c.bias_offset)
                }
                LayerLayout::MaxPool2d(_)
                | LayerLayout::Flatten { .. }
                | LayerLayout::Dropout(_) => continue,
            };
            let bound = match spec.init {
                Init::Xavier => libm::sqrtf(6.0 / (fan_in + fan_out) as f32),
                Init::He => libm::sqrtf(6.0 / fan_in as f32),
            };
            for w in &mut params[start..end] {
                *w = rng.uniform_sym(bound);
            }
        }
        Ok(Self { spec, layout, params })
    }

    /// A model with the given parameters (length checked against the spec).
    pub fn from_params(spec: ModelSpec, params: Vec<f32>) -> Result<Self, SpecError> {
        let layout = spec.layout()?;
        if params.len() != layout.params {
            return Err(SpecError::ParamCount { expected: layout.params, actual: params.len() });
        }
        Ok(Self { spec, layout, params })
    }

    /// The spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The validated layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The flat parameters.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The flat parameters, mutable.
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Number of parameters.
    pub fn param_count(&self) -> usize {
        self.params.len()
    }

    /// Checks that this model is one of the task whose model spec is `task`: same input width,
    /// classes and layers (units and activations; the initialisation seed may differ), and
    /// every parameter finite. A model received from a peer is checked with this before it is
    /// evaluated or delivered.
    pub fn check_fits(&self, task: &ModelSpec) -> Result<(), ModelError> {
        let want = task.layout().map_err(|e| ModelError::Shape(format!("task spec: {e}")))?;
        let have = &self.layout;
        if have.inputs != want.inputs {
            return Err(ModelError::Shape(format!(
                "input width {}, the task has {}",
                have.inputs, want.inputs
            )));
        }
        if have.classes != want.classes {
            return Err(ModelError::Shape(format!(
                "{} classes, the task has {}",
                have.classes, want.classes
            )));
        }
        if have.layers != want.layers {
            return Err(ModelError::Shape(format!(
                "layers {:?}, the task has {:?}",
                have.layers, want.layers
            )));
        }
        if let Some(index) = self.params.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::NonFinite { index });
        }
        Ok(())
    }

    /// The canonical model hash ([`hash::model_hash`]).
    pub fn hash(&self) -> Digest {
        hash::model_hash(&self.spec, &self.params)
    }

    /// Forward pass over `rows` samples; returns every layer's output (`acts[l].out` = output
    /// of layer `l`), the last being the logits.
    ///
    /// With an `order`, the first layer's product runs over its reduction in that order
    /// (`crate::order`; the input features of a dense layer, the kernel taps of a convolution):
    /// the same sum, other rounding. With a `dropout` seed the pass is a training pass: every
    /// dropout layer draws its mask from it ([`crate::dropout`]); without, dropout layers are
    /// the identity.
    fn forward_all(
        &self,
        exec: Exec,
        x: &[f32],
        rows: usize,
        order: Option<&InputOrder>,
        dropout: Option<&[u8; 32]>,
    ) -> Vec<Act> {
        let mut acts: Vec<Act> = Vec::with_capacity(self.layout.layers.len());
        for (l, layer) in self.layout.layers.iter().enumerate() {
            let input = acts.last().map_or(x, |a| a.out.as_slice());
            let order = order.filter(|_| l == 0);
            let act = match layer {
                LayerLayout::Dense(d) => {
                    let mut z = vec![0.0f32; rows * d.units];
                    let w = &self.params[d.weight_offset..d.bias_offset];
                    match order {
                        Some(o) => {
                            let (xp, wp) =
                                (o.permute_rows(input, rows), o.permute_weight_rows(w, d.units));
                            kernels::matmul(exec, &xp, &wp, &mut z, rows, d.inputs, d.units);
                        }
                        None => kernels::matmul(exec, input, w, &mut z, rows, d.inputs, d.units),
                    }
                    ops::bias_add(&mut z, &self.params[d.bias_offset..d.bias_offset + d.units]);
                    ops::activate(d.activation, &mut z);
                    Act::out(z)
                }
                LayerLayout::Conv2d(c) => {
                    let cols = conv::im2col(c, input, rows);
                    let m = rows * c.positions();
                    let mut z = vec![0.0f32; m * c.filters];
                    let w = &self.params[c.weight_offset..c.bias_offset];
                    match order {
                        Some(o) => {
                            let (cp, wp) = (o.permute_rows(&cols, m), o.permute_rows(w, c.filters));
                            kernels::matmul_a_bt(exec, &cp, &wp, &mut z, m, c.patch(), c.filters);
                        }
                        None => {
                            kernels::matmul_a_bt(exec, &cols, w, &mut z, m, c.patch(), c.filters)
                        }
                    }
                    ops::bias_add(&mut z, &self.params[c.bias_offset..c.bias_offset + c.filters]);
                    ops::activate(c.activation, &mut z);
                    let out = conv::to_channels(&z, rows, c.positions(), c.filters);
                    Act { cols, ..Act::out(out) }
                }
                LayerLayout::MaxPool2d(p) => {
                    let (out, arg) = conv::maxpool(p, input, rows);
                    Act { arg, ..Act::out(out) }
                }
                LayerLayout::Flatten { .. } => Act::out(input.to_vec()),
                LayerLayout::Dropout(d) => match dropout {
                    Some(seed) => {
                        let keep = dropout::mask(d, seed, l, input.len());
                        let out = dropout::forward(d, input, &keep);
                        Act { keep, ..Act::out(out) }
                    }
                    None => Act::out(input.to_vec()),
                },
            };
            acts.push(act);
        }
        acts
    }

    /// Logits for `rows` samples (`x` must be `rows × inputs`).
    pub fn forward(&self, exec: Exec, x: &[f32], rows: usize) -> Result<Vec<f32>, ModelError> {
        let width = self.layout.inputs;
        if rows.checked_mul(width) != Some(x.len()) {
            return Err(ModelError::InputShape { values: x.len(), rows, width });
        }
        Ok(self.forward_all(exec, x, rows, None, None).pop().map(|a| a.out).unwrap_or_default())
    }

    /// Loss and correct count over `labels.len()` samples, evaluated in chunks of `chunk` rows
    /// (loss = mean over all samples of the per-chunk sums; for reporting, not consensus).
    /// Fails, before any arithmetic, if `x` is not `labels.len() × inputs` values or a label is
    /// not below the model's class count.
    pub fn evaluate(
        &self,
        exec: Exec,
        x: &[f32],
        labels: &[u32],
        chunk: usize,
    ) -> Result<Metrics, ModelError> {
        let width = self.layout.inputs;
        let classes = self.layout.classes;
        if labels.len().checked_mul(width) != Some(x.len()) {
            return Err(ModelError::InputShape { values: x.len(), rows: labels.len(), width });
        }
        if let Some(index) = labels.iter().position(|&l| l as usize >= classes) {
            return Err(ModelError::Label { index, label: labels[index], classes });
        }
        let mut loss_sum = 0.0f64;
        let mut correct = 0u32;
        for (xs, ys) in x.chunks(chunk.max(1) * width).zip(labels.chunks(chunk.max(1))) {
            let logits = self.forward(exec, xs, ys.len())?;
            let loss = ops::softmax_cross_entropy(&logits, ys, classes, None);
            loss_sum += f64::from(loss) * ys.len() as f64;
            correct += ops::correct_count(&logits, ys, classes);
        }
        let samples = u32::try_from(labels.len()).unwrap_or(u32::MAX);
        Ok(Metrics { loss: (loss_sum / f64::from(samples.max(1))) as f32, correct, samples })
    }

    /// Gradient of the mean softmax cross-entropy over `batch` with respect to every parameter,
    /// written to `grad` (length [`Model::param_count`], every element overwritten), plus the
    /// batch's loss and correct count from the same forward pass. The batch must fit the model
    /// ([`Batch::validate`]).
    pub fn gradient(&self, exec: Exec, batch: &Batch, grad: &mut [f32]) -> Metrics {
        self.gradient_in_order(exec, batch, grad, None)
    }

    /// [`Model::gradient`] with the first layer's forward product reduced in `order` (the
    /// iteration's binding to the header it mines, `crate::order`). The backward pass is the
    /// same as without an order (the weight gradient sums over the samples, not the features).
    /// A training pass: a model with dropout layers draws their masks from
    /// [`crate::dropout_seed`] of this model and `batch`.
    pub fn gradient_in_order(
        &self,
        exec: Exec,
        batch: &Batch,
        grad: &mut [f32],
        order: Option<&InputOrder>,
    ) -> Metrics {
        let has_dropout = self.layout.layers.iter().any(|l| matches!(l, LayerLayout::Dropout(_)));
        let seed = has_dropout.then(|| dropout::dropout_seed(&self.hash(), batch));
        self.gradient_seeded(exec, batch, grad, order, seed.as_ref())
    }

    /// [`Model::gradient_in_order`] with the dropout masks drawn from `dropout` (none: dropout
    /// layers are the identity).
    fn gradient_seeded(
        &self,
        exec: Exec,
        batch: &Batch,
        grad: &mut [f32],
        order: Option<&InputOrder>,
        dropout: Option<&[u8; 32]>,
    ) -> Metrics {
        assert_eq!(grad.len(), self.params.len(), "gradient: buffer length");
        let rows = batch.len();
        let x = batch.features();
        let classes = self.layout.classes;
        let acts = self.forward_all(exec, x, rows, order, dropout);
        let logits = &acts.last().expect("a model has at least one layer").out;
        let mut dz = vec![0.0f32; logits.len()];
        let loss = ops::softmax_cross_entropy(logits, batch.labels(), classes, Some(&mut dz));
        let correct = ops::correct_count(logits, batch.labels(), classes);
        for (l, layer) in self.layout.layers.iter().enumerate().rev() {
            let input = if l == 0 { x } else { &acts[l - 1].out };
            match layer {
                LayerLayout::Dense(d) => {
                    ops::activation_backward(d.activation, &acts[l].out, &mut dz);
                    let (gw, gb) = grad[d.weight_offset..d.bias_offset + d.units]
                        .split_at_mut(d.bias_offset - d.weight_offset);
                    kernels::matmul_at_b(exec, input, &dz, gw, d.inputs, rows, d.units);
                    ops::bias_grad(&dz, gb);
                    if l > 0 {
                        let mut dx = vec![0.0f32; rows * d.inputs];
                        let w = &self.params[d.weight_offset..d.bias_offset];
                        kernels::matmul_a_bt(exec, &dz, w, &mut dx, rows, d.units, d.inputs);
                        dz = dx;
                    }
                }
                LayerLayout::Conv2d(c) => {
                    ops::activation_backward(c.activation, &acts[l].out, &mut dz);
                    let m = rows * c.positions();
                    let dzt = conv::from_channels(&dz, rows, c.positions(), c.filters);
                    let (gw, gb) = grad[c.weight_offset..c.bias_offset + c.filters]
                        .split_at_mut(c.bias_offset - c.weight_offset);
                    kernels::matmul_at_b(exec, &dzt, &acts[l].cols, gw, c.filters, m, c.patch());
                    ops::bias_grad(&dzt, gb);
                    if l > 0 {
                        let mut dcols = vec![0.0f32; m * c.patch()];
                        let w = &self.params[c.weight_offset..c.bias_offset];
                        kernels::matmul(exec, &dzt, w, &mut dcols, m, c.filters, c.patch());
                        dz = conv::col2im(c, &dcols, rows);
                    }
                }
                LayerLayout::MaxPool2d(p) => {
                    if l > 0 {
                        dz = conv::maxpool_backward(p, &dz, &acts[l].arg, rows);
                    }
                }
                LayerLayout::Flatten { .. } => {}
                LayerLayout::Dropout(d) => {
                    if l > 0 {
                        dropout::backward(d, &mut dz, &acts[l].keep);
                    }
                }
            }
        }
        Metrics { loss, correct, samples: rows as u32 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Activation, LayerSpec};

    #[test]
    fn init_is_reproducible_and_bounded() {
        let spec = ModelSpec::mlp(784, &[128], 10, Activation::Relu, 42);
        let a = Model::new(spec.clone()).unwrap();
        let b = Model::new(spec).unwrap();
        assert_eq!(a.hash(), b.hash());
        let bound = libm::sqrtf(6.0 / 912.0);
        assert!(a.params()[..784 * 128].iter().all(|w| w.abs() <= bound));
        assert!(a.params()[784 * 128..784 * 128 + 128].iter().all(|&b| b.to_bits() == 0));
    }

    #[test]
    fn a_model_of_another_shape_or_with_nan_is_refused_not_run() {
        let task = ModelSpec::mlp(6, &[4], 3, Activation::Relu, 1);
        let good = Model::new(task.clone()).unwrap();
        assert_eq!(good.check_fits(&task), Ok(()));
        let mut other_seed = task.clone();
        other_seed.seed = 9;
        assert_eq!(Model::new(other_seed).unwrap().check_fits(&task), Ok(()));
        for other in [
            ModelSpec::mlp(5, &[4], 3, Activation::Relu, 1),
            ModelSpec::mlp(6, &[4], 2, Activation::Relu, 1),
            ModelSpec::mlp(6, &[5], 3, Activation::Relu, 1),
            ModelSpec::mlp(6, &[4], 3, Activation::Tanh, 1),
            ModelSpec::mlp(6, &[4, 4], 3, Activation::Relu, 1),
        ] {
            let m = Model::new(other).unwrap();
            assert!(matches!(m.check_fits(&task), Err(ModelError::Shape(_))), "{:?}", m.spec());
        }
        let mut nan = good.clone();
        nan.params_mut()[7] = f32::NAN;
        assert_eq!(nan.check_fits(&task), Err(ModelError::NonFinite { index: 7 }));
        // Samples of the wrong width or labels out of range: errors, not panics.
        let x = vec![0.5f32; 2 * 5];
        assert!(matches!(
            good.evaluate(Exec::new(1), &x, &[0, 1], 8),
            Err(ModelError::InputShape { width: 6, rows: 2, values: 10 })
        ));
        assert!(good.forward(Exec::new(1), &x, 2).is_err());
        let x = vec![0.5f32; 2 * 6];
        assert_eq!(
            good.evaluate(Exec::new(1), &x, &[0, 3], 8),
            Err(ModelError::Label { index: 1, label: 3, classes: 3 })
        );
        assert_eq!(good.evaluate(Exec::new(1), &x, &[0, 2], 1).unwrap().samples, 2);
    }

    fn dropout_mlp(p: f32) -> ModelSpec {
        let p = pouw_primitives::F32::new(p);
        ModelSpec {
            input_shape: vec![6],
            layers: vec![
                LayerSpec::Dense { units: 16, activation: Activation::Tanh },
                LayerSpec::Dropout { p },
                LayerSpec::Dense { units: 12, activation: Activation::Sigmoid },
                LayerSpec::Dropout { p },
                LayerSpec::Dense { units: 3, activation: Activation::None },
            ],
            classes: 3,
            init: Init::Xavier,
            seed: 5,
        }
    }

    fn batch(width: usize, rows: usize) -> Batch {
        let mut rng = Rng::from_u64(9);
        let x = (0..rows * width).map(|_| rng.uniform_sym(1.0)).collect();
        let y = (0..rows).map(|_| rng.below(3) as u32).collect();
        Batch::new(x, y, width).unwrap()
    }

    #[test]
    fn dropout_is_the_identity_when_evaluating() {
        let with = Model::new(dropout_mlp(0.5)).unwrap();
        let mut spec = dropout_mlp(0.5);
        spec.layers.retain(|l| !matches!(l, LayerSpec::Dropout { .. }));
        let without = Model::from_params(spec, with.params().to_vec()).unwrap();
        let b = batch(6, 10);
        let (x, n) = (b.features(), b.len());
        assert_eq!(
            with.forward(Exec::SINGLE, x, n).unwrap(),
            without.forward(Exec::SINGLE, x, n).unwrap()
        );
        assert_ne!(with.hash(), without.hash(), "the layer is part of the model hash");
        // Training is not: the masks change the gradient, the same on every thread count.
        let mut g1 = vec![0.0; with.param_count()];
        let mut g0 = g1.clone();
        with.gradient(Exec::SINGLE, &b, &mut g1);
        without.gradient(Exec::SINGLE, &b, &mut g0);
        assert_ne!(g1, g0);
        let mut g2 = g1.clone();
        with.gradient(Exec::new(2), &b, &mut g2);
        assert_eq!(
            g1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            g2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // The seed follows the model and the batch.
        let seed = dropout::dropout_seed(&with.hash(), &b);
        assert_ne!(seed, dropout::dropout_seed(&with.hash(), &batch(6, 11)));
        let mut moved = with;
        moved.params_mut()[0] += 1.0;
        assert_ne!(seed, dropout::dropout_seed(&moved.hash(), &b));
    }

    #[test]
    fn the_gradient_through_a_fixed_mask_is_the_derivative() {
        // Finite differences of the loss under one fixed mask (maths: a tolerance is allowed).
        let mut model = Model::new(dropout_mlp(0.25)).unwrap();
        let b = batch(6, 8);
        let seed = [3u8; 32];
        let loss = |m: &Model| {
            let acts = m.forward_all(Exec::SINGLE, b.features(), b.len(), None, Some(&seed));
            let logits = &acts.last().unwrap().out;
            f64::from(ops::softmax_cross_entropy(logits, b.labels(), 3, None))
        };
        let mut grad = vec![0.0; model.param_count()];
        model.gradient_seeded(Exec::SINGLE, &b, &mut grad, None, Some(&seed));
        let dropped = model.forward_all(Exec::SINGLE, b.features(), b.len(), None, Some(&seed))[1]
            .keep
            .iter()
            .filter(|&&k| !k)
            .count();
        assert!(dropped > 0 && dropped < 8 * 16, "{dropped}");
        let eps = 1e-2f32;
        let mut checked = 0;
        for (j, &g) in grad.iter().enumerate() {
            let w = model.params()[j];
            model.params_mut()[j] = w + eps;
            let up = loss(&model);
            model.params_mut()[j] = w - eps;
            let down = loss(&model);
            model.params_mut()[j] = w;
            let numeric = (up - down) / (2.0 * f64::from(eps));
            let analytic = f64::from(g);
            let err = (numeric - analytic).abs() / (1e-3 + numeric.abs().max(analytic.abs()));
            assert!(err < 2e-2, "coordinate {j}: numeric {numeric}, analytic {analytic}");
            checked += usize::from(analytic != 0.0);
        }
        assert!(checked > 100, "{checked}");
    }
}
