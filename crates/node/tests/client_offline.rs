//! The data of a task routed among its seats when its client is offline (design/015, data
//! routing), on a loopback network of separate nodes: 1 client, 3 miners, 3 supervisors,
//! 3 evaluators. The client goes offline once training has started; a supervisor that starts
//! late fetches its training segments from the task's other seats; the client, back to reveal
//! the test set, gets the best model from an evaluator once every miner is gone.

mod support;

use pouw_consensus::{task_view, tickets_of, Overlay, TaskStatus, TaskView};
use pouw_node::{local_spec, NodeHandle};
use pouw_primitives::{Address, ChainSpec, Hash, Role, TaskId};
use std::{path::Path, time::Duration};
use support::{init_logs, node_config, submit_when_staffed, task_file, wait_until, TaskShape};

fn start(
    dir: &Path,
    i: usize,
    spec: &ChainSpec,
    roles: Vec<Role>,
    mine: bool,
    boot: &[&NodeHandle],
) -> NodeHandle {
    NodeHandle::start(node_config(dir, i, spec, roles, mine, boot)).expect("node starts")
}

fn key(i: usize) -> Address {
    ChainSpec::devnet_key(i).public()
}

/// Whether node `i` holds (on disk) the segments `indices` of `task`.
fn holds_segments(dir: &Path, i: usize, task: &TaskId, indices: &[usize]) -> bool {
    let d = dir.join(format!("n{i}/segments/{task}"));
    indices.iter().all(|s| d.join(format!("segment-{s}.bin")).exists())
}

/// Whether node `i` holds (on disk) the model that hashes to `hash`.
fn holds_model(dir: &Path, i: usize, hash: &Hash) -> bool {
    dir.join(format!("n{i}/models/{hash}.safetensors")).exists()
}

/// The task as node `node` sees it.
fn view(node: &NodeHandle, task: &TaskId) -> Option<TaskView> {
    task_view(node.chain().state(), task)
}

/// Node `i` of `nodes`, which must be running.
fn running(nodes: &[Option<NodeHandle>], i: usize) -> &NodeHandle {
    nodes.get(i).and_then(Option::as_ref).unwrap_or_else(|| panic!("node {i} is stopped"))
}

/// The running nodes among `indices`.
fn boot_of<'a>(nodes: &'a [Option<NodeHandle>], indices: &[usize]) -> Vec<&'a NodeHandle> {
    indices.iter().filter_map(|&i| nodes.get(i).and_then(Option::as_ref)).collect()
}

