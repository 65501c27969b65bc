//! `pouw train` end to end on a small CSV task: JSON result, determinism across thread counts,
//! the written model, and the failure exit code.

mod support;

use support::pouw;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

/// A fresh directory with `task.toml` and `data.csv`: 3 well separated classes in 4 features.
fn small_task(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pouw-train-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("label,a,b,c,d\n");
    let mut state = 12345u32;
    for i in 0..600u32 {
        let label = i % 3;
        let mut row = format!("{label}");
        for f in 0..4u32 {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = (state >> 16) as f32 / 65536.0 - 0.5;
            let centre = if f == label { 2.0 } else { 0.0 };
            write!(row, ",{}", centre + noise).unwrap();
        }
        csv.push_str(&row);
        csv.push('\n');
    }
    std::fs::write(dir.join("data.csv"), csv).unwrap();
    std::fs::write(
        dir.join("task.toml"),
        r#"
name = "small"
[model]
input_shape = [4]
classes = 3
seed = 3
layers = [{ type = "dense", units = 8, activation = "tanh" }, { type = "dense", units = 3, activation = "none" }]
[optimizer]
learning_rate = 0.5
tau = 0.01
batch_size = 10
epochs = 3
[dataset]
format = "csv"
path = "data.csv"
[workers]
miners = 2
"#,
    )
    .unwrap();
    dir
}

fn run_json(task: &Path, extra: &[&str]) -> serde_json::Value {
    let out = pouw().arg("train").arg(task).arg("--json").args(extra).output().unwrap();
    assert!(out.status.success(), "pouw train failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

#[test]
fn trains_deterministically_and_writes_the_model() {
    let dir = small_task("ok");
    let task = dir.join("task.toml");
    let a = run_json(&task, &["--threads", "1"]);
    let b =
        run_json(&task, &["--threads", "2", "--out", dir.join("b.safetensors").to_str().unwrap()]);
    for key in [
        "test_accuracy",
        "final_loss",
        "iterations",
        "model_hash",
        "threads",
        "wall_seconds",
        "iterations_per_second",
    ] {
        assert!(a.get(key).is_some(), "missing {key}");
    }
    assert_eq!(a["model_hash"], b["model_hash"], "thread count changed the model");
    assert_eq!(a["iterations"], 3 * (420 / 10));
    assert!(a["test_accuracy"].as_f64().unwrap() > 0.9, "{a}");
    assert!(dir.join("task.safetensors").exists());
    assert_eq!(
        std::fs::read(dir.join("task.safetensors")).unwrap(),
        std::fs::read(dir.join("b.safetensors")).unwrap()
    );
    let c = run_json(&task, &["--iterations", "5", "--seed", &"ab".repeat(32)]);
    assert_eq!(c["iterations"], 5);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn failures_exit_with_code_3_and_name_the_problem() {
    let dir = small_task("bad");
    std::fs::write(dir.join("data.csv"), "0,1,2,3,4\n1,1,2,NaN,4\n").unwrap();
    let out = pouw().arg("train").arg(dir.join("task.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data.csv") && err.contains("line 2, column 4"), "{err}");
    let out = pouw().arg("train").arg(dir.join("missing.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_label_in_the_last_column_is_refused_naming_label_column_then_trains_with_it() {
    let dir = small_task("label-last");
    // The same samples with the label moved last and a first column of zeros: read with the
    // default label column, every label is 0.
    let csv = std::fs::read_to_string(dir.join("data.csv")).unwrap();
    let mut moved = String::from("z,a,b,c,label\n");
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        writeln!(moved, "0,{},{},{},{}", f[1], f[2], f[3], f[0]).unwrap();
    }
    std::fs::write(dir.join("data.csv"), moved).unwrap();
    let task = dir.join("task.toml");
    let out = pouw().arg("train").arg(&task).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("label_column") && err.contains("1 class(es) only"), "{err}");
    assert!(err.contains("samples per class: training split [420, 0, 0]"), "{err}");
    let text = std::fs::read_to_string(&task).unwrap();
    std::fs::write(
        &task,
        text.replace("path = \"data.csv\"", "path = \"data.csv\"\nlabel_column = \"last\""),
    )
    .unwrap();
    let r = run_json(&task, &[]);
    let counts: Vec<u64> = serde_json::from_value(r["train_class_counts"].clone()).unwrap();
    assert_eq!(counts.len(), 3);
    assert!(counts.iter().all(|&c| c > 100), "{counts:?}");
    assert_eq!(counts.iter().sum::<u64>(), r["train_samples"].as_u64().unwrap());
    assert!(r["test_accuracy"].as_f64().unwrap() > 0.9, "{r}");
    // A column number works the same (column 5 is the last one here).
    let text = std::fs::read_to_string(&task).unwrap();
    std::fs::write(&task, text.replace("label_column = \"last\"", "label_column = 5")).unwrap();
    assert_eq!(run_json(&task, &[])["train_class_counts"], r["train_class_counts"]);
    std::fs::remove_dir_all(dir).unwrap();
}
