//! Crash test (reliability anchor B1): a child process imports a chain with two deep reorgs
//! block by block into one data directory; we SIGKILL it at random moments, many times,
//! reusing the directory (so recovery itself is interrupted too), and after every kill check
//! that the database opens with no repair step, that no acknowledged block was lost, that the
//! canonical chain is a path of the expected block tree, that the tip is the heaviest stored
//! block, and that the state equals a fresh in-memory replay of that chain.

use pouw_chain::{test_utils::CrashScenario, Chain};
use pouw_consensus::{apply_block, genesis_state};
use pouw_primitives::Hash;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const SEED: u64 = 0x5eed;
const ROUNDS: usize = 24;

#[derive(Default, Debug)]
struct Progress {
    opening: Option<Instant>,
    opened: Option<Instant>,
    last_imported: Option<usize>,
    done: bool,
    done_at: Option<Instant>,
}

/// When to SIGKILL the child.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// This long after it printed `opening` (inside open / recovery).
    AfterOpening(Duration),
    /// This long after it printed `opened` (inside imports and reorgs).
    AfterOpened(Duration),
    /// Let it finish.
    Never,
}

/// Runs the child, killing it as `kill` says. Returns what it printed.
fn run_child(dir: &std::path::Path, kill: Kill) -> Progress {
    let bin = env!("CARGO_BIN_EXE_pouw-crash-import");
    let mut child = Command::new(bin)
        .arg(dir)
        .arg(SEED.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the crash-import helper");
    let stdout = child.stdout.take().expect("piped stdout");
    let progress = Arc::new(Mutex::new(Progress::default()));
    let p = Arc::clone(&progress);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut p = p.lock().unwrap();
            if line == "opening" {
                p.opening = Some(Instant::now());
            } else if line.starts_with("opened") {
                p.opened = Some(Instant::now());
            } else if let Some(i) = line.strip_prefix("imported ") {
                p.last_imported = Some(i.parse().unwrap());
            } else if line == "done" {
                p.done = true;
                p.done_at = Some(Instant::now());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let wait_for = |pick: fn(&Progress) -> Option<Instant>| loop {
        let p = progress.lock().unwrap();
        if let Some(t) = pick(&p) {
            return Some(t);
        }
        if p.done || Instant::now() > deadline {
            return None;
        }
        drop(p);
        std::thread::sleep(Duration::from_micros(200));
    };
    let kill_at = match kill {
        Kill::AfterOpening(d) => wait_for(|p| p.opening).map(|t| t + d),
        Kill::AfterOpened(d) => wait_for(|p| p.opened).map(|t| t + d),
        Kill::Never => None,
    };
    if let Some(t) = kill_at {
        std::thread::sleep(t.saturating_duration_since(Instant::now()));
        let _ = child.kill(); // SIGKILL
    }
    let status = child.wait().expect("wait for the child");
    reader.join().expect("reader thread");
    let p = std::mem::take(&mut *progress.lock().unwrap());
    if matches!(kill, Kill::Never) {
        assert!(status.success(), "child failed: {status}");
    }
    p
}

/// Opens the datadir and checks every invariant; returns the tip height.
fn check(dir: &std::path::Path, scenario: &CrashScenario, acknowledged: Option<usize>) -> u64 {
    let spec = scenario.factory.spec.clone();
    let chain = Chain::open(dir, spec.clone()).expect("reopen after a kill needs no repair");
    // No acknowledged block lost.
    if let Some(last) = acknowledged {
        for b in &scenario.blocks[..=last] {
            assert!(chain.header_entry(&b.hash()).is_some(), "acknowledged block lost");
        }
    }
    // The canonical chain is a linked path of expected blocks.
    let canonical = chain.canonical().to_vec();
    assert_eq!(canonical[0], scenario.factory.genesis);
    for w in canonical.windows(2) {
        let child = scenario.factory.header(&w[1]); // panics if unknown
        assert_eq!(child.prev_hash, w[0]);
    }
    // The tip is the heaviest stored block (every stored block is valid here).
    let tip_work = chain.tip_work();
    for b in &scenario.blocks {
        if let Some(e) = chain.header_entry(&b.hash()) {
            assert!(e.work() <= tip_work, "a heavier stored block is not the tip");
        }
    }
    // State = fresh in-memory replay of the canonical chain.
    let mut state = genesis_state(&spec).unwrap();
    for h in &canonical[1..] {
        let block = scenario.factory.block(h);
        let diff = apply_block(&state, block, &spec).unwrap();
        state.apply_diff(&diff);
    }
    assert_eq!(chain.state().root(), state.root());
    assert_eq!(chain.state(), &state);
    chain.height()
}

#[test]
fn sigkill_during_import_and_recovery() {
    let started = Instant::now();
    let scenario = CrashScenario::new(SEED);
    let index: HashMap<Hash, usize> =
        scenario.blocks.iter().enumerate().map(|(i, b)| (b.hash(), i)).collect();
    assert_eq!(index.len(), scenario.blocks.len());
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(SEED);

    // Calibrate: how long a child takes to open, and to import every block.
    let calib = tempfile::tempdir().unwrap();
    let p = run_child(calib.path(), Kill::Never);
    assert!(p.done);
    let mut open_time = p.opened.unwrap() - p.opening.unwrap();
    check(calib.path(), &scenario, p.last_imported);
    drop(calib);
    let import_time = p.done_at.unwrap() - p.opened.unwrap();
    let per_block = (import_time / scenario.blocks.len() as u32).max(Duration::from_micros(100));
    eprintln!("open {open_time:?}, about {per_block:?} per block");

    let (mut during_open, mut during_import) = (0, 0);
    let mut max_acknowledged: Option<usize> = None;
    for round in 0..ROUNDS {
        // Every fourth round aims at open/recovery; the others at imports and reorgs, each
        // round getting through some 5 to 20 more blocks.
        let kill = if round % 4 == 0 {
            Kill::AfterOpening(Duration::from_micros(
                rng.gen_range(0..=open_time.as_micros() as u64 + 1),
            ))
        } else {
            Kill::AfterOpened(per_block * rng.gen_range(5..=20))
        };
        let p = run_child(dir.path(), kill);
        if p.opening.is_some() && p.opened.is_none() {
            during_open += 1;
        }
        if let (Some(a), Some(b)) = (p.opening, p.opened) {
            open_time = b - a; // reopening (with recovery) takes its own time: track it
        }
        if p.opened.is_some() && !p.done {
            during_import += 1;
        }
        max_acknowledged = max_acknowledged.max(p.last_imported);
        let height = check(dir.path(), &scenario, max_acknowledged);
        eprintln!("round {round}: {kill:?}, acknowledged {:?}, height {height}", p.last_imported);
    }
    // Finally let it finish: the end state is the scenario's final tip.
    let p = run_child(dir.path(), Kill::Never);
    assert!(p.done);
    check(dir.path(), &scenario, Some(scenario.blocks.len() - 1));
    let chain = Chain::open(dir.path(), scenario.factory.spec.clone()).unwrap();
    assert_eq!(chain.tip(), scenario.final_tip);
    assert_eq!(chain.state(), scenario.factory.state(&scenario.final_tip));
    eprintln!(
        "{ROUNDS} kills: {during_open} during open/recovery, {during_import} during import, in {:?}",
        started.elapsed()
    );
    assert!(during_import >= ROUNDS / 2, "too few kills landed during import");
    assert!(during_open >= 1, "no kill landed during open/recovery");
}
