//! A supervisor's screening of each miner's stream of iteration messages (SPEC section 6).
//!
//! Every message is checked two ways:
//! - **replay**: the supervisor keeps a shadow of each selected miner's training state (the
//!   task's initial model, then every iteration replayed with the same deterministic kernels,
//!   on the batch the schedule assigns, with the peer messages the miner lists). The message's
//!   start hashes, batch hash, map, loss and accuracy must match the replay bit for bit; a
//!   map that differs is poisoning (or a stale update, when it equals one of the miner's
//!   earlier maps). An honest miner is never flagged: its stream is deterministic.
//! - **direction and magnitude**: the message map is compared with the robust aggregate
//!   (coordinate-wise median) of the other miners' recent maps: the cosine and the size ratio
//!   are kept per miner and quoted in alerts (honest miners agree; a sign-flipping miner points
//!   the other way). They are figures, never evidence: a stream that cannot be replayed (data
//!   missing) is counted unverifiable and never flagged.
//!
//! A message is replayed once the messages it lists are known; a miner whose stream has a gap
//! that does not fill within [`WAIT`] can no longer be replayed (its later messages count as
//! unverifiable and are judged by direction only).
//!
//! **The view.** Which batch a miner trains at an iteration follows from the task's selection
//! (the seed, hence the split, and the miners' order), which a reorganisation of the chain near
//! the task's PayForTask block can change. A miner and a supervisor on different branches then
//! hold different views, and an honest miner's batches look unscheduled to the supervisor. So
//! a message that trains another batch than the schedule assigns, or does not start where the
//! miner's last replayed iteration ended, is only *suspect*: it is flagged once the supervisor's
//! view is settled (its selection block buried, [`TaskScreen::screen`]'s `settled`) and the
//! miner has gone on for [`VIEW_WAIT`] without starting over; a miner that switches view starts
//! over from the task's initial state at a later iteration, which clears the suspicion. A
//! supervisor whose own view changes rebuilds its screening from the messages it holds
//! ([`TaskScreen::rebuilt`]). Only a map, loss or accuracy that differs from the replay of a
//! scheduled batch from the claimed start (what any node can check) is flagged at once.
//!
//! **Sampling** (design/020). Unless it is set to replay everything, a supervisor replays only
//! the messages its keyed draw picks ([`sample`]): a drawn message whose start state the shadow
//! did not replay up to is replayed from the start state the miner serves
//! (`Request::StartState`), checked against the start hashes the message signed; the others
//! are counted `skipped` and stay checkable later from the recorded history. A miner that does
//! not serve a committed state in time is never flagged for it: the supervisor replays its
//! whole stream from the task's initial state instead, as it does for a miner it flagged or
//! another supervisor accused ([`TaskScreen::replay_all`]), so every poisoned message of a
//! caught miner is flagged, the earlier ones too.

mod draws;
mod figures;
pub(crate) mod own;
pub(crate) mod own_thread;
mod replay;
pub(crate) mod sample;
pub(crate) mod worker;

use crate::security::ScreeningView;
pub(crate) use draws::StateWant;
use draws::{Fetch, Fetched, Sampled};
use figures::add_map;
#[cfg(test)]
use figures::median;
#[cfg(test)]
use figures::{cosine, signs};
use pouw_consensus::pouw::Handover;
use pouw_ml::{Dataset, Exec, TrainState};
use pouw_primitives::{
    map_hash, Address, AlertKind, Hash, IterationMessage, TaskDefinition, TaskId,
};
#[cfg(test)]
use pouw_work::initial_state;
use pouw_work::{initial_state_with, BatchWalk};
use sample::Sampling;
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

