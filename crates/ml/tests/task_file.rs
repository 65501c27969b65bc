//! The task file: the default task loads; errors name the file and the field.

use std::path::Path;

use pouw_ml::{Coins, DatasetFormat, TaskError, TaskFile};

fn default_task_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks/mnist-mlp.toml")
}

#[test]
fn the_cnn_task_becomes_a_definition_with_the_new_layer_kinds() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks/mnist-cnn.toml");
    let task = TaskFile::load(&path).unwrap();
    let layout = task.model.layout().unwrap();
    assert_eq!(layout.params, 5258);
    assert_eq!(layout.first_reduction(), Some((9, 1)));
    let (def, segments) = pouw_ml::client_task(&path, path.parent().unwrap()).unwrap();
    assert_eq!(segments.len(), 10);
    use pouw_primitives::{Activation, LayerDef};
    assert_eq!(
        def.model.layers,
        [
            LayerDef::Conv2d {
                filters: 8,
                kernel: 3,
                stride: 1,
                padding: 0,
                activation: Activation::Relu
            },
            LayerDef::MaxPool2d { size: 2, stride: 2 },
            LayerDef::Conv2d {
                filters: 16,
                kernel: 3,
                stride: 1,
                padding: 0,
                activation: Activation::Relu
            },
            LayerDef::MaxPool2d { size: 2, stride: 2 },
            LayerDef::Dropout { p: pouw_primitives::F32::new(0.25) },
            LayerDef::Flatten,
            LayerDef::Dense { units: 10, activation: Activation::None },
        ]
    );
    assert_eq!(def.parameter_count(), Some(layout.params as u64));
}

#[test]
fn default_task_loads_with_its_dataset() {
    let task = TaskFile::load(&default_task_path()).unwrap();
    assert_eq!(task.model.input_shape, vec![784]);
    assert_eq!(task.optimizer.batch_size, 32);
    assert_eq!(task.optimizer.learning_rate, 0.3);
    assert_eq!(task.optimizer.tau, 0.01);
    assert_eq!(task.dataset.format, DatasetFormat::Idx);
    assert_eq!(task.dataset.segments, 10);
    assert_eq!(task.workers.miners, 3);
    assert_eq!(task.payment.fee, Coins(10 * 100_000_000));
    let data = task.load_dataset().unwrap();
    assert_eq!(data.len(), 10_000);
}

