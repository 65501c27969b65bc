//! The node's side of sampled screening (design/020): a supervisor asks the miners for the
//! start states of the messages it drew, a miner follows its own stream and serves them, and
//! the CPU time each side spends is counted (`pouw_security`).

use crate::{
    node::{Node, Pending},
    screening::{sample::Sampling, StateWant},
};
use pouw_consensus::{pouw::Handover, task_record, TaskRecord};
use pouw_net::{peer_id_of, InboundId, PeerId, Request, Response};
use pouw_primitives::{Address, IterationMessage, TaskId};

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

    /// Miner: it sent `msg` on `task`, having applied `peers`: its start states follow it
    /// (on their own thread, `screening::own_thread`).
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
        let depth = self.config.spec.commitment_depth;
        self.agent.own_states.sent(&self.net, (a, depth), msg, peers);
    }

    /// Miner: it ran an iteration on `task`, having applied `peers`, and sent no message for
    /// it (its block template was refused).
    pub(crate) fn agent_own_lost_step(&mut self, task: TaskId, peers: &[IterationMessage]) {
        self.agent.own_states.lost(&self.net, task, peers);
    }

    /// Miner: the conviction handovers of `record` for its own start states of task `id`.
    pub(super) fn follow_own_states(&mut self, id: TaskId, record: &TaskRecord) {
        self.agent.own_states.handovers(&self.net, id, Handover::of_task(record));
    }

    /// Miner: the start state of its `iteration` of `task`, for one of the task's selected
    /// supervisors only (the state is derived from the client's data, design/014); answered
    /// by the own states' thread.
    pub(crate) fn serve_start_state(
        &mut self,
        from: &PeerId,
        task: &TaskId,
        iteration: u64,
        id: InboundId,
    ) {
        let record = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            task_record(chain.state(), task)
        };
        let allowed = record.is_some_and(|r| {
            r.participants.supervisors.iter().any(|s| peer_id_of(&s.worker).as_ref() == Some(from))
        });
        if !allowed {
            let _ = self.net.respond(id, Response::StartState(None));
            return;
        }
        self.agent.own_states.serve(&self.net, *task, iteration, id);
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
