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

use crate::security::ScreeningView;
use pouw_consensus::pouw::Handover;
use pouw_ml::{Dataset, Exec, TrainState};
use pouw_primitives::{
    map_hash, Address, AlertKind, Hash, IterationMessage, TaskDefinition, TaskId,
};
use pouw_work::{initial_state, BatchWalk};
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
}

/// One task's screening.
pub(crate) struct TaskScreen {
    task_id: TaskId,
    definition: TaskDefinition,
    /// The selection seed this screening follows (with `miners`, its view of the task).
    seed: Hash,
    miners: Vec<Address>,
    known: HashMap<Hash, IterationMessage>,
    logs: BTreeMap<Address, MinerLog>,
    shadows: BTreeMap<Address, Shadow>,
    dataset: Option<(Arc<Dataset>, pouw_ml::Split)>,
    /// The handovers of the task's convictions on chain so far (design/009).
    handovers: Vec<Handover>,
    params: usize,
    last_receive: Instant,
}

/// Cosine between two sparse vectors (coordinate -> value).
fn cosine(a: &BTreeMap<u32, f64>, b: &BTreeMap<u32, f64>) -> Option<f64> {
    let dot: f64 = a.iter().filter_map(|(j, x)| b.get(j).map(|y| x * y)).sum();
    let na: f64 = a.values().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.values().map(|x| x * x).sum::<f64>().sqrt();
    (na > 0.0 && nb > 0.0).then(|| dot / (na * nb))
}

/// A message map as a sparse +-1 vector.
fn signs(map: &[u32]) -> BTreeMap<u32, f64> {
    map.iter()
        .map(|&e| {
            let (j, positive) = pouw_ml::unpack_entry(e);
            (j, if positive { 1.0 } else { -1.0 })
        })
        .collect()
}

