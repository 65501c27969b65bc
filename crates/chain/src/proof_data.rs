//! What a node checks about a block it was sent before spending anything on it, and the
//! proof data a peer sends for it, before that data is stored.
//!
//! The order is the verification order of design/003: header and body rules, then the proof's
//! structure and cheap checks (`check_proof_cheap`, no proof data needed); only a block that
//! passes them is worth fetching proof data for, and the data is stored only when every piece
//! hashes to what the block's winning message names. The replay itself runs at import, in the
//! chain's [`PouwValidator`](crate::PouwValidator).

use crate::{Chain, ChainError, PouwValidator, ProofCheckError};
use pouw_consensus::{
    pouw::{check_proof_cheap, ml_specs, proof_of, Handover, ProofData, ProofDataKeys},
    task_record,
};
use pouw_primitives::{Block, Hash, TaskDefinition, TaskId, Timestamp};

/// Why proof data sent for a block is not the data the block names.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofDataError {
    /// The block carries no proof (genesis).
    #[error("block {0} carries no proof")]
    NoProof(Hash),
    /// The block's task cannot be resolved (or its proof is malformed).
    #[error(transparent)]
    Task(#[from] ProofCheckError),
    /// A piece of the data does not hash to what the winning message names.
    #[error("proof data for block {block}: the {piece} does not match the winning message")]
    Mismatch {
        /// The block.
        block: Hash,
        /// Which piece: start model, residual, batch or peer messages.
        piece: &'static str,
    },
}

impl ProofDataError {
    /// True if the data (or the block) is wrong; false when the block's task cannot be
    /// resolved here now.
    pub fn is_fault(&self) -> bool {
        match self {
            Self::Task(e) => e.is_fault(),
            Self::NoProof(_) | Self::Mismatch { .. } => true,
        }
    }
}

/// The task a block trains, resolved on the block's own branch (its parent must be stored):
/// the filler task of its epoch, or a client task in Training in the parent's state (known
/// here when the parent is the tip).
pub fn block_task(
    chain: &Chain,
    block: &Block,
) -> Result<(TaskId, TaskDefinition), ProofCheckError> {
    let unknown = |filler| ProofCheckError::UnknownTask { task: block.header.task_id, filler };
    let parent = chain.header(&block.header.prev_hash).ok_or(unknown(Hash::ZERO))?;
    let ancestors = chain.branch_ancestors(parent);
    let (filler_id, task) = PouwValidator::filler_task_for(chain.spec(), parent, &ancestors)
        .ok_or(unknown(Hash::ZERO))?;
    if block.header.task_id == filler_id {
        return Ok((filler_id, task));
    }
    let Some(record) = task_record(chain.state(), &block.header.task_id) else {
        return Err(if block.header.prev_hash == chain.tip() {
            unknown(filler_id)
        } else {
            ProofCheckError::TaskStateUnavailable {
                task: block.header.task_id,
                parent: block.header.prev_hash,
            }
        });
    };
    // At the tip the full rule; on another branch the definition alone (the task id commits
    // to it; `apply_block` checks the phase and the selection on that branch).
    let definition = if block.header.prev_hash == chain.tip() {
        PouwValidator::client_task_definition(&record, &block.header)?
    } else {
        record.definition
    };
    Ok((block.header.task_id, definition))
}

/// Every check of `block` that needs neither its proof data nor a replay: header and body
/// rules against the stored parent, the proof's structure and its cheap checks.
pub fn precheck(chain: &Chain, block: &Block, now: Timestamp) -> Result<(), ChainError> {
    chain.check_rules(block, now)?;
    let hash = block.hash();
    let invalid =
        |e: ProofCheckError| ChainError::invalid(hash, crate::BlockError::Proof(Box::new(e)));
    let Some(proof) = proof_of(block).map_err(|e| invalid(e.into()))? else {
        return Ok(());
    };
    let (_, task) = block_task(chain, block).map_err(invalid)?;
    check_proof_cheap(chain.spec(), &block.header, proof, &task).map_err(|e| invalid(e.into()))?;
    Ok(())
}

/// Checks that `data` is exactly the proof data `block` names (every piece hashed, and, for a
/// client task, the sample proofs checked against the task's segment hashes: the winning
/// message does not name them, and they are unique for the right batch), so a peer cannot
/// make a valid block fail its replay by sending wrong data.
pub fn check_proof_data(
    chain: &Chain,
    block: &Block,
    data: &ProofData,
) -> Result<(), ProofDataError> {
    let hash = block.hash();
    let proof = proof_of(block)
        .map_err(|e| ProofDataError::Task(e.into()))?
        .ok_or(ProofDataError::NoProof(hash))?;
    let (task_id, task) = block_task(chain, block)?;
    let (model, _) = ml_specs(&task).map_err(|e| ProofDataError::Task(e.into()))?;
    let want = ProofDataKeys::of(&proof.winning.body);
    let got = data.keys(&model);
    let mismatch = |piece| Err(ProofDataError::Mismatch { block: hash, piece });
    if got.model != want.model {
        return mismatch("start model");
    }
    if got.residual != want.residual {
        return mismatch("start residual");
    }
    if got.batch != want.batch {
        return mismatch("batch");
    }
    if got.peers != want.peers {
        return mismatch("peer messages");
    }
    let filler = chain
        .header(&block.header.prev_hash)
        .and_then(|p| PouwValidator::filler_task_for(chain.spec(), p, &chain.branch_ancestors(p)))
        .is_some_and(|(id, _)| id == task_id);
    if filler {
        if !data.sample_proofs.is_empty() {
            return mismatch("sample proofs (a filler-task block has none)");
        }
    } else if let Some(record) = task_record(chain.state(), &task_id) {
        if !record.participants.miners.is_empty() {
            let miners: Vec<_> = record.participants.miners.iter().map(|s| s.worker).collect();
            let at_tip = block.header.prev_hash == chain.tip();
            crate::check_client_batch(
                &block.header,
                &task,
                &record.seed,
                &miners,
                Handover::of_task(&record),
                &proof.winning.body,
                data,
                at_tip,
            )?;
        }
    }
    Ok(())
}
