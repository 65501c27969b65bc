//! A miner's own start states off the node's event loop (design/020).
//!
//! Following the miner's own stream replays each iteration it ran: as much CPU as the
//! training. On the event loop that held back every block, request and answer behind it (up to
//! 120 ms an answer with a 407,050-parameter model). So one thread per mining node owns every
//! task's [`OwnStates`]. The loop sends it what the miner did, in order ([`OwnCommand`]), and
//! the start-state requests of the task's supervisors (checked on the loop: only a selected
//! supervisor asks); the thread answers those itself through the network handle.
//!
//! Nothing here can cost an honest miner: a step the thread never gets (its queue full) is a
//! gap its replay cannot follow, so it serves no state until the miner starts over, and the
//! supervisors then replay that miner's whole stream themselves (never a flag, design/020).

use super::own::{peer_maps, OwnStates};
use crate::{agent::guarded, security::SecurityState, stats::thread_cpu_ns};
use pouw_consensus::pouw::Handover;
use pouw_ml::{Exec, Split};
use pouw_net::{InboundId, NetworkHandle, Response};
use pouw_primitives::{IterationMessage, TaskId};
use pouw_work::Assignment;
use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
};

/// Commands waiting for the thread at most.
const QUEUE: usize = 1024;

/// What the loop tells the thread.
enum OwnCommand {
    /// The miner works on a task under a view not followed yet: these states replace the
    /// task's.
    Follow(Box<OwnStates>),
    /// The miner sent `msg`, having applied the peer messages of these maps.
    Sent { task: TaskId, msg: Box<IterationMessage>, maps: Vec<Vec<u32>> },
    /// The miner ran an iteration, having applied the peer messages of these maps, and sent
    /// no message for it.
    Lost { task: TaskId, maps: Vec<Vec<u32>> },
    /// The handovers of the task's convictions on chain.
    Handovers { task: TaskId, handovers: Vec<Handover> },
    /// The task ended: its states are dropped.
    End(TaskId),
    /// A supervisor asks for the start state of the miner's `iteration`.
    Serve { task: TaskId, iteration: u64, id: InboundId },
}

/// The view an [`OwnStates`] follows: the split, the miner's position and the number of miners.
type View = (Split, usize, usize);

fn view_of(a: &Assignment) -> View {
    (a.split.clone(), a.miner_index, a.miners)
}

/// The loop's side: what it sent, and the queue to the thread (started at the first task).
#[derive(Default)]
pub(crate) struct OwnStatesThread {
    threads: usize,
    security: Arc<SecurityState>,
    commands: Option<flume::Sender<OwnCommand>>,
    views: HashMap<TaskId, View>,
    handovers: HashMap<TaskId, Vec<Handover>>,
}

impl OwnStatesThread {
    /// The own states of a node whose replays use `threads` kernel threads.
    pub(crate) fn new(threads: usize, security: Arc<SecurityState>) -> Self {
        Self {
            threads: threads.max(1),
            security,
            commands: None,
            views: HashMap::new(),
            handovers: HashMap::new(),
        }
    }

    /// The miner sent `msg` on its assignment `a`, having applied `peers` (its chain commits
    /// `depth` iterations ahead).
    pub(crate) fn sent(
        &mut self,
        net: &NetworkHandle,
        (a, depth): (&Assignment, u32),
        msg: &IterationMessage,
        peers: &[IterationMessage],
    ) {
        let task = a.task_id;
        let view = view_of(a);
        if self.views.get(&task) != Some(&view) {
            let Some(states) = OwnStates::new(a, depth) else { return };
            self.views.insert(task, view);
            self.handovers.remove(&task);
            self.send(net, OwnCommand::Follow(Box::new(states)));
        }
        let (msg, maps) = (Box::new(msg.clone()), peer_maps(peers));
        self.send(net, OwnCommand::Sent { task, msg, maps });
    }

    /// The miner ran an iteration of `task`, having applied `peers`, and sent no message.
    pub(crate) fn lost(&mut self, net: &NetworkHandle, task: TaskId, peers: &[IterationMessage]) {
        if self.views.contains_key(&task) {
            self.send(net, OwnCommand::Lost { task, maps: peer_maps(peers) });
        }
    }

    /// The handovers of `task`'s convictions on chain (sent when they change).
    pub(crate) fn handovers(
        &mut self,
        net: &NetworkHandle,
        task: TaskId,
        handovers: Vec<Handover>,
    ) {
        if !self.views.contains_key(&task) || self.handovers.get(&task) == Some(&handovers) {
            return;
        }
        self.handovers.insert(task, handovers.clone());
        self.send(net, OwnCommand::Handovers { task, handovers });
    }

