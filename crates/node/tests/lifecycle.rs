//! A client task from submission to the delivered model, on a loopback network of separate
//! nodes: 1 client, 3 miners, 3 supervisors, 3 evaluators (each its own account, data
//! directory and libp2p identity).

mod support;

use pouw_consensus::{task_record, task_view, PenaltyReason, StateKey, TaskStatus};
use pouw_node::{local_spec, Attack, NodeHandle};
use pouw_primitives::{ChainSpec, Role};
use std::{path::Path, time::Duration};
use support::{init_logs, node_config, submit_when_staffed, task_file, wait_until, TaskShape};

fn start(
    dir: &Path,
    i: usize,
    spec: &ChainSpec,
    roles: Vec<Role>,
    mine: bool,
    boot: &[&NodeHandle],
    attack: Option<Attack>,
) -> NodeHandle {
    let mut cfg = node_config(dir, i, spec, roles, mine, boot);
    cfg.attack = attack;
    NodeHandle::start(cfg).expect("node starts")
}

/// One ten-node network at a time (`cargo test` runs a binary's tests in parallel; two such
/// networks on a small machine starve each other past the deadlines).
static ONE_NETWORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// 1 client, 3 miners (the third trains only if `third_miner_trains`), 3 supervisors,
/// 3 evaluators, each bootstrapping to every node started before it.
fn network(dir: &Path, spec: &ChainSpec, third_miner_trains: bool) -> Vec<NodeHandle> {
    network_with(dir, spec, third_miner_trains, &[])
}

/// [`network`] where node `i` of each `(i, attack)` adopts that hostile behaviour.
fn network_with(
    dir: &Path,
    spec: &ChainSpec,
    third_miner_trains: bool,
    attacks: &[(usize, Attack)],
) -> Vec<NodeHandle> {
    let layout = [
        (vec![], false),
        (vec![Role::Miner], true),
        (vec![Role::Miner], true),
        (vec![Role::Miner], third_miner_trains),
        (vec![Role::Supervisor], false),
        (vec![Role::Supervisor], false),
        (vec![Role::Supervisor], false),
        (vec![Role::Evaluator], false),
        (vec![Role::Evaluator], false),
        (vec![Role::Evaluator], false),
    ];
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for (i, (roles, mine)) in layout.into_iter().enumerate() {
        let boot: Vec<&NodeHandle> = nodes.iter().collect();
        let attack = attacks.iter().find(|(n, _)| *n == i).map(|(_, a)| *a);
        let n = start(dir, i, spec, roles, mine, &boot, attack);
        nodes.push(n);
    }
    nodes
}

/// Money adds up to the unit: balances + escrows + stakes = genesis + block rewards.
fn assert_money_adds_up(spec: &ChainSpec, state: &pouw_consensus::State, height: u64) {
    let genesis: u128 =
        spec.genesis.allocations.iter().map(|a| u128::from(a.balance.units())).sum();
    let rewards = u128::from(spec.block_reward.units()) * u128::from(height);
    assert_eq!(state.total_value(), Some(genesis + rewards), "money adds up");
}

/// No honest miner of `task` was flagged by a supervisor (nodes 4 to 6), accused or convicted
/// on chain, or convicted by the alerts the client saw; `hostile` is the one miner that may be.
fn assert_no_honest_miner_flagged(
    nodes: &[NodeHandle],
    task: &pouw_primitives::TaskId,
    hostile: Option<pouw_primitives::Address>,
) {
    let honest = |m: &pouw_primitives::Address| Some(*m) != hostile;
    for sup in &nodes[4..7] {
        let screening = sup.security().screening.lock().unwrap().clone();
        for v in screening.iter().filter(|v| v.task_id == *task && honest(&v.miner)) {
            assert_eq!(v.flagged, 0, "an honest miner was flagged: {v:?}");
        }
    }
    let record = task_record(nodes[0].chain().state(), task).unwrap();
    assert!(!record.accusations.iter().any(|a| honest(&a.miner)), "{:?}", record.accusations);
    assert!(!record.convictions.iter().any(|c| honest(&c.miner)), "{:?}", record.convictions);
    let convicted = nodes[0].security().accusations.convicted(task, 3);
    assert!(!convicted.iter().any(honest), "honest miners convicted by alerts: {convicted:?}");
}