/// How long a message waits for a gap in its miner's stream, or for a listed peer message.
pub(crate) const WAIT: Duration = Duration::from_secs(5);
/// How long a message past its miner's walk waits for the conviction that extends the walk
/// (design/009) to reach this node's chain.
const HANDOVER_WAIT: Duration = Duration::from_secs(20);
/// How long a miner whose stream left the schedule (another batch, or a start that is not
/// where its last iteration ended) has, once this supervisor's view is settled, to start over
/// from the task's initial state (an honest miner does as soon as its chain switches branch)
/// before it is flagged.
pub(crate) const VIEW_WAIT: Duration = Duration::from_secs(20);
/// Recent maps per miner the robust aggregate is built from.
const WINDOW: usize = 8;
/// Longest screening pass (keeps the node loop responsive).
const BUDGET: Duration = Duration::from_millis(250);
/// How long a miner has to serve a start state a supervisor asked for (design/020).
pub(crate) const FETCH_WAIT: Duration = Duration::from_secs(5);
/// A start state asked for this long after its message came was asked late (the supervisor
/// was behind, e.g. still fetching the task's data): the miner need not hold it any more, so it
/// not being served is not held against the miner.
const ASK_LATE: Duration = Duration::from_secs(1);
/// Start states in a row, asked in time, that a miner may fail to serve before its whole
/// stream is replayed (a supervisor slower than the others may ask after the miner's states
/// moved on; a miner that serves none is replayed whole after this many draws).
const UNSERVED_RUN: u32 = 3;
/// How long a supervisor waits before asking again for a start state the miner did not hold
/// yet.
const FETCH_RETRY: Duration = Duration::from_millis(300);
/// Start states of one task asked for or held at once (each is a whole training state, held
/// until its message is screened; asked at once when its message arrives, while the miner
/// still holds it).
const MAX_FETCHES: usize = 32;

/// Where one task's screening stands ([`TaskScreen::progress`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    /// The training data is in.
    pub(crate) has_dataset: bool,
    /// Every queue is empty and no suspicion is open.
    pub(crate) drained: bool,
    /// When the last message came.
    pub(crate) last_receive: Instant,
    pub(crate) screened: u64,
    pub(crate) flagged: u64,
}

impl Progress {
    /// The answer to a screening-status request (see [`TaskScreen::status`]).
    pub(crate) fn status(&self, finalising: bool, now: Instant) -> pouw_net::ScreeningStatus {
        let quiet = now.saturating_duration_since(self.last_receive) >= Duration::from_secs(2);
        pouw_net::ScreeningStatus {
            done: finalising && self.has_dataset && self.drained && quiet,
            screened: self.screened,
            flagged: self.flagged,
        }
    }
}

/// A flagged message.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) miner: Address,
    pub(crate) message: Hash,
    pub(crate) kind: AlertKind,
    pub(crate) detail: String,
}

struct Shadow {
    state: TrainState,
    walk: BatchWalk,
    next: u64,
    broken: bool,
    /// A message that left the schedule (a view this supervisor may not share), with when it
    /// was seen: flagged only once the view is settled and [`VIEW_WAIT`] passed without the
    /// miner starting over.
    suspect: Option<(Finding, Instant)>,
    /// Messages of the current run of replays still to replay from here (design/020, "Runs").
    run_left: u32,
}

#[derive(Default)]
struct MinerLog {
    /// Messages waiting to be screened, by iteration: their ids (in `known`) and arrival.
    queue: BTreeMap<u64, (Hash, Instant)>,
    /// The id of the first message received for each iteration (the one screened).
    ids: HashMap<u64, Hash>,
    /// The miner's recent claimed maps, newest last.
    recent: VecDeque<Vec<u32>>,
    /// Their sum, dense (+1 / -1 per entry).
    window: Vec<f32>,
    /// Hashes of maps the miner sent or should have sent (replayed), with their iteration.
    maps_seen: HashMap<Hash, u64>,
    view: ScreeningView,
    direction: (f64, u64),
    magnitude: (f64, u64),
    /// Every message is replayed (the sampling is full, or the miner was flagged, accused or
    /// did not serve a start state).
    replay_all: bool,
    /// Iterations whose figures (direction, window) are counted (a stream replayed again
    /// after [`TaskScreen::replay_all`] does not count them twice).
    counted: std::collections::BTreeSet<u64>,
    /// The messages of this miner flagged so far (each raises one alert).
    flagged: std::collections::HashSet<Hash>,
    /// The start state asked of the miner for a drawn message, by iteration.
    fetches: BTreeMap<u64, Fetch>,
    /// Start states asked in time and not served since the last one served.
    unserved_run: u32,
}