fn parse_err(text: &str) -> String {
    match TaskFile::parse(text, Path::new("/tasks/t.toml")) {
        Ok(_) => panic!("parsed: {text}"),
        Err(e @ (TaskError::Parse { .. } | TaskError::Invalid { .. })) => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            msg
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

const BASE: &str = r#"
[model]
input_shape = [4]
classes = 2
layers = [{ type = "dense", units = 2, activation = "none" }]
[optimizer]
learning_rate = 0.1
tau = 0.01
batch_size = 2
epochs = 1
[dataset]
format = "csv"
path = "d.csv"
"#;

#[test]
fn minimal_task_gets_defaults() {
    let t = TaskFile::parse(BASE, Path::new("/tasks/t.toml")).unwrap();
    assert_eq!(t.dataset.test_fraction, 0.3);
    assert_eq!(t.dataset.path.as_deref(), Some(Path::new("/tasks/d.csv")));
    assert_eq!(t.workers.evaluators, 3);
    assert_eq!(t.payment.fee, Coins(0));
    assert_eq!(t.optimizer.momentum, 0.0);
}

#[test]
fn errors_name_file_and_field() {
    let cases = [
        (BASE.replace("epochs = 1", "epochs = 1\nlr = 2"), "unknown field `lr`"),
        (BASE.replace("tau = 0.01\n", ""), "missing field `tau`"),
        (BASE.replace("tau = 0.01", "tau = -1.0"), "optimizer.tau"),
        (BASE.replace("format = \"csv\"", "format = \"parquet\""), "unknown variant `parquet`"),
        (BASE.replace("path = \"d.csv\"", ""), "dataset.path"),
        (BASE.replace("units = 2", "units = 3"), "field `model`"),
        (format!("{BASE}[payment]\nfee = \"1.5x\"\n"), "fee = \"1.5x\""),
        (format!("{BASE}[workers]\nminers = 0\n"), "workers.miners"),
        (format!("{BASE}[workers]\nminers = 1\ngpu = true\n"), "unknown field `gpu`"),
        (
            BASE.replace("format = \"csv\"", "format = \"csv\"\ntest_fraction = 1.0"),
            "dataset.test_fraction",
        ),
    ];
    for (text, needle) in cases {
        let msg = parse_err(&text);
        assert!(msg.contains("/tasks/t.toml"), "{msg:?} does not name the file");
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
}

#[test]
fn the_optimizer_kind_selects_adam_with_pytorch_defaults() {
    let parse = |text: &str| TaskFile::parse(text, Path::new("/tasks/t.toml")).unwrap();
    assert_eq!(parse(BASE).update, pouw_ml::UpdateRule::Sgd);
    let adam = parse(&BASE.replace("learning_rate = 0.1\n", "kind = \"adam\"\n"));
    assert_eq!(adam.optimizer.learning_rate, 0.001, "Adam's default learning rate");
    let defaults = pouw_ml::AdamSpec { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weight_decay: 0.0 };
    assert_eq!(adam.update, pouw_ml::UpdateRule::Adam(defaults));
    let adamw = parse(&BASE.replace("learning_rate = 0.1\n", "kind = \"adamw\"\nbeta2 = 0.99\n"));
    assert_eq!(adamw.optimizer.learning_rate, 0.001);
    let w = pouw_ml::AdamSpec { beta2: 0.99, weight_decay: 0.01, ..defaults };
    assert_eq!(adamw.update, pouw_ml::UpdateRule::AdamW(w));
    for (text, needle) in [
        (BASE.replace("learning_rate = 0.1\n", ""), "missing field `learning_rate`"),
        (BASE.replace("tau = 0.01", "tau = 0.01\nbeta1 = 0.8"), "optimizer.beta1 is for kind"),
        (BASE.replace("tau = 0.01", "tau = 0.01\nkind = \"adam\"\nmomentum = 0.9"), "momentum"),
        (BASE.replace("tau = 0.01", "tau = 0.01\nkind = \"adam\"\nbeta1 = 1.0"), "optimizer.beta1"),
        (BASE.replace("tau = 0.01", "tau = 0.01\nkind = \"rmsprop\""), "unknown variant"),
    ] {
        let msg = parse_err(&text);
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
}

#[test]
fn start_weights_from_a_file_replace_the_initialiser() {
    let dir = tempfile::tempdir().unwrap();
    let task_path = dir.path().join("t.toml");
    let with_init =
        |init: &str| BASE.replace("classes = 2\n", &format!("classes = 2\ninit = {init}\n"));
    // A model of the task's shape, saved as the export writes it.
    let named = TaskFile::parse(&with_init("\"he\""), &task_path).unwrap();
    assert_eq!(named.model.init, pouw_ml::Init::He);
    assert_eq!(named.start_weights, None);
    let mut other = named.model.clone();
    other.seed = 99;
    let mut start = pouw_ml::Model::new(other).unwrap();
    start.params_mut()[3] = 0.625;
    pouw_ml::save_safetensors(&start, &dir.path().join("start.safetensors")).unwrap();

    let task = TaskFile::parse(&with_init("{ file = \"start.safetensors\" }"), &task_path).unwrap();
    assert_eq!(task.start_weights, Some(dir.path().join("start.safetensors")));
    let model = task.start_model().unwrap();
    assert_eq!(model.params(), start.params());
    assert_ne!(model.params(), named.start_model().unwrap().params());

    // A file of another shape, or no file: named errors.
    let wide =
        pouw_ml::Model::new(pouw_ml::ModelSpec::mlp(4, &[3], 2, pouw_ml::Activation::Relu, 1))
            .unwrap();
    pouw_ml::save_safetensors(&wide, &dir.path().join("wide.safetensors")).unwrap();
    for file in ["wide.safetensors", "missing.safetensors"] {
        let t =
            TaskFile::parse(&with_init(&format!("{{ file = \"{file}\" }}")), &task_path).unwrap();
        let e = t.start_model().unwrap_err().to_string();
        assert!(e.contains("model.init") && e.contains(file), "{e}");
    }
    let msg = parse_err(&with_init("{ path = \"start.safetensors\" }"));
    assert!(msg.contains("init"), "{msg}");
}
