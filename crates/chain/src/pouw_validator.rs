//! The PoUW proof check a node runs on every block (design/003, SPEC section 4).

use crate::validator::{Ancestors, BlockValidator};
use pouw_consensus::pouw::{
    check_proof_cheap, filler_epoch, filler_epoch_opening_height, filler_task, proof_of, replay,
    PouwError,
};
use pouw_ml::Exec;
use pouw_primitives::{Block, ChainSpec, Hash, Header, TaskDefinition, TaskId};
use pouw_storage::{ProofStore, StorageError};
use std::sync::Arc;

/// Why a block's proof could not be checked or was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofCheckError {
    /// The proof is invalid (a provable fault of whoever sent the block).
    #[error(transparent)]
    Invalid(#[from] PouwError),
    /// The block trains a task this node cannot resolve on the block's branch.
    #[error("block trains task {task}, which is neither the filler task {filler} of its epoch nor a known client task")]
    UnknownTask {
        /// The header's task.
        task: TaskId,
        /// The filler task of the block's epoch.
        filler: TaskId,
    },
    /// The proof data (start model, residual, batch, peer messages) is not in the local store:
    /// the block cannot be checked yet (not a fault: fetch the data, then import again).
    #[error("proof data of iteration message {0} is not in the proof store")]
    MissingData(Hash),
    /// The proof store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Verifies the PoUW proof of every block: the cheap checks, then the bit-exact replay of the
/// training iteration from the proof data in the node's [`ProofStore`].
///
/// Tasks: a block at height `h` trains the filler task of the epoch its parent is in (epoch
/// `(h - 1) / filler_epoch_blocks`, opened by the ancestor at `epoch * filler_epoch_blocks`,
/// so a block never depends on its own hash). Client tasks are resolved by the task-lifecycle
/// rules, which this validator does not know yet: such blocks are refused with
/// [`ProofCheckError::UnknownTask`].
#[derive(Debug)]
pub struct PouwValidator {
    proofs: Arc<ProofStore>,
    exec: Exec,
}

impl PouwValidator {
    /// A validator replaying with `exec` (the result never depends on the thread count).
    pub fn new(proofs: Arc<ProofStore>, exec: Exec) -> Self {
        Self { proofs, exec }
    }

    /// The filler task a block whose parent is `parent` trains, if its epoch-opening ancestor
    /// is known.
    pub fn filler_task_for(
        spec: &ChainSpec,
        parent: &Header,
        ancestors: &dyn Ancestors,
    ) -> Option<(TaskId, TaskDefinition)> {
        let epoch = filler_epoch(spec, parent.height);
        let opening = filler_epoch_opening_height(spec, epoch)?;
        let hash = ancestors.hash_at(opening)?;
        Some(filler_task(spec, &hash))
    }

    fn check(
        &self,
        block: &Block,
        parent: &Header,
        spec: &ChainSpec,
        ancestors: &dyn Ancestors,
    ) -> Result<(), ProofCheckError> {
        let Some(proof) = proof_of(block)? else {
            return Ok(()); // genesis, which the chain builds itself
        };
        let (filler_id, task) =
            Self::filler_task_for(spec, parent, ancestors).ok_or(ProofCheckError::UnknownTask {
                task: block.header.task_id,
                filler: Hash::ZERO,
            })?;
        if block.header.task_id != filler_id {
            return Err(ProofCheckError::UnknownTask {
                task: block.header.task_id,
                filler: filler_id,
            });
        }
        check_proof_cheap(spec, &block.header, proof, &task)?;
        let data = self
            .proofs
            .get_proof(&proof.winning.body)?
            .ok_or_else(|| ProofCheckError::MissingData(proof.winning.id()))?;
        replay(spec, &block.header, proof, &task, &data, self.exec)?;
        Ok(())
    }
}

impl BlockValidator for PouwValidator {
    fn validate(
        &self,
        block: &Block,
        parent: &Header,
        spec: &ChainSpec,
        ancestors: &dyn Ancestors,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.check(block, parent, spec, ancestors).map_err(|e| Box::new(e) as _)
    }
}
