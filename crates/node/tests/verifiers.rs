//! Verifiers and light nodes (design/006) on a loopback network of separate nodes: 1 client,
//! 2 miners, 1 supervisor, 1 evaluator, 3 verifiers and a light node. The task selects the
//! three verifiers; they attest its blocks; the light node accepts blocks on their
//! attestations without replaying them and ends on the same chain and state as a full node.

mod support;

use pouw_consensus::{task_view, TaskStatus};
use pouw_node::{local_spec, NodeHandle};
use pouw_primitives::{ChainSpec, Role};
use std::{
    path::Path,
    time::{Duration, Instant},
};
use support::{init_logs, node_config, submit_when_staffed, task_file, wait_until, TaskShape};

fn start(
    dir: &Path,
    i: usize,
    spec: &ChainSpec,
    roles: Vec<Role>,
    mine: bool,
    light: bool,
    boot: &[&NodeHandle],
) -> NodeHandle {
    let mut cfg = node_config(dir, i, spec, roles, mine, boot);
    cfg.light = light;
    cfg.mining_pause = Duration::from_millis(20);
    NodeHandle::start(cfg).expect("node starts")
}

#[test]
fn a_light_node_accepts_attested_blocks_and_ends_on_the_full_nodes_chain() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    // About 50 iterations per block: the task (5 epochs of 109 batches per miner) yields
    // blocks enough to be attested.
    let spec = local_spec(100);
    let layout = [
        (vec![], false, false),
        (vec![Role::Miner], true, false),
        (vec![Role::Miner], true, false),
        (vec![Role::Supervisor], false, false),
        (vec![Role::Evaluator], false, false),
        (vec![Role::Verifier], false, false),
        (vec![Role::Verifier], false, false),
        (vec![Role::Verifier], false, false),
        (vec![], false, true),
    ];
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for (i, (roles, mine, light)) in layout.into_iter().enumerate() {
        let boot: Vec<&NodeHandle> = nodes.iter().collect();
        nodes.push(start(dir.path(), i, &spec, roles, mine, light, &boot));
    }
    let (client, light) = (&nodes[0], &nodes[8]);
    // The shipped MNIST digits, an MLP 784-32-10, 2 miners, 1 supervisor, 1 evaluator and
    // 3 verifiers.
    let shape = TaskShape {
        hidden: 32,
        epochs: 5,
        miners: 2,
        supervisors: 1,
        evaluators: 1,
        verifiers: 3,
        training_blocks: 400,
    };
    let file = task_file(dir.path(), &shape);
    let task = submit_when_staffed(client, &file);
    wait_until("the task selected its workers", Duration::from_secs(120), || {
        let chain = client.chain();
        task_view(chain.state(), &task).is_some_and(|v| {
            assert!(!matches!(v.phase, TaskStatus::Refused { .. }), "refused: {:?}", v.phase);
            v.phase == TaskStatus::Training
        })
    });
    let view = task_view(client.chain().state(), &task).unwrap();
    let verifiers: Vec<_> = view.participants.verifiers.iter().map(|s| s.worker).collect();
    let expected: Vec<_> = (5..=7).map(|i| ChainSpec::devnet_key(i).public()).collect();
    assert_eq!(verifiers.len(), 3);
    assert!(verifiers.iter().all(|v| expected.contains(v)), "{verifiers:?}");
    // Task blocks (mined by the task's miners, attested by its verifiers) accepted by the light
    // node on their attestations, without replay.
    let height_at_selection = client.tip().0;
    let attested_task_blocks = || {
        let imports = light.stats().recent_imports(4096);
        let chain = light.chain();
        imports
            .iter()
            .filter(|r| r.attested)
            .filter(|r| chain.block(&r.hash).unwrap().is_some_and(|b| b.header.task_id == task))
            .count()
    };
    let waited = Instant::now();
    while attested_task_blocks() < 1 {
        if waited.elapsed() > Duration::from_secs(300) {
            let chain = light.chain();
            let imports: Vec<_> = light
                .stats()
                .recent_imports(4096)
                .iter()
                .map(|r| {
                    let b = chain.block(&r.hash).unwrap();
                    (r.height, r.attested, b.map(|b| b.header.task_id == task))
                })
                .collect();
            panic!("no task blocks accepted on attestations: (height, attested, task) {imports:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stop mining and let every node settle on one tip: one miner first, then the other after
    // two more blocks of its own (two blocks at one height stay a tie until one is extended).
    nodes[2].set_mining(false);
    let mined = nodes[1].stats().snapshot().blocks_mined;
    wait_until("two more blocks", Duration::from_secs(120), || {
        nodes[1].stats().snapshot().blocks_mined >= mined + 2
    });
    nodes[1].set_mining(false);
    wait_until("every node on one tip", Duration::from_secs(60), || {
        let tips: Vec<_> = nodes.iter().map(|n| n.tip()).collect();
        tips.iter().all(|t| *t == tips[0])
    });
    let (height, tip) = client.tip();
    assert!(height > height_at_selection);
    assert_eq!(light.tip(), (height, tip));
    assert_eq!(
        light.state_root(),
        client.state_root(),
        "the light node's state is the full node's"
    );
    assert!(attested_task_blocks() >= 1);
    let l = light.stats().snapshot();
    assert!(l.blocks_attested > 0);
    for (i, n) in nodes.iter().enumerate() {
        let s = n.stats().snapshot();
        assert_eq!(s.blocks_rejected, 0, "node {i}");
        if (5..=7).contains(&i) {
            assert!(s.attestations_sent > 0, "verifier {i} attested nothing");
        } else {
            assert_eq!(s.attestations_sent, 0, "node {i} is no verifier");
            assert_eq!(s.blocks_attested, u64::from(i == 8) * l.blocks_attested, "node {i}");
        }
    }
    // Verifier rewards (design/011): blocks carry attestations of their parents, each paid a
    // third of the share (every committee here has 3 members), the other parts not minted.
    let chain = client.chain();
    let blocks: Vec<_> =
        (1..=height).map(|h| chain.block(&chain.hash_at(h).unwrap()).unwrap().unwrap()).collect();
    let carried: usize = blocks.iter().map(|b| b.attestations.len()).sum();
    let attested_blocks = blocks.iter().filter(|b| !b.attestations.is_empty()).count();
    let reward = u128::from(spec.block_reward.units());
    let part = reward * u128::from(spec.verifier_share_bps) / 10_000 / 3;
    let minted = u128::from(chain.state().minted().units());
    let unpaid = (reward * u128::from(height) - minted) / part;
    eprintln!(
        "verifier rewards: {height} blocks, {attested_blocks} carry attestations, {carried} \
         attestations paid, {unpaid} committee parts unpaid ({:.1} % of the parts paid), \
         minted {minted} of {}",
        100.0 * carried as f64 / (carried as f64 + unpaid as f64).max(1.0),
        reward * u128::from(height),
    );
    assert!(carried > 0, "no block carried an attestation");
    let total = chain.state().total_value().unwrap();
    let genesis: u128 =
        spec.genesis.allocations.iter().map(|a| u128::from(a.balance.units())).sum();
    assert_eq!(total, genesis + minted, "supply: genesis + minted");
}