/// The hash of the model submitted by the miner the settlement of `view` paid most.
fn best_paid_model(view: &pouw_consensus::TaskView) -> pouw_primitives::Hash {
    let settlement = view.settlement.as_ref().expect("settled");
    let miners: Vec<_> = view.participants.miners.iter().map(|s| s.worker).collect();
    let best = settlement
        .payouts
        .iter()
        .filter(|p| miners.contains(&p.to))
        .max_by_key(|p| p.amount)
        .expect("a miner is paid")
        .to;
    view.models.iter().find(|m| m.miner == best).expect("the best miner's model").model_hash
}

/// Waits until `task` is completed at `client` (it must not end refused or expired).
fn wait_completed(client: &NodeHandle, task: &pouw_primitives::TaskId) {
    wait_until("the task completed", Duration::from_secs(400), || {
        let chain = client.chain();
        let v = task_view(chain.state(), task);
        if let Some(v) = &v {
            assert!(
                !matches!(v.phase, TaskStatus::Refused { .. } | TaskStatus::Expired { .. }),
                "task ended as {:?}",
                v.phase
            );
        }
        v.is_some_and(|v| matches!(v.phase, TaskStatus::Completed { .. }))
    });
}

#[test]
fn a_task_is_trained_evaluated_paid_and_delivered() {
    let _one = ONE_NETWORK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(600);
    let nodes = network(dir.path(), &spec, true);
    let client = &nodes[0];
    let file = task_file(dir.path(), &TaskShape::default());
    let task = submit_when_staffed(client, &file);
    wait_completed(client, &task);
    assert_no_honest_miner_flagged(&nodes, &task, None);
    let model_path = dir.path().join("n0/models").join(format!("task-{task}.safetensors"));
    wait_until("the best model at the client", Duration::from_secs(60), || model_path.exists());

    let chain = client.chain();
    let state = chain.state();
    let view = task_view(state, &task).unwrap();
    let settlement = view.settlement.clone().expect("settled");
    assert_eq!(view.models.len(), 3, "every miner submitted a model");
    let miners: Vec<_> = view.participants.miners.iter().map(|s| s.worker).collect();
    let miner_payouts: Vec<_> =
        settlement.payouts.iter().filter(|p| miners.contains(&p.to)).collect();
    assert_eq!(miner_payouts.len(), 3, "every miner paid by rank");
    // Supervisors that committed a history are paid; the evaluators of the executed verdict
    // (a strict majority: the last vote may arrive after the task closed) are paid.
    for seat in &view.participants.supervisors {
        if view.history_committers.contains(&seat.worker) {
            assert!(settlement.payouts.iter().any(|p| p.to == seat.worker), "supervisor paid");
        }
    }
    let paid_evaluators = view
        .participants
        .evaluators
        .iter()
        .filter(|s| settlement.payouts.iter().any(|p| p.to == s.worker))
        .count();
    assert!(paid_evaluators >= 2, "{paid_evaluators} evaluators paid");
    // The delivered model is the best one, bit for bit, and scores on the test set.
    let model = pouw_ml::load_safetensors(&model_path).unwrap();
    assert_eq!(model.hash().0, best_paid_model(&view).0);
    let split = view.split.unwrap();
    let data = pouw_ml::shipped_mnist_ref();
    let segs = data.segments(10).unwrap();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for &i in &split.test {
        let (f, l) = data.range(segs[i].start, segs[i].len);
        x.extend_from_slice(&f);
        y.extend_from_slice(l);
    }
    let acc = model.evaluate(pouw_ml::Exec::new(1), &x, &y, 256).unwrap().accuracy();
    assert!(acc > 0.85, "test accuracy {acc}");
    assert_money_adds_up(&spec, state, chain.height());
    drop(chain);
    for n in &nodes {
        assert_eq!(n.stats().snapshot().blocks_rejected, 0);
    }
}