    /// `task` ended: its states are dropped.
    pub(crate) fn end(&mut self, net: &NetworkHandle, task: &TaskId) {
        if self.views.remove(task).is_some() {
            self.handovers.remove(task);
            self.send(net, OwnCommand::End(*task));
        }
    }

    /// A selected supervisor's request for the start state of `iteration` of `task`: answered
    /// by the thread, or here with none when this node holds no states of the task or the
    /// thread cannot take it now.
    pub(crate) fn serve(
        &mut self,
        net: &NetworkHandle,
        task: TaskId,
        iteration: u64,
        id: InboundId,
    ) {
        let queued = self.views.contains_key(&task)
            && self
                .commands
                .as_ref()
                .is_some_and(|c| c.try_send(OwnCommand::Serve { task, iteration, id }).is_ok());
        if !queued {
            let _ = net.respond(id, Response::StartState(None));
        }
    }

    fn send(&mut self, net: &NetworkHandle, command: OwnCommand) {
        if self.commands.is_none() {
            self.commands = self.start(net);
        }
        let Some(commands) = &self.commands else { return };
        match commands.try_send(command) {
            Ok(()) => {}
            // A step left out is a gap the thread's replay cannot follow: it serves no state
            // of that task until the miner starts over (see the module's note).
            Err(flume::TrySendError::Full(_)) => {
                tracing::debug!(target: "miner", "own start states behind: a step left out");
            }
            Err(flume::TrySendError::Disconnected(_)) => {
                tracing::error!(target: "miner", "the own start states thread stopped: serving none");
                self.commands = None;
            }
        }
    }

    fn start(&self, net: &NetworkHandle) -> Option<flume::Sender<OwnCommand>> {
        let (tx, rx) = flume::bounded(QUEUE);
        let (net, security, threads) = (net.clone(), self.security.clone(), self.threads);
        let spawned = std::thread::Builder::new()
            .name("pouw-own-states".into())
            .spawn(move || run(&rx, &net, &security, Exec::new(threads.max(1))));
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::error!(target: "miner", error = %e, "cannot start the own start states thread");
                None
            }
        }
    }
}

/// The thread: applies the commands in order until the loop's side is dropped.
fn run(
    rx: &flume::Receiver<OwnCommand>,
    net: &NetworkHandle,
    security: &SecurityState,
    exec: Exec,
) {
    // At the loop's priority: it replays as much as the miner trains, and falls behind a
    // miner that outruns it (a step left out stops its serving until the miner starts over).
    let mut states: HashMap<TaskId, OwnStates> = HashMap::new();
    for command in rx.iter() {
        let t0 = thread_cpu_ns();
        let task = match &command {
            OwnCommand::Follow(s) => s.task_id(),
            OwnCommand::Sent { task, .. }
            | OwnCommand::Lost { task, .. }
            | OwnCommand::Handovers { task, .. }
            | OwnCommand::End(task)
            | OwnCommand::Serve { task, .. } => *task,
        };
        if let Err(panic) = guarded(|| apply(&mut states, net, exec, command)) {
            tracing::error!(target: "miner", task = %task.short(), %panic, "own start states failed: dropped");
            states.remove(&task);
        }
        let spent = thread_cpu_ns().saturating_sub(t0);
        security.own_states_cpu_ns.fetch_add(spent, Ordering::Relaxed);
    }
}

fn apply(
    states: &mut HashMap<TaskId, OwnStates>,
    net: &NetworkHandle,
    exec: Exec,
    command: OwnCommand,
) {
    match command {
        OwnCommand::Follow(s) => {
            states.insert(s.task_id(), *s);
        }
        OwnCommand::Sent { task, msg, maps } => {
            if let Some(s) = states.get_mut(&task) {
                s.record(exec, msg, maps);
            }
        }
        OwnCommand::Lost { task, maps } => {
            if let Some(s) = states.get_mut(&task) {
                s.record_lost(exec, maps);
            }
        }
        OwnCommand::Handovers { task, handovers } => {
            if let Some(s) = states.get_mut(&task) {
                s.set_handovers(handovers);
            }
        }
        OwnCommand::End(task) => {
            states.remove(&task);
        }
        OwnCommand::Serve { task, iteration, id } => {
            let data = states.get_mut(&task).and_then(|s| s.get(exec, iteration));
            tracing::debug!(target: "miner", task = %task.short(), iteration, held = data.is_some(), states = ?states.get(&task), "start state asked");
            let _ = net.respond(id, Response::StartState(data));
        }
    }
}