/// One task's screening.
pub(crate) struct TaskScreen {
    task_id: TaskId,
    definition: TaskDefinition,
    /// The selection seed this screening follows (with `miners`, its view of the task).
    seed: Hash,
    miners: Vec<Address>,
    known: HashMap<Hash, Arc<IterationMessage>>,
    logs: BTreeMap<Address, MinerLog>,
    shadows: BTreeMap<Address, Shadow>,
    dataset: Option<(Arc<Dataset>, pouw_ml::Split)>,
    /// The model of the client's start weights, for a task that names them (design/021):
    /// replays from the task's initial state start from it.
    start_model: Option<Arc<pouw_ml::Model>>,
    /// The handovers of the task's convictions on chain so far (design/009).
    handovers: Vec<Handover>,
    params: usize,
    last_receive: Instant,
    sampling: Sampling,
    /// The start hashes of the task's initial state.
    initial: Option<(Hash, Hash)>,
}

impl TaskScreen {
    /// A screening that replays every message (tests; the node draws, [`TaskScreen::sampled`]).
    #[cfg(test)]
    pub(crate) fn new(
        task_id: TaskId,
        definition: TaskDefinition,
        seed: Hash,
        miners: Vec<Address>,
        now: Instant,
    ) -> Self {
        Self::sampled(task_id, definition, (seed, miners), Sampling::full(), now)
    }

    /// [`TaskScreen::new`] replaying the messages `sampling` draws.
    pub(crate) fn sampled(
        task_id: TaskId,
        definition: TaskDefinition,
        (seed, miners): (Hash, Vec<Address>),
        sampling: Sampling,
        now: Instant,
    ) -> Self {
        let full = sampling.is_full(miners.len());
        let fraction = sampling.fraction(miners.len());
        let logs = miners
            .iter()
            .map(|m| {
                let view = ScreeningView {
                    task_id,
                    miner: *m,
                    replay_fraction: fraction,
                    replays_all: full,
                    ..ScreeningView::default()
                };
                (*m, MinerLog { view, replay_all: full, ..MinerLog::default() })
            })
            .collect();
        let mut screen = Self {
            task_id,
            definition,
            seed,
            miners,
            known: HashMap::new(),
            logs,
            shadows: BTreeMap::new(),
            dataset: None,
            start_model: None,
            handovers: Vec::new(),
            params: 0,
            last_receive: now,
            sampling,
            initial: None,
        };
        screen.set_start_model(None);
        screen
    }

    /// The model of the task's start weights (`None` for a task that names none): sets the
    /// task's initial state, from which replays of a first iteration or a restart start.
    /// Until a task that names start weights has them, it has no initial state.
    pub(crate) fn set_start_model(&mut self, start_model: Option<Arc<pouw_ml::Model>>) {
        self.start_model = start_model;
        let initial = self.initial_state().map(|mut s| {
            let (m, r) = s.start_hashes();
            (s.model().param_count(), (Hash(m.0), Hash(r.0)))
        });
        self.params = initial.map_or(0, |(p, _)| p);
        self.initial = initial.map(|(_, h)| h);
    }

    /// The task's initial state (`None` while a task's start weights are not here).
    fn initial_state(&self) -> Option<pouw_ml::TrainState> {
        initial_state_with(&self.definition, self.start_model.as_deref()).ok()
    }

    /// Whether this screening follows the view `seed` and `miners` (the task record's
    /// selection seed and miners, in order).
    pub(crate) fn follows(&self, seed: &Hash, miners: &[Address]) -> bool {
        self.seed == *seed && self.miners == miners
    }

    /// The screening of the same task under another view (the chain reorganised the task's
    /// selection): every message held is queued again and screened from the start; the
    /// training data, fetched for the old split, is fetched anew.
    pub(crate) fn rebuilt(&self, seed: Hash, miners: Vec<Address>, now: Instant) -> Self {
        let mut fresh = Self::sampled(
            self.task_id,
            self.definition.clone(),
            (seed, miners),
            self.sampling,
            now,
        );
        fresh.set_start_model(self.start_model.clone());
        let mut held: Vec<&Arc<IterationMessage>> = self.known.values().collect();
        held.sort_by_key(|m| (m.body.miner, m.body.iteration));
        for msg in held {
            fresh.receive(msg, now);
        }
        for (miner, log) in &self.logs {
            if log.replay_all && !fresh.sampling.is_full(fresh.miners.len()) {
                fresh.replay_all(miner, now);
            }
        }
        fresh
    }

