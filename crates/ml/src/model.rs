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
    hash::{self, Digest},
    kernels::{self, Exec},
    ops,
    rng::Rng,
    spec::{Init, Layout, ModelSpec, SpecError},
};

/// A model with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    spec: ModelSpec,
    layout: Layout,
    params: Vec<f32>,
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
        for d in &layout.dense {
            let bound = match spec.init {
                Init::Xavier => libm::sqrtf(6.0 / (d.inputs + d.units) as f32),
                Init::He => libm::sqrtf(6.0 / d.inputs as f32),
            };
            for w in &mut params[d.weight_offset..d.bias_offset] {
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

    /// The canonical model hash ([`hash::model_hash`]).
    pub fn hash(&self) -> Digest {
        hash::model_hash(&self.spec, &self.params)
    }

    /// Forward pass over `rows` samples; returns every layer's output (`acts[l]` = output of
    /// layer `l`), the last being the logits.
    fn forward_all(&self, exec: Exec, x: &[f32], rows: usize) -> Vec<Vec<f32>> {
        let mut acts: Vec<Vec<f32>> = Vec::with_capacity(self.layout.dense.len());
        for d in &self.layout.dense {
            let input = acts.last().map_or(x, Vec::as_slice);
            let mut z = vec![0.0f32; rows * d.units];
            let w = &self.params[d.weight_offset..d.bias_offset];
            kernels::matmul(exec, input, w, &mut z, rows, d.inputs, d.units);
            ops::bias_add(&mut z, &self.params[d.bias_offset..d.bias_offset + d.units]);
            ops::activate(d.activation, &mut z);
            acts.push(z);
        }
        acts
    }

    /// Logits for `rows` samples (`x` is `rows × inputs`).
    pub fn forward(&self, exec: Exec, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.layout.inputs, "forward: input shape");
        self.forward_all(exec, x, rows).pop().expect("a model has at least one layer")
    }

    /// Loss and correct count over `labels.len()` samples, evaluated in chunks of `chunk` rows
    /// (loss = mean over all samples of the per-chunk sums; for reporting, not consensus).
    pub fn evaluate(&self, exec: Exec, x: &[f32], labels: &[u32], chunk: usize) -> Metrics {
        let width = self.layout.inputs;
        let classes = self.layout.classes;
        let mut loss_sum = 0.0f64;
        let mut correct = 0u32;
        for (xs, ys) in x.chunks(chunk.max(1) * width).zip(labels.chunks(chunk.max(1))) {
            let logits = self.forward(exec, xs, ys.len());
            let loss = ops::softmax_cross_entropy(&logits, ys, classes, None);
            loss_sum += f64::from(loss) * ys.len() as f64;
            correct += ops::correct_count(&logits, ys, classes);
        }
        let samples = labels.len() as u32;
        Metrics { loss: (loss_sum / f64::from(samples.max(1))) as f32, correct, samples }
    }

    /// Gradient of the mean softmax cross-entropy over `batch` with respect to every parameter,
    /// written to `grad` (length [`Model::param_count`], every element overwritten), plus the
    /// batch's loss and correct count from the same forward pass. The batch must fit the model
    /// ([`Batch::validate`]).
    pub fn gradient(&self, exec: Exec, batch: &Batch, grad: &mut [f32]) -> Metrics {
        assert_eq!(grad.len(), self.params.len(), "gradient: buffer length");
        let rows = batch.len();
        let x = batch.features();
        let classes = self.layout.classes;
        let acts = self.forward_all(exec, x, rows);
        let logits = acts.last().expect("a model has at least one layer");
        let mut dz = vec![0.0f32; logits.len()];
        let loss = ops::softmax_cross_entropy(logits, batch.labels(), classes, Some(&mut dz));
        let correct = ops::correct_count(logits, batch.labels(), classes);
        for (l, d) in self.layout.dense.iter().enumerate().rev() {
            ops::activation_backward(d.activation, &acts[l], &mut dz);
            let input = if l == 0 { x } else { &acts[l - 1] };
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
        Metrics { loss, correct, samples: rows as u32 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Activation;

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
}
