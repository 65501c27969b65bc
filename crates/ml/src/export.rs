//! Safetensors export and import of a model.
//!
//! Tensor names and shapes are PyTorch's: the file is the `state_dict` of the
//! `torch.nn.Sequential` the metadata `pouw.torch` describes, so
//! `model.load_state_dict(safetensors.torch.load_file(path))` needs no renaming. The
//! Sequential has, for each layer of the spec in order: conv2d → `Conv2d(C, F, k, stride,
//! padding)` then its activation module (`ReLU`, `Tanh`, `Sigmoid`; none for `none`);
//! maxpool2d → `MaxPool2d(size, stride)`; flatten → `Flatten()`; dropout → `Dropout(p)` (no
//! parameters; identity in `model.eval()`, as in the engine's evaluation); dense → a `Flatten()` first
//! when its input is not flat yet, then `Linear(inputs, units)` and its activation module.
//! Module `n` with parameters gives `{n}.weight` and `{n}.bias`: conv `[F, C, k, k]` (the flat
//! vector's layout), linear `[units, inputs]` (the transpose of the flat vector's
//! `[inputs, units]`), biases `[units]`. Metadata: `pouw.spec` = the [`ModelSpec`] as JSON,
//! `pouw.model_hash` = the model hash in hex, `pouw.torch` = the Sequential, `format` = `pt`.
//! Import rebuilds the flat vector, recomputes the hash and rejects the file if it differs
//! from the metadata.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::{
    hash::Digest,
    model::Model,
    spec::{Activation, LayerLayout, Layout, ModelSpec, SpecError},
};

/// One tensor of the file: its name, its PyTorch shape, where its values live in the flat
/// vector, and `Some((inputs, units))` when the file holds the transpose of that block.
struct TorchTensor {
    name: String,
    shape: Vec<usize>,
    start: usize,
    len: usize,
    transpose: Option<(usize, usize)>,
}

