//! The safetensors export loads into `torch.nn` with no renaming: the `Sequential` of the
//! metadata `pouw.torch`, `load_state_dict(strict=True)`, gives the engine's logits. Needs
//! `python3` with `torch` and `safetensors`; without them only the engine side is checked.

use std::process::Command;

use pouw_ml::{Activation, Exec, Init, LayerSpec, Model, ModelSpec, Rng};

const SCRIPT: &str = r#"
import json, sys
import torch
from torch.nn import *
from safetensors import safe_open
from safetensors.torch import load_file
path, inputs = sys.argv[1], sys.argv[2]
with safe_open(path, "pt") as f:
    meta = f.metadata()
model = eval(meta["pouw.torch"])
model.load_state_dict(load_file(path), strict=True)
x = torch.tensor(json.load(open(inputs)), dtype=torch.float32)
with torch.no_grad():
    print(json.dumps(model(x).flatten().tolist()))
"#;

fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_export_loads_into_torch_and_gives_the_same_logits() {
    let spec = ModelSpec {
        input_shape: vec![2, 10, 10],
        layers: vec![
            LayerSpec::Conv2d {
                filters: 4,
                kernel: 3,
                stride: 1,
                padding: 1,
                activation: Activation::Relu,
            },
            LayerSpec::MaxPool2d { size: 2, stride: None },
            LayerSpec::Conv2d {
                filters: 5,
                kernel: 2,
                stride: 2,
                padding: 0,
                activation: Activation::Tanh,
            },
            LayerSpec::Flatten,
            LayerSpec::Dense { units: 7, activation: Activation::Sigmoid },
            LayerSpec::Dense { units: 3, activation: Activation::None },
        ],
        classes: 3,
        init: Init::He,
        seed: 9,
    };
    let model = Model::new(spec).unwrap();
    let mut rng = Rng::from_u64(1);
    let rows = 4;
    let x: Vec<f32> = (0..rows * 200).map(|_| rng.uniform_sym(1.0)).collect();
    let logits = model.forward(Exec::SINGLE, &x, rows).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    pouw_ml::save_safetensors(&model, &path).unwrap();
    assert_eq!(pouw_ml::load_safetensors(&path).unwrap(), model);
    if !torch_available() {
        eprintln!("python3 with torch and safetensors not found: the PyTorch side is skipped");
        return;
    }
    // N x C x H x W, the same values as the engine's row-major samples.
    let nested: Vec<Vec<Vec<Vec<f32>>>> = x
        .chunks(200)
        .map(|s| s.chunks(100).map(|c| c.chunks(10).map(<[f32]>::to_vec).collect()).collect())
        .collect();
    let inputs = dir.path().join("x.json");
    std::fs::write(&inputs, serde_json::to_string(&nested).unwrap()).unwrap();
    let out =
        Command::new("python3").args(["-c", SCRIPT]).arg(&path).arg(&inputs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let torch: Vec<f32> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(torch.len(), logits.len());
    for (t, e) in torch.iter().zip(&logits) {
        assert!((t - e).abs() <= 1e-4 * (1.0 + e.abs()), "torch {t} vs engine {e}");
    }
}
