//! Safetensors export and import of a model.
//!
//! Tensors: for the layer at position `i` of the spec's layer list, a dense layer gives
//! `dense{i}.weight` (F32, shape `[inputs, units]`, row-major as in the flat vector) and
//! `dense{i}.bias` (F32, `[units]`). Metadata: `pouw.spec` = the [`ModelSpec`] as JSON,
//! `pouw.model_hash` = the model hash in hex, `format` = `pt`. Import rebuilds the flat vector,
//! recomputes the hash and rejects the file if it differs from the metadata.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::{
    hash::Digest,
    model::Model,
    spec::{ModelSpec, SpecError},
};

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
    let mut header = format!(
        "{{\"__metadata__\":{{\"format\":\"pt\",\"pouw.model_hash\":\"{}\",\"pouw.spec\":{}}}",
        model.hash(),
        json(&spec)?
    );
    let p = model.params();
    let mut data = Vec::with_capacity(p.len() * 4);
    for (i, d) in model.layout().dense.iter().enumerate() {
        for (name, shape, values) in [
            (
                format!("dense{i}.weight"),
                format!("[{},{}]", d.inputs, d.units),
                &p[d.weight_offset..d.bias_offset],
            ),
            (
                format!("dense{i}.bias"),
                format!("[{}]", d.units),
                &p[d.bias_offset..d.bias_offset + d.units],
            ),
        ] {
            let start = data.len();
            data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            header.push_str(&format!(
                ",{}:{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":[{start},{}]}}",
                json(&name)?,
                data.len()
            ));
        }
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
    for (i, d) in layout.dense.iter().enumerate() {
        for (name, shape, range) in [
            (format!("dense{i}.weight"), vec![d.inputs, d.units], d.weight_offset..d.bias_offset),
            (format!("dense{i}.bias"), vec![d.units], d.bias_offset..d.bias_offset + d.units),
        ] {
            let t = tensors
                .tensor(&name)
                .map_err(|e| ExportError::Tensor { name: name.clone(), problem: e.to_string() })?;
            if t.dtype() != Dtype::F32 || t.shape() != shape.as_slice() {
                return Err(ExportError::Tensor {
                    name,
                    problem: format!(
                        "expected F32 {shape:?}, found {:?} {:?}",
                        t.dtype(),
                        t.shape()
                    ),
                });
            }
            for (dst, src) in params[range].iter_mut().zip(t.data().chunks_exact(4)) {
                *dst = f32::from_le_bytes(src.try_into().expect("4 bytes"));
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
        let w = st.tensor("dense1.weight").unwrap();
        assert_eq!(w.shape(), &[7, 5]);
        let off = model.layout().dense[1].weight_offset;
        assert_eq!(&w.data()[..4], &model.params()[off].to_le_bytes());
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
