//! The client's task file (TOML): what to train, on which data, with whom, for how much.
//!
//! Every field is documented with an example in `docs/task-file.md`; `tasks/mnist-mlp.toml` is
//! the default task. Unknown fields are errors; errors name the file and the field.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::{Deserialize, Deserializer, Serialize};

use crate::{
    dataset::{Dataset, DatasetError},
    model::Model,
    spec::{AdamSpec, Init, LayerSpec, ModelSpec, OptimizerSpec, SpecError, UpdateRule},
};

/// A parsed, validated task file. Dataset paths are resolved against the file's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TaskFileFields")]
pub struct TaskFile {
    /// A human-readable name.
    pub name: String,
    /// The model.
    pub model: ModelSpec,
    /// The client's own starting weights: `[model] init = { file = "start.safetensors" }`
    /// (a safetensors file as the export writes it, resolved against the task file's
    /// directory); `model.init` and `model.seed` are then unused. On chain the definition
    /// names the file by its hash and the client serves it to the workers (design/021).
    #[serde(skip_serializing)]
    pub start_weights: Option<PathBuf>,
    /// The optimizer.
    pub optimizer: OptimizerSpec,
    /// The local update rule: `[optimizer] kind = "sgd"` (default), `"adam"` or `"adamw"`, with
    /// `beta1` (0.9), `beta2` (0.999), `epsilon` (1e-8) and `weight_decay` (AdamW 0.01, Adam 0);
    /// `learning_rate` defaults to 0.001 for Adam and AdamW.
    #[serde(skip_serializing)]
    pub update: UpdateRule,
    /// The data.
    pub dataset: DatasetSpec,
    /// Workers wanted.
    pub workers: WorkersSpec,
    /// Fee and deadlines.
    pub payment: PaymentSpec,
}

/// The file's fields as written (`[optimizer]` with its `kind` and Adam's parameters).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFileFields {
    #[serde(default)]
    name: String,
    model: ModelFields,
    optimizer: OptimizerFields,
    dataset: DatasetSpec,
    #[serde(default)]
    workers: WorkersSpec,
    #[serde(default)]
    payment: PaymentSpec,
}

/// `[model]` as written: [`ModelSpec`]'s fields, `init` also as `{ file = "..." }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFields {
    input_shape: Vec<u32>,
    layers: Vec<LayerSpec>,
    classes: u32,
    #[serde(default)]
    init: InitField,
    #[serde(default)]
    seed: u64,
}

/// `[model] init`: an initialiser's name, or the client's own weights.
#[derive(Deserialize)]
#[serde(untagged)]
enum InitField {
    Named(Init),
    File { file: PathBuf },
}

impl Default for InitField {
    fn default() -> Self {
        Self::Named(Init::Xavier)
    }
}

/// `[optimizer]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizerFields {
    #[serde(default)]
    kind: OptimizerKind,
    learning_rate: Option<f32>,
    #[serde(default)]
    momentum: f32,
    tau: f32,
    batch_size: u32,
    epochs: u32,
    beta1: Option<f32>,
    beta2: Option<f32>,
    epsilon: Option<f32>,
    weight_decay: Option<f32>,
}

/// `[optimizer] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OptimizerKind {
    #[default]
    Sgd,
    Adam,
    AdamW,
}

impl TryFrom<TaskFileFields> for TaskFile {
    type Error = String;

