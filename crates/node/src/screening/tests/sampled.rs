//! Sampled screening (design/020): what a supervisor that replays a fraction of each miner's
//! messages flags, with the start states the miner's own node serves.

use super::super::{draws::StateWant, own::OwnStates, sample::Sampling, FETCH_WAIT};
use super::*;
use pouw_consensus::pouw::ProofData;
use pouw_work::Assignment;

/// The miner's own states for its stream under the view (`seed`, `miners`).
fn own_states(
    (id, definition): (&TaskId, &TaskDefinition),
    (seed, miners): (&Hash, &[Address]),
    key: &Keypair,
) -> OwnStates {
    let index = miners.iter().position(|m| *m == key.public()).unwrap();
    OwnStates::new(
        &Assignment {
            task_id: *id,
            definition: definition.clone(),
            dataset: Arc::new(pouw_ml::shipped_mnist()),
            split: task_split_of(definition, seed).to_ml(),
            miner_index: index,
            miners: miners.len(),
            start_model: None,
            training_deadline: u64::MAX,
        },
        5,
    )
    .unwrap()
}

/// `msgs` with every sign of their maps flipped (signed again by `key`).
fn flipped(msgs: &[IterationMessage], key: &Keypair) -> Vec<IterationMessage> {
    msgs.iter()
        .map(|m| {
            let mut body = m.body.clone();
            body.map = body.map.iter().map(|e| e ^ 0x8000_0000).collect();
            body.sign(key)
        })
        .collect()
}

/// Screens until nothing is left, answering every start-state request with `answer`; returns
/// every finding.
fn run(
    screen: &mut TaskScreen,
    mut answer: impl FnMut(&StateWant) -> Option<ProofData>,
    start: Instant,
) -> Vec<Finding> {
    let mut found = Vec::new();
    for step in 0..400u64 {
        let now = start + Duration::from_millis(100 * step);
        found.extend(screen.screen(Exec::SINGLE, now, true));
        for w in screen.take_wants(now) {
            let data = answer(&w);
            screen.on_state(&w.miner, w.iteration, data, now);
        }
        if screen.status(true, now + Duration::from_secs(3)).done {
            break;
        }
    }
    found
}

/// Screens `sent`, `key`'s stream under the view (`seed`, `miners`), with `sampling`, the
/// miner's own node serving its start states; the screen and every finding.
fn screen_served(
    (id, def): (&TaskId, &TaskDefinition),
    (seed, miners): (&Hash, &[Address]),
    (sampling, key): (Sampling, &Keypair),
    sent: &[IterationMessage],
) -> (TaskScreen, Vec<Finding>) {
    let t0 = Instant::now();
    let mut screen = TaskScreen::sampled(*id, def.clone(), (*seed, miners.to_vec()), sampling, t0);
    screen.set_dataset(Arc::new(pouw_ml::shipped_mnist()), task_split_of(def, seed).to_ml());
    let mut own = own_states((id, def), (seed, miners), key);
    for m in sent {
        own.record(Exec::SINGLE, Box::new(m.clone()), Vec::new());
        screen.receive(&Arc::new(m.clone()), t0);
    }
    let found = run(&mut screen, |w| own.get(Exec::SINGLE, w.iteration), t0);
    (screen, found)
}

#[test]
fn a_sampled_honest_stream_is_replayed_in_part_from_served_states_and_never_flagged() {
    let (id, def, keys) = task();
    let ((seed, miners), _) = two_views(&keys);
    let sampling = Sampling::new(&[7; 32], Some(0.3)).with_run(1);
    let sent = stream((&id, &def), (&seed, &miners), &keys[1], 0, 40);
    let (screen, found) = screen_served((&id, &def), (&seed, &miners), (sampling, &keys[1]), &sent);
    assert!(found.is_empty(), "{:?}", found.first().map(|f| &f.detail));
    let v = &view_of(&screen, &keys[1].public()).view;
    assert_eq!((v.flagged, v.unverifiable, v.unserved), (0, 0, 0), "{v:?}");
    assert_eq!(v.replayed + v.skipped, 40, "{v:?}");
    assert!(v.replayed >= 4 && v.skipped >= 15 && v.fetched >= 2, "{v:?}");
    assert!(!v.replays_all);
}

#[test]
fn a_sign_flipping_miner_is_caught_by_a_sample_then_flagged_on_every_message() {
    let (id, def, keys) = task();
    let ((seed, miners), _) = two_views(&keys);
    let sampling = Sampling::new(&[9; 32], Some(0.2)).with_run(1);
    let sent = flipped(&stream((&id, &def), (&seed, &miners), &keys[2], 0, 30), &keys[2]);
    // The hostile miner trains honestly and serves its true start states.
    let (screen, found) = screen_served((&id, &def), (&seed, &miners), (sampling, &keys[2]), &sent);
    let ids: std::collections::HashSet<Hash> = found.iter().map(|f| f.message).collect();
    assert_eq!(ids.len(), found.len(), "one alert per message");
    assert_eq!(ids, sent.iter().map(IterationMessage::id).collect(), "every message flagged");
    assert!(
        found.iter().all(|f| f.kind == AlertKind::GradientPoisoning),
        "{:?}",
        found.iter().map(|f| (&f.kind, &f.detail)).collect::<Vec<_>>()
    );
    let v = &view_of(&screen, &keys[2].public()).view;
    assert!(v.replays_all, "{v:?}");
    assert_eq!((v.flagged, v.replayed), (30, 30), "{v:?}");
}

