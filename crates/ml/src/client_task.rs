//! From the client's task file to the on-chain [`TaskDefinition`] and the dataset segments
//! the client serves (SPEC section 3, `docs/task-file.md`).
//!
//! [`load_client_task`] reads the file, loads the dataset, cuts it into the
//! [`DATASET_SEGMENTS`] segments, hashes them, and checks everything the chain would refuse
//! (or that would waste the fee) before anything is paid: a zero fee, an unknown layer or
//! activation, a batch larger than the training set, a segment hash written in the file that
//! does not match the data, committees too small for `max_faulty`. Every error names the field.

use std::path::{Path, PathBuf};

use pouw_primitives::{
    Activation, AdamDef, Amount, DatasetDef, Deadlines, Hash, Initializer, LayerDef, ModelDef,
    OptimizerDef, TaskDefError, TaskDefinition, TaskPreferences, UpdateRuleDef, WorkersWanted,
    DATASET_SEGMENTS, F32,
};

use crate::{
    spec::{Init, LayerSpec},
    task::{DatasetFormat, TaskError, TaskFile},
};

/// Layer types a task file may use.
const LAYER_TYPES: &[&str] = &["dense", "conv2d", "maxpool2d", "flatten", "dropout"];
/// Activations a task file may use.
const ACTIVATIONS: &[&str] = &["relu", "tanh", "sigmoid", "none"];

/// A client task ready to be paid for.
#[derive(Debug, Clone)]
pub struct ClientTask {
    /// The definition a PayForTask carries.
    pub definition: TaskDefinition,
    /// The fee (`payment.fee`) in base units.
    pub fee: Amount,
    /// The canonical bytes of the 10 segments, in file order (what the client serves; segment
    /// `i` hashes to `definition.dataset.segment_hashes[i]`).
    pub segments: Vec<Vec<u8>>,
    /// The start weights file's exact bytes, with `init = { file }` (what the client serves
    /// to the task's miners and supervisors; BLAKE3 of them is the hash of
    /// `Initializer::Weights` in the definition).
    pub start_weights: Option<Vec<u8>>,
}

/// The largest start weights file a task may name: what one network response carries (32 MiB)
/// with room for its framing.
pub const MAX_START_WEIGHTS_BYTES: usize = 32 * 1024 * 1024 - 1024;

