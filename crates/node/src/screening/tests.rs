use super::*;
use pouw_consensus::{
    pouw::{filler_task, iteration_body},
    task_split_of,
};
use pouw_primitives::{ChainSpec, Keypair};

/// A task (the devnet's filler model on the shipped digits) and three miners.
fn task() -> (TaskId, TaskDefinition, Vec<Keypair>) {
    let (id, definition) = filler_task(&ChainSpec::devnet(), &Hash::digest(b"view"));
    let keys = ["m0", "m1", "m2"].map(Keypair::from_label).to_vec();
    (id, definition, keys)
}

/// What an honest miner `key` sends for iterations `from..from + count` when its chain
/// holds the view (`seed`, `miners`): its walk from the task's initial state.
pub(crate) fn stream(
    (id, definition): (&TaskId, &TaskDefinition),
    (seed, miners): (&Hash, &[Address]),
    key: &Keypair,
    from: u64,
    count: u64,
) -> Vec<IterationMessage> {
    let data = pouw_ml::shipped_mnist_ref();
    let split = task_split_of(definition, seed).to_ml();
    let index = miners.iter().position(|m| *m == key.public()).unwrap();
    let mut walk =
        BatchWalk::for_client(*id, definition, data, &split, index, miners.len()).unwrap();
    walk.seek(from);
    let mut state = initial_state(definition).unwrap();
    (from..from + count)
        .map(|n| {
            let (epoch, indices) = walk.next_batch().unwrap();
            let out = state.iterate(Exec::SINGLE, &data.gather(&indices), &[]).unwrap();
            iteration_body(*id, key.public(), epoch, n, &out).sign(key)
        })
        .collect()
}

/// A supervisor's screening of the task under the view (`seed`, `miners`), data in.
fn screen_under(
    (id, definition): (&TaskId, &TaskDefinition),
    (seed, miners): (&Hash, &[Address]),
    now: Instant,
) -> TaskScreen {
    let mut screen = TaskScreen::new(*id, definition.clone(), *seed, miners.to_vec(), now);
    let data = Arc::new(pouw_ml::shipped_mnist());
    screen.set_dataset(data, task_split_of(definition, seed).to_ml());
    screen
}

fn view_of<'a>(screen: &'a TaskScreen, miner: &Address) -> &'a MinerLog {
    screen.logs.get(miner).unwrap()
}

/// Two views of one task, as two branches of a reorganised chain give them: another seed
/// (split) and another order of the same miners.
pub(crate) fn two_views(keys: &[Keypair]) -> ((Hash, Vec<Address>), (Hash, Vec<Address>)) {
    let a: Vec<Address> = keys.iter().map(Keypair::public).collect();
    let b = vec![a[2], a[0], a[1]];
    ((Hash::digest(b"branch a"), a), (Hash::digest(b"branch b"), b))
}

#[test]
fn only_the_first_variant_of_an_iteration_is_kept_and_screened() {
    let (id, def, keys) = task();
    let miners: Vec<Address> = keys.iter().map(Keypair::public).collect();
    let seed = Hash::digest(b"view");
    let t0 = Instant::now();
    let mut screen = TaskScreen::new(id, def, seed, miners, t0);
    for loss in 0..5u32 {
        let mut body = pouw_primitives::IterationBody::identity(id, keys[0].public(), 4);
        body.loss = loss;
        screen.receive(&Arc::new(body.sign(&keys[0])), t0);
    }
    assert_eq!(screen.known.len(), 1, "variants are not kept");
    let log = view_of(&screen, &keys[0].public());
    assert_eq!(log.queue.len(), 1);
    let (first, _) = log.queue[&4];
    assert_eq!(screen.message(&first).map(|m| m.body.loss), Some(0));
}

#[test]
fn an_honest_miner_on_another_branch_is_never_flagged_and_replays_once_the_views_agree() {
    // The evidence of a false conviction: the supervisor held one branch's selection, the
    // miner another's, and the miner was flagged at iteration 0 for an unscheduled batch.
    let (id, def, keys) = task();
    let ((seed_a, miners_a), (seed_b, miners_b)) = two_views(&keys);
    let t0 = Instant::now();
    let mut screen = screen_under((&id, &def), (&seed_a, &miners_a), t0);
    let sent = stream((&id, &def), (&seed_b, &miners_b), &keys[1], 0, 4);
    for m in &sent {
        screen.receive(&Arc::new(m.clone()), t0);
    }
    // However long the view is not settled, nothing is flagged.
    for secs in [0, 5, 60, 600] {
        let found = screen.screen(Exec::SINGLE, t0 + Duration::from_secs(secs), false);
        assert!(found.is_empty(), "flagged at {secs} s: {:?}", found[0].detail);
    }
    assert!(!screen.status(true, t0 + Duration::from_secs(600)).done, "a suspect is open");
    // The supervisor's chain switches to the miner's branch: the messages held replay.
    assert!(!screen.follows(&seed_b, &miners_b));
    let mut screen = screen.rebuilt(seed_b, miners_b.clone(), t0);
    assert!(screen.follows(&seed_b, &miners_b));
    screen.set_dataset(Arc::new(pouw_ml::shipped_mnist()), task_split_of(&def, &seed_b).to_ml());
    let found = screen.screen(Exec::SINGLE, t0 + Duration::from_secs(601), true);
    assert!(found.is_empty(), "{:?}", found.first().map(|f| &f.detail));
    let log = view_of(&screen, &keys[1].public());
    assert_eq!((log.view.replayed, log.view.flagged), (4, 0));
}