/// A key whose runs of `run` start at least `starts` times in the first `within` of `msgs`.
fn key_drawing(msgs: &[IterationMessage], fraction: f64, run: u32, within: usize) -> Sampling {
    (0..=255u8)
        .map(|k| Sampling::new(&[k; 32], Some(fraction)).with_run(run))
        .find(|s| msgs.iter().take(within).filter(|m| s.draws(&m.id(), 3)).count() >= 2)
        .unwrap()
}

#[test]
fn a_run_replays_the_messages_after_a_drawn_one_from_one_fetched_state_and_never_flags_an_honest_miner(
) {
    let (id, def, keys) = task();
    let ((seed, miners), _) = two_views(&keys);
    let sent = stream((&id, &def), (&seed, &miners), &keys[1], 0, 48);
    // Runs of 8 start with probability 0.4 / 8 a message; this key starts two or more in the
    // first 40 messages, so at least one run ends inside the stream.
    let sampling = key_drawing(&sent, 0.4, 8, 40);
    let drawn = sent.iter().filter(|m| sampling.draws(&m.id(), 3)).count() as u64;
    let (screen, found) = screen_served((&id, &def), (&seed, &miners), (sampling, &keys[1]), &sent);
    assert!(found.is_empty(), "{:?}", found.first().map(|f| &f.detail));
    let v = &view_of(&screen, &keys[1].public()).view;
    assert_eq!((v.flagged, v.unverifiable, v.unserved), (0, 0, 0), "{v:?}");
    assert_eq!(v.replayed + v.skipped, 48, "{v:?}");
    // One state at most per run, and every run goes on from its own replay.
    assert!(v.fetched >= 1 && v.fetched <= drawn, "{drawn} drawn: {v:?}");
    assert!(v.replayed >= 8 + v.fetched, "{drawn} drawn: {v:?}");
    assert!(v.skipped >= 8 && !v.replays_all, "{v:?}");
}

#[test]
fn a_sign_flipping_miner_is_caught_in_a_run_then_flagged_on_every_message() {
    let (id, def, keys) = task();
    let ((seed, miners), _) = two_views(&keys);
    let sent = flipped(&stream((&id, &def), (&seed, &miners), &keys[2], 0, 30), &keys[2]);
    let sampling = key_drawing(&sent, 0.4, 8, 30);
    let (screen, found) = screen_served((&id, &def), (&seed, &miners), (sampling, &keys[2]), &sent);
    let ids: std::collections::HashSet<Hash> = found.iter().map(|f| f.message).collect();
    assert_eq!(ids, sent.iter().map(IterationMessage::id).collect(), "every message flagged");
    let v = &view_of(&screen, &keys[2].public()).view;
    assert!(v.replays_all, "{v:?}");
}

#[test]
fn a_miner_that_serves_no_state_is_replayed_whole_and_not_flagged() {
    let (id, def, keys) = task();
    let ((seed, miners), _) = two_views(&keys);
    let t0 = Instant::now();
    let sampling = Sampling::new(&[3; 32], Some(0.3)).with_run(1);
    let mut screen = TaskScreen::sampled(id, def.clone(), (seed, miners.clone()), sampling, t0);
    screen.set_dataset(Arc::new(pouw_ml::shipped_mnist()), task_split_of(&def, &seed).to_ml());
    let sent = stream((&id, &def), (&seed, &miners), &keys[0], 0, 25);
    for m in &sent {
        screen.receive(&Arc::new(m.clone()), t0);
    }
    // Nothing served: not before the wait is over, then the whole stream is replayed.
    let early = screen.screen(Exec::SINGLE, t0, true);
    assert!(early.is_empty());
    assert!(!view_of(&screen, &keys[0].public()).view.replays_all);
    let found = run(&mut screen, |_| None, t0 + FETCH_WAIT);
    assert!(found.is_empty(), "{:?}", found.first().map(|f| &f.detail));
    let v = &view_of(&screen, &keys[0].public()).view;
    assert!(v.replays_all && v.unserved >= 1, "{v:?}");
    assert_eq!((v.flagged, v.replayed, v.skipped), (0, 25, 0), "{v:?}");
}