/// Why a client task file cannot be paid for. Every variant names the field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientTaskError {
    /// The file could not be read, parsed or validated as a task file.
    #[error(transparent)]
    File(#[from] TaskError),
    /// `payment.fee` is zero (or missing): the chain refuses a task that pays nothing.
    #[error("{}: field `payment.fee`: the fee must be positive", path.display())]
    ZeroFee {
        /// The file.
        path: PathBuf,
    },
    /// A layer type the engine does not know.
    #[error("{}: field `{field}`: unknown layer type {found:?} (known: {known})", path.display(), known = LAYER_TYPES.join(", "))]
    UnknownLayer {
        /// The file.
        path: PathBuf,
        /// e.g. `model.layers[1].type`.
        field: String,
        /// What the file says.
        found: String,
    },
    /// An activation the engine does not know.
    #[error("{}: field `{field}`: unknown activation {found:?} (known: {known})", path.display(), known = ACTIVATIONS.join(", "))]
    UnknownActivation {
        /// The file.
        path: PathBuf,
        /// e.g. `model.layers[0].activation`.
        field: String,
        /// What the file says.
        found: String,
    },
    /// The batch is larger than the training set.
    #[error("{}: field `optimizer.batch_size`: batch of {batch} is larger than the {train_samples} training samples of the dataset", path.display())]
    BatchLargerThanDataset {
        /// The file.
        path: PathBuf,
        /// The batch size.
        batch: u32,
        /// Training samples after the split.
        train_samples: u64,
    },
    /// A segment hash written in the file does not match the data.
    #[error("{}: field `dataset.segment_hashes[{index}]`: the file says {written}, the data hashes to {computed}", path.display())]
    SegmentHashMismatch {
        /// The file.
        path: PathBuf,
        /// Segment index.
        index: usize,
        /// The hash in the file.
        written: Hash,
        /// The hash of the data.
        computed: Hash,
    },
    /// `dataset.segment_hashes` is not a list of 10 hex hashes.
    #[error("{}: field `{field}`: {reason}", path.display())]
    BadSegmentHashes {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A committee cannot tolerate `workers.max_faulty` faults.
    #[error("{}: field `{field}`: {n} members cannot tolerate workers.max_faulty = {max_faulty} faults (needs at least 3 * max_faulty + 1)", path.display())]
    CommitteeTooSmall {
        /// The file.
        path: PathBuf,
        /// `workers.supervisors` or `workers.evaluators`.
        field: &'static str,
        /// The committee size.
        n: u32,
        /// `workers.max_faulty`.
        max_faulty: u32,
    },
    /// A field that is fine for a local dry run but not for a task on chain.
    #[error("{}: field `{field}`: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `model.init = { file }`: the start weights file cannot be read, is too large to serve,
    /// or is not a model of the task (other shapes, a parameter NaN or infinite).
    #[error("{}: field `model.init`: start weights {}: {reason}", path.display(), file.display())]
    StartWeights {
        /// The task file.
        path: PathBuf,
        /// The start weights file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The definition breaks an on-chain rule not covered above.
    #[error("{}: {source}", path.display())]
    Definition {
        /// The file.
        path: PathBuf,
        /// The rule.
        source: TaskDefError,
    },
}

/// Checks the layer types and activations before the typed parse, so an unknown one gets a
/// named error instead of a generic "unknown variant".
fn check_layers(text: &str, path: &Path) -> Result<(), ClientTaskError> {
    let Ok(value) = text.parse::<toml::Table>() else { return Ok(()) }; // the parse reports it
    let Some(layers) =
        value.get("model").and_then(|m| m.get("layers")).and_then(toml::Value::as_array)
    else {
        return Ok(());
    };
    for (i, layer) in layers.iter().enumerate() {
        if let Some(t) = layer.get("type").and_then(toml::Value::as_str) {
            if !LAYER_TYPES.contains(&t) {
                return Err(ClientTaskError::UnknownLayer {
                    path: path.to_path_buf(),
                    field: format!("model.layers[{i}].type"),
                    found: t.to_string(),
                });
            }
        }
        if let Some(a) = layer.get("activation").and_then(toml::Value::as_str) {
            if !ACTIVATIONS.contains(&a) {
                return Err(ClientTaskError::UnknownActivation {
                    path: path.to_path_buf(),
                    field: format!("model.layers[{i}].activation"),
                    found: a.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn permille(fraction: f64) -> Option<u16> {
    let p = (fraction * 1000.0).round();
    (0.0..1000.0).contains(&p).then_some(p as u16)
}

/// The on-chain form of a local update rule (design/018).
pub fn update_rule_def(rule: &crate::UpdateRule) -> UpdateRuleDef {
    let def = |a: &crate::AdamSpec| AdamDef {
        beta1: F32::new(a.beta1),
        beta2: F32::new(a.beta2),
        epsilon: F32::new(a.epsilon),
        weight_decay: F32::new(a.weight_decay),
    };
    match rule {
        crate::UpdateRule::Sgd => UpdateRuleDef::Sgd,
        crate::UpdateRule::Adam(a) => UpdateRuleDef::Adam(def(a)),
        crate::UpdateRule::AdamW(a) => UpdateRuleDef::AdamW(def(a)),
    }
}

/// The engine's local update rule of an on-chain definition (the inverse of
/// [`update_rule_def`]).
pub fn update_rule_of(def: &UpdateRuleDef) -> crate::UpdateRule {
    let spec = |a: &AdamDef| crate::AdamSpec {
        beta1: a.beta1.get(),
        beta2: a.beta2.get(),
        epsilon: a.epsilon.get(),
        weight_decay: a.weight_decay.get(),
    };
    match def {
        UpdateRuleDef::Sgd => crate::UpdateRule::Sgd,
        UpdateRuleDef::Adam(a) => crate::UpdateRule::Adam(spec(a)),
        UpdateRuleDef::AdamW(a) => crate::UpdateRule::AdamW(spec(a)),
    }
}

/// [`load_client_task`] without the fee: the definition and the segment bytes.
pub fn client_task(
    file: &Path,
    dir: &Path,
) -> Result<(TaskDefinition, Vec<Vec<u8>>), ClientTaskError> {
    let t = load_client_task(file, dir)?;
    Ok((t.definition, t.segments))
}

/// Reads the task file `file`, resolving its relative dataset paths against `dir` (normally
/// the file's own directory), loads the dataset, computes the segment hashes and checks the
/// task (see the module docs).
pub fn load_client_task(file: &Path, dir: &Path) -> Result<ClientTask, ClientTaskError> {
    let text = std::fs::read_to_string(file)
        .map_err(|source| TaskError::Io { path: file.to_path_buf(), source })?;
    let path = file.to_path_buf();
    check_layers(&text, &path)?;
    let anchor = dir.join(file.file_name().unwrap_or_default());
    let tf = TaskFile::parse(&text, &anchor)?;
    let invalid = |field: &'static str, reason: String| ClientTaskError::Invalid {
        path: path.clone(),
        field,
        reason,
    };
    if tf.payment.fee.0 == 0 {
        return Err(ClientTaskError::ZeroFee { path });
    }
    let start_weights = match &tf.start_weights {
        None => None,
        Some(file) => {
            let bad = |reason: String| ClientTaskError::StartWeights {
                path: path.clone(),
                file: file.clone(),
                reason,
            };
            let bytes = std::fs::read(file).map_err(|e| bad(format!("cannot read it: {e}")))?;
            if bytes.len() > MAX_START_WEIGHTS_BYTES {
                return Err(bad(format!(
                    "{} bytes, more than the {MAX_START_WEIGHTS_BYTES} a worker can be served",
                    bytes.len()
                )));
            }
            crate::task::start_model_from_bytes(&tf.model, &bytes)
                .map_err(|e| bad(e.to_string()))?;
            Some(bytes)
        }
    };
    if tf.dataset.segments as usize != DATASET_SEGMENTS {
        return Err(invalid(
            "dataset.segments",
            format!("a task on chain has exactly {DATASET_SEGMENTS} segments"),
        ));
    }
    let w = &tf.workers;
    let needed = w.max_faulty.saturating_mul(3).saturating_add(1);
    for (field, n) in [("workers.supervisors", w.supervisors), ("workers.evaluators", w.evaluators)]
    {
        if n < needed {
            return Err(ClientTaskError::CommitteeTooSmall {
                path,
                field,
                n,
                max_faulty: w.max_faulty,
            });
        }
    }
    let small = |field: &'static str, v: u32| {
        u16::try_from(v).map_err(|_| invalid(field, format!("{v} is more than {}", u16::MAX)))
    };
    let workers = WorkersWanted {
        miners: small("workers.miners", w.miners)?,
        supervisors: small("workers.supervisors", w.supervisors)?,
        evaluators: small("workers.evaluators", w.evaluators)?,
        verifiers: small("workers.verifiers", w.verifiers)?,
        max_faulty: small("workers.max_faulty", w.max_faulty)?,
    };
    let test_permille = permille(tf.dataset.test_fraction)
        .ok_or_else(|| invalid("dataset.test_fraction", "must be in [0, 1)".into()))?;
    let validation_permille = permille(tf.dataset.validation_fraction)
        .ok_or_else(|| invalid("dataset.validation_fraction", "must be in [0, 1)".into()))?;
    let written: Vec<Hash> = tf
        .dataset
        .segment_hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            h.parse::<Hash>().map_err(|e| ClientTaskError::BadSegmentHashes {
                path: path.clone(),
                field: format!("dataset.segment_hashes[{i}]"),
                reason: format!("{h:?} is not a 64-digit hex hash: {e}"),
            })
        })
        .collect::<Result<_, _>>()?;
    if !written.is_empty() && written.len() != DATASET_SEGMENTS {
        return Err(ClientTaskError::BadSegmentHashes {
            path,
            field: "dataset.segment_hashes".into(),
            reason: format!("{} hashes, a task has {DATASET_SEGMENTS} segments", written.len()),
        });
    }

    let data = tf.load_dataset()?;
    let segs = data.segments(DATASET_SEGMENTS).map_err(TaskError::from)?;
    // The split is drawn on chain after payment: the whole dataset must hold every class.
    let all: Vec<usize> = (0..segs.len()).collect();
    tf.check_classes(&data, &data.class_counts(&segs, &all), "dataset")?;
    let hashes: Vec<Hash> = segs.iter().map(|s| Hash(data.segment_hash(s).0)).collect();
    for (index, (w, c)) in written.iter().zip(&hashes).enumerate() {
        if w != c {
            return Err(ClientTaskError::SegmentHashMismatch {
                path,
                index,
                written: *w,
                computed: *c,
            });
        }
    }
    let segments: Vec<Vec<u8>> = segs.iter().map(|s| data.segment_bytes(s)).collect();

    let act = |a: &crate::Activation| match a {
        crate::Activation::Relu => Activation::Relu,
        crate::Activation::Tanh => Activation::Tanh,
        crate::Activation::Sigmoid => Activation::Sigmoid,
        crate::Activation::None => Activation::None,
    };
    let mut layers = Vec::with_capacity(tf.model.layers.len());
    for (i, l) in tf.model.layers.iter().enumerate() {
        match l {
            LayerSpec::Dense { units, activation } => {
                layers.push(LayerDef::Dense { units: *units, activation: act(activation) })
            }
            LayerSpec::Conv2d { filters, kernel, stride, padding, activation } => {
                layers.push(LayerDef::Conv2d {
                    filters: *filters,
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                    activation: act(activation),
                })
            }
            LayerSpec::MaxPool2d { size, stride } => {
                layers.push(LayerDef::MaxPool2d { size: *size, stride: stride.unwrap_or(*size) })
            }
            LayerSpec::Flatten => layers.push(LayerDef::Flatten),
            LayerSpec::Dropout { p } => layers.push(LayerDef::Dropout { p: *p }),
            #[allow(unreachable_patterns)]
            other => {
                return Err(ClientTaskError::UnknownLayer {
                    path,
                    field: format!("model.layers[{i}].type"),
                    found: format!("{other:?}"),
                })
            }
        }
    }
    let o = &tf.optimizer;
    let definition = TaskDefinition {
        model: ModelDef {
            input_shape: tf.model.input_shape.clone(),
            layers,
            classes: tf.model.classes,
            init: match (&start_weights, tf.model.init) {
                (Some(bytes), _) => Initializer::Weights(Hash::digest(bytes)),
                (None, Init::Xavier) => Initializer::Xavier,
                (None, Init::He) => Initializer::He,
            },
            seed: tf.model.seed,
        },
        optimizer: OptimizerDef {
            learning_rate: F32::new(o.learning_rate),
            momentum: F32::new(o.momentum),
            tau: F32::new(o.tau),
            batch_size: o.batch_size,
            epochs: o.epochs,
            rule: update_rule_def(&tf.update),
        },
        dataset: DatasetDef {
            format: match tf.dataset.format {
                DatasetFormat::Idx => pouw_primitives::DatasetFormat::Idx,
                DatasetFormat::Csv => pouw_primitives::DatasetFormat::Csv,
            },
            samples: data.len() as u64,
            segment_hashes: hashes,
            test_permille,
            validation_permille,
        },
        workers,
        preferences: TaskPreferences { needs_gpu: w.needs_gpu, min_stake: Amount(w.min_stake.0) },
        deadlines: Deadlines {
            training_blocks: tf.payment.deadline_blocks,
            evaluation_blocks: tf.payment.evaluation_blocks,
        },
    };
    let train_samples = definition.dataset.train_samples();
    if u64::from(o.batch_size) > train_samples {
        return Err(ClientTaskError::BatchLargerThanDataset {
            path,
            batch: o.batch_size,
            train_samples,
        });
    }
    definition
        .validate()
        .map_err(|source| ClientTaskError::Definition { path: path.clone(), source })?;
    Ok(ClientTask { definition, fee: Amount(tf.payment.fee.0), segments, start_weights })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// A 3-class CSV dataset of `n` samples with 4 features, and a task file for it.
    fn setup(n: usize, edit: impl Fn(String) -> String) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from("label,a,b,c,d\n");
        for i in 0..n {
            writeln!(csv, "{},{},{},0.5,{}", i % 3, i, i % 7, i % 5).unwrap();
        }
        std::fs::write(dir.path().join("data.csv"), csv).unwrap();
        let toml = r#"
[model]
input_shape = [4]
classes = 3
[[model.layers]]
type = "dense"
units = 8
activation = "relu"
[[model.layers]]
type = "dense"
units = 3
activation = "none"
[optimizer]
learning_rate = 0.1
tau = 0.01
batch_size = 8
epochs = 1
[dataset]
format = "csv"
path = "data.csv"
[workers]
miners = 2
supervisors = 4
evaluators = 4
max_faulty = 1
[payment]
fee = "5"
deadline_blocks = 20
evaluation_blocks = 5
"#;
        let file = dir.path().join("task.toml");
        std::fs::write(&file, edit(toml.to_string())).unwrap();
        (dir, file)
    }

    fn load(n: usize, edit: impl Fn(String) -> String) -> Result<ClientTask, ClientTaskError> {
        let (dir, file) = setup(n, edit);
        load_client_task(&file, dir.path())
    }

    #[test]
    fn a_valid_file_gives_the_definition_and_segments() {
        let t = load(100, |s| s).unwrap();
        assert_eq!(t.fee, Amount(5 * crate::BASE_UNITS_PER_COIN));
        assert_eq!(t.segments.len(), DATASET_SEGMENTS);
        assert_eq!(t.definition.dataset.samples, 100);
        assert_eq!(t.definition.dataset.test_permille, 300);
        assert_eq!(t.definition.workers.max_faulty, 1);
        assert_eq!(t.definition.deadlines, Deadlines { training_blocks: 20, evaluation_blocks: 5 });
        for (bytes, h) in t.segments.iter().zip(&t.definition.dataset.segment_hashes) {
            // The segment hash is the root of the Merkle tree over the segment's samples.
            let b = crate::Batch::from_canonical_bytes(bytes).unwrap();
            let tree = crate::merkle::SegmentTree::new(b.features(), b.labels(), b.width());
            assert_eq!(tree.len(), 10);
            assert_eq!(&Hash(tree.root().0), h);
            assert_eq!(crate::segment_hash_of_bytes(bytes).map(|d| Hash(d.0)).as_ref(), Some(h));
        }
        // Writing the right hashes in the file is accepted.
        let hashes: Vec<String> =
            t.definition.dataset.segment_hashes.iter().map(|h| format!("\"{h}\"")).collect();
        let line = format!("segment_hashes = [{}]\n[workers]", hashes.join(", "));
        let again = load(100, |s| s.replace("[workers]", &line)).unwrap();
        assert_eq!(again.definition, t.definition);
    }

    #[test]
    fn the_shipped_client_task_loads() {
        let file = repo().join("tasks/mnist-client.toml");
        let (def, segments) = client_task(&file, &repo().join("tasks")).unwrap();
        assert_eq!(segments.len(), 10);
        assert_eq!(def.dataset.samples, 10_000);
        assert_eq!(def.dataset.train_samples(), 7_000);
        assert!(def.validate().is_ok());
    }

    #[test]
    fn adam_and_adamw_go_on_chain_with_their_parameters() {
        let adam = |kind: &str, extra: &str| {
            load(100, |s| {
                s.replace("learning_rate = 0.1\n", &format!("kind = \"{kind}\"\n{extra}"))
            })
        };
        let t = adam("adam", "").unwrap();
        let o = &t.definition.optimizer;
        assert_eq!(o.learning_rate, F32::new(0.001));
        assert_eq!(o.momentum, F32::new(0.0));
        let expected = AdamDef {
            beta1: F32::new(0.9),
            beta2: F32::new(0.999),
            epsilon: F32::new(1e-8),
            weight_decay: F32::new(0.0),
        };
        assert_eq!(o.rule, UpdateRuleDef::Adam(expected));
        let t = adam("adamw", "beta2 = 0.99\n").unwrap();
        let w = AdamDef { beta2: F32::new(0.99), weight_decay: F32::new(0.01), ..expected };
        assert_eq!(t.definition.optimizer.rule, UpdateRuleDef::AdamW(w));
        // The engine's rule and the chain's are the same values.
        for rule in [UpdateRuleDef::Sgd, UpdateRuleDef::Adam(expected), UpdateRuleDef::AdamW(w)] {
            assert_eq!(update_rule_def(&update_rule_of(&rule)), rule);
        }
        // What the chain refuses is refused before paying, by name (the parser's errors
        // carry the field in their source).
        for (kind, extra) in [
            ("adam", "weight_decay = 0.1\n"),
            ("adamw", "learning_rate = 2.0\nweight_decay = 0.5\n"),
            ("adam", "momentum = 0.5\n"),
        ] {
            let e = adam(kind, extra).unwrap_err();
            let msg = format!("{e} {:?}", std::error::Error::source(&e));
            let field = if extra.starts_with("momentum") { "momentum" } else { "weight_decay" };
            assert!(msg.contains(&format!("optimizer.{field}")), "{kind} {extra}: {msg}");
        }
    }

    #[test]
    fn the_shipped_adam_task_loads() {
        let file = repo().join("tasks/mnist-adam.toml");
        let (def, _) = client_task(&file, &repo().join("tasks")).unwrap();
        assert!(matches!(def.optimizer.rule, UpdateRuleDef::Adam(_)));
        def.validate().unwrap();
    }

    #[test]
    fn start_weights_are_named_by_the_hash_of_the_file_and_checked_before_paying() {
        let (dir, file) = setup(100, |s| {
            s.replace("classes = 3\n", "classes = 3\ninit = { file = \"start.safetensors\" }\n")
        });
        let spec = crate::ModelSpec::mlp(4, &[8], 3, crate::Activation::Relu, 5);
        let mut start = crate::Model::new(spec).unwrap();
        start.params_mut()[2] = 0.75;
        let start_file = dir.path().join("start.safetensors");
        crate::save_safetensors(&start, &start_file).unwrap();
        let bytes = std::fs::read(&start_file).unwrap();
        let t = load_client_task(&file, dir.path()).unwrap();
        assert_eq!(t.definition.model.init, Initializer::Weights(Hash::digest(&bytes)));
        assert_eq!(t.start_weights.as_deref(), Some(&bytes[..]));
        t.definition.validate().unwrap();
        // The same task without the file keeps its initialiser and serves no weights.
        let plain = load(100, |s| s).unwrap();
        assert_eq!(plain.definition.model.init, Initializer::Xavier);
        assert!(plain.start_weights.is_none());

        // Another shape, a NaN, not a safetensors file, no file: refused by name.
        let refused = |what: &str, write: &dyn Fn(&Path)| {
            write(&start_file);
            let e = load_client_task(&file, dir.path()).unwrap_err();
            assert!(matches!(&e, ClientTaskError::StartWeights { .. }), "{what}: {e}");
            let msg = e.to_string();
            assert!(msg.contains("model.init") && msg.contains("start.safetensors"), "{msg}");
            msg
        };
        let wide = crate::Model::new(crate::ModelSpec::mlp(5, &[8], 3, crate::Activation::Relu, 5))
            .unwrap();
        let msg = refused("shape", &|p| crate::save_safetensors(&wide, p).unwrap());
        assert!(msg.contains("input width 5"), "{msg}");
        let mut nan = start.clone();
        nan.params_mut()[7] = f32::NAN;
        let msg = refused("nan", &|p| crate::save_safetensors(&nan, p).unwrap());
        assert!(msg.contains("7"), "{msg}");
        let msg = refused("junk", &|p| std::fs::write(p, b"not a model").unwrap());
        assert!(msg.contains("cannot load"), "{msg}");
        let msg = refused("missing", &|p| std::fs::remove_file(p).unwrap());
        assert!(msg.contains("cannot read"), "{msg}");
    }

    #[test]
    fn zero_fee_is_refused() {
        let e = load(100, |s| s.replace("fee = \"5\"", "fee = \"0\"")).unwrap_err();
        assert!(matches!(e, ClientTaskError::ZeroFee { .. }), "{e}");
        assert!(e.to_string().contains("payment.fee"), "{e}");
        let e = load(100, |s| s.replace("fee = \"5\"\n", "")).unwrap_err();
        assert!(matches!(e, ClientTaskError::ZeroFee { .. }), "{e}");
    }

    #[test]
    fn unknown_layer_and_activation_are_named() {
        let e = load(100, |s| s.replacen("type = \"dense\"", "type = \"conv9d\"", 1)).unwrap_err();
        assert!(
            matches!(&e, ClientTaskError::UnknownLayer { field, found, .. }
            if field == "model.layers[0].type" && found == "conv9d"),
            "{e}"
        );
        let e =
            load(100, |s| s.replace("activation = \"relu\"", "activation = \"gelu\"")).unwrap_err();
        assert!(
            matches!(&e, ClientTaskError::UnknownActivation { field, .. }
            if field == "model.layers[0].activation"),
            "{e}"
        );
    }

    #[test]
    fn batch_larger_than_the_training_set_is_refused() {
        // 100 samples: 10 per segment, 7 training segments = 70 training samples.
        let e = load(100, |s| s.replace("batch_size = 8", "batch_size = 71")).unwrap_err();
        assert!(
            matches!(
                e,
                ClientTaskError::BatchLargerThanDataset { batch: 71, train_samples: 70, .. }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("optimizer.batch_size"));
        load(100, |s| s.replace("batch_size = 8", "batch_size = 70")).unwrap();
    }

    #[test]
    fn segment_hash_mismatch_is_refused() {
        let t = load(100, |s| s).unwrap();
        let mut hashes: Vec<String> =
            t.definition.dataset.segment_hashes.iter().map(|h| format!("\"{h}\"")).collect();
        hashes[4] = format!("\"{}\"", Hash::digest(b"other data"));
        let line = format!("segment_hashes = [{}]\n[workers]", hashes.join(", "));
        let e = load(100, |s| s.replace("[workers]", &line)).unwrap_err();
        assert!(matches!(e, ClientTaskError::SegmentHashMismatch { index: 4, .. }), "{e}");
        assert!(e.to_string().contains("dataset.segment_hashes[4]"), "{e}");
        let e = load(100, |s| s.replace("[workers]", "segment_hashes = [\"zz\"]\n[workers]"))
            .unwrap_err();
        assert!(matches!(e, ClientTaskError::BadSegmentHashes { .. }), "{e}");
    }

    #[test]
    fn committees_too_small_for_max_faulty_are_refused() {
        let e = load(100, |s| s.replace("evaluators = 4", "evaluators = 3")).unwrap_err();
        assert!(
            matches!(
                e,
                ClientTaskError::CommitteeTooSmall {
                    field: "workers.evaluators",
                    n: 3,
                    max_faulty: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = load(100, |s| s.replace("max_faulty = 1", "max_faulty = 2")).unwrap_err();
        assert!(
            matches!(e, ClientTaskError::CommitteeTooSmall { field: "workers.supervisors", .. }),
            "{e}"
        );
    }
}