#[test]
fn a_silent_miner_is_excluded_and_not_paid() {
    let _one = ONE_NETWORK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(600);
    // Node 3 stakes a miner ticket, is selected, and never trains (it does not mine).
    let nodes = network(dir.path(), &spec, false);
    let client = &nodes[0];
    // The deadline must leave the two honest miners time to train their walks: blocks come at
    // the fixed target's pace, and 12 blocks went by in 7 s on a fast build, before the second
    // honest miner (which starts a few seconds later, once it holds its segments) was done.
    // With 30 blocks the window closed before the walks ended in some runs (the miners then
    // submit what they have 3 blocks before the deadline, a tight path): 2 failures in about
    // 45 runs under nextest, none in 30 with logs on. 45 blocks let the walks end first.
    let file = task_file(dir.path(), &TaskShape { training_blocks: 45, ..TaskShape::default() });
    let task = submit_when_staffed(client, &file);
    // Training ends at its deadline (the silent miner never submits), then the evaluators
    // rank the two models they can test and the verdict executes.
    wait_until("the task completed", Duration::from_secs(400), || {
        let chain = client.chain();
        task_view(chain.state(), &task)
            .is_some_and(|v| matches!(v.phase, TaskStatus::Completed { .. }))
    });
    assert_no_honest_miner_flagged(&nodes, &task, None);
    let chain = client.chain();
    let state = chain.state();
    let view = task_view(state, &task).unwrap();
    let silent = ChainSpec::devnet_key(3).public();
    assert!(
        view.participants.miners.iter().any(|s| s.worker == silent),
        "the silent miner was selected"
    );
    // On failure: which miners submitted, and what each miner's node did.
    let miners_said: Vec<String> = (1..=3)
        .map(|i| {
            let who = ChainSpec::devnet_key(i).public();
            let submitted = view.models.iter().any(|m| m.miner == who);
            let n = &nodes[i];
            let own = n.pending_own_transactions();
            format!("node {i}: submitted {submitted}, {:?}, own txs {own:?}", n.stats().snapshot())
        })
        .collect();
    assert_eq!(view.models.len(), 2, "two models submitted: {miners_said:#?}");
    let settlement = view.settlement.unwrap();
    assert!(settlement.payouts.iter().all(|p| p.to != silent), "the silent miner is not paid");
    assert!(settlement.confiscated.is_empty(), "silence is excluded, not confiscated");
    // Its stake came back: balance = genesis - ticket fee.
    let balance = state.account(&silent).balance;
    let genesis = spec.genesis.allocations[3].balance;
    assert_eq!(
        genesis.units() - balance.units(),
        1_000,
        "only the ticket transaction fee is spent"
    );
    assert_money_adds_up(&spec, state, chain.height());
}

