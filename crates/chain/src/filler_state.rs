//! The chain's filler state: where a filler-task iteration on top of a block starts
//! (design/016).
//!
//! The filler task of an epoch trains one step per filler-task block: an iteration mined on
//! top of block `P` starts from the end state of the last filler-task block of the same filler
//! task on `P`'s branch (the replay of that block computed it), or from the task's initial state
//! when there is none yet. Every full node holds that state, so a filler-task block whose
//! iteration started there needs no start state in its proof data on the wire: the receiver
//! puts it back from here and checks it against the hashes the winning message names, as any
//! proof data. It is also a block rule (`ProofCheckError::FillerStart`): a free start would let
//! a miner make new iterations of one gradient by changing only the start residual.

use crate::{Chain, PouwValidator};
use pouw_consensus::pouw::{
    filler_epoch, filler_epoch_opening_height, ml_specs, proof_of, replay_end,
};
use pouw_ml::{Exec, Model, TrainState};
use pouw_primitives::{Hash, Header, TaskDefinition, TaskId};
use pouw_storage::ProofStore;
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
};

/// End states kept (each two copies of the filler model: about 0.4 MB).
const KEPT: usize = 16;

/// A filler-task iteration's start: the state and its hashes (what a winning message names as
/// its start model and residual).
#[derive(Debug)]
pub struct FillerStart {
    /// The filler task this state belongs to.
    pub task_id: TaskId,
    /// Model, residual and optimizer state, with its hashes kept
    /// ([`TrainState::start_hashes`]), so an iteration from a copy does not hash it again.
    pub state: TrainState,
    /// `model_hash` of the parameters.
    pub model_hash: Hash,
    /// `residual_hash` of residual and velocity.
    pub residual_hash: Hash,
}

impl FillerStart {
    fn new(task_id: TaskId, mut state: TrainState) -> Self {
        let (model, residual) = state.start_hashes();
        Self { task_id, state, model_hash: Hash(model.0), residual_hash: Hash(residual.0) }
    }
}

/// The filler end states of recent blocks (by block hash) and the initial states of recent
/// filler tasks (by task id), computed on demand.
#[derive(Debug)]
pub struct FillerStates {
    proofs: Arc<ProofStore>,
    exec: Exec,
    kept: Mutex<VecDeque<(Hash, Arc<FillerStart>)>>,
}

impl FillerStates {
    /// An empty cache; states missing are replayed from the proof data in `proofs`.
    pub fn new(proofs: Arc<ProofStore>, exec: Exec) -> Self {
        Self { proofs, exec, kept: Mutex::new(VecDeque::new()) }
    }

    fn get(&self, key: &Hash) -> Option<Arc<FillerStart>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.iter().find(|(k, _)| k == key).map(|(_, s)| s.clone())
    }

    fn put(&self, key: Hash, start: Arc<FillerStart>) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.iter().any(|(k, _)| *k == key) {
            return;
        }
        kept.push_back((key, start));
        while kept.len() > KEPT {
            kept.pop_front();
        }
    }

    /// Records the end state of filler-task block `block` (of filler task `task_id`), as its
    /// replay computed it.
    pub fn record(&self, block: Hash, task_id: TaskId, end: TrainState) {
        self.put(block, Arc::new(FillerStart::new(task_id, end)));
    }

    /// Where a filler-task iteration on top of `parent` starts: the end state of the last
    /// filler-task block of the parent's filler task on the parent's branch, or that task's
    /// initial state. `None` when the filler task is unknown here (the epoch's opening block is
    /// not stored) or the last filler-task block's proof data is not held (a light node that
    /// imported it on attestations): then the start state travels with the proof data.
    pub fn start_for(&self, chain: &Chain, parent: &Header) -> Option<Arc<FillerStart>> {
        let spec = chain.spec();
        let (task_id, task) =
            PouwValidator::filler_task_for(spec, parent, &chain.branch_ancestors(parent))?;
        let opening = filler_epoch_opening_height(spec, filler_epoch(spec, parent.height))?;
        let mut at = parent;
        while at.height > opening {
            if at.task_id == task_id {
                let hash = at.hash();
                if let Some(s) = self.get(&hash) {
                    return Some(s);
                }
                return self.replayed(chain, &hash, task_id, &task);
            }
            at = chain.header(&at.prev_hash)?;
        }
        if let Some(s) = self.get(&task_id) {
            return Some(s);
        }
        let (model, optimizer) = ml_specs(&task).ok()?;
        let state = TrainState::new(Model::new(model).ok()?, optimizer).ok()?;
        let start = Arc::new(FillerStart::new(task_id, state));
        self.put(task_id, start.clone());
        Some(start)
    }

    /// The end state of stored block `hash` (filler task `task_id`), replayed from its stored
    /// proof data.
    fn replayed(
        &self,
        chain: &Chain,
        hash: &Hash,
        task_id: TaskId,
        task: &TaskDefinition,
    ) -> Option<Arc<FillerStart>> {
        let block = chain.block(hash).ok()??;
        let proof = proof_of(&block).ok()??;
        let data = self.proofs.get_proof(&proof.winning.body).ok()??;
        let end = replay_end(chain.spec(), &block.header, proof, task, &data, self.exec).ok()?;
        let start = Arc::new(FillerStart::new(task_id, end));
        self.put(*hash, start.clone());
        Some(start)
    }
}