#[test]
fn a_miner_that_switches_branch_starts_over_and_is_screened_without_a_flag() {
    let (id, def, keys) = task();
    let ((seed_a, miners_a), (seed_b, miners_b)) = two_views(&keys);
    let t0 = Instant::now();
    let mut screen = screen_under((&id, &def), (&seed_b, &miners_b), t0);
    // Three iterations on the losing branch, then the miner's chain reorganises and it
    // starts over from the initial state at its next index.
    let old = stream((&id, &def), (&seed_a, &miners_a), &keys[1], 0, 3);
    let new = stream((&id, &def), (&seed_b, &miners_b), &keys[1], 3, 5);
    for m in old.iter().chain(&new) {
        screen.receive(&Arc::new(m.clone()), t0);
    }
    for secs in [0, 30, 120] {
        let found = screen.screen(Exec::SINGLE, t0 + Duration::from_secs(secs), true);
        assert!(found.is_empty(), "flagged at {secs} s: {:?}", found[0].detail);
    }
    let log = view_of(&screen, &keys[1].public());
    assert_eq!((log.view.replayed, log.view.flagged), (5, 0));
    assert!(screen.status(true, t0 + Duration::from_secs(120)).done);
}

#[test]
fn a_stream_whose_training_diverges_is_not_flagged() {
    // A learning rate that overflows the model within a few iterations: NaN losses, whose
    // payloads may differ between CPUs, are no fault of the miner.
    let (id, mut def, keys) = task();
    def.optimizer.learning_rate = pouw_primitives::F32::new(1e30);
    let ((seed, miners), _) = two_views(&keys);
    let t0 = Instant::now();
    let mut screen = screen_under((&id, &def), (&seed, &miners), t0);
    let sent = stream((&id, &def), (&seed, &miners), &keys[0], 0, 6);
    assert!(sent.iter().any(|m| f32::from_bits(m.body.loss).is_nan()), "it diverges");
    for m in &sent {
        screen.receive(&Arc::new(m.clone()), t0);
    }
    for secs in [0, 60] {
        let found = screen.screen(Exec::SINGLE, t0 + Duration::from_secs(secs), true);
        assert!(found.is_empty(), "flagged: {:?}", found[0].detail);
    }
    let log = view_of(&screen, &keys[0].public());
    assert_eq!(log.view.flagged, 0);
    assert!(log.view.unverifiable > 0, "{:?}", log.view);
}

#[test]
fn a_miner_that_stays_off_the_schedule_is_flagged_once_the_view_is_settled() {
    let (id, def, keys) = task();
    let ((seed_a, miners_a), (seed_b, miners_b)) = two_views(&keys);
    let t0 = Instant::now();
    let mut screen = screen_under((&id, &def), (&seed_b, &miners_b), t0);
    let off = stream((&id, &def), (&seed_a, &miners_a), &keys[1], 0, 6);
    for m in &off {
        screen.receive(&Arc::new(m.clone()), t0);
    }
    // Not settled: no flag, however long.
    assert!(screen.screen(Exec::SINGLE, t0 + Duration::from_secs(100), false).is_empty());
    // Settled at 100 s: the miner has VIEW_WAIT to start over, then its first message off
    // the schedule is flagged, once.
    let settled = t0 + Duration::from_secs(100);
    assert!(screen.screen(Exec::SINGLE, settled, true).is_empty());
    let almost = settled + VIEW_WAIT - Duration::from_millis(1);
    assert!(screen.screen(Exec::SINGLE, almost, true).is_empty());
    let found = screen.screen(Exec::SINGLE, settled + VIEW_WAIT, true);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].miner, found[0].message), (keys[1].public(), off[0].id()));
    assert_eq!(found[0].kind, AlertKind::InvalidIteration);
    assert!(found[0].detail.contains("schedule does not assign"), "{}", found[0].detail);
    assert!(screen.screen(Exec::SINGLE, settled + VIEW_WAIT * 2, true).is_empty());
    assert_eq!(view_of(&screen, &keys[1].public()).view.flagged, 1);
}

#[test]
fn cosine_and_median() {
    let a = signs(&[pouw_ml::pack_entry(1, true), pouw_ml::pack_entry(2, false)]);
    let flipped = signs(&[pouw_ml::pack_entry(1, false), pouw_ml::pack_entry(2, true)]);
    // Screening statistics, not consensus: plain floating point.
    let close = |x: Option<f64>, want: f64| x.is_some_and(|x| (x - want).abs() < 1e-12);
    assert!(close(cosine(&a, &a), 1.0));
    assert!(close(cosine(&a, &flipped), -1.0));
    assert_eq!(cosine(&a, &BTreeMap::new()), None);
    assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
    assert_eq!(median(vec![]), None);
}

mod sampled;
