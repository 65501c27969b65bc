//! A client task that starts from the client's own weights (design/021), on a loopback network
//! of separate nodes: 1 client, 2 miners, 1 supervisor replaying every message, 1 evaluator.
//! The definition on chain names the file by its hash; the client serves it to the miners and
//! the supervisor with the training segments; the miners train from it and the supervisor
//! replays every message, the first ones included, from it.

mod support;

use pouw_consensus::{task_record, task_view, TaskStatus};
use pouw_node::{local_spec, NodeHandle};
use pouw_primitives::{Hash, Initializer, Role, TaskId};
use std::{path::Path, time::Duration};
use support::{init_logs, node_config, submit_when_staffed, task_file, wait_until, TaskShape};

/// Hidden units of the task's MLP (784-32-10).
const HIDDEN: u32 = 32;

/// A 784-32-10 model trained a little on the shipped digits (about 80 % accurate), saved as
/// the export writes it to `path`: weights no initialiser draws.
fn pretrained(path: &Path) -> pouw_ml::Model {
    let spec = pouw_ml::ModelSpec::mlp(784, &[HIDDEN], 10, pouw_ml::Activation::Relu, 41);
    let opt = pouw_ml::OptimizerSpec {
        learning_rate: 0.3,
        momentum: 0.0,
        tau: 0.01,
        batch_size: 32,
        epochs: 1,
    };
    let mut state = pouw_ml::TrainState::new(pouw_ml::Model::new(spec).unwrap(), opt).unwrap();
    let data = pouw_ml::shipped_mnist_ref();
    for b in 0..150u32 {
        let indices: Vec<u32> = (0..32).map(|i| (b * 32 + i) % 7000).collect();
        state.sgd_step(pouw_ml::Exec::SINGLE, &data.gather(&indices)).unwrap();
    }
    let model = state.into_model();
    pouw_ml::save_safetensors(&model, path).unwrap();
    model
}

/// Whether node `i` holds the start weights of `task` on disk.
fn holds_start_weights(dir: &Path, i: usize, task: &TaskId) -> bool {
    dir.join(format!("n{i}/segments/{task}/segment-10.bin")).exists()
}

#[test]
fn a_task_with_start_weights_is_trained_from_them_by_the_network() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = local_spec(600);
    // The client (node 0) and the supervisor mine the filler task too: blocks keep coming.
    let layout = [
        (vec![], true),
        (vec![Role::Miner], true),
        (vec![Role::Miner], true),
        (vec![Role::Supervisor], true),
        (vec![Role::Evaluator], false),
    ];
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for (i, (roles, mine)) in layout.into_iter().enumerate() {
        let boot: Vec<&NodeHandle> = nodes.iter().collect();
        let mut cfg = node_config(d, i, &spec, roles, mine, &boot);
        // The supervisor replays every message of both miners from the task's initial state.
        cfg.replay_fraction = Some(1.0);
        nodes.push(NodeHandle::start(cfg).expect("node starts"));
    }
    let shape = TaskShape {
        hidden: HIDDEN,
        epochs: 1,
        miners: 2,
        supervisors: 1,
        evaluators: 1,
        ..TaskShape::default()
    };
    let file = task_file(d, &shape);
    let start_file = d.join("start.safetensors");
    let start = pretrained(&start_file);
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replace("init = \"xavier\"", "init = { file = \"start.safetensors\" }");
    std::fs::write(&file, text).unwrap();

    let client = &nodes[0];
    let task = submit_when_staffed(client, &file);
    let bytes = std::fs::read(&start_file).unwrap();
    wait_until("the task on chain", Duration::from_secs(120), || {
        task_record(client.chain().state(), &task).is_some()
    });
    let record = task_record(client.chain().state(), &task).expect("the task is on chain");
    assert_eq!(record.definition.model.init, Initializer::Weights(Hash::digest(&bytes)));

    // The miners and the supervisor fetch the start weights (kept while the task runs); the
    // evaluator never does.
    let mut held = [false; 5];
    wait_until("the task completed", Duration::from_secs(500), || {
        for (i, h) in held.iter_mut().enumerate() {
            *h |= holds_start_weights(d, i, &task);
        }
        let chain = client.chain();
        let v = task_view(chain.state(), &task);
        if let Some(v) = &v {
            assert!(
                !matches!(v.phase, TaskStatus::Refused { .. } | TaskStatus::Expired { .. }),
                "task ended as {:?}",
                v.phase
            );
        }
        v.is_some_and(|v| matches!(v.phase, TaskStatus::Completed { .. }))
    });
    assert_eq!(held, [false, true, true, true, false], "who held the start weights");

    // The supervisor replayed every message of both miners from the client's weights (a first
    // iteration from any other model would not replay) and flagged none.
    let views = nodes[3].security().screening.lock().unwrap().clone();
    let views: Vec<_> = views.into_iter().filter(|v| v.task_id == task).collect();
    assert_eq!(views.len(), 2, "{views:?}");
    for v in &views {
        assert!(v.screened > 0, "{v:?}");
        assert_eq!(v.replayed, v.screened, "every message replayed: {v:?}");
        assert_eq!((v.flagged, v.unverifiable, v.unserved), (0, 0, 0), "{v:?}");
    }
    for n in &nodes {
        assert_eq!(n.stats().snapshot().blocks_rejected, 0);
    }

    // The delivered model trained on from the start weights: it moved from them, and it is
    // at least as accurate on the test segments.
    let model_path = d.join("n0/models").join(format!("task-{task}.safetensors"));
    wait_until("the best model at the client", Duration::from_secs(60), || model_path.exists());
    let model = pouw_ml::load_safetensors(&model_path).unwrap();
    assert_ne!(model.params(), start.params());
    let chain = client.chain();
    let split = task_view(chain.state(), &task).unwrap().split.unwrap();
    drop(chain);
    let data = pouw_ml::shipped_mnist_ref();
    let segs = data.segments(10).unwrap();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for &i in &split.test {
        let (f, l) = data.range(segs[i].start, segs[i].len);
        x.extend_from_slice(&f);
        y.extend_from_slice(l);
    }
    let acc =
        |m: &pouw_ml::Model| m.evaluate(pouw_ml::Exec::new(1), &x, &y, 256).unwrap().accuracy();
    let (from, to) = (acc(&start), acc(&model));
    assert!(from > 0.6, "the start weights are trained: {from}");
    assert!(to > from - 0.02, "trained on from {from}, delivered {to}");
    // It trained from the start weights, not from the initialiser the file names (Xavier,
    // seed 7): the delivered parameters are far nearer the former.
    let drawn = pouw_ml::ModelSpec::mlp(784, &[HIDDEN], 10, pouw_ml::Activation::Relu, 7);
    let drawn = pouw_ml::Model::new(drawn).unwrap();
    let distance = |a: &pouw_ml::Model| {
        let sum: f64 =
            a.params().iter().zip(model.params()).map(|(x, y)| f64::from((x - y).abs())).sum();
        sum / model.params().len() as f64
    };
    let (to_start, to_drawn) = (distance(&start), distance(&drawn));
    eprintln!("mean distance to the start weights {to_start}, to the initialiser's {to_drawn}");
    assert!(to_start * 3.0 < to_drawn, "{to_start} vs {to_drawn}");
}