    /// The answer to a screening-status request: done once the task is past training
    /// (`finalising`), the data is in, every queue is empty and no message came for a while.
    #[cfg(test)]
    pub(crate) fn status(&self, finalising: bool, now: Instant) -> pouw_net::ScreeningStatus {
        self.progress().status(finalising, now)
    }

    /// Where the screening stands, as [`TaskScreen::status`] reads it.
    pub(crate) fn progress(&self) -> Progress {
        let drained = self.logs.values().all(|l| l.queue.is_empty() && l.fetches.is_empty())
            && self.shadows.values().all(|s| s.suspect.is_none());
        Progress {
            has_dataset: self.dataset.is_some(),
            drained,
            last_receive: self.last_receive,
            screened: self.logs.values().map(|l| l.view.screened).sum(),
            flagged: self.logs.values().map(|l| l.view.flagged).sum(),
        }
    }

    /// Drops everything but the figures (the task ended).
    pub(crate) fn release(&mut self) {
        self.known = HashMap::new();
        self.shadows = BTreeMap::new();
        self.dataset = None;
        for log in self.logs.values_mut() {
            log.queue = BTreeMap::new();
            log.recent = VecDeque::new();
            log.window = Vec::new();
            log.maps_seen = HashMap::new();
            log.fetches = BTreeMap::new();
            log.counted = std::collections::BTreeSet::new();
        }
    }

    /// The training data (only the training segments are read).
    pub(crate) fn set_dataset(&mut self, dataset: Arc<Dataset>, split: pouw_ml::Split) {
        self.dataset = Some((dataset, split));
    }