    fn try_from(f: TaskFileFields) -> Result<Self, String> {
        let o = f.optimizer;
        let adam_field = [("beta1", o.beta1), ("beta2", o.beta2), ("epsilon", o.epsilon)]
            .into_iter()
            .chain([("weight_decay", o.weight_decay)])
            .find(|(_, v)| v.is_some());
        let update = match o.kind {
            OptimizerKind::Sgd => {
                if let Some((name, _)) = adam_field {
                    return Err(format!("optimizer.{name} is for kind = \"adam\" or \"adamw\""));
                }
                UpdateRule::Sgd
            }
            OptimizerKind::Adam | OptimizerKind::AdamW => {
                if o.momentum != 0.0 {
                    return Err(
                        "optimizer.momentum must be 0 with adam (beta1 is its momentum)".into()
                    );
                }
                let decoupled = o.kind == OptimizerKind::AdamW;
                if !decoupled && o.weight_decay.is_some_and(|wd| wd != 0.0) {
                    return Err("optimizer.weight_decay is for kind = \"adamw\" (adam has no \
                                decay; on chain it must be 0)"
                        .into());
                }
                let a = AdamSpec {
                    beta1: o.beta1.unwrap_or(0.9),
                    beta2: o.beta2.unwrap_or(0.999),
                    epsilon: o.epsilon.unwrap_or(1e-8),
                    weight_decay: o.weight_decay.unwrap_or(if decoupled { 0.01 } else { 0.0 }),
                };
                if decoupled {
                    UpdateRule::AdamW(a)
                } else {
                    UpdateRule::Adam(a)
                }
            }
        };
        let learning_rate = match (o.learning_rate, update) {
            (Some(lr), _) => lr,
            (None, UpdateRule::Sgd) => return Err("missing field `learning_rate`".into()),
            (None, _) => 0.001,
        };
        let m = f.model;
        let (init, start_weights) = match m.init {
            InitField::Named(init) => (init, None),
            InitField::File { file } => (Init::Xavier, Some(file)),
        };
        let model = ModelSpec {
            input_shape: m.input_shape,
            layers: m.layers,
            classes: m.classes,
            init,
            seed: m.seed,
        };
        Ok(Self {
            name: f.name,
            model,
            start_weights,
            optimizer: OptimizerSpec {
                learning_rate,
                momentum: o.momentum,
                tau: o.tau,
                batch_size: o.batch_size,
                epochs: o.epochs,
            },
            update,
            dataset: f.dataset,
            workers: f.workers,
            payment: f.payment,
        })
    }
}

/// Why start weights cannot start a task's training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartWeightsError {
    /// Not a safetensors file as the model export writes it (or its model hash is wrong).
    #[error("cannot load the start weights: {}", with_source(.0))]
    Load(crate::ExportError),
    /// A model of other shapes than the task's, or with a parameter NaN or infinite.
    #[error("the start weights do not fit the model: {0}")]
    Fit(crate::ModelError),
    /// The task's own model spec cannot be laid out.
    #[error("the task's model: {0}")]
    Spec(SpecError),
}

/// The error and its source, on one line.
fn with_source(e: &crate::ExportError) -> String {
    match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

/// The model a task starts from when its client gives its own weights: `bytes` (a
/// safetensors file as the export writes it) checked to be a model of `spec` (same input,
/// layers and classes, every parameter finite), with `spec` as its spec. The one check of
/// start weights: `pouw train`, `pouw client submit` and every worker of the task run it.
pub fn start_model_from_bytes(spec: &ModelSpec, bytes: &[u8]) -> Result<Model, StartWeightsError> {
    let given = crate::from_safetensors(bytes).map_err(StartWeightsError::Load)?;
    given.check_fits(spec).map_err(StartWeightsError::Fit)?;
    Model::from_params(spec.clone(), given.params().to_vec()).map_err(StartWeightsError::Spec)
}

/// Dataset file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// IDX image + label files (MNIST), raw or gzip.
    Idx,
    /// One CSV file, label first.
    Csv,
}

/// `[dataset]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// `idx` or `csv`.
    pub format: DatasetFormat,
    /// IDX image file (format `idx`), relative to the task file.
    #[serde(default)]
    pub images: Option<PathBuf>,
    /// IDX label file (format `idx`), relative to the task file.
    #[serde(default)]
    pub labels: Option<PathBuf>,
    /// CSV file (format `csv`), relative to the task file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Number of equal segments (default 10).
    #[serde(default = "default_segments")]
    pub segments: u32,
    /// Fraction of segments withheld for testing (default 0.3).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Fraction of segments for validation (default 0).
    #[serde(default)]
    pub validation_fraction: f64,
    /// Which CSV column holds the label (format `csv`; default `"first"`).
    #[serde(default, skip_serializing_if = "LabelColumn::is_first")]
    pub label_column: LabelColumn,
    /// The hashes of the segments, hex (client tasks, optional): if given, each must match
    /// the hash of the data ([`crate::client_task`] checks them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_hashes: Vec<String>,
}

/// `dataset.label_column`: the CSV column holding the label. In TOML: `"first"` (the default),
/// `"last"`, or a column number counting from 1 (as the loader's error messages do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LabelColumn {
    /// Column 1.
    #[default]
    First,
    /// The last column.
    Last,
    /// Column `n`, counting from 1.
    Number(u32),
}