#[test]
fn a_lying_supervisor_and_a_lying_evaluator_are_outvoted_and_lose_their_stakes() {
    let _one = ONE_NETWORK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(600);
    // Node 6 (a supervisor) commits wrong history roots; node 9 (an evaluator) votes the
    // ranking reversed. Each is one of three: the two honest members outvote it.
    let (liar_sup, liar_eval) = (6, 9);
    let nodes = network_with(
        dir.path(),
        &spec,
        true,
        &[(liar_sup, Attack::LyingSupervisor), (liar_eval, Attack::LyingEvaluator)],
    );
    let client = &nodes[0];
    // Three epochs (about 220 iterations per miner, slots 0 to 3): the first slots close
    // while the miners still train.
    let file = task_file(dir.path(), &TaskShape { epochs: 3, ..TaskShape::default() });
    let task = submit_when_staffed(client, &file);
    wait_completed(client, &task);
    assert_no_honest_miner_flagged(&nodes, &task, None);
    let model_path = dir.path().join("n0/models").join(format!("task-{task}.safetensors"));
    wait_until("the best model at the client", Duration::from_secs(60), || model_path.exists());

    let chain = client.chain();
    let state = chain.state();
    let view = task_view(state, &task).unwrap();
    let settlement = view.settlement.clone().expect("settled");
    let paid = |a: &pouw_primitives::Address| settlement.payouts.iter().any(|p| p.to == *a);
    let liar_sup = ChainSpec::devnet_key(liar_sup).public();
    let liar_eval = ChainSpec::devnet_key(liar_eval).public();
    // Both liars: penalised with the reason, unpaid, their selected tickets gone.
    let penalty_of = |a| settlement.penalties.iter().find(|p| p.seat.worker == a);
    let p =
        penalty_of(liar_sup).unwrap_or_else(|| panic!("supervisor not penalised: {settlement:?}"));
    assert!(matches!(p.reason, PenaltyReason::OutvotedHistory { .. }), "{:?}", p.reason);
    let p =
        penalty_of(liar_eval).unwrap_or_else(|| panic!("evaluator not penalised: {settlement:?}"));
    assert!(matches!(p.reason, PenaltyReason::DissentingVote { .. }), "{:?}", p.reason);
    assert_eq!(settlement.penalties.len(), 2, "only the liars: {:?}", settlement.penalties);
    for (liar, node) in [(liar_sup, 6), (liar_eval, 9)] {
        assert!(!paid(&liar), "a liar was paid");
        let seat = view.participants.seat_of(&liar).expect("the liar was selected").1;
        assert!(state.get(&StateKey::Ticket(seat.ticket)).is_none(), "its ticket is gone");
        let genesis = spec.genesis.allocations[node].balance.units();
        let stake = spec.min_ticket_stake.units();
        assert!(state.account(&liar).balance.units() + stake <= genesis, "its stake is lost");
    }
    // The honest supervisors committed the same root for every slot they both committed
    // (deterministic slots), and the liar a different one.
    let honest: Vec<_> =
        view.participants.supervisors.iter().map(|s| s.worker).filter(|w| *w != liar_sup).collect();
    let root = |slot: u32, supervisor| match state.get(&StateKey::MessageHistory {
        task,
        slot,
        supervisor,
    }) {
        Some(pouw_consensus::StateValue::Hash(h)) => Some(*h),
        _ => None,
    };
    let mut agreed = 0;
    for slot in 0..pouw_consensus::MAX_HISTORY_SLOTS {
        if let (Some(a), Some(b)) = (root(slot, honest[0]), root(slot, honest[1])) {
            assert_eq!(a, b, "honest supervisors disagree on slot {slot}");
            assert_ne!(root(slot, liar_sup), Some(a), "the liar told the truth on slot {slot}");
            agreed += 1;
        }
    }
    assert!(agreed >= 1, "no slot committed by both honest supervisors");
    // The honest workers are paid: every miner by rank, the other supervisors and evaluators.
    assert_eq!(view.models.len(), 3, "every miner submitted a model");
    for seat in view.participants.miners.iter() {
        assert!(paid(&seat.worker), "miner paid");
    }
    for seat in view.participants.supervisors.iter().chain(&view.participants.evaluators) {
        if seat.worker != liar_sup && seat.worker != liar_eval {
            assert!(paid(&seat.worker), "honest committee member {} paid", seat.worker.short());
        }
    }
    // The delivered model is the best one (by the honest verdict).
    let model = pouw_ml::load_safetensors(&model_path).unwrap();
    assert_eq!(model.hash().0, best_paid_model(&view).0);
    assert_money_adds_up(&spec, state, chain.height());
    drop(chain);
    for n in &nodes {
        assert_eq!(n.stats().snapshot().blocks_rejected, 0);
    }
}

