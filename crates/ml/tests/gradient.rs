//! Finite-difference check of the analytic gradient (maths, so a tolerance is allowed here).

use pouw_ml::{ops, Activation, Batch, Exec, Init, LayerSpec, Model, ModelSpec, Rng};

fn loss(model: &Model, batch: &Batch) -> f64 {
    let logits = model.forward(Exec::SINGLE, batch.features(), batch.len()).unwrap();
    f64::from(ops::softmax_cross_entropy(&logits, batch.labels(), model.layout().classes, None))
}

fn check(spec: ModelSpec, eps: f32) {
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
    for d in model.layout().dense.clone() {
        coords.extend(d.bias_offset..d.bias_offset + d.units);
        coords.extend(
            (0..20).map(|_| d.weight_offset + rng.below((d.inputs * d.units) as u64) as usize),
        );
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
        let err = (numeric - analytic).abs() / (1e-3 + numeric.abs().max(analytic.abs()));
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
