//! A supervisor's screening off the node's event loop.
//!
//! Screening replays the miners' iterations: seconds of CPU per task, which on the event loop
//! would hold back every block, request and answer behind it. So one thread per node owns every
//! task's [`TaskScreen`]. The loop sends it what it learns ([`Command`]: the view of the task's
//! selection, each iteration message, the training data, whether the view is settled and the
//! convictions' handovers, the start states miners served, accusations) through a bounded
//! queue, and takes back what the screening found ([`Output`]: flagged messages with their
//! evidence, start states to ask of miners) at every turn. What the loop must answer at once (a
//! peer's screening-status request, the evaluators' wait) it reads from the [`Progress`] the
//! thread publishes after each step; a command sent and not applied yet counts as work left,
//! so no status says "done" while a message is still on its way to the screening.
//!
//! The thread also publishes the per-miner figures (`pouw_security` → `screening`) and counts
//! its own CPU time as the supervisor's screening time.

use super::{draws::StateWant, sample::Sampling, Finding, Progress, TaskScreen};
use crate::{agent::guarded, security::SecurityState, stats::thread_cpu_ns};
use pouw_consensus::pouw::{Handover, ProofData};
use pouw_ml::{Dataset, Exec, Model, Split};
use pouw_primitives::{Address, Hash, IterationMessage, TaskDefinition, TaskId};
use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Mutex, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Commands waiting for the screening thread at most (the loop waits when it is full: an
/// iteration message is never dropped, a dropped one would be a gap in an honest stream).
pub(crate) const QUEUE: usize = 1024;
/// How often the thread screens when no command comes (waits run out: gaps, suspicions,
/// start states not served).
const IDLE: Duration = Duration::from_millis(50);
/// Commands applied at most before a screening pass.
const BATCH: usize = 256;

/// What the loop tells the screening.
pub(crate) enum Command {
    /// The task's selection as this node's chain holds it: the screening is made at the first,
    /// and made anew from the messages held when it changes (a reorganisation).
    View {
        task: TaskId,
        definition: Box<TaskDefinition>,
        seed: Hash,
        miners: Vec<Address>,
        sampling: Sampling,
    },
    /// An iteration message of one of the task's selected miners (signature checked).
    Receive { task: TaskId, msg: Arc<IterationMessage>, at: Instant },
    /// The task's training data (its training segments under the view last sent), and the
    /// client's start weights when the task names some.
    Dataset { task: TaskId, dataset: Arc<Dataset>, split: Split, start: Option<Arc<Model>> },
    /// Whether the view is settled, and the handovers of the task's convictions on chain.
    Chain { task: TaskId, settled: bool, handovers: Vec<Handover> },
    /// A miner's answer to a start-state request (`None`: none, or the request failed).
    State {
        task: TaskId,
        miner: Address,
        iteration: u64,
        data: Option<Box<ProofData>>,
        at: Instant,
    },
    /// A verified accusation of `miner`: its whole stream is replayed.
    ReplayAll { task: TaskId, miner: Address, at: Instant },
    /// The task ended: its data goes, the figures stay.
    Release { task: TaskId },
}

impl Command {
    fn task(&self) -> TaskId {
        match self {
            Self::View { task, .. }
            | Self::Receive { task, .. }
            | Self::Dataset { task, .. }
            | Self::Chain { task, .. }
            | Self::State { task, .. }
            | Self::ReplayAll { task, .. }
            | Self::Release { task } => *task,
        }
    }

    /// Whether the command is screening work the status must wait for.
    fn is_work(&self) -> bool {
        !matches!(self, Self::Chain { .. } | Self::Release { .. })
    }
}

/// What the screening gives back to the loop.
pub(crate) enum Output {
    /// A flagged message, with the message itself when the screening holds it (the alert's
    /// evidence is kept).
    Found { task: TaskId, finding: Finding, message: Option<Box<IterationMessage>> },
    /// Start states to ask of the task's miners now.
    Wants { task: TaskId, wants: Vec<StateWant> },
}

/// What the thread publishes after each step.
#[derive(Default)]
struct Published {
    progress: HashMap<TaskId, Progress>,
    /// Work commands applied and screened since.
    applied: u64,
}

/// The loop's side: the queue, the published progress and the views sent.
pub(crate) struct Screening {
    threads: usize,
    security: Arc<SecurityState>,
    running: Option<Running>,
    published: Arc<Mutex<Published>>,
    /// Work commands sent.
    sent: u64,
    /// The view last sent per task, and whether the training data went under it.
    views: HashMap<TaskId, ((Hash, Vec<Address>), bool)>,
    /// Tasks whose screening data was released (since their view was last sent).
    released: std::collections::HashSet<TaskId>,
}

struct Running {
    commands: flume::Sender<Command>,
    outputs: flume::Receiver<Output>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Closing the queue ends the thread after its current step.
        let (closed, _) = flume::bounded(1);
        self.commands = closed;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Default for Screening {
    fn default() -> Self {
        Self::new(1, Arc::default())
    }
}

impl Screening {
    /// The screening of a node whose replays use `threads` kernel threads; the thread starts
    /// at the first task.
    pub(crate) fn new(threads: usize, security: Arc<SecurityState>) -> Self {
        Self {
            threads: threads.max(1),
            security,
            running: None,
            published: Arc::default(),
            sent: 0,
            views: HashMap::new(),
            released: Default::default(),
        }
    }

    fn send(&mut self, command: Command) {
        if command.is_work() {
            self.sent = self.sent.saturating_add(1);
        }
        if self.running.is_none() {
            self.running = self.start();
        }
        let Some(r) = &self.running else { return };
        if r.commands.send(command).is_err() {
            tracing::error!(target: "supervisor", "the screening thread stopped: screening no more");
        }
    }

    fn start(&self) -> Option<Running> {
        let (commands, rx) = flume::bounded(QUEUE);
        let (tx, outputs) = flume::unbounded();
        let worker = Worker {
            exec: Exec::new(self.threads),
            security: self.security.clone(),
            published: self.published.clone(),
            screens: HashMap::new(),
            chain: HashMap::new(),
        };
        let spawned = std::thread::Builder::new()
            .name("pouw-screening".into())
            .spawn(move || worker.run(&rx, &tx));
        match spawned {
            Ok(thread) => Some(Running { commands, outputs, thread: Some(thread) }),
            Err(e) => {
                tracing::error!(target: "supervisor", error = %e, "cannot start the screening thread");
                None
            }
        }
    }

    /// Follows the view (`seed`, `miners`) of `task`'s selection: sent when it is new or
    /// changed (the training data is then sent again, for the new split).
    pub(crate) fn follow(
        &mut self,
        task: TaskId,
        definition: &TaskDefinition,
        (seed, miners): (Hash, Vec<Address>),
        sampling: Sampling,
    ) {
        let view = (seed, miners);
        if self.views.get(&task).is_some_and(|(v, _)| *v == view) {
            return;
        }
        self.views.insert(task, (view.clone(), false));
        self.released.remove(&task);
        let (seed, miners) = view;
        let definition = Box::new(definition.clone());
        self.send(Command::View { task, definition, seed, miners, sampling });
    }

    /// Whether `task` is screened here (its view was sent).
    pub(crate) fn follows(&self, task: &TaskId) -> bool {
        self.views.contains_key(task)
    }

    /// Whether the training data of `task` went under its current view.
    pub(crate) fn has_dataset(&self, task: &TaskId) -> bool {
        self.views.get(task).is_some_and(|(_, sent)| *sent)
    }

    /// An iteration message of `task` (after [`Screening::follow`]).
    pub(crate) fn receive(&mut self, task: TaskId, msg: Arc<IterationMessage>) {
        self.send(Command::Receive { task, msg, at: Instant::now() });
    }

    /// The training data of `task` under the view last sent, and the client's start weights
    /// when the task names some.
    pub(crate) fn set_dataset(
        &mut self,
        task: TaskId,
        dataset: Arc<Dataset>,
        split: Split,
        start: Option<Arc<Model>>,
    ) {
        if let Some((_, sent)) = self.views.get_mut(&task) {
            *sent = true;
        }
        self.send(Command::Dataset { task, dataset, split, start });
    }

    /// Whether `task`'s view is settled, and its convictions' handovers.
    pub(crate) fn chain(&mut self, task: TaskId, settled: bool, handovers: Vec<Handover>) {
        self.send(Command::Chain { task, settled, handovers });
    }

    /// A miner's answer to a start-state request.
    pub(crate) fn on_state(
        &mut self,
        task: TaskId,
        miner: Address,
        iteration: u64,
        data: Option<ProofData>,
    ) {
        let data = data.map(Box::new);
        self.send(Command::State { task, miner, iteration, data, at: Instant::now() });
    }

    /// `miner` of `task` was accused: its whole stream is replayed.
    pub(crate) fn replay_all(&mut self, task: TaskId, miner: Address) {
        if self.follows(&task) {
            self.send(Command::ReplayAll { task, miner, at: Instant::now() });
        }
    }

    /// `task` ended: its screening data goes (the figures stay).
    /// True when this call released it (the first since its view was sent); later calls send
    /// nothing.
    pub(crate) fn release(&mut self, task: TaskId) -> bool {
        if !self.follows(&task) || !self.released.insert(task) {
            return false;
        }
        self.send(Command::Release { task });
        true
    }

    /// The answer to a screening-status request for `task` (`None`: not screened here).
    pub(crate) fn status(
        &self,
        task: &TaskId,
        finalising: bool,
        now: Instant,
    ) -> Option<pouw_net::ScreeningStatus> {
        if !self.follows(task) {
            return None;
        }
        let published = self.published.lock().unwrap_or_else(PoisonError::into_inner);
        let behind = published.applied < self.sent;
        Some(match published.progress.get(task) {
            Some(p) => {
                let mut p = *p;
                p.drained &= !behind;
                p.status(finalising, now)
            }
            None => pouw_net::ScreeningStatus { done: false, screened: 0, flagged: 0 },
        })
    }

    /// What the screening found and wants since the last call.
    pub(crate) fn outputs(&self) -> Vec<Output> {
        self.running.as_ref().map(|r| r.outputs.try_iter().collect()).unwrap_or_default()
    }
}

/// The thread's side: every task's screening.
struct Worker {
    exec: Exec,
    security: Arc<SecurityState>,
    published: Arc<Mutex<Published>>,
    screens: HashMap<TaskId, TaskScreen>,
    /// Per task: whether its view is settled, as the chain last said.
    chain: HashMap<TaskId, bool>,
}

impl Worker {
    fn run(mut self, commands: &flume::Receiver<Command>, outputs: &flume::Sender<Output>) {
        loop {
            let mut batch = Vec::new();
            match commands.recv_timeout(IDLE) {
                Ok(c) => batch.push(c),
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => return,
            }
            batch.extend(commands.try_iter().take(BATCH));
            let t0 = thread_cpu_ns();
            let work = batch.iter().filter(|c| c.is_work()).count() as u64;
            for command in batch {
                let task = command.task();
                if let Err(e) = guarded(|| self.apply(command)) {
                    self.fault(task, &e);
                }
            }
            let now = Instant::now();
            let tasks: Vec<TaskId> = self.screens.keys().copied().collect();
            for task in tasks {
                match guarded(|| self.pass(task, now)) {
                    Ok(found) => {
                        for o in found {
                            // The loop is gone: the node stops.
                            if outputs.send(o).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => self.fault(task, &e),
                }
            }
            self.publish(work);
            let spent = thread_cpu_ns().saturating_sub(t0);
            self.security.screening_cpu_ns.fetch_add(spent, Ordering::Relaxed);
        }
    }

    /// A screening that panicked is dropped (the node runs on; the task is not screened here
    /// any more, and nothing is flagged for it).
    fn fault(&mut self, task: TaskId, error: &str) {
        tracing::error!(target: "supervisor", task = %task.short(), error, "the screening of this task faulted: dropped");
        self.screens.remove(&task);
    }

    fn apply(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::View { task, definition, seed, miners, sampling } => {
                match self.screens.get_mut(&task) {
                    None => {
                        let screen =
                            TaskScreen::sampled(task, *definition, (seed, miners), sampling, now);
                        self.screens.insert(task, screen);
                    }
                    Some(screen) if !screen.follows(&seed, &miners) => {
                        tracing::warn!(target: "supervisor", task = %task.short(), "the task's selection changed with a reorganisation of the chain: screening starts over under the new view");
                        *screen = screen.rebuilt(seed, miners, now);
                    }
                    Some(_) => {}
                }
            }
            Command::Receive { task, msg, at } => {
                if let Some(s) = self.screens.get_mut(&task) {
                    s.receive(&msg, at);
                }
            }
            Command::Dataset { task, dataset, split, start } => {
                if let Some(s) = self.screens.get_mut(&task) {
                    s.set_start_model(start);
                    s.set_dataset(dataset, split);
                }
            }
            Command::Chain { task, settled, handovers } => {
                if let Some(s) = self.screens.get_mut(&task) {
                    s.set_handovers(handovers);
                    self.chain.insert(task, settled);
                }
            }
            Command::State { task, miner, iteration, data, at } => {
                if let Some(s) = self.screens.get_mut(&task) {
                    s.on_state(&miner, iteration, data.map(|d| *d), at);
                }
            }
            Command::ReplayAll { task, miner, at } => {
                if let Some(s) = self.screens.get_mut(&task) {
                    s.replay_all(&miner, at);
                }
            }
            Command::Release { task } => {
                if let Some(s) = self.screens.get_mut(&task) {
                    s.release();
                }
            }
        }
    }

    /// One screening pass over `task`: what it flagged and the start states it wants.
    fn pass(&mut self, task: TaskId, now: Instant) -> Vec<Output> {
        let settled = self.chain.get(&task).copied().unwrap_or(false);
        let Some(s) = self.screens.get_mut(&task) else { return Vec::new() };
        let mut out: Vec<Output> = s
            .screen(self.exec, now, settled)
            .into_iter()
            .map(|finding| {
                let message = s.message(&finding.message).cloned().map(Box::new);
                Output::Found { task, finding, message }
            })
            .collect();
        let wants = s.take_wants(now);
        if !wants.is_empty() {
            out.push(Output::Wants { task, wants });
        }
        out
    }

    fn publish(&self, work: u64) {
        {
            let mut p = self.published.lock().unwrap_or_else(PoisonError::into_inner);
            p.progress = self.screens.iter().map(|(t, s)| (*t, s.progress())).collect();
            p.applied = p.applied.saturating_add(work);
        }
        let views: Vec<_> = self.screens.values().flat_map(TaskScreen::views).collect();
        *self.security.screening.lock().unwrap_or_else(PoisonError::into_inner) = views;
    }
}

#[cfg(test)]
mod tests;