    /// A message of a selected miner of this task (signature checked). Only the first
    /// variant of an iteration is screened and kept: another one is an equivocation, which
    /// the supervisor's history keeps as evidence (design/013).
    pub(crate) fn receive(&mut self, msg: &Arc<IterationMessage>, now: Instant) {
        let Some(log) = self.logs.get_mut(&msg.body.miner) else { return };
        let id = msg.id();
        self.last_receive = now;
        match log.ids.entry(msg.body.iteration) {
            std::collections::hash_map::Entry::Occupied(_) => return,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(id);
            }
        }
        log.queue.entry(msg.body.iteration).or_insert((id, now));
        // A drawn message's start state is asked for at once, while the miner still holds it.
        let miners = self.miners.len();
        let outstanding: usize = self.logs.values().map(|l| l.fetches.len()).sum();
        if let Some(log) = self.logs.get_mut(&msg.body.miner) {
            if !log.replay_all
                && self.dataset.is_some()
                && outstanding < MAX_FETCHES
                && self.sampling.draws(&id, miners)
                && self.initial != Some((msg.body.start_model_hash, msg.body.start_residual_hash))
            {
                log.fetches.insert(
                    msg.body.iteration,
                    Fetch { asked: now, ask_at: Some(now), state: None },
                );
            }
        }
        self.known.insert(id, Arc::clone(msg));
    }

    /// A message this screening holds, by id.
    pub(crate) fn message(&self, id: &Hash) -> Option<&IterationMessage> {
        self.known.get(id).map(|m| &**m)
    }

    /// Per-miner figures.
    pub(crate) fn views(&self) -> Vec<ScreeningView> {
        self.logs.values().map(|l| l.view.clone()).collect()
    }

    fn fresh_shadow(&self, index: usize) -> Option<Shadow> {
        let (dataset, split) = self.dataset.as_ref()?;
        let state = self.initial_state()?;
        let walk = BatchWalk::for_client(
            self.task_id,
            &self.definition,
            dataset,
            split,
            index,
            self.miners.len(),
        )
        .ok()?;
        let mut walk = walk;
        walk.set_handovers(self.handovers.clone());
        // A stream (or a restart) starts with a run: its start needs no state (design/020).
        let run_left = self.sampling.run();
        Some(Shadow { state, walk, next: 0, broken: false, suspect: None, run_left })
    }

    /// The handovers of the task's convictions as this node's chain holds them: every
    /// shadow's walk follows them.
    pub(crate) fn set_handovers(&mut self, handovers: Vec<Handover>) {
        if handovers != self.handovers {
            for shadow in self.shadows.values_mut() {
                shadow.walk.set_handovers(handovers.clone());
            }
            self.handovers = handovers;
        }
    }

    /// Screens the messages that can be screened now, the miners in turn, for at most
    /// [`BUDGET`] (the node loop has other work); returns the flagged ones. `settled`: this
    /// node's view of the task's selection can no longer change in practice (its selection
    /// block is buried deep enough); until then no miner is flagged for leaving the schedule.
    pub(crate) fn screen(&mut self, exec: Exec, now: Instant, settled: bool) -> Vec<Finding> {
        let mut findings = Vec::new();
        if self.dataset.is_none() {
            return findings;
        }
        let started = Instant::now();
        let miners = self.miners.clone();
        loop {
            let mut progressed = false;
            for (index, miner) in miners.iter().enumerate() {
                if let Some(found) = self.screen_next(index, miner, exec, now) {
                    progressed = true;
                    findings.extend(found);
                }
            }
            if !progressed || started.elapsed() >= BUDGET {
                break;
            }
        }
        findings.extend(self.expire_suspects(now, settled));
        // One alert per message; a flagged miner's whole stream is replayed.
        findings.retain(|f| {
            self.logs.get_mut(&f.miner).is_some_and(|log| {
                let new = log.flagged.insert(f.message);
                log.view.flagged = log.flagged.len() as u64;
                new
            })
        });
        for f in &findings {
            self.replay_all(&f.miner, now);
        }
        findings
    }

    /// Flags the suspect messages of the miners that did not start over within
    /// [`VIEW_WAIT`] of this node's view being settled (they were seen `settled`).
    fn expire_suspects(&mut self, now: Instant, settled: bool) -> Vec<Finding> {
        let mut findings = Vec::new();
        for shadow in self.shadows.values_mut() {
            let Some((_, since)) = shadow.suspect.as_mut() else { continue };
            if !settled {
                // The wait starts once the view is settled.
                *since = now;
                continue;
            }
            if now.saturating_duration_since(*since) < VIEW_WAIT {
                continue;
            }
            if let Some((finding, _)) = shadow.suspect.take() {
                shadow.broken = true;
                findings.push(finding);
            }
        }
        findings
    }

    /// Screens `miner`'s next message: `None` when there is nothing to do now.
    fn screen_next(
        &mut self,
        index: usize,
        miner: &Address,
        exec: Exec,
        now: Instant,
    ) -> Option<Option<Finding>> {
        if !self.shadows.contains_key(miner) {
            let shadow = self.fresh_shadow(index)?;
            self.shadows.insert(*miner, shadow);
        }
        let log = self.logs.get(miner)?;
        let (&iteration, (id, since)) = if log.replay_all {
            log.queue.iter().next()?
        } else {
            // Sampled: the first message neither waiting for the start state asked of its
            // miner nor in the run such a message starts (the others go on meanwhile: each run
            // is replayed from its own state; design/020, "Runs").
            let run = u64::from(self.sampling.run().max(1));
            let waiting: Vec<u64> = log
                .fetches
                .iter()
                .filter(|(_, f)| {
                    f.state.is_none() && now.saturating_duration_since(f.asked) < FETCH_WAIT
                })
                .map(|(it, _)| *it)
                .collect();
            log.queue
                .iter()
                .find(|(it, _)| !waiting.iter().any(|w| *w <= **it && **it - *w < run))?
        };
        let waited = now.saturating_duration_since(*since);
        let msg = Arc::clone(self.known.get(id)?);
        if !self.logs.get(miner)?.replay_all {
            match self.sample(index, miner, &msg, now)? {
                Sampled::Skipped => return Some(None),
                Sampled::Wait => return None,
                Sampled::Replay => {}
            }
        }
        let next = self.shadows.get(miner)?.next;
        if iteration < next {
            self.logs.get_mut(miner)?.queue.remove(&iteration);
            return Some(None);
        }
        // A restart exactly where the stream was (the miner's next index) starts from the
        // initial state.
        let starts = (msg.body.start_model_hash, msg.body.start_residual_hash);
        let restarts_here = iteration == next && self.initial == Some(starts) && {
            let (m, r) = self.shadows.get_mut(miner)?.state.start_hashes();
            (Hash(m.0), Hash(r.0)) != starts
        };
        let shadow = self.shadows.get(miner)?;
        if (iteration > next || restarts_here) && !shadow.broken {
            // A restarted miner (a crash, or a switch of view) starts over from the initial
            // state at a later iteration.
            let mut fresh = self.fresh_shadow(index)?;
            let (m, r) = fresh.state.start_hashes();
            let suspect = shadow.suspect.is_some();
            if Hash(m.0) == msg.body.start_model_hash && Hash(r.0) == msg.body.start_residual_hash {
                fresh.next = iteration;
                fresh.walk.seek(iteration);
                self.shadows.insert(*miner, fresh);
            } else if suspect {
                // Still on the view that left the schedule: nothing to replay it against.
                let log = self.logs.get_mut(miner)?;
                log.queue.remove(&iteration);
                log.view.unverifiable += 1;
                return Some(None);
            } else if waited < WAIT {
                return None;
            } else {
                // A gap that did not fill (an iteration whose message the miner did not send):
                // the start state the miner serves for this message bridges it (design/020).
                match self.fetched(miner, iteration, now)? {
                    Fetched::Ready(state) => {
                        let shadow = self.shadows.get_mut(miner)?;
                        shadow.state = *state;
                        shadow.next = iteration;
                        shadow.walk.seek(iteration);
                    }
                    Fetched::Wait => return None,
                    Fetched::Failed(..) => {
                        self.logs.get_mut(miner)?.view.unserved += 1;
                        if let Some(s) = self.shadows.get_mut(miner) {
                            s.broken = true;
                        }
                    }
                }
            }
        }
        // Past the miner's walk: a conviction this node has not seen yet may have extended it.
        let shadow = self.shadows.get(miner)?;
        if !shadow.broken && !shadow.walk.has(iteration) && waited < HANDOVER_WAIT {
            return None;
        }
        // The listed peer messages: known, from the task's other miners.
        let mut peer_maps = Vec::with_capacity(msg.body.peer_msgs.len());
        let mut foreign = None;
        for id in &msg.body.peer_msgs {
            match self.known.get(id) {
                Some(p) if p.body.miner != *miner && p.body.task_id == self.task_id => {
                    peer_maps.push(p.body.map.clone())
                }
                Some(p) => foreign = Some(p.body.miner),
                None if waited < WAIT => return None,
                None => {
                    if let Some(s) = self.shadows.get_mut(miner) {
                        s.broken = true;
                    }
                }
            }
        }
        self.logs.get_mut(miner)?.queue.remove(&iteration);
        let counted = self.logs.get(miner)?.counted.contains(&iteration);
        let (direction, magnitude) =
            if counted { (None, None) } else { self.against_others(miner, &msg.body.map) };
        let finding =
            self.replay(miner, &msg, &peer_maps, foreign, (direction, magnitude), exec, now);
        if !counted {
            if let Some(log) = self.logs.get_mut(miner) {
                log.view.screened += 1;
            }
            self.count_figures(miner, &msg, direction, magnitude);
        }
        Some(finding)
    }

    /// Records the figures of `miner`'s message `msg` (its direction and magnitude, when they
    /// were measured, and its map in the miner's window).
    fn count_figures(
        &mut self,
        miner: &Address,
        msg: &IterationMessage,
        direction: Option<f64>,
        magnitude: Option<f64>,
    ) -> Option<()> {
        let claimed = map_hash(&msg.body.map);
        let params = self.params;
        let log = self.logs.get_mut(miner)?;
        log.counted.insert(msg.body.iteration);
        if let Some(d) = direction {
            log.direction.0 += d;
            log.direction.1 += 1;
            log.view.mean_direction = Some(log.direction.0 / log.direction.1 as f64);
        }
        if let Some(m) = magnitude {
            log.magnitude.0 += m;
            log.magnitude.1 += 1;
            log.view.mean_magnitude = Some(log.magnitude.0 / log.magnitude.1 as f64);
        }
        log.maps_seen.insert(claimed, msg.body.iteration);
        if log.window.len() != params {
            log.window = vec![0.0; params];
        }
        add_map(&mut log.window, &msg.body.map, 1.0);
        log.recent.push_back(msg.body.map.clone());
        while log.recent.len() > WINDOW {
            if let Some(old) = log.recent.pop_front() {
                add_map(&mut log.window, &old, -1.0);
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests;