#[test]
fn a_poisoning_miner_is_flagged_convicted_confiscated_and_not_paid() {
    let _one = ONE_NETWORK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(600);
    // Node 3 (a miner) gossips its iteration messages with every sign flipped.
    let attacker = 3;
    let nodes = network_with(dir.path(), &spec, true, &[(attacker, Attack::SignFlip)]);
    let client = &nodes[0];
    let file = task_file(dir.path(), &TaskShape::default());
    let task = submit_when_staffed(client, &file);
    wait_completed(client, &task);
    let hostile = ChainSpec::devnet_key(attacker).public();
    let view = task_view(client.chain().state(), &task).unwrap();
    let settlement = view.settlement.expect("settled");
    assert!(
        settlement.confiscated.iter().any(|s| s.worker == hostile),
        "the poisoning miner's stake is confiscated: {settlement:?}"
    );
    assert!(!settlement.payouts.iter().any(|p| p.to == hostile), "and it is not paid");
    for honest in [1, 2].map(|i| ChainSpec::devnet_key(i).public()) {
        assert!(settlement.payouts.iter().any(|p| p.to == honest), "honest miners are paid");
    }
    // Every supervisor flagged at least 95 % of the poisoned messages, and no honest miner
    // (a supervisor that is behind finishes its screening after the verdict).
    let sent = nodes[attacker].security().poisoned_sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent > 50, "the attacker sent {sent} poisoned messages");
    let screened = |sup: &NodeHandle| {
        let s = sup.security().screening.lock().unwrap().clone();
        s.iter().find(|v| v.task_id == task && v.miner == hostile).map_or(0, |v| v.screened)
    };
    wait_until("every supervisor screened every message", Duration::from_secs(180), || {
        nodes[4..7].iter().all(|s| screened(s) * 100 >= sent * 95)
    });
    let confirmed = client
        .security()
        .accusations
        .views()
        .into_iter()
        .find(|a| a.task_id == task && a.accused == hostile)
        .map_or(0, |a| a.messages_confirmed) as u64;
    assert!(confirmed * 100 >= sent * 95, "{confirmed} of {sent} confirmed by a majority");
    for sup in &nodes[4..7] {
        let screening = sup.security().screening.lock().unwrap().clone();
        for v in screening.iter().filter(|v| v.task_id == task) {
            if v.miner == hostile {
                assert!(
                    v.flagged * 100 >= sent * 95,
                    "flagged {} of {sent} poisoned messages: {v:?}",
                    v.flagged
                );
            } else {
                assert_eq!(v.flagged, 0, "an honest miner was flagged: {v:?}");
                assert!(v.replayed > 0, "honest streams are replayed: {v:?}");
            }
        }
    }
    // Every node knows the conviction (the built-in handler of the alert registry).
    let handlers = client.security().handlers.names();
    assert_eq!(handlers["gradient_poisoning"], vec!["stake-confiscation".to_string()]);
    let convicted = client.security().accusations.convicted(&task, 3);
    assert_eq!(convicted, vec![hostile]);
    // On chain, only the hostile miner is accused. Once a majority's accusations land while the
    // task still trains (not when the attacker started after the honest miners were done), it
    // is convicted there too, and its heirs train its batches after their own (design/009).
    assert_no_honest_miner_flagged(&nodes, &task, Some(hostile));
    // A convicted miner's node drops the task it can no longer mine and runs on.
    for (i, n) in nodes.iter().enumerate() {
        assert!(n.is_running(), "node {i} stopped");
    }
    let record = task_record(client.chain().state(), &task).unwrap();
    assert!(record.accusations.iter().all(|a| a.miner == hostile), "{:?}", record.accusations);
    assert!(record.convictions.iter().all(|c| c.miner == hostile), "{:?}", record.convictions);
    if let Some(conviction) = record.convictions.first() {
        assert!(record.accusations.len() >= 2, "a majority of 3 supervisors accused it");
        let streams = nodes[4].security().screening.lock().unwrap().clone();
        let split = view.split.expect("the task's split").to_ml();
        let miners = record.participants.miners.len();
        for heir in &conviction.heirs {
            let v = streams.iter().find(|v| v.task_id == task && v.miner == *heir).unwrap();
            // The heir's own walk, without the handover: an heir that finished it trains the
            // convicted miner's batches after it. One that was still on its own walk when
            // training closed (a loaded machine: the attacker's walk ran ahead) had nothing
            // to take over in time.
            let index = record.participants.miners.iter().position(|s| s.worker == *heir).unwrap();
            let data = pouw_ml::shipped_mnist_ref();
            let walk = pouw_work::BatchWalk::for_client(
                task,
                &record.definition,
                data,
                &split,
                index,
                miners,
            )
            .unwrap();
            let own = (0..u64::MAX).find(|n| !walk.has(*n)).unwrap();
            assert!(
                v.screened != own,
                "heir {} stopped at the end of its own walk ({own} messages) and trained none of \
                 the convicted walk's {sent}",
                heir.short(),
            );
            if v.screened < own {
                eprintln!(
                    "heir {} was still on its own walk when training closed ({} of {own})",
                    heir.short(),
                    v.screened
                );
            }
        }
    }
    let chain = client.chain();
    assert_money_adds_up(&spec, chain.state(), chain.height());
}

