//! A miner's own recent start states, served to its task's supervisors (`Request::StartState`,
//! design/020).
//!
//! A supervisor that draws one of the miner's messages for replay and did not replay the
//! miner's stream up to it asks the miner for the message's start state (model, residual and
//! optimizer state), and checks it against the start hashes the message signed. The miner's
//! node follows its own stream for that: it replays each message it sent, with the peer
//! messages the miner applied, on the batch its walk assigns, from the task's initial state
//! (the same deterministic kernels: the states are the miner's, bit for bit), and keeps the
//! start states of its last iterations ([`RING_BYTES`] of them). A message it cannot follow (a
//! restart it did not see begin, another view) stops the replay until the miner starts over
//! from the initial state; its supervisors then get no state, and replay that miner's whole
//! stream themselves (never a flag).

use super::sample::as_proof_data;
use pouw_consensus::pouw::{Handover, ProofData};
use pouw_ml::{Dataset, Exec, TrainState};
use pouw_primitives::{Hash, IterationMessage, TaskDefinition, TaskId};
use pouw_work::{initial_state_with, Assignment, BatchWalk};
use std::{collections::VecDeque, sync::Arc};

/// Bytes of start states kept (at least two states; 41 of the devnet's 101,770-parameter
/// model: the supervisors ask within a few hundred milliseconds of each other, the miner runs
/// up to about 100 iterations a second).
pub(crate) const RING_BYTES: usize = 32 << 20;
/// Steps of the miner not followed yet: the miner's node follows its stream only as far as
/// its supervisors ask (the states of the iterations asked for are then the newest it holds,
/// whatever the gossip's delay), and at most this many steps behind the miner.
const MAX_PENDING: usize = 128;
/// Iterations in a row without a message that can be followed (each doubles the orders tried).
const MAX_LOST: usize = 2;
/// Commitments of recent own messages kept (an iteration is bound to the one `k` back).
const MAX_COMMITMENTS: usize = 16;

/// The maps of the peer messages an iteration applied: what following it needs of them.
pub(crate) fn peer_maps(peers: &[IterationMessage]) -> Vec<Vec<u32>> {
    peers.iter().map(|p| p.body.map.clone()).collect()
}

/// One step of the miner on the task.
enum Step {
    /// A message sent, with the peer maps it applied.
    Sent(Box<IterationMessage>, Vec<Vec<u32>>),
    /// An iteration that ran but whose message was not sent (its block template was refused:
    /// the node drops the transaction and trains on), with the peer maps it applied.
    Lost(Vec<Vec<u32>>),
}

/// The start states of one miner's recent iterations on one client task.
pub(crate) struct OwnStates {
    task_id: TaskId,
    definition: TaskDefinition,
    dataset: Arc<Dataset>,
    /// The model of the client's start weights, for a task that names them (design/021).
    start_model: Option<Arc<pouw_ml::Model>>,
    /// The view followed: the split, this miner's position and the number of miners.
    view: (pouw_ml::Split, usize, usize),
    handovers: Vec<Handover>,
    /// The start hashes of the task's initial state.
    initial: (Hash, Hash),
    /// The state at the start of iteration `next` (`None`: not following until the miner
    /// starts over from the initial state).
    state: Option<(TrainState, BatchWalk)>,
    next: u64,
    /// What the miner did and this has not followed yet, in order.
    pending: VecDeque<Step>,
    /// Recent start states by iteration, oldest first.
    ring: VecDeque<(u64, ProofData)>,
    ring_len: usize,
    /// The commitments (zero-nonce header hashes) of the recent own messages, by iteration.
    commitments: VecDeque<(u64, Hash)>,
    /// The chain's commitment depth `k`.
    depth: u64,
}

impl std::fmt::Debug for OwnStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnStates")
            .field("task_id", &self.task_id)
            .field("next", &self.next)
            .field("held", &self.ring.len())
            .finish_non_exhaustive()
    }
}

