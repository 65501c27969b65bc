//! The screening thread, driven as the node loop drives it.

use super::*;
use crate::screening::tests::{stream, two_views};
use pouw_consensus::{pouw::filler_task, task_split_of};
use pouw_primitives::{ChainSpec, Keypair};

/// Drives `screening` until `until` holds or 60 s pass; returns every flagged message.
fn drive(
    screening: &mut Screening,
    task: TaskId,
    until: impl Fn(&Screening) -> bool,
) -> Vec<(Finding, Option<Box<IterationMessage>>)> {
    let mut found = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        for o in screening.outputs() {
            match o {
                Output::Found { task: t, finding, message } => {
                    assert_eq!(t, task);
                    found.push((finding, message));
                }
                Output::Wants { .. } => panic!("a full replay asks for no start state"),
            }
        }
        if until(screening) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    found
}

#[test]
fn the_thread_screens_what_the_loop_sends_flags_a_poisoned_message_and_reports_done() {
    let (task, def) = filler_task(&ChainSpec::devnet(), &Hash::digest(b"worker"));
    let keys = ["m0", "m1", "m2"].map(Keypair::from_label).to_vec();
    let ((seed, miners), _) = two_views(&keys);
    let security = Arc::new(SecurityState::default());
    let mut screening = Screening::new(1, security.clone());
    assert_eq!(screening.status(&task, true, Instant::now()), None, "not screened here");
    screening.follow(task, &def, (seed, miners.clone()), Sampling::full());
    // An honest stream, and one whose third message has every sign flipped.
    let honest = stream((&task, &def), (&seed, &miners), &keys[0], 0, 6);
    let mut poisoned = stream((&task, &def), (&seed, &miners), &keys[1], 0, 6);
    let mut body = poisoned[2].body.clone();
    body.map = body.map.iter().map(|e| e ^ 0x8000_0000).collect();
    poisoned[2] = body.sign(&keys[1]);
    for m in honest.iter().chain(&poisoned) {
        screening.receive(task, Arc::new(m.clone()));
    }
    // Nothing is screened without the data; the status waits.
    let status = screening.status(&task, true, Instant::now()).unwrap();
    assert!(!status.done);
    assert!(!screening.has_dataset(&task));
    let split = task_split_of(&def, &seed).to_ml();
    screening.set_dataset(task, Arc::new(pouw_ml::shipped_mnist()), split, None);
    screening.chain(task, true, Vec::new());
    assert!(screening.has_dataset(&task));
    let found = drive(&mut screening, task, |s| {
        s.status(&task, true, Instant::now()).is_some_and(|st| st.screened == 12)
    });
    assert_eq!(found.len(), 1, "{:?}", found.iter().map(|f| &f.0.detail).collect::<Vec<_>>());
    let (finding, message) = &found[0];
    assert_eq!((finding.miner, finding.message), (keys[1].public(), poisoned[2].id()));
    assert_eq!(finding.kind, pouw_primitives::AlertKind::GradientPoisoning);
    assert_eq!(message.as_deref(), Some(&poisoned[2]), "the evidence comes with the flag");
    // Done once the task is past training and no message came for a while.
    let later = Instant::now() + Duration::from_secs(3);
    let status = screening.status(&task, true, later).unwrap();
    assert_eq!((status.screened, status.flagged), (12, 1));
    assert!(status.done);
    assert!(!screening.status(&task, false, later).unwrap().done, "still training");
    // The figures reach `pouw_security`, with the thread's CPU time.
    let views = security.screening.lock().unwrap().clone();
    let honest_view = views.iter().find(|v| v.miner == keys[0].public()).unwrap();
    assert_eq!((honest_view.replayed, honest_view.flagged), (6, 0));
    assert!(security.screening_cpu_ns.load(Ordering::Relaxed) > 0);
    // A command sent and not applied yet is work left: the status is not done meanwhile
    // (the count of work sent runs one ahead of what the thread applied).
    screening.sent += 1;
    assert!(!screening.status(&task, true, later).unwrap().done);
    screening.sent -= 1;
    assert!(screening.status(&task, true, later).unwrap().done);
}

#[test]
fn a_change_of_view_screens_the_held_messages_again_under_the_new_view() {
    let (task, def) = filler_task(&ChainSpec::devnet(), &Hash::digest(b"worker view"));
    let keys = ["m0", "m1", "m2"].map(Keypair::from_label).to_vec();
    let ((seed_a, miners_a), (seed_b, miners_b)) = two_views(&keys);
    let mut screening = Screening::default();
    screening.follow(task, &def, (seed_a, miners_a), Sampling::full());
    let data = Arc::new(pouw_ml::shipped_mnist());
    screening.set_dataset(task, data.clone(), task_split_of(&def, &seed_a).to_ml(), None);
    // The miner trains under the other view; the supervisor's view is not settled.
    let sent = stream((&task, &def), (&seed_b, &miners_b), &keys[1], 0, 4);
    for m in &sent {
        screening.receive(task, Arc::new(m.clone()));
    }
    screening.chain(task, false, Vec::new());
    let found = drive(&mut screening, task, |s| {
        s.status(&task, true, Instant::now()).is_some_and(|st| st.screened >= 1)
    });
    assert!(found.is_empty(), "nothing is flagged on a view that is not settled");
    // The supervisor's chain switches to the miner's view: the data goes again, for the new
    // split, and the held messages replay.
    screening.follow(task, &def, (seed_b, miners_b), Sampling::full());
    assert!(!screening.has_dataset(&task), "the data is sent again under the new view");
    screening.set_dataset(task, data, task_split_of(&def, &seed_b).to_ml(), None);
    screening.chain(task, true, Vec::new());
    let found = drive(&mut screening, task, |s| {
        s.status(&task, true, Instant::now() + Duration::from_secs(3)).is_some_and(|st| st.done)
    });
    assert!(found.is_empty(), "{:?}", found.iter().map(|f| &f.0.detail).collect::<Vec<_>>());
    let status = screening.status(&task, true, Instant::now() + Duration::from_secs(3)).unwrap();
    assert!(status.done);
    assert_eq!((status.screened, status.flagged), (4, 0));
}

#[test]
fn a_task_is_released_once_per_view_and_again_after_a_new_view() {
    let (task, def) = filler_task(&ChainSpec::devnet(), &Hash::digest(b"release"));
    let keys = ["m0", "m1", "m2"].map(Keypair::from_label).to_vec();
    let ((seed, miners), (other_seed, other_miners)) = two_views(&keys);
    let mut screening = Screening::new(1, Arc::new(SecurityState::default()));
    assert!(!screening.release(task), "a task not screened here has nothing to release");
    screening.follow(task, &def, (seed, miners.clone()), Sampling::full());
    assert!(screening.release(task), "the first release sends it");
    assert!(!screening.release(task), "the loop asks at every turn; nothing more is sent");
    // The same view again changes nothing; a new one (a reorganisation) screens anew.
    screening.follow(task, &def, (seed, miners), Sampling::full());
    assert!(!screening.release(task));
    screening.follow(task, &def, (other_seed, other_miners), Sampling::full());
    assert!(screening.release(task));
}