/// The `q`-quantile of `sorted` (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
fn a_miners_and_a_supervisors_event_loops_answer_status_requests_promptly_while_a_task_trains() {
    use pouw_net::{NetConfig, NetEvent, Request, Response};
    use std::time::Instant;
    let _one = ONE_NETWORK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(600);
    let nodes = network(dir.path(), &spec, true);
    let client = &nodes[0];
    // A model 4x the default's (784-512-10, 407,050 parameters): every miner trains it and
    // replays the others' blocks, every supervisor replays the miners' streams.
    let shape = TaskShape { hidden: 512, epochs: 1, ..TaskShape::default() };
    let file = task_file(dir.path(), &shape);
    let task = submit_when_staffed(client, &file);
    // A peer of its own asks a miner (node 1) and a supervisor (node 4) for their status, four
    // times a second each, while the task trains.
    let (miner, supervisor) = (&nodes[1], &nodes[4]);
    let mut config = NetConfig::new(
        client.chain().genesis_hash(),
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
    );
    config.bootstrap = miner.p2p_addrs().into_iter().chain(supervisor.p2p_addrs()).collect();
    let (probe, events) =
        pouw_net::spawn(config, pouw_primitives::Keypair::from_label("probe").secret_bytes())
            .unwrap();
    let targets = [miner.peer_id(), supervisor.peer_id()];
    wait_until("the probe connected", Duration::from_secs(30), || {
        let peers = probe.peers();
        targets.iter().all(|t| peers.iter().any(|p| p.connected && p.peer_id == t.to_string()))
    });
    let training = || {
        task_view(client.chain().state(), &task)
            .is_some_and(|v| matches!(v.phase, TaskStatus::Training))
    };
    wait_until("the task training", Duration::from_secs(120), training);
    let mut asked = std::collections::HashMap::new();
    let mut answered: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until && training() {
        for (i, target) in targets.iter().enumerate() {
            if let Ok(id) = probe.request(*target, Request::Status) {
                asked.insert(id, (i, Instant::now()));
            }
        }
        // Answers are timed as they arrive, until the next round.
        let next = Instant::now() + Duration::from_millis(250);
        while let Some(wait) = next.checked_duration_since(Instant::now()) {
            match events.recv_timeout(wait) {
                Ok(NetEvent::Response { id, result: Ok(Response::Status(_)), .. }) => {
                    if let Some((i, at)) = asked.remove(&id) {
                        answered[i].push(at.elapsed());
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let replayed = supervisor
        .security()
        .screening
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v.task_id == task)
        .map(|v| v.replayed)
        .sum::<u64>();
    let iterations = miner.stats().snapshot().iterations;
    for (name, mut rtts) in ["miner", "supervisor"].into_iter().zip(answered) {
        rtts.sort();
        assert!(rtts.len() >= 8, "{name}: {} answers", rtts.len());
        let (p50, p95) = (quantile(&rtts, 0.5), quantile(&rtts, 0.95));
        eprintln!(
            "{name}: {} status answers while training, p50 {p50:?} p95 {p95:?} max {:?} \
             (the miner ran {iterations} iterations, the supervisor replayed {replayed})",
            rtts.len(),
            rtts.last().unwrap()
        );
        // The loop answers between its turns: the screening, the model tests, the dataset
        // assembly and a gossiped block's replay run on threads of their own
        // (docs/performance.md).
        assert!(p50 <= Duration::from_millis(100), "{name}: status answered in {p50:?} (p50)");
    }
    assert!(replayed > 0, "the supervisor replayed while it was asked");
    probe.shutdown();
}
