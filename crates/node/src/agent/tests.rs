use super::dataset::dataset_from_segments;
use super::*;
use pouw_consensus::{HISTORY_SLOT_ITERATIONS, MAX_HISTORY_SLOTS};
use pouw_primitives::{ChainSpec, IterationBody};

fn message(miner: usize, iteration: u64) -> IterationMessage {
    let key = ChainSpec::devnet_key(miner);
    IterationBody::identity(Hash::digest(b"task"), key.public(), iteration).sign(&key)
}

fn root_of(h: &History, slot: u32) -> Hash {
    let ids: Vec<Hash> = h.open[&slot].keys().copied().collect();
    history_root(&ids)
}

/// A filler-shaped task of client devnet key 0, training, with miners 1-3, supervisors 4-5
/// and evaluators 6-8.
pub(super) fn seated_record() -> TaskRecord {
    let key = |i: usize| ChainSpec::devnet_key(i).public();
    let seats = |r: std::ops::Range<usize>| {
        r.map(|i| pouw_consensus::Seat { worker: key(i), ticket: Hash::ZERO }).collect::<Vec<_>>()
    };
    let participants = pouw_consensus::Participants {
        miners: seats(1..4),
        supervisors: seats(4..6),
        evaluators: seats(6..9),
        verifiers: vec![],
    };
    let definition = pouw_consensus::pouw::filler_task(&ChainSpec::devnet(), &Hash::ZERO).1;
    task_record(definition, participants)
}

/// A task of `definition`, training, with the seats `participants`: client devnet key 0.
pub(super) fn task_record(
    definition: pouw_primitives::TaskDefinition,
    participants: pouw_consensus::Participants,
) -> TaskRecord {
    TaskRecord {
        client: ChainSpec::devnet_key(0).public(),
        definition,
        fee: Amount(1),
        escrow: Amount(1),
        bond: Amount::ZERO,
        created_at: 1,
        created_in: Hash::ZERO,
        seed: Hash::digest(b"seed"),
        training_deadline: 50,
        finalisation_deadline: 100,
        participants,
        models: vec![],
        history_committers: vec![],
        accusations: vec![],
        convictions: vec![],
        status: TaskStatus::Training,
        settlement: None,
    }
}

fn record_of(definition: pouw_primitives::TaskDefinition) -> TaskRecord {
    task_record(definition, Default::default())
}

#[test]
fn a_panicking_task_is_caught_and_the_next_one_runs() {
    let tasks: Vec<u32> = vec![1, 2, 3];
    let mut faulted = HashSet::new();
    let mut done = Vec::new();
    for t in &tasks {
        match guarded(|| {
            assert!(*t != 2, "task {t} faulted");
            done.push(*t);
        }) {
            Ok(()) => {}
            Err(fault) => {
                assert_eq!(fault, "task 2 faulted");
                faulted.insert(*t);
            }
        }
    }
    assert_eq!(done, [1, 3]);
    assert_eq!(faulted, HashSet::from([2]));
    assert_eq!(guarded(|| 7), Ok(7));
    let owned = guarded(|| -> u8 { panic!("{}", String::from("owned message")) });
    assert_eq!(owned, Err("owned message".to_string()));
}

#[test]
fn segments_that_do_not_fit_the_task_are_refused_before_any_allocation() {
    let (_, definition) =
        pouw_consensus::pouw::filler_task(&ChainSpec::devnet(), &Hash::digest(b"t"));
    let width: usize = definition.model.input_shape.iter().map(|&d| d as usize).product();
    let classes = definition.model.classes;
    let seg = |labels: Vec<u32>| {
        let n = labels.len();
        Batch::new(vec![0.5; n * width], labels, width).unwrap().canonical_bytes()
    };
    // A definition claiming 2^64 - 1 samples: refused on the first segment, nothing of
    // that size allocated (the old code allocated `samples × width` floats first).
    let mut huge = record_of(definition.clone());
    huge.definition.dataset.samples = u64::MAX;
    let segments = BTreeMap::from([(0u8, seg(vec![0; 3]))]);
    let e = dataset_from_segments(&huge, segments).unwrap_err();
    assert!(e.contains("segment 0 has 3 samples"), "{e}");
    // Right size, a label out of range: refused, naming the segment.
    let mut small = record_of(definition);
    small.definition.dataset.samples = 30;
    let e = dataset_from_segments(&small, BTreeMap::from([(2u8, seg(vec![0, classes, 1]))]))
        .unwrap_err();
    assert!(e.contains("segment 2") && e.contains("label"), "{e}");
    let e =
        dataset_from_segments(&small, BTreeMap::from([(10u8, seg(vec![0, 1, 1]))])).unwrap_err();
    assert!(e.contains("segment 10"), "{e}");
    let d = dataset_from_segments(&small, BTreeMap::from([(2u8, seg(vec![0, 1, 1]))])).unwrap();
    assert_eq!(d.len(), 30);
    assert_eq!(&d.labels()[6..9], &[0, 1, 1]);
}