impl OwnStates {
    /// The states of the miner's work on `a` (`None`: the task's model cannot be built).
    pub(crate) fn new(a: &Assignment, depth: u32) -> Option<Self> {
        let mut initial = initial_state_with(&a.definition, a.start_model.as_deref()).ok()?;
        let (m, r) = initial.start_hashes();
        let bytes = 4
            * (initial.model().params().len()
                + initial.residual().len()
                + initial.velocity().len());
        Some(Self {
            task_id: a.task_id,
            definition: a.definition.clone(),
            dataset: a.dataset.clone(),
            start_model: a.start_model.clone(),
            view: (a.split.clone(), a.miner_index, a.miners),
            handovers: Vec::new(),
            initial: (Hash(m.0), Hash(r.0)),
            state: None,
            next: 0,
            pending: VecDeque::new(),
            ring: VecDeque::new(),
            ring_len: (RING_BYTES / bytes.max(1)).max(2),
            commitments: VecDeque::new(),
            depth: u64::from(depth),
        })
    }

    /// The task these states are of.
    pub(crate) fn task_id(&self) -> TaskId {
        self.task_id
    }

    /// The handovers of the task's convictions on chain (the miner's walk follows them).
    pub(crate) fn set_handovers(&mut self, handovers: Vec<Handover>) {
        if handovers != self.handovers {
            if let Some((_, walk)) = self.state.as_mut() {
                walk.set_handovers(handovers.clone());
            }
            self.handovers = handovers;
        }
    }

    /// The miner sent `msg`, having applied the peer messages whose maps are `peer_maps`
    /// ([`peer_maps`]).
    pub(crate) fn record(
        &mut self,
        exec: Exec,
        msg: Box<IterationMessage>,
        peer_maps: Vec<Vec<u32>>,
    ) {
        if msg.body.task_id != self.task_id {
            return;
        }
        self.pending.push_back(Step::Sent(msg, peer_maps));
        self.bound(exec);
    }

    /// The miner ran an iteration, having applied the peer messages whose maps are
    /// `peer_maps`, and sent no message for it.
    pub(crate) fn record_lost(&mut self, exec: Exec, peer_maps: Vec<Vec<u32>>) {
        self.pending.push_back(Step::Lost(peer_maps));
        self.bound(exec);
    }

    /// Follows the oldest steps while more than [`MAX_PENDING`] wait.
    fn bound(&mut self, exec: Exec) {
        while self.pending.len() > MAX_PENDING {
            let first_sent = self.pending.iter().find_map(|s| match s {
                Step::Sent(m, _) => Some(m.body.iteration),
                Step::Lost(_) => None,
            });
            match first_sent {
                Some(it) => self.advance(exec, Some(it)),
                None => {
                    self.pending.pop_front();
                }
            }
        }
    }

    /// Follows what the miner did so far (up to its message `upto`, when given).
    fn advance(&mut self, exec: Exec, upto: Option<u64>) {
        let mut lost = Vec::new();
        while let Some(step) = self.pending.front() {
            if let (Step::Sent(msg, _), Some(u)) = (step, upto) {
                if msg.body.iteration > u {
                    break;
                }
            }
            match self.pending.pop_front() {
                Some(Step::Sent(msg, maps)) => {
                    self.follow(exec, &msg, &maps, &std::mem::take(&mut lost));
                }
                Some(Step::Lost(maps)) => lost.push(maps),
                None => break,
            }
        }
        for maps in lost.into_iter().rev() {
            self.pending.push_front(Step::Lost(maps));
        }
    }