/// Adds `scale` times the +-1 vector of `map` to `window`.
fn add_map(window: &mut [f32], map: &[u32], scale: f32) {
    for &e in map {
        let (j, positive) = pouw_ml::unpack_entry(e);
        if let Some(w) = window.get_mut(j as usize) {
            *w += if positive { scale } else { -scale };
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => v.get(n / 2).copied(),
        _ => Some((v.get(n / 2 - 1)? + v.get(n / 2)?) / 2.0),
    }
}

impl TaskScreen {
    pub(crate) fn new(
        task_id: TaskId,
        definition: TaskDefinition,
        seed: Hash,
        miners: Vec<Address>,
        now: Instant,
    ) -> Self {
        let logs = miners
            .iter()
            .map(|m| {
                let view = ScreeningView { task_id, miner: *m, ..ScreeningView::default() };
                (*m, MinerLog { view, ..MinerLog::default() })
            })
            .collect();
        let params = initial_state(&definition).map_or(0, |s| s.model().param_count());
        Self {
            task_id,
            definition,
            seed,
            miners,
            known: HashMap::new(),
            logs,
            shadows: BTreeMap::new(),
            dataset: None,
            handovers: Vec::new(),
            params,
            last_receive: now,
        }
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
        let mut fresh = Self::new(self.task_id, self.definition.clone(), seed, miners, now);
        let mut held: Vec<&IterationMessage> = self.known.values().collect();
        held.sort_by_key(|m| (m.body.miner, m.body.iteration));
        for msg in held {
            fresh.receive(msg, now);
        }
        fresh
    }

    /// The answer to a screening-status request: done once the task is past training
    /// (`finalising`), the data is in, every queue is empty and no message came for a while.
    pub(crate) fn status(&self, finalising: bool, now: Instant) -> pouw_net::ScreeningStatus {
        let drained = self.logs.values().all(|l| l.queue.is_empty())
            && self.shadows.values().all(|s| s.suspect.is_none());
        let quiet = now.saturating_duration_since(self.last_receive) >= Duration::from_secs(2);
        pouw_net::ScreeningStatus {
            done: finalising && self.dataset.is_some() && drained && quiet,
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
        }
    }

    /// Whether the training data for replays is in.
    pub(crate) fn has_dataset(&self) -> bool {
        self.dataset.is_some()
    }

    /// The training data (only the training segments are read).
    pub(crate) fn set_dataset(&mut self, dataset: Arc<Dataset>, split: pouw_ml::Split) {
        self.dataset = Some((dataset, split));
    }

    /// A message of a selected miner of this task (signature checked). Only the first
    /// variant of an iteration is screened and kept: another one is an equivocation, which
    /// the supervisor's history keeps as evidence (design/013).
    pub(crate) fn receive(&mut self, msg: &IterationMessage, now: Instant) {
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
        self.known.insert(id, msg.clone());
    }

    /// A message this screening holds, by id.
    pub(crate) fn message(&self, id: &Hash) -> Option<&IterationMessage> {
        self.known.get(id)
    }

    /// Per-miner figures.
    pub(crate) fn views(&self) -> Vec<ScreeningView> {
        self.logs.values().map(|l| l.view.clone()).collect()
    }

    fn fresh_shadow(&self, index: usize) -> Option<Shadow> {
        let (dataset, split) = self.dataset.as_ref()?;
        let state = initial_state(&self.definition).ok()?;
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
        Some(Shadow { state, walk, next: 0, broken: false, suspect: None })
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

    /// Direction (cosine with the robust aggregate of the others' recent maps) and magnitude
    /// (size over the median of the others' mean sizes) of `map`, sent by `miner`.
    fn against_others(&self, miner: &Address, map: &[u32]) -> (Option<f64>, Option<f64>) {
        let others: Vec<&MinerLog> = self
            .logs
            .iter()
            .filter(|(m, l)| *m != miner && !l.recent.is_empty() && l.window.len() == self.params)
            .map(|(_, l)| l)
            .collect();
        if others.is_empty() {
            return (None, None);
        }
        // The coordinate-wise median of the others' window sums, and its norm.
        let mut aggregate = vec![0.0f64; self.params];
        let mut column = vec![0.0f64; others.len()];
        let k = column.len();
        let mut norm = 0.0f64;
        for (j, a) in aggregate.iter_mut().enumerate() {
            for (c, l) in column.iter_mut().zip(&others) {
                *c = f64::from(l.window.get(j).copied().unwrap_or(0.0));
            }
            column.sort_unstable_by(f64::total_cmp);
            let hi = column.get(k / 2).copied().unwrap_or(0.0);
            let m = if k % 2 == 1 {
                hi
            } else {
                (column.get(k / 2 - 1).copied().unwrap_or(0.0) + hi) / 2.0
            };
            *a = m;
            norm += m * m;
        }
        let mut dot = 0.0f64;
        for &e in map {
            let (j, positive) = pouw_ml::unpack_entry(e);
            let x = aggregate.get(j as usize).copied().unwrap_or(0.0);
            dot += if positive { x } else { -x };
        }
        let direction = (norm > 0.0 && !map.is_empty())
            .then(|| dot / (norm.sqrt() * (map.len() as f64).sqrt()));
        let sizes: Vec<f64> = others
            .iter()
            .map(|l| l.recent.iter().map(Vec::len).sum::<usize>() as f64 / l.recent.len() as f64)
            .collect();
        let magnitude = median(sizes).filter(|m| *m > 0.0).map(|m| map.len() as f64 / m);
        (direction, magnitude)
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
                if let Some(log) = self.logs.get_mut(&finding.miner) {
                    log.view.flagged += 1;
                }
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
        let (&iteration, (id, since)) = self.logs.get(miner)?.queue.iter().next()?;
        let waited = now.saturating_duration_since(*since);
        let msg = self.known.get(id)?.clone();
        let next = self.shadows.get(miner)?.next;
        if iteration < next {
            self.logs.get_mut(miner)?.queue.remove(&iteration);
            return Some(None);
        }
        let shadow = self.shadows.get(miner)?;
        if iteration > next && !shadow.broken {
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
            } else if let Some(s) = self.shadows.get_mut(miner) {
                s.broken = true;
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
        let (direction, magnitude) = self.against_others(miner, &msg.body.map);
        let finding =
            self.replay(miner, &msg, &peer_maps, foreign, (direction, magnitude), exec, now);
        let claimed = map_hash(&msg.body.map);
        let log = self.logs.get_mut(miner)?;
        log.view.screened += 1;
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
        if finding.is_some() {
            log.view.flagged += 1;
        }
        log.maps_seen.insert(claimed, iteration);
        if log.window.len() != self.params {
            log.window = vec![0.0; self.params];
        }
        add_map(&mut log.window, &msg.body.map, 1.0);
        log.recent.push_back(msg.body.map.clone());
        while log.recent.len() > WINDOW {
            if let Some(old) = log.recent.pop_front() {
                add_map(&mut log.window, &old, -1.0);
            }
        }
        Some(finding)
    }

    #[allow(clippy::too_many_arguments)]
    fn replay(
        &mut self,
        miner: &Address,
        msg: &IterationMessage,
        peer_maps: &[Vec<u32>],
        foreign: Option<Address>,
        (direction, magnitude): (Option<f64>, Option<f64>),
        exec: Exec,
        now: Instant,
    ) -> Option<Finding> {
        let b = &msg.body;
        let it = b.iteration;
        let stats = format!(
            "direction vs the other miners {}, magnitude {}",
            direction.map_or("n/a".into(), |d| format!("{d:.2}")),
            magnitude.map_or("n/a".into(), |m| format!("{m:.2}")),
        );
        let flag =
            |kind, detail: String| Some(Finding { miner: *miner, message: msg.id(), kind, detail });
        if let Some(other) = foreign {
            return flag(
                AlertKind::InvalidIteration,
                format!(
                    "iteration {it} applies a message of {} (not another miner of the task)",
                    other.short()
                ),
            );
        }
        let (dataset, _) = self.dataset.as_ref()?;
        let shadow = self.shadows.get_mut(miner)?;
        if shadow.broken {
            // Not replayable: nothing any node could check, so nothing is flagged. The
            // direction against the others is no evidence (an honest stream measured -0.50
            // against an aggregate that held a sign-flipping miner's maps).
            if let Some(log) = self.logs.get_mut(miner) {
                log.view.unverifiable += 1;
            }
            return None;
        }
        // Leaving the schedule is suspect, not flagged: the miner may hold another view of
        // the task's selection (module docs).
        let scheduled =
            shadow.walk.next_batch().map(|(epoch, indices)| (epoch, dataset.gather(&indices)));
        let (m, r) = shadow.state.start_hashes();
        let left = match &scheduled {
            None => Some(format!("iteration {it} is beyond the task's batch schedule")),
            Some(_) if Hash(m.0) != b.start_model_hash || Hash(r.0) != b.start_residual_hash => {
                Some(format!(
                    "iteration {it} does not start where the miner's previous iteration ended"
                ))
            }
            Some((epoch, batch)) if Hash(batch.hash().0) != b.batch_hash || *epoch != b.epoch => {
                Some(format!(
                    "iteration {it} trains a batch the schedule does not assign (epoch {} vs {epoch})",
                    b.epoch
                ))
            }
            Some(_) => None,
        };
        let batch = match (left, scheduled) {
            (None, Some((_, batch))) => batch,
            (left, _) => {
                // The walk stays where the miner's last replayed iteration left it.
                shadow.walk.seek(shadow.next);
                if shadow.suspect.is_none() {
                    let detail = left.unwrap_or_default();
                    let finding = Finding {
                        miner: *miner,
                        message: msg.id(),
                        kind: AlertKind::InvalidIteration,
                        detail,
                    };
                    shadow.suspect = Some((finding, now));
                }
                if let Some(log) = self.logs.get_mut(miner) {
                    log.view.unverifiable += 1;
                }
                return None;
            }
        };
        let maps: Vec<&[u32]> = peer_maps.iter().map(Vec::as_slice).collect();
        // With the order seed the message names (the header it mined, or zero): any seed is
        // honest training; only a block's winning message must name its header's.
        let out = match shadow.state.iterate_bound(exec, &batch, &maps, &b.order_seed.0) {
            Ok(out) => out,
            Err(e) => {
                shadow.broken = true;
                return flag(
                    AlertKind::InvalidIteration,
                    format!("iteration {it} cannot be replayed: {e}"),
                );
            }
        };
        shadow.next = it.saturating_add(1);
        // Training that diverged (a NaN or an infinity, which shows in the loss) is no
        // fault, but its bits (NaN payloads) may differ between CPUs: the stream is no longer
        // replayed bit for bit.
        if !f32::from_bits(out.loss_bits).is_finite() {
            shadow.broken = true;
            if let Some(log) = self.logs.get_mut(miner) {
                log.view.unverifiable += 1;
            }
            return None;
        }
        let replayed = map_hash(&out.map);
        let log = self.logs.get_mut(miner)?;
        log.view.replayed += 1;
        let claimed = map_hash(&b.map);
        let stale = log.maps_seen.get(&claimed).copied();
        log.maps_seen.insert(replayed, it);
        if b.map != out.map {
            let agreement = cosine(&signs(&b.map), &signs(&out.map)).unwrap_or(0.0);
            let sizes =
                format!("replay emits {} entries, the message {}", out.map.len(), b.map.len());
            return match stale {
                Some(old) => flag(
                    AlertKind::StaleUpdate,
                    format!("iteration {it} re-sends the map of iteration {old}; {sizes}; {stats}"),
                ),
                None => flag(
                    AlertKind::GradientPoisoning,
                    format!("iteration {it}: map differs from its replay (agreement {agreement:.2}); {sizes}; {stats}"),
                ),
            };
        }
        if b.loss != out.loss_bits || b.accuracy != out.accuracy_bits {
            return flag(
                AlertKind::InvalidIteration,
                format!("iteration {it}: loss or accuracy differ from the replay"),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
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
    fn stream(
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
    fn two_views(keys: &[Keypair]) -> ((Hash, Vec<Address>), (Hash, Vec<Address>)) {
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
            screen.receive(&body.sign(&keys[0]), t0);
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
            screen.receive(m, t0);
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
        screen
            .set_dataset(Arc::new(pouw_ml::shipped_mnist()), task_split_of(&def, &seed_b).to_ml());
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
            screen.receive(m, t0);
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
            screen.receive(m, t0);
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
            screen.receive(m, t0);
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
}