#[test]
fn image_segments_assemble_as_pixels_and_read_back_the_same_bits() {
    let (_, definition) =
        pouw_consensus::pouw::filler_task(&ChainSpec::devnet(), &Hash::digest(b"t"));
    let width: usize = definition.model.input_shape.iter().map(|&d| d as usize).product();
    let mut record = record_of(definition);
    record.definition.dataset.samples = 30;
    let values = |first: f32| -> Vec<f32> {
        let mut v: Vec<f32> = (0..3 * width).map(|i| pouw_ml::pixel((i % 256) as u8)).collect();
        v[0] = first;
        v
    };
    let seg = |x: Vec<f32>| Batch::new(x, vec![0, 1, 2], width).unwrap().canonical_bytes();
    let pixels = values(1.0);
    let d = dataset_from_segments(&record, BTreeMap::from([(4u8, seg(pixels.clone()))])).unwrap();
    // 30 samples of one byte a value and four bytes a label: a quarter of the float form.
    assert_eq!(d.memory_bytes(), 30 * width + 30 * 4);
    let read = d.gather(&[12, 13, 14]);
    assert!(read.features().iter().zip(&pixels).all(|(a, b)| a.to_bits() == b.to_bits()));
    // One value that is no pixel (-0.0 has other bits than pixel 0): held as floats, same bits.
    let floats = values(-0.0);
    let d = dataset_from_segments(&record, BTreeMap::from([(4u8, seg(floats.clone()))])).unwrap();
    assert_eq!(d.memory_bytes(), 30 * width * 4 + 30 * 4);
    let read = d.gather(&[12, 13, 14]);
    assert!(read.features().iter().zip(&floats).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn a_model_of_another_shape_or_full_of_nan_does_not_fit_the_task() {
    let (_, definition) =
        pouw_consensus::pouw::filler_task(&ChainSpec::devnet(), &Hash::digest(b"t"));
    let record = record_of(definition);
    let (spec, _) = pouw_consensus::pouw::ml_specs(&record.definition).unwrap();
    let good = pouw_ml::Model::new(spec.clone()).unwrap();
    assert_eq!(check_model_fits(&record, &good), Ok(()));
    let mut other = spec;
    other.input_shape = vec![7];
    let e = check_model_fits(&record, &pouw_ml::Model::new(other).unwrap()).unwrap_err();
    assert!(e.contains("input width 7"), "{e}");
    let mut nan = good;
    nan.params_mut().fill(f32::NAN);
    let e = check_model_fits(&record, &nan).unwrap_err();
    assert!(e.contains("NaN"), "{e}");
}

#[test]
fn a_client_reveals_its_segments_by_phase_and_nothing_after_the_finalisation_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let security = Arc::new(SecurityState::new(crate::SecurityHandlers::default()));
    let mut agent = Agent::new(vec![], dir.path().to_path_buf(), security, 1);
    let task = Hash::digest(b"client task");
    let (_, definition) = pouw_consensus::pouw::filler_task(&ChainSpec::devnet(), &task);
    let client_dir = agent.client_dir(&task);
    std::fs::create_dir_all(&client_dir).unwrap();
    for i in 0..DATASET_SEGMENTS {
        std::fs::write(segment_path(&client_dir, i), [i as u8; 4]).unwrap();
    }
    let mut record = record_of(definition);
    let split = task_split_of(&record.definition, &record.seed);
    let (train, test) = (split.train[0] as u8, split.test[0] as u8);
    assert_eq!(agent.segment(&record, &task, train, 10), Some(vec![train; 4]));
    assert_eq!(agent.segment(&record, &task, test, 10), None, "test data stays withheld");
    record.status = TaskStatus::Finalising { since: 50 };
    assert_eq!(agent.segment(&record, &task, test, 60), Some(vec![test; 4]));
    record.status = TaskStatus::Completed { at: 70, verdict: Hash::ZERO };
    assert_eq!(agent.segment(&record, &task, test, 99), Some(vec![test; 4]), "late votes");
    assert_eq!(agent.segment(&record, &task, test, 100), None);
    assert_eq!(agent.segment(&record, &task, train, 100), None, "nothing after the deadline");
    // Read from disk at each request: what the file holds now is what is served.
    record.status = TaskStatus::Training;
    std::fs::write(segment_path(&client_dir, usize::from(train)), [7u8; 3]).unwrap();
    assert_eq!(agent.segment(&record, &task, train, 10), Some(vec![7u8; 3]));
    assert_eq!(agent.segment(&record, &task, 200, 10), None, "no such segment");
}

#[test]
fn a_miner_waits_for_peers_behind_by_more_than_the_staleness_bound_but_not_for_ever() {
    let task = Hash::digest(b"task");
    let dir = tempfile::tempdir().unwrap();
    let security = Arc::new(SecurityState::new(crate::SecurityHandlers::default()));
    let mut agent = Agent::new(vec![Role::Miner], dir.path().to_path_buf(), security, 1);
    let (fast, slow) = (ChainSpec::devnet_key(1).public(), ChainSpec::devnet_key(2).public());
    let t0 = Instant::now();
    // No peer heard from yet: nothing to wait for.
    assert!(agent.peers_caught_up(&task, 5, t0));
    agent.peer_progress.insert((task, fast), 10);
    agent.peer_progress.insert((task, slow), 4);
    // Iteration 5 needs the peers' messages up to 4 (5 of them): `slow` has sent 4.
    assert!(agent.peers_caught_up(&task, 4, t0));
    assert!(!agent.peers_caught_up(&task, 5, t0));
    assert!(!agent.peers_caught_up(&task, 5, t0 + STALENESS_WAIT / 2));
    // Waited long enough: run, and leave `slow` out of the next waits...
    assert!(agent.peers_caught_up(&task, 5, t0 + STALENESS_WAIT));
    assert!(agent.peers_caught_up(&task, 8, t0 + STALENESS_WAIT));
    // ...until it catches up; then it is waited for again.
    agent.peer_progress.insert((task, slow), 9);
    assert!(agent.peers_caught_up(&task, 9, t0 + STALENESS_WAIT));
    assert!(!agent.peers_caught_up(&task, 10, t0 + STALENESS_WAIT));
    // Another task's peers do not count.
    assert!(agent.peers_caught_up(&Hash::digest(b"other"), 10, t0));
    // A third peer not heard from yet: waited for at most START_WAIT from the first wait.
    let quiet = Hash::digest(b"quiet");
    agent.peer_miners.insert(quiet, 1);
    assert!(agent.peers_caught_up(&quiet, 0, t0));
    assert!(!agent.peers_caught_up(&quiet, 1, t0));
    assert!(agent.peers_caught_up(&quiet, 1, t0 + START_WAIT));
    // The start wait counts from the selection, not from the data's arrival: a miner
    // selected at t0 whose segments came late waits only what is left of START_WAIT, and a
    // silent peer cannot take a whole START_WAIT from a late miner's training window.
    let late = Hash::digest(b"late");
    agent.peer_miners.insert(late, 1);
    agent.note_selected(late, t0);
    agent.note_selected(late, t0 + START_WAIT / 2); // seen again: the first sighting counts
    let data_at = t0 + START_WAIT * 3 / 4;
    assert!(!agent.peers_caught_up(&late, 1, data_at));
    assert!(agent.peers_caught_up(&late, 1, t0 + START_WAIT));
    let later = Hash::digest(b"later");
    agent.peer_miners.insert(later, 1);
    agent.note_selected(later, t0);
    assert!(agent.peers_caught_up(&later, 1, t0 + START_WAIT * 2), "no start wait left");
    // A new peer on probation (its messages cannot be applied yet) is waited for until
    // its probation ends, and then at most STALENESS_WAIT.
    let new = ChainSpec::devnet_key(3).public();
    agent.peer_progress.insert((task, new), 20);
    agent.first_seen.insert((task, new), t0);
    agent.peer_progress.insert((task, slow), 20);
    assert!(agent.peers_caught_up(&task, 0, t0), "the first iteration needs nothing");
    assert!(!agent.peers_caught_up(&task, 10, t0 + PEER_PROBATION / 2));
    assert!(agent.peers_caught_up(&task, 10, t0 + PEER_PROBATION));
    // A peer still behind after its probation: STALENESS_WAIT more, counted from its end.
    let t1 = t0 + PEER_PROBATION * 3;
    agent.first_seen.insert((task, new), t1);
    agent.peer_progress.insert((task, new), 5);
    assert!(!agent.peers_caught_up(&task, 10, t1));
    assert!(!agent.peers_caught_up(&task, 10, t1 + PEER_PROBATION));
    assert!(agent.peers_caught_up(&task, 10, t1 + PEER_PROBATION + STALENESS_WAIT));
}

#[test]
fn peer_messages_wait_out_the_probation_and_come_a_few_at_a_time() {
    let task = Hash::digest(b"task");
    let dir = tempfile::tempdir().unwrap();
    let security = Arc::new(SecurityState::new(crate::SecurityHandlers::default()));
    let mut agent = Agent::new(vec![Role::Miner], dir.path().to_path_buf(), security, 1);
    agent.peer_miners.insert(task, 2);
    let (old, new) = (ChainSpec::devnet_key(1).public(), ChainSpec::devnet_key(2).public());
    let long_ago = Instant::now().checked_sub(PEER_PROBATION * 2).unwrap();
    agent.first_seen.insert((task, old), long_ago);
    agent.first_seen.insert((task, new), Instant::now());
    let inbox = agent.inbox.entry(task).or_default();
    for i in 0..5 {
        inbox.push_back(message(2, i)); // a miner still on probation: kept for later
    }
    for i in 0..4 {
        inbox.push_back(message(1, i));
    }
    let iterations = |v: Vec<IterationMessage>| -> Vec<(u64, Address)> {
        v.iter().map(|m| (m.body.iteration, m.body.miner)).collect()
    };
    // Oldest first, at most one more than the 2 other miners per iteration.
    assert_eq!(iterations(agent.take_inbox(&task)), [(0, old), (1, old), (2, old)]);
    assert_eq!(iterations(agent.take_inbox(&task)), [(3, old)]);
    assert!(agent.take_inbox(&task).is_empty());
    // Probation over: the other miner's kept messages follow, still 3 at a time.
    agent.first_seen.insert((task, new), long_ago);
    assert_eq!(iterations(agent.take_inbox(&task)), [(0, new), (1, new), (2, new)]);
    assert_eq!(iterations(agent.take_inbox(&task)), [(3, new), (4, new)]);
}

#[test]
fn supervisors_that_saw_the_same_messages_in_any_order_hold_the_same_slots() {
    let msgs: Vec<IterationMessage> =
        (0..70).flat_map(|i| [message(1, i), message(2, i)]).collect();
    let (mut a, mut b) = (History::default(), History::default());
    for m in &msgs {
        a.record(m.clone());
    }
    for m in msgs.iter().rev() {
        b.record(m.clone());
        b.record(m.clone()); // duplicates count once
    }
    let s = usize::try_from(HISTORY_SLOT_ITERATIONS).unwrap();
    assert_eq!(a.open[&0].len(), 2 * s);
    assert_eq!(a.open[&1].len(), 2 * (70 - s));
    assert_eq!(root_of(&a, 0), root_of(&b, 0));
    assert_eq!(root_of(&a, 1), root_of(&b, 1));
    assert_eq!(a.highest[&ChainSpec::devnet_key(1).public()], 69);
    // Once committed, late messages of the slot are dropped.
    let committed = a.open.remove(&0).unwrap().into_values().collect();
    a.committed.insert(0, committed);
    a.record(message(3, 5));
    assert!(!a.open.contains_key(&0));
    // Iterations past the last slot a task can have are not recorded.
    a.record(message(3, u64::MAX));
    assert!(a.open.keys().all(|s| *s < MAX_HISTORY_SLOTS));
}

#[test]
fn a_missing_iteration_below_the_highest_seen_is_a_gap() {
    let mut h = History::default();
    for i in (0..70).filter(|i| *i != 10) {
        h.record(message(1, i));
    }
    assert!(h.has_gap(0), "iteration 10 is missing");
    assert!(!h.has_gap(1), "64..70 complete up to the highest seen");
    h.record(message(1, 10));
    assert!(!h.has_gap(0));
    // A second miner seen only up to iteration 3 has a gap at 0..3 if those are missing.
    h.record(message(2, 3));
    assert!(h.has_gap(0));
}

#[test]
fn a_second_variant_of_an_iteration_is_evidence_and_a_third_is_dropped() {
    let mut h = History::default();
    let variant = |miner: usize, loss: u32| {
        let key = ChainSpec::devnet_key(miner);
        let mut body = IterationBody::identity(Hash::digest(b"task"), key.public(), 7);
        body.loss = loss;
        body.sign(&key)
    };
    assert_eq!(h.record(variant(1, 1)), None);
    assert_eq!(h.record(variant(1, 1)), None, "the same message again is no equivocation");
    let (first, second) = h.record(variant(1, 2)).expect("two variants: an equivocation");
    assert_eq!((first.id(), second.id()), (variant(1, 1).id(), variant(1, 2).id()));
    assert_eq!(h.record(variant(1, 3)), None);
    assert_eq!(h.open[&0].len(), 2, "at most two variants kept");
    // A variant arriving after its slot was committed is still caught, and not stored.
    assert_eq!(h.record(variant(2, 1)), None);
    let committed = h.open.remove(&0).unwrap().into_values().collect();
    h.committed.insert(0, committed);
    let (first, _) = h.record(variant(2, 2)).expect("the first variant is committed");
    assert_eq!(first.id(), variant(2, 1).id());
    assert!(!h.open.contains_key(&0));
}