    /// Follows the miner's message `msg`, run with the peer maps `maps`, after the iterations
    /// `lost` (run before it, their messages not sent).
    fn follow(
        &mut self,
        exec: Exec,
        msg: &IterationMessage,
        maps: &[Vec<u32>],
        lost: &[Vec<Vec<u32>>],
    ) {
        let b = &msg.body;
        let it = b.iteration;
        if it < self.next && self.state.is_some() {
            return;
        }
        let starts = (b.start_model_hash, b.start_residual_hash);
        let at = self.state.as_mut().map(|(s, _)| {
            let (m, r) = s.start_hashes();
            (Hash(m.0), Hash(r.0))
        });
        if starts == self.initial && (it != self.next || at != Some(starts)) {
            // The first iteration, or the miner started over.
            let (split, index, miners) = &self.view;
            let walk = BatchWalk::for_client(
                self.task_id,
                &self.definition,
                &self.dataset,
                split,
                *index,
                *miners,
            );
            let initial = initial_state_with(&self.definition, self.start_model.as_deref());
            self.state = match (initial, walk) {
                (Ok(state), Ok(mut walk)) => {
                    walk.set_handovers(self.handovers.clone());
                    walk.seek(it);
                    Some((state, walk))
                }
                _ => None,
            };
            self.next = it;
        }
        if !lost.is_empty() && !self.bridge(exec, it, starts, lost) {
            tracing::debug!(target: "miner", task = %self.task_id.short(), iteration = it, lost = lost.len(), "own states: iterations without a message could not be followed");
            self.state = None;
            return;
        }
        self.commitments.push_back((it, b.commitment));
        while self.commitments.len() > MAX_COMMITMENTS {
            self.commitments.pop_front();
        }
        let Some((state, walk)) = self.state.as_mut() else { return };
        let (m, r) = state.start_hashes();
        let batch = walk.next_batch().map(|(_, indices)| self.dataset.gather(&indices));
        let fits = it == self.next
            && (Hash(m.0), Hash(r.0)) == starts
            && batch.as_ref().is_some_and(|batch| Hash(batch.hash().0) == b.batch_hash);
        let Some(batch) = batch.filter(|_| fits) else {
            tracing::debug!(target: "miner", task = %self.task_id.short(), iteration = it, next = self.next, "own states: a message that does not follow the last one");
            self.state = None;
            return;
        };
        let data = as_proof_data(state);
        self.keep(it, data);
        let Some((state, _)) = self.state.as_mut() else { return };
        let peer_maps: Vec<&[u32]> = maps.iter().map(Vec::as_slice).collect();
        match state.iterate_bound(exec, &batch, &peer_maps, &b.order_seed.0) {
            Ok(_) => self.next = it.saturating_add(1),
            Err(_) => self.state = None,
        }
    }

    /// Keeps the start state `data` of iteration `it`.
    fn keep(&mut self, it: u64, data: ProofData) {
        self.ring.push_back((it, data));
        while self.ring.len() > self.ring_len {
            self.ring.pop_front();
        }
    }

    /// Runs the iterations `lost` (their messages not sent) from the state at `self.next`, so
    /// that the state starts where the message of iteration `it` says (`starts`). Each ran in
    /// the natural order or, bound to the header it mined with, in the order of the header
    /// the miner committed to `k` iterations earlier (its message's `commitment`): the
    /// combinations are tried (at most [`MAX_LOST`] iterations in a row).
    fn bridge(
        &mut self,
        exec: Exec,
        it: u64,
        starts: (Hash, Hash),
        lost: &[Vec<Vec<u32>>],
    ) -> bool {
        let from = self.next;
        let n = lost.len();
        if n > MAX_LOST || it != from.saturating_add(n as u64) {
            return false;
        }
        let Some((state, walk)) = self.state.as_ref() else { return false };
        let committed = |at: u64| {
            let back = at.checked_sub(self.depth)?;
            self.commitments.iter().find(|(i, _)| *i == back).map(|(_, c)| c.0)
        };
        for combo in 0u32..(1 << n) {
            let (mut s, mut w) = (state.clone(), walk.clone());
            let mut kept = Vec::with_capacity(n);
            let mut ran = true;
            for (j, maps) in lost.iter().enumerate() {
                let at = from.saturating_add(j as u64);
                let seed = match combo >> j & 1 {
                    0 => Some([0u8; 32]),
                    _ => committed(at),
                };
                let batch = w.next_batch().map(|(_, indices)| self.dataset.gather(&indices));
                let (Some(seed), Some(batch)) = (seed, batch) else {
                    ran = false;
                    break;
                };
                kept.push((at, as_proof_data(&s)));
                let peer_maps: Vec<&[u32]> = maps.iter().map(Vec::as_slice).collect();
                if s.iterate_bound(exec, &batch, &peer_maps, &seed).is_err() {
                    ran = false;
                    break;
                }
            }
            let (m, r) = s.start_hashes();
            if ran && (Hash(m.0), Hash(r.0)) == starts {
                for (at, data) in kept {
                    self.keep(at, data);
                }
                self.state = Some((s, w));
                self.next = it;
                return true;
            }
        }
        false
    }

    /// The start state of the miner's iteration `iteration`, if it is still held (followed
    /// first if it was sent and not followed yet).
    pub(crate) fn get(&mut self, exec: Exec, iteration: u64) -> Option<ProofData> {
        self.advance(exec, Some(iteration));
        self.ring.iter().find(|(it, _)| *it == iteration).map(|(_, d)| d.clone())
    }
}