/// The PyTorch `Sequential` of a layout (module docs) and its tensors in module order.
fn torch_modules(layout: &Layout, input_rank: usize) -> (String, Vec<TorchTensor>) {
    let mut modules: Vec<String> = Vec::new();
    let mut tensors = Vec::new();
    let mut flat = input_rank <= 1;
    let activation = |modules: &mut Vec<String>, a: Activation| match a {
        Activation::Relu => modules.push("ReLU()".into()),
        Activation::Tanh => modules.push("Tanh()".into()),
        Activation::Sigmoid => modules.push("Sigmoid()".into()),
        Activation::None => {}
    };
    let mut param = |n: usize, weight: (Vec<usize>, usize, usize), t, bias: (usize, usize)| {
        tensors.push(TorchTensor {
            name: format!("{n}.weight"),
            shape: weight.0,
            start: weight.1,
            len: weight.2,
            transpose: t,
        });
        tensors.push(TorchTensor {
            name: format!("{n}.bias"),
            shape: vec![bias.1],
            start: bias.0,
            len: bias.1,
            transpose: None,
        });
    };
    for layer in &layout.layers {
        match layer {
            LayerLayout::Conv2d(c) => {
                let w = (
                    vec![c.filters, c.channels, c.kernel, c.kernel],
                    c.weight_offset,
                    c.bias_offset - c.weight_offset,
                );
                param(modules.len(), w, None, (c.bias_offset, c.filters));
                modules.push(format!(
                    "Conv2d({}, {}, kernel_size={}, stride={}, padding={})",
                    c.channels, c.filters, c.kernel, c.stride, c.padding
                ));
                activation(&mut modules, c.activation);
                flat = false;
            }
            LayerLayout::MaxPool2d(p) => {
                modules.push(format!("MaxPool2d(kernel_size={}, stride={})", p.size, p.stride));
                flat = false;
            }
            LayerLayout::Flatten { .. } => {
                modules.push("Flatten()".into());
                flat = true;
            }
            LayerLayout::Dropout(d) => modules.push(format!("Dropout(p={:?})", d.p.get())),
            LayerLayout::Dense(d) => {
                if !flat {
                    modules.push("Flatten()".into());
                    flat = true;
                }
                let w = (vec![d.units, d.inputs], d.weight_offset, d.bias_offset - d.weight_offset);
                param(modules.len(), w, Some((d.inputs, d.units)), (d.bias_offset, d.units));
                modules.push(format!("Linear({}, {})", d.inputs, d.units));
                activation(&mut modules, d.activation);
            }
        }
    }
    (format!("Sequential({})", modules.join(", ")), tensors)
}

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading or writing the file failed.
    #[error("{}: cannot read or write the model file", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The safetensors container is malformed.
    #[error("not a valid safetensors file")]
    Format(#[from] safetensors::SafeTensorError),
    /// Metadata missing or unreadable.
    #[error("metadata: {0}")]
    Metadata(String),
    /// The spec in the metadata is not a valid model.
    #[error("the model spec in the metadata is invalid")]
    Spec(#[from] SpecError),
    /// A tensor is missing or has the wrong dtype or shape.
    #[error("tensor {name}: {problem}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The parameters do not hash to the recorded model hash.
    #[error("model hash mismatch: metadata says {expected}, the tensors give {actual}")]
    HashMismatch {
        /// From the metadata.
        expected: String,
        /// Recomputed.
        actual: Digest,
    },
}

/// Serialises a model to safetensors bytes.
///
/// The bytes are reproducible (the same model always gives the same file, so the file can be
/// addressed by its hash): the header is written here rather than by the `safetensors` crate,
/// whose metadata map has a random order. Header JSON: `__metadata__` first (keys sorted), then
/// the tensors in layer order (weight, bias), data in the same order; the header is padded with
/// spaces to a multiple of 8 bytes, as the reference implementation does.
pub fn to_safetensors(model: &Model) -> Result<Vec<u8>, ExportError> {
    let json = |s: &str| serde_json::to_string(s).map_err(|e| ExportError::Metadata(e.to_string()));
    let spec =
        serde_json::to_string(model.spec()).map_err(|e| ExportError::Metadata(e.to_string()))?;
    let (torch, tensors) = torch_modules(model.layout(), model.spec().input_shape.len());
    let mut header = format!(
        "{{\"__metadata__\":{{\"format\":\"pt\",\"pouw.model_hash\":\"{}\",\"pouw.spec\":{},\"pouw.torch\":{}}}",
        model.hash(),
        json(&spec)?,
        json(&torch)?
    );
    let p = model.params();
    let mut data = Vec::with_capacity(p.len() * 4);
    for t in &tensors {
        let start = data.len();
        let block = &p[t.start..t.start + t.len];
        match t.transpose {
            Some((rows, cols)) => {
                for c in 0..cols {
                    data.extend((0..rows).flat_map(|r| block[r * cols + c].to_le_bytes()));
                }
            }
            None => data.extend(block.iter().flat_map(|v| v.to_le_bytes())),
        }
        let shape = t.shape.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        header.push_str(&format!(
            ",{}:{{\"dtype\":\"F32\",\"shape\":[{shape}],\"data_offsets\":[{start},{}]}}",
            json(&t.name)?,
            data.len()
        ));
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}

/// Parses safetensors bytes written by [`to_safetensors`] and checks the model hash.
pub fn from_safetensors(bytes: &[u8]) -> Result<Model, ExportError> {
    let (_, meta) = SafeTensors::read_metadata(bytes)?;
    let info = meta.metadata().as_ref().ok_or_else(|| ExportError::Metadata("none".into()))?;
    let spec_json =
        info.get("pouw.spec").ok_or_else(|| ExportError::Metadata("no pouw.spec".into()))?;
    let expected = info
        .get("pouw.model_hash")
        .ok_or_else(|| ExportError::Metadata("no pouw.model_hash".into()))?
        .clone();
    let spec: ModelSpec = serde_json::from_str(spec_json)
        .map_err(|e| ExportError::Metadata(format!("pouw.spec: {e}")))?;
    let layout = spec.layout()?;
    // Before allocating: the file must hold every parameter (a hostile spec could ask for 2^31).
    if layout.params.saturating_mul(4) > bytes.len() {
        return Err(ExportError::Metadata(format!(
            "pouw.spec has {} parameters, more than the file holds",
            layout.params
        )));
    }
    let tensors = SafeTensors::deserialize(bytes)?;
    let mut params = vec![0.0f32; layout.params];
    let (_, wanted) = torch_modules(&layout, spec.input_shape.len());
    for want in wanted {
        let name = want.name;
        let t = tensors
            .tensor(&name)
            .map_err(|e| ExportError::Tensor { name: name.clone(), problem: e.to_string() })?;
        if t.dtype() != Dtype::F32 || t.shape() != want.shape.as_slice() {
            return Err(ExportError::Tensor {
                name,
                problem: format!(
                    "expected F32 {:?}, found {:?} {:?}",
                    want.shape,
                    t.dtype(),
                    t.shape()
                ),
            });
        }
        let values = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let block = &mut params[want.start..want.start + want.len];
        match want.transpose {
            // The file holds `[units, inputs]`: value `q` is row `q % inputs`, column `q / inputs`.
            Some((rows, cols)) => {
                for (q, v) in values.enumerate().take(block.len()) {
                    block[(q % rows) * cols + q / rows] = v;
                }
            }
            None => {
                for (dst, v) in block.iter_mut().zip(values) {
                    *dst = v;
                }
            }
        }
    }
    let model = Model::from_params(spec, params)?;
    let actual = model.hash();
    if actual.to_hex() != expected {
        return Err(ExportError::HashMismatch { expected, actual });
    }
    Ok(model)
}

/// Writes [`to_safetensors`] to `path`.
///
/// The file appears whole or not at all: the bytes go to a temporary file beside it, which is
/// synced and then renamed over `path` (a reader polling for the file, a client waiting for its
/// model say, never reads half of it).
pub fn save_safetensors(model: &Model, path: &Path) -> Result<(), ExportError> {
    use std::io::Write;
    let bytes = to_safetensors(model)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .map_err(|source| ExportError::Io { path: tmp.clone(), source });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
        .map_err(|source| ExportError::Io { path: path.to_path_buf(), source })
}

/// Reads a model written by [`save_safetensors`].
pub fn load_safetensors(path: &Path) -> Result<Model, ExportError> {
    let bytes = std::fs::read(path)
        .map_err(|source| ExportError::Io { path: path.to_path_buf(), source })?;
    from_safetensors(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Activation;

    #[test]
    fn round_trip_keeps_the_hash() {
        let model = Model::new(ModelSpec::mlp(20, &[7, 5], 3, Activation::Sigmoid, 3)).unwrap();
        let bytes = to_safetensors(&model).unwrap();
        let back = from_safetensors(&bytes).unwrap();
        assert_eq!(back.hash(), model.hash());
        assert_eq!(back, model);
        assert_eq!(to_safetensors(&back).unwrap(), bytes, "export is reproducible");
        // The reference parser reads the tensors we wrote.
        let st = SafeTensors::deserialize(&bytes).unwrap();
        // nn.Sequential(Linear(20, 7), Sigmoid(), Linear(7, 5), Sigmoid(), Linear(5, 3)).
        let w = st.tensor("2.weight").unwrap();
        assert_eq!(w.shape(), &[5, 7], "nn.Linear's [out, in]");
        let off = model.layout().dense[1].weight_offset;
        // Element (out 0, in 1) of the file is W[1, 0] of the flat [in, out] block, element
        // (out 1, in 0) is W[0, 1].
        assert_eq!(&w.data()[4..8], &model.params()[off + 5].to_le_bytes());
        assert_eq!(&w.data()[7 * 4..7 * 4 + 4], &model.params()[off + 1].to_le_bytes());
        assert_eq!(st.tensor("4.bias").unwrap().shape(), &[3]);
    }

    #[test]
    fn a_cnn_exports_as_a_torch_sequential() {
        use crate::spec::LayerSpec;
        let spec = ModelSpec {
            input_shape: vec![1, 8, 8],
            layers: vec![
                LayerSpec::Conv2d {
                    filters: 3,
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                    activation: Activation::Relu,
                },
                LayerSpec::MaxPool2d { size: 2, stride: None },
                LayerSpec::Conv2d {
                    filters: 4,
                    kernel: 3,
                    stride: 1,
                    padding: 0,
                    activation: Activation::Tanh,
                },
                LayerSpec::Dense { units: 5, activation: Activation::None },
            ],
            classes: 5,
            init: crate::spec::Init::He,
            seed: 4,
        };
        let model = Model::new(spec).unwrap();
        let bytes = to_safetensors(&model).unwrap();
        let back = from_safetensors(&bytes).unwrap();
        assert_eq!(back, model);
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut names: Vec<(String, Vec<usize>)> =
            st.tensors().into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
        names.sort();
        assert_eq!(
            names,
            [
                ("0.bias".to_string(), vec![3]),
                ("0.weight".to_string(), vec![3, 1, 3, 3]),
                ("3.bias".to_string(), vec![4]),
                ("3.weight".to_string(), vec![4, 3, 3, 3]),
                ("6.bias".to_string(), vec![5]),
                ("6.weight".to_string(), vec![5, 4 * 2 * 2]),
            ]
        );
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            meta.metadata().as_ref().unwrap()["pouw.torch"],
            "Sequential(Conv2d(1, 3, kernel_size=3, stride=1, padding=1), ReLU(), \
             MaxPool2d(kernel_size=2, stride=2), Conv2d(3, 4, kernel_size=3, stride=1, \
             padding=0), Tanh(), Flatten(), Linear(16, 5))"
        );
    }

    #[test]
    fn dropout_exports_as_a_module_without_tensors() {
        use crate::spec::LayerSpec;
        let p = pouw_primitives::F32::new(0.25);
        let spec = ModelSpec {
            input_shape: vec![6],
            layers: vec![
                LayerSpec::Dense { units: 4, activation: Activation::Relu },
                LayerSpec::Dropout { p },
                LayerSpec::Dense { units: 3, activation: Activation::None },
            ],
            classes: 3,
            init: crate::spec::Init::Xavier,
            seed: 4,
        };
        let model = Model::new(spec).unwrap();
        let bytes = to_safetensors(&model).unwrap();
        assert_eq!(from_safetensors(&bytes).unwrap(), model);
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut names: Vec<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(names, ["0.bias", "0.weight", "3.bias", "3.weight"]);
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            meta.metadata().as_ref().unwrap()["pouw.torch"],
            "Sequential(Linear(6, 4), ReLU(), Dropout(p=0.25), Linear(4, 3))"
        );
    }

    #[test]
    fn a_saved_model_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, b"half a mod").unwrap();
        let model = Model::new(ModelSpec::mlp(4, &[3], 2, Activation::Relu, 1)).unwrap();
        save_safetensors(&model, &path).unwrap();
        assert_eq!(load_safetensors(&path).unwrap(), model);
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["m.safetensors"]);
        // A directory that cannot take the file: an error naming it, nothing left behind.
        let e = save_safetensors(&model, &dir.path().join("no/such/m.safetensors")).unwrap_err();
        assert!(e.to_string().contains("no/such"), "{e}");
    }

    #[test]
    fn tampered_file_is_rejected() {
        let model = Model::new(ModelSpec::mlp(4, &[3], 2, Activation::Relu, 1)).unwrap();
        let mut bytes = to_safetensors(&model).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        assert!(matches!(from_safetensors(&bytes), Err(ExportError::HashMismatch { .. })));
    }
}
