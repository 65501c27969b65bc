//! The node's side of sampled screening (design/020): a supervisor asks the miners for the
//! start states of the messages it drew, a miner follows its own stream and serves them, and
//! the CPU time each side spends is counted (`pouw_security`).

use crate::{
    node::{Node, Pending},
    screening::{own::OwnStates, sample::Sampling, StateWant},
    stats::thread_cpu_ns,
};
use pouw_consensus::{pouw::Handover, task_record, TaskRecord};
use pouw_ml::Exec;
use pouw_net::{peer_id_of, PeerId, Request, Response};
use pouw_primitives::{Address, IterationMessage, TaskId};
use std::sync::atomic::Ordering;

impl Node {
    /// This supervisor's draws: keyed by its own secret key, at the configured fraction.
    pub(super) fn sampling(&self) -> Sampling {
        Sampling::new(&self.config.key.secret_bytes(), self.config.replay_fraction)
    }

    /// Supervisor: asks the miners of task `id` for the start states its screening wants.
    pub(super) fn ask_states(&mut self, id: TaskId, wants: Vec<StateWant>) {
        for w in wants {
            match peer_id_of(&w.miner) {
                Some(peer) => self.request(
                    peer,
                    Request::StartState { task: id, iteration: w.iteration },
                    Pending::StartState { task: id, miner: w.miner, iteration: w.iteration },
                ),
                None => self.agent_on_start_state(id, w.miner, w.iteration, None),
            }
        }
    }

    /// Supervisor: a miner's answer to a start-state request (`None`: none, or the request
    /// failed).
    pub(crate) fn agent_on_start_state(
        &mut self,
        task: TaskId,
        miner: Address,
        iteration: u64,
        data: Option<pouw_consensus::pouw::ProofData>,
    ) {
        tracing::debug!(target: "supervisor", task = %task.short(), miner = %miner.short(), iteration, served = data.is_some(), "start state answered");
        self.agent.screening.on_state(task, miner, iteration, data);
    }

    /// Miner: it sent `msg` on `task`, having applied `peers`: its start states follow it.
    pub(crate) fn agent_own_message(
        &mut self,
        task: TaskId,
        msg: &IterationMessage,
        peers: &[IterationMessage],
    ) {
        let Some(a) = self.miner.as_ref().and_then(|m| m.assignment()) else { return };
        if a.task_id != task {
            return;
        }
        let fresh = self.agent.own_states.get(&task).is_none_or(|s| !s.follows(a));
        if fresh {
            match OwnStates::new(a, self.config.spec.commitment_depth) {
                Some(s) => {
                    self.agent.own_states.insert(task, s);
                }
                None => return,
            }
        }
        let exec = Exec::new(self.config.threads.max(1));
        let t0 = thread_cpu_ns();
        if let Some(s) = self.agent.own_states.get_mut(&task) {
            s.record(exec, msg, peers);
        }
        self.count_own_states_cpu(t0);
    }

    /// Miner: it ran an iteration on `task`, having applied `peers`, and sent no message for
    /// it (its block template was refused).
    pub(crate) fn agent_own_lost_step(&mut self, task: TaskId, peers: &[IterationMessage]) {
        let exec = Exec::new(self.config.threads.max(1));
        if let Some(s) = self.agent.own_states.get_mut(&task) {
            s.record_lost(exec, peers);
        }
    }

    /// Miner: the conviction handovers of `record` for its own start states of task `id`.
    pub(super) fn follow_own_states(&mut self, id: TaskId, record: &TaskRecord) {
        if let Some(s) = self.agent.own_states.get_mut(&id) {
            s.set_handovers(Handover::of_task(record));
        }
    }

    fn count_own_states_cpu(&self, t0: u64) {
        let spent = thread_cpu_ns().saturating_sub(t0);
        self.agent.security.own_states_cpu_ns.fetch_add(spent, Ordering::Relaxed);
    }

    /// Miner: the start state of its `iteration` of `task`, for one of the task's selected
    /// supervisors only (the state is derived from the client's data, design/014).
    pub(super) fn serve_start_state(
        &mut self,
        from: &PeerId,
        task: &TaskId,
        iteration: u64,
    ) -> Response {
        let record = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            task_record(chain.state(), task)
        };
        let allowed = record.is_some_and(|r| {
            r.participants.supervisors.iter().any(|s| peer_id_of(&s.worker).as_ref() == Some(from))
        });
        if !allowed {
            return Response::StartState(None);
        }
        let exec = Exec::new(self.config.threads.max(1));
        let t0 = thread_cpu_ns();
        let data = self.agent.own_states.get_mut(task).and_then(|s| s.get(exec, iteration));
        self.count_own_states_cpu(t0);
        tracing::debug!(target: "miner", task = %task.short(), iteration, held = data.is_some(), states = ?self.agent.own_states.get(task), "start state asked");
        Response::StartState(data)
    }

    /// Supervisor: feeds the screening of task `id` (`screen_task_now`; the screening
    /// thread counts its own CPU time).
    pub(super) fn screen_task(&mut self, id: TaskId, record: &TaskRecord, height: u64) {
        self.screen_task_now(id, record, height);
    }

    /// A verified alert against `accused` on `task`: this supervisor replays its whole stream.
    pub(super) fn replay_accused(&mut self, task: &TaskId, accused: &Address) {
        self.agent.screening.replay_all(*task, *accused);
    }

    /// The screening of task `id` follows `record`'s view, with this node's draws.
    pub(super) fn screen_of(&mut self, id: TaskId, record: &TaskRecord) {
        let sampling = self.sampling();
        self.agent.screen_for(id, record, sampling);
    }
}
