//! Finite-difference check of the analytic gradient (maths, so a tolerance is allowed here).

use pouw_ml::{ops, Activation, Batch, Exec, Init, LayerLayout, LayerSpec, Model, ModelSpec, Rng};

fn loss(model: &Model, batch: &Batch) -> f64 {
    let logits = model.forward(Exec::SINGLE, batch.features(), batch.len()).unwrap();
    f64::from(ops::softmax_cross_entropy(&logits, batch.labels(), model.layout().classes, None))
}

fn check(spec: ModelSpec, eps: f32) {
    check_with_floor(spec, eps, 1e-3);
}

/// `floor`: the gradient size below which the error is measured absolutely (the loss is an
/// `f32`, so a central difference of step `eps` carries about `1e-7 / eps` of noise).
fn check_with_floor(spec: ModelSpec, eps: f32, floor: f64) {
    let mut model = Model::new(spec).unwrap();
    let mut rng = Rng::from_u64(3);
    let width = model.layout().inputs;
    let classes = model.layout().classes as u64;
    let x = (0..8 * width).map(|_| rng.uniform_sym(1.0)).collect();
    let y = (0..8).map(|_| rng.below(classes) as u32).collect();
    let batch = Batch::new(x, y, width).unwrap();
    let mut grad = vec![0.0; model.param_count()];
    model.gradient(Exec::new(2), &batch, &mut grad);
    // Every bias and a sample of weights, from every layer.
    let mut coords: Vec<usize> = Vec::new();
    for layer in model.layout().layers.clone() {
        let (w, b, units) = match layer {
            LayerLayout::Dense(d) => (d.weight_offset, d.bias_offset, d.units),
            LayerLayout::Conv2d(c) => (c.weight_offset, c.bias_offset, c.filters),
            _ => continue,
        };
        coords.extend(b..b + units);
        coords.extend((0..20).map(|_| w + rng.below((b - w) as u64) as usize));
    }
    let mut worst = 0.0f64;
    for j in coords {
        let w = model.params()[j];
        model.params_mut()[j] = w + eps;
        let up = loss(&model, &batch);
        model.params_mut()[j] = w - eps;
        let down = loss(&model, &batch);
        model.params_mut()[j] = w;
        let numeric = (up - down) / (2.0 * f64::from(eps));
        let analytic = f64::from(grad[j]);
        let err = (numeric - analytic).abs() / (floor + numeric.abs().max(analytic.abs()));
        worst = worst.max(err);
        assert!(err < 2e-2, "coordinate {j}: numeric {numeric}, analytic {analytic}");
    }
    assert!(worst < 2e-2);
}

#[test]
fn smooth_activations() {
    check(
        ModelSpec {
            input_shape: vec![6],
            layers: vec![
                LayerSpec::Dense { units: 5, activation: Activation::Tanh },
                LayerSpec::Dense { units: 4, activation: Activation::Sigmoid },
                LayerSpec::Dense { units: 3, activation: Activation::None },
            ],
            classes: 3,
            init: Init::Xavier,
            seed: 11,
        },
        1e-2,
    );
}

#[test]
fn relu_mlp() {
    // A small step, so that no pre-activation crosses relu's kink.
    check(ModelSpec::mlp(10, &[8, 6], 4, Activation::Relu, 5), 1e-3);
}

fn cnn(pool: bool) -> ModelSpec {
    // conv (stride 2, padding 1) -> [maxpool] -> conv (padding 1) -> flatten -> dense.
    let mut layers = vec![
        LayerSpec::Conv2d {
            filters: 3,
            kernel: 3,
            stride: 2,
            padding: 1,
            activation: Activation::Tanh,
        },
        LayerSpec::Conv2d {
            filters: 4,
            kernel: 2,
            stride: 1,
            padding: 1,
            activation: Activation::Sigmoid,
        },
        LayerSpec::Flatten,
        LayerSpec::Dense { units: 3, activation: Activation::None },
    ];
    if pool {
        layers.insert(1, LayerSpec::MaxPool2d { size: 2, stride: Some(1) });
    }
    ModelSpec { input_shape: vec![2, 9, 9], layers, classes: 3, init: Init::Xavier, seed: 7 }
}

#[test]
fn convolutions() {
    check(cnn(false), 1e-3);
}

#[test]
fn convolutions_and_overlapping_pooling() {
    // Max pooling has kinks: a step that switches a window's maximum moves the difference
    // quotient, so this case takes a small step and a floor above the f32 noise of that step.
    check_with_floor(cnn(true), 1e-3, 1e-2);
}