#[test]
fn a_task_completes_with_its_client_offline_and_its_model_comes_from_an_evaluator() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = local_spec(600);
    // Node 4 (a supervisor) can mine: it keeps the chain going once the miners are gone.
    let layout = [
        (vec![], false),
        (vec![Role::Miner], true),
        (vec![Role::Miner], true),
        (vec![Role::Miner], true),
        (vec![Role::Supervisor], true),
        (vec![Role::Supervisor], false),
        (vec![Role::Supervisor], false),
        (vec![Role::Evaluator], false),
        (vec![Role::Evaluator], false),
        (vec![Role::Evaluator], false),
    ];
    let mut nodes: Vec<Option<NodeHandle>> = Vec::new();
    for (i, (roles, mine)) in layout.iter().enumerate() {
        let boot: Vec<&NodeHandle> = nodes.iter().flatten().collect();
        let n = start(d, i, &spec, roles.clone(), *mine, &boot);
        nodes.push(Some(n));
    }
    running(&nodes, 4).set_mining(false);

    // Node 6 stakes its supervisor ticket, then stops: it will be a late worker.
    wait_until("node 6's ticket on chain", Duration::from_secs(120), || {
        let chain = running(&nodes, 0).chain();
        !tickets_of(&Overlay::new(chain.state()), &key(6), Role::Supervisor).is_empty()
    });
    nodes[6] = None;

    let file = task_file(d, &TaskShape::default());
    let task = submit_when_staffed(running(&nodes, 0), &file);
    let split = {
        let mut split = None;
        wait_until("the task selected", Duration::from_secs(120), || {
            split = view(running(&nodes, 1), &task).and_then(|v| v.split);
            split.is_some()
        });
        split.unwrap()
    };
    let selected = view(running(&nodes, 1), &task).unwrap().participants;
    assert!(selected.supervisors.iter().any(|s| s.worker == key(6)), "node 6 is selected");
    // Training started: the miners and the supervisors that run hold their data.
    wait_until("the training segments at nodes 1 to 5", Duration::from_secs(120), || {
        (1..=5).all(|i| holds_segments(d, i, &task, &split.train))
    });

    // The client goes offline; the late supervisor starts and gets its segments from the
    // seats that hold them (the client is tried first and does not answer).
    nodes[0] = None;
    let boot = boot_of(&nodes, &[1, 2, 3, 4, 5]);
    let late = start(d, 6, &spec, vec![Role::Supervisor], false, &boot);
    drop(boot);
    nodes[6] = Some(late);
    wait_until("the late supervisor's segments from its peers", Duration::from_secs(180), || {
        holds_segments(d, 6, &task, &split.train)
    });
    assert!(!holds_segments(d, 6, &task, &split.test), "no test segment to a supervisor");

    // Training ends without the client; the evaluators fetch and keep every model (the
    // test set waits for the client).
    let models: Vec<Hash> = {
        let mut models = Vec::new();
        wait_until("every model at every evaluator", Duration::from_secs(600), || {
            let Some(v) = view(running(&nodes, 1), &task) else { return false };
            assert!(
                matches!(v.phase, TaskStatus::Training | TaskStatus::Finalising { .. }),
                "task at {:?} with its client offline",
                v.phase
            );
            models = v.models.iter().map(|m| m.model_hash).collect();
            matches!(v.phase, TaskStatus::Finalising { .. })
                && models.len() == 3
                && (7..=9).all(|e| models.iter().all(|m| holds_model(d, e, m)))
        });
        models
    };
    assert!((7..=9).all(|e| !holds_segments(d, e, &task, &split.test)), "nothing revealed yet");

    // Every miner goes; node 4 mines. The client comes back, reveals the test set, the
    // evaluators vote, and the client gets the best model from an evaluator.
    for n in &mut nodes[1..=3] {
        *n = None;
    }
    running(&nodes, 4).set_mining(true);
    let boot = boot_of(&nodes, &[4, 5, 6, 7, 8, 9]);
    let client = start(d, 0, &spec, vec![], false, &boot);
    drop(boot);
    nodes[0] = Some(client);
    wait_until("the task completed", Duration::from_secs(400), || {
        let v = view(running(&nodes, 4), &task).expect("the task");
        assert!(
            !matches!(v.phase, TaskStatus::Refused { .. } | TaskStatus::Expired { .. }),
            "task ended as {:?}",
            v.phase
        );
        matches!(v.phase, TaskStatus::Completed { .. })
    });
    let model_path = d.join("n0/models").join(format!("task-{task}.safetensors"));
    wait_until("the best model at the client", Duration::from_secs(120), || model_path.exists());

    let v = view(running(&nodes, 0), &task).unwrap();
    let settlement = v.settlement.clone().expect("settled");
    let miners: Vec<Address> = v.participants.miners.iter().map(|s| s.worker).collect();
    let best = settlement
        .payouts
        .iter()
        .filter(|p| miners.contains(&p.to))
        .max_by_key(|p| p.amount)
        .expect("a miner is paid")
        .to;
    let best_hash = v.models.iter().find(|m| m.miner == best).expect("its model").model_hash;
    assert!(models.contains(&best_hash));
    let model = pouw_ml::load_safetensors(&model_path).unwrap();
    assert_eq!(model.hash().0, best_hash.0, "the best model, bit for bit, from an evaluator");
    // The late supervisor took part: paid for the history it committed, like the others.
    assert!(v.history_committers.contains(&key(6)), "the late supervisor committed");
    assert!(v.convictions.is_empty(), "{:?}", v.convictions);
    for (i, n) in nodes.iter().enumerate() {
        if let Some(n) = n {
            assert_eq!(n.stats().snapshot().blocks_rejected, 0, "node {i}");
        }
    }
}