#[test]
fn a_served_state_that_is_not_the_committed_one_is_refused() {
    let (id, def, keys) = task();
    let ((seed, miners), _) = two_views(&keys);
    let sent = stream((&id, &def), (&seed, &miners), &keys[1], 0, 3);
    let mut own = own_states((&id, &def), (&seed, &miners), &keys[1]);
    for m in &sent {
        own.record(Exec::SINGLE, Box::new(m.clone()), Vec::new());
    }
    let initial = initial_state(&def).unwrap();
    let good = own.get(Exec::SINGLE, 2).unwrap();
    assert!(super::super::sample::start_state(&initial, &good, &sent[2]).is_ok());
    // Another iteration's state, a changed residual, a wrong length: refused.
    let other = own.get(Exec::SINGLE, 1).unwrap();
    assert!(super::super::sample::start_state(&initial, &other, &sent[2]).is_err());
    let mut bent = good.clone();
    bent.start_residual[0] += 1.0;
    assert!(super::super::sample::start_state(&initial, &bent, &sent[2]).is_err());
    let mut short = good;
    short.start_params.pop();
    assert!(super::super::sample::start_state(&initial, &short, &sent[2]).is_err());
}

#[test]
fn a_miner_follows_iterations_whose_message_it_did_not_send() {
    // Iteration 2 ran in the natural order and iteration 6 bound to the header committed at
    // iteration 1; neither message was sent (their block templates were refused).
    let (id, def, keys) = task();
    let ((seed, miners), _) = two_views(&keys);
    let data = pouw_ml::shipped_mnist_ref();
    let split = task_split_of(&def, &seed).to_ml();
    let mut walk = BatchWalk::for_client(id, &def, data, &split, 1, 3).unwrap();
    let mut state = initial_state(&def).unwrap();
    let mut sent: Vec<IterationMessage> = Vec::new();
    for n in 0..9u64 {
        let (epoch, indices) = walk.next_batch().unwrap();
        let order = if n == 6 { sent[1].body.commitment } else { Hash::ZERO };
        let batch = data.gather(&indices);
        let out = state.iterate_bound(Exec::SINGLE, &batch, &[], &order.0).unwrap();
        let mut body = iteration_body(id, keys[1].public(), epoch, n, &out);
        body.commitment = Hash::digest(&n.to_le_bytes());
        body.order_seed = order;
        sent.push(body.sign(&keys[1]));
    }
    let mut own = own_states((&id, &def), (&seed, &miners), &keys[1]);
    for m in &sent {
        match m.body.iteration {
            2 | 6 => own.record_lost(Exec::SINGLE, Vec::new()),
            _ => own.record(Exec::SINGLE, Box::new(m.clone()), Vec::new()),
        }
    }
    let initial = initial_state(&def).unwrap();
    for n in [8u64, 7, 6, 3, 2] {
        let data = own.get(Exec::SINGLE, n).unwrap_or_else(|| panic!("iteration {n} not held"));
        let msg = &sent[n as usize];
        assert!(super::super::sample::start_state(&initial, &data, msg).is_ok(), "iteration {n}");
    }
}

#[test]
fn a_sampled_miner_that_restarts_under_the_supervisors_view_is_not_flagged_when_the_draw_skips_its_restart(
) {
    // The evidence of a false flag in the lying-supervisor lifecycle test: the miner's first
    // iteration trained under the losing branch's view, it started over under the
    // supervisor's view at iteration 1, and the sampling drew neither that restart nor the
    // next message starting from the initial state, so the suspicion on iteration 0 was never
    // cleared and expired into a flag while every later message replayed.
    let (id, def, keys) = task();
    let ((seed_a, miners_a), (seed_b, miners_b)) = two_views(&keys);
    let t0 = Instant::now();
    let old = stream((&id, &def), (&seed_a, &miners_a), &keys[1], 0, 1);
    let new = stream((&id, &def), (&seed_b, &miners_b), &keys[1], 1, 30);
    // A key whose draw takes the off-schedule iteration 0 and skips the restart.
    let sampling = (0..=255u8)
        .map(|k| Sampling::new(&[k; 32], Some(0.3)))
        .find(|s| s.draws(&old[0].id(), 3) && !s.draws(&new[0].id(), 3))
        .unwrap();
    let mut screen = TaskScreen::sampled(id, def.clone(), (seed_b, miners_b.clone()), sampling, t0);
    screen.set_dataset(Arc::new(pouw_ml::shipped_mnist()), task_split_of(&def, &seed_b).to_ml());
    let mut own = own_states((&id, &def), (&seed_b, &miners_b), &keys[1]);
    for m in old.iter().chain(&new) {
        if m.body.iteration > 0 {
            own.record(Exec::SINGLE, Box::new(m.clone()), Vec::new());
        }
        screen.receive(&Arc::new(m.clone()), t0);
    }
    let found = run(&mut screen, |w| own.get(Exec::SINGLE, w.iteration), t0);
    assert!(found.is_empty(), "{:?}", found.first().map(|f| &f.detail));
    // Well past the view wait: still nothing, and nothing left open.
    let late = t0 + VIEW_WAIT * 3;
    assert!(screen.screen(Exec::SINGLE, late, true).is_empty());
    assert!(screen.status(true, late).done);
    let v = &view_of(&screen, &keys[1].public()).view;
    assert_eq!((v.flagged, v.unserved), (0, 0), "{v:?}");
    assert!(v.replayed >= 1, "the restart is replayed: {v:?}");
}