impl LabelColumn {
    fn is_first(&self) -> bool {
        *self == Self::First
    }
}

impl fmt::Display for LabelColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::First => f.write_str("\"first\""),
            Self::Last => f.write_str("\"last\""),
            Self::Number(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for LabelColumn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::First => s.serialize_str("first"),
            Self::Last => s.serialize_str("last"),
            Self::Number(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for LabelColumn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Number(i64),
        }
        let bad = || {
            serde::de::Error::custom(
                "label_column must be \"first\", \"last\" or a column number from 1",
            )
        };
        match Raw::deserialize(d)? {
            Raw::Name(n) if n == "first" => Ok(Self::First),
            Raw::Name(n) if n == "last" => Ok(Self::Last),
            Raw::Name(_) => Err(bad()),
            Raw::Number(n) => {
                u32::try_from(n).ok().filter(|&n| n >= 1).map(Self::Number).ok_or_else(bad)
            }
        }
    }
}

fn default_segments() -> u32 {
    10
}
fn default_test_fraction() -> f64 {
    0.3
}

/// `[workers]`: how many of each role the task wants, and what they must offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersSpec {
    /// Miners training the model (default 3).
    pub miners: u32,
    /// Supervisors recording the messages (default 3).
    pub supervisors: u32,
    /// Evaluators testing the final models (default 3).
    pub evaluators: u32,
    /// Verifiers attesting the task's blocks for light nodes (default 0: the blocks get the
    /// per-block draw among all verifier tickets).
    pub verifiers: u32,
    /// Only workers with a GPU (default false).
    pub needs_gpu: bool,
    /// Byzantine faults the supervisor and evaluator committees must tolerate; each needs at
    /// least `3 * max_faulty + 1` members (default 0).
    pub max_faulty: u32,
    /// Smallest stake a worker's ticket must lock, in coins (default "0": the chain minimum).
    pub min_stake: Coins,
}

impl Default for WorkersSpec {
    fn default() -> Self {
        Self {
            miners: 3,
            supervisors: 3,
            evaluators: 3,
            verifiers: 0,
            needs_gpu: false,
            max_faulty: 0,
            min_stake: Coins(0),
        }
    }
}

/// `[payment]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSpec {
    /// The fee, in coins as a decimal string (at most 8 decimals; default "0").
    pub fee: Coins,
    /// Blocks of training, counted from the selection block (default 10000).
    pub deadline_blocks: u64,
    /// Blocks the evaluators have after training to agree on a verdict (default 1000).
    pub evaluation_blocks: u64,
}

impl Default for PaymentSpec {
    fn default() -> Self {
        Self { fee: Coins(0), deadline_blocks: 10_000, evaluation_blocks: 1_000 }
    }
}

/// An amount in base units (10^8 per coin), written in files as a decimal string of coins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Coins(pub u64);

/// Base units per coin.
pub const BASE_UNITS_PER_COIN: u64 = 100_000_000;

impl FromStr for Coins {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an amount of coins (e.g. \"12.5\", at most 8 decimals)");
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits(whole)
            || !digits(frac)
            || frac.len() > 8
            || (s.contains('.') && frac.is_empty())
        {
            return Err(bad());
        }
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let frac_units: u64 = format!("{frac:0<8}").parse().map_err(|_| bad())?;
        whole
            .checked_mul(BASE_UNITS_PER_COIN)
            .and_then(|w| w.checked_add(frac_units))
            .map(Self)
            .ok_or_else(bad)
    }
}

impl fmt::Display for Coins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (w, r) = (self.0 / BASE_UNITS_PER_COIN, self.0 % BASE_UNITS_PER_COIN);
        if r == 0 {
            write!(f, "{w}")
        } else {
            let frac = format!("{r:08}");
            write!(f, "{w}.{}", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for Coins {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Coins {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a task file is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The file could not be read.
    #[error("{}: cannot read the task file", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown field, a missing field or a wrong type (the message gives the
    /// line and the key).
    #[error("{}: invalid task file", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: Box<toml::de::Error>,
    },
    /// A field with a value out of range.
    #[error("{}: field `{field}`: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted field name, e.g. `optimizer.tau`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The dataset could not be loaded.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

impl TaskFile {
    /// Reads, parses and validates a task file; dataset paths are made relative to its directory.
    pub fn load(path: &Path) -> Result<Self, TaskError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TaskError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, TaskError> {
        let mut task: Self = toml::from_str(text)
            .map_err(|e| TaskError::Parse { path: path.to_path_buf(), source: Box::new(e) })?;
        task.validate(path)?;
        let base = path.parent().unwrap_or(Path::new(""));
        for p in [
            &mut task.dataset.images,
            &mut task.dataset.labels,
            &mut task.dataset.path,
            &mut task.start_weights,
        ]
        .into_iter()
        .flatten()
        {
            *p = base.join(&*p);
        }
        Ok(task)
    }

    fn validate(&self, path: &Path) -> Result<(), TaskError> {
        let invalid = |field: &str, reason: String| TaskError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason,
        };
        self.model.layout().map_err(|e| invalid("model", e.to_string()))?;
        if let Err(e) = self.optimizer.validate().and_then(|()| self.update.validate()) {
            let field = match &e {
                SpecError::Optimizer(m) => m.split(' ').next().unwrap_or(""),
                _ => "",
            };
            return Err(invalid(&format!("optimizer.{field}"), e.to_string()));
        }
        if let UpdateRule::AdamW(a) = self.update {
            if a.weight_decay * self.optimizer.learning_rate >= 1.0 {
                return Err(invalid(
                    "optimizer.weight_decay",
                    "learning_rate * weight_decay must be below 1".into(),
                ));
            }
        }
        let d = &self.dataset;
        match d.format {
            DatasetFormat::Idx => {
                if d.images.is_none() {
                    return Err(invalid("dataset.images", "required when format = \"idx\"".into()));
                }
                if d.labels.is_none() {
                    return Err(invalid("dataset.labels", "required when format = \"idx\"".into()));
                }
                if d.path.is_some() {
                    return Err(invalid("dataset.path", "only for format = \"csv\"".into()));
                }
                if d.label_column != LabelColumn::First {
                    return Err(invalid(
                        "dataset.label_column",
                        "only for format = \"csv\" (IDX labels are in their own file)".into(),
                    ));
                }
            }
            DatasetFormat::Csv => {
                if d.path.is_none() {
                    return Err(invalid("dataset.path", "required when format = \"csv\"".into()));
                }
                if d.images.is_some() || d.labels.is_some() {
                    return Err(invalid("dataset.images", "only for format = \"idx\"".into()));
                }
            }
        }
        if d.segments == 0 {
            return Err(invalid("dataset.segments", "must be at least 1".into()));
        }
        crate::dataset::Split::new(
            &[0; 32],
            d.segments as usize,
            d.test_fraction,
            d.validation_fraction,
        )
        .map_err(|e| invalid("dataset.test_fraction", e.to_string()))?;
        if self.workers.miners == 0 {
            return Err(invalid("workers.miners", "must be at least 1".into()));
        }
        if self.payment.deadline_blocks == 0 {
            return Err(invalid("payment.deadline_blocks", "must be at least 1".into()));
        }
        if self.payment.evaluation_blocks == 0 {
            return Err(invalid("payment.evaluation_blocks", "must be at least 1".into()));
        }
        Ok(())
    }

    /// The model training starts from: the client's own weights
    /// ([`TaskFile::start_weights`]), checked to be a model of this task (same shapes, every
    /// parameter finite), or else the initialiser's.
    pub fn start_model(&self) -> Result<Model, TaskError> {
        let invalid = |path: &Path, reason: String| TaskError::Invalid {
            path: path.to_path_buf(),
            field: "model.init".into(),
            reason,
        };
        let Some(path) = &self.start_weights else {
            return Model::new(self.model.clone())
                .map_err(|e| invalid(Path::new("[model]"), e.to_string()));
        };
        let bytes = std::fs::read(path)
            .map_err(|e| invalid(path, format!("cannot load the start weights: {e}")))?;
        start_model_from_bytes(&self.model, &bytes).map_err(|e| invalid(path, e.to_string()))
    }

    /// Loads the dataset the task names and checks it fits the model's input.
    pub fn load_dataset(&self) -> Result<Dataset, TaskError> {
        let d = &self.dataset;
        let classes = self.model.classes;
        let data = match d.format {
            DatasetFormat::Idx => Dataset::load_idx(
                d.images.as_deref().expect("validated"),
                d.labels.as_deref().expect("validated"),
                classes,
            )?,
            DatasetFormat::Csv => Dataset::load_csv_labelled(
                d.path.as_deref().expect("validated"),
                classes,
                d.label_column,
            )?,
        };
        let width: usize = self.model.input_shape.iter().map(|&x| x as usize).product();
        if data.width() != width {
            return Err(TaskError::Invalid {
                path: data.source().to_path_buf(),
                field: "model.input_shape".into(),
                reason: format!(
                    "the model takes {width} features per sample, the dataset has {} (shape {:?})",
                    data.width(),
                    data.sample_shape()
                ),
            });
        }
        Ok(data)
    }

    /// Refuses class counts (index = label, from [`Dataset::class_counts`]) in which fewer
    /// than two classes occur or a declared class has no sample; `what` names the samples
    /// counted (e.g. "training split"). The error names the label column, the usual culprit.
    pub fn check_classes(
        &self,
        data: &Dataset,
        counts: &[u64],
        what: &str,
    ) -> Result<(), TaskError> {
        let (field, source) = match self.dataset.format {
            DatasetFormat::Csv => (
                "dataset.label_column",
                format!("the labels are read from label_column = {}", self.dataset.label_column),
            ),
            DatasetFormat::Idx => {
                ("dataset.labels", "the labels are read from the label file".into())
            }
        };
        let present = counts.iter().filter(|&&c| c > 0).count();
        let problem = if present < 2 {
            Some(format!("the {what} holds {present} class(es) only"))
        } else {
            counts.iter().position(|&c| c == 0).map(|c| {
                format!(
                    "class {c} of the {} declared classes has no sample in the {what}",
                    counts.len()
                )
            })
        };
        match problem {
            None => Ok(()),
            Some(p) => Err(TaskError::Invalid {
                path: data.source().to_path_buf(),
                field: field.into(),
                reason: format!(
                    "{p} (samples per class: {counts:?}); {source}: is that the label column?"
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_column_parses_first_last_or_a_column_number() {
        let task = |format: &str, extra: &str| {
            let text = format!(
                "[model]\ninput_shape = [2]\nclasses = 2\nlayers = [{{ type = \"dense\", units = 2, activation = \"none\" }}]\n\
                 [optimizer]\nlearning_rate = 0.1\ntau = 0.01\nbatch_size = 1\nepochs = 1\n\
                 [dataset]\n{format}\n{extra}\n"
            );
            TaskFile::parse(&text, Path::new("t.toml"))
        };
        let csv = "format = \"csv\"\npath = \"d.csv\"";
        assert_eq!(task(csv, "").unwrap().dataset.label_column, LabelColumn::First);
        let last = task(csv, "label_column = \"last\"").unwrap();
        assert_eq!(last.dataset.label_column, LabelColumn::Last);
        assert_eq!(
            task(csv, "label_column = 3").unwrap().dataset.label_column,
            LabelColumn::Number(3)
        );
        for bad in ["label_column = 0", "label_column = \"middle\"", "label_column = -1"] {
            let e = task(csv, bad).unwrap_err();
            assert!(format!("{:?}", e).contains("label_column"), "{bad}: {e:?}");
        }
        let idx = "format = \"idx\"\nimages = \"i\"\nlabels = \"l\"\nlabel_column = \"last\"";
        let e = task(idx, "").unwrap_err().to_string();
        assert!(e.contains("dataset.label_column"), "{e}");
        // Written back, it reads the same.
        let again: TaskFile = toml::from_str(&toml::to_string(&last).unwrap()).unwrap();
        assert_eq!(again.dataset.label_column, LabelColumn::Last);
    }

    #[test]
    fn coins_parse_and_print() {
        assert_eq!("12.5".parse::<Coins>().unwrap(), Coins(1_250_000_000));
        assert_eq!("0.00000001".parse::<Coins>().unwrap(), Coins(1));
        assert_eq!(Coins(1_250_000_000).to_string(), "12.5");
        for bad in ["", ".5", "1.", "1.123456789", "-1", "1e3", "99999999999999999999"] {
            assert!(bad.parse::<Coins>().is_err(), "{bad}");
        }
    }
}
