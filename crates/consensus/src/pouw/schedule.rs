//! Two replay checks that need more than the proof data (design/006): the batch an iteration
//! trains must be the one the task's schedule assigns to that miner at that iteration, and the
//! peer messages a client-task iteration applies must come from the task's other selected
//! miners.
//!
//! The schedule: the training samples of the task's split ([`pouw_ml::BatchSchedule`], seeded
//! by the task id) are shuffled per epoch and cut into `B` batches; batch `b` belongs to miner
//! `b mod M` of the `M` selected miners (a filler task: one miner, every batch). Miner `m`
//! trains its batches `m, m + M, m + 2M, ...` of epoch 0, then of epoch 1, and so on, one per
//! iteration, so its iteration `n` trains, with `c = ceil((B - m) / M)` batches per epoch,
//! batch `m + (n mod c) * M` of epoch `n / c` ([`scheduled_position`]).

use super::PouwError;
use crate::task_split_of;
use pouw_ml::{BatchSchedule, Dataset, Split};
use pouw_primitives::{
    Address, Hash, IterationBody, IterationMessage, TaskDefinition, TaskId, DATASET_SEGMENTS,
};
use std::collections::BTreeSet;

/// The (epoch, batch index) miner `miner_index` of `miners` trains at its iteration
/// `iteration`, with `batches_per_epoch` batches per epoch; `None` if that miner has no batch
/// (an index out of range, or fewer batches than needed to reach it) or the epoch overflows.
pub fn scheduled_position(
    batches_per_epoch: usize,
    miner_index: usize,
    miners: usize,
    iteration: u64,
) -> Option<(u32, usize)> {
    let miners = miners.max(1);
    if miner_index >= miners {
        return None;
    }
    let per_epoch = batches_per_epoch.checked_sub(miner_index)?.div_ceil(miners);
    let per_epoch = u64::try_from(per_epoch).ok().filter(|c| *c > 0)?;
    let epoch = u32::try_from(iteration.checked_div(per_epoch)?).ok()?;
    let position = usize::try_from(iteration.checked_rem(per_epoch)?).ok()?;
    let batch = position.checked_mul(miners)?.checked_add(miner_index)?;
    Some((epoch, batch))
}

/// The batch schedule of one miner of a task.
#[derive(Debug, Clone)]
pub struct TaskSchedule {
    batches: BatchSchedule,
    miner_index: usize,
    miners: usize,
}

impl TaskSchedule {
    /// The schedule of miner `miner_index` of `miners` on task `task_id` trained on `dataset`
    /// (the shipped digits for a filler task, the client's segments for a client task), split
    /// with `seed` (the task's selection seed; a filler task uses its own id).
    pub fn new(
        task_id: &TaskId,
        task: &TaskDefinition,
        seed: &Hash,
        dataset: &Dataset,
        miner_index: usize,
        miners: usize,
    ) -> Result<Self, PouwError> {
        Self::with_split(
            task_id,
            task,
            &task_split_of(task, seed).to_ml(),
            dataset,
            miner_index,
            miners,
        )
    }

    /// [`TaskSchedule::new`] with the split already made (`task_split_of(task, seed)`).
    pub fn with_split(
        task_id: &TaskId,
        task: &TaskDefinition,
        split: &Split,
        dataset: &Dataset,
        miner_index: usize,
        miners: usize,
    ) -> Result<Self, PouwError> {
        let segments = dataset
            .segments(DATASET_SEGMENTS)
            .map_err(|e| PouwError::Schedule(format!("dataset segments: {e}")))?;
        let batch_size = usize::try_from(task.optimizer.batch_size).unwrap_or(usize::MAX);
        let batches = BatchSchedule::new(&segments, split, batch_size, task_id.0);
        Ok(Self { batches, miner_index, miners: miners.max(1) })
    }

    /// The engine's batch schedule (epoch orders, batches).
    pub fn batches(&self) -> &BatchSchedule {
        &self.batches
    }

    /// The first batch index of every epoch and the step between this miner's batches.
    pub fn stride(&self) -> (usize, usize) {
        (self.miner_index, self.miners)
    }

    /// (epoch, batch index) of this miner's iteration `iteration`.
    pub fn position(&self, iteration: u64) -> Result<(u32, usize), PouwError> {
        scheduled_position(
            self.batches.batches_per_epoch(),
            self.miner_index,
            self.miners,
            iteration,
        )
        .ok_or(PouwError::Schedule(format!(
            "miner {} of {} has no batch at iteration {iteration} ({} batches per epoch)",
            self.miner_index,
            self.miners,
            self.batches.batches_per_epoch()
        )))
    }

    /// (epoch, batch index, batch hash) of this miner's iteration `iteration` on `dataset`.
    pub fn scheduled_batch(
        &self,
        dataset: &Dataset,
        iteration: u64,
    ) -> Result<(u32, usize, Hash), PouwError> {
        let (epoch, b) = self.position(iteration)?;
        let order = self.batches.epoch_order(epoch);
        let batch = dataset.gather(self.batches.batch(&order, b));
        Ok((epoch, b, Hash(batch.hash().0)))
    }

    /// The winning iteration `body` must train the batch (and be in the epoch) the schedule
    /// gives its iteration index.
    pub fn check(&self, dataset: &Dataset, body: &IterationBody) -> Result<(), PouwError> {
        let (epoch, batch, expected) = self.scheduled_batch(dataset, body.iteration)?;
        if body.epoch != epoch || body.batch_hash != expected {
            return Err(PouwError::UnscheduledBatch {
                iteration: body.iteration,
                miner_index: self.miner_index,
                miners: self.miners,
                epoch,
                batch,
                claimed_epoch: body.epoch,
                expected,
                actual: body.batch_hash,
            });
        }
        Ok(())
    }
}

/// Every peer message a client-task iteration by `block_miner` applies must be validly signed
/// by one of the task's selected `miners` other than `block_miner`, each message once.
pub fn check_peer_senders(
    block_miner: &Address,
    peers: &[IterationMessage],
    miners: &[Address],
) -> Result<(), PouwError> {
    let mut seen = BTreeSet::new();
    for (index, peer) in peers.iter().enumerate() {
        let id = peer.id();
        if !seen.insert(id) {
            return Err(PouwError::DuplicatePeer(id));
        }
        peer.verify_signature().map_err(|source| PouwError::PeerSignature { index, source })?;
        let signer = peer.body.miner;
        if signer == *block_miner {
            return Err(PouwError::PeerFromBlockMiner { index });
        }
        if !miners.contains(&signer) {
            return Err(PouwError::PeerNotSelected { index, signer });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::pouw::{filler_task, iteration_body};
    use pouw_primitives::{ChainSpec, Keypair};

    #[test]
    fn positions_walk_the_miners_batches_epoch_by_epoch() {
        // 10 batches, 3 miners: miner 1 trains 1, 4, 7 of every epoch.
        let walk: Vec<_> = (0..7).map(|n| scheduled_position(10, 1, 3, n).unwrap()).collect();
        assert_eq!(walk, [(0, 1), (0, 4), (0, 7), (1, 1), (1, 4), (1, 7), (2, 1)]);
        // Miner 0 gets the extra batch 9.
        let walk: Vec<_> = (0..5).map(|n| scheduled_position(10, 0, 3, n).unwrap()).collect();
        assert_eq!(walk, [(0, 0), (0, 3), (0, 6), (0, 9), (1, 0)]);
        // One miner (filler): every batch in order.
        assert_eq!(scheduled_position(10, 0, 1, 23), Some((2, 3)));
        assert_eq!(scheduled_position(10, 3, 3, 0), None, "no such miner");
        assert_eq!(scheduled_position(2, 2, 3, 0), None, "more miners than batches");
    }

    #[test]
    fn a_filler_iteration_on_another_batch_is_refused() {
        let spec = ChainSpec::devnet();
        let (id, task) = filler_task(&spec, &Hash::digest(b"opening"));
        let data = pouw_ml::shipped_mnist_ref();
        let s = TaskSchedule::new(&id, &task, &id, data, 0, 1).unwrap();
        let (epoch, _, hash) = s.scheduled_batch(data, 5).unwrap();
        let model = pouw_ml::Model::new(crate::pouw::ml_specs(&task).unwrap().0).unwrap();
        let state = pouw_ml::TrainState::new(model, crate::pouw::ml_specs(&task).unwrap().1);
        let mut state = state.unwrap();
        let order = s.batches().epoch_order(epoch);
        let out = state
            .iterate(pouw_ml::Exec::SINGLE, &data.gather(s.batches().batch(&order, 5)), &[])
            .unwrap();
        let body = iteration_body(id, Keypair::from_label("m").public(), epoch, 5, &out);
        assert_eq!(body.batch_hash, hash);
        s.check(data, &body).unwrap();
        // The same iteration claimed at another index: another batch is due there.
        let mut wrong = body;
        wrong.iteration = 6;
        let e = s.check(data, &wrong).unwrap_err();
        assert!(matches!(e, PouwError::UnscheduledBatch { iteration: 6, batch: 6, .. }), "{e}");
        assert!(e.to_string().contains("iteration 6"), "{e}");
    }
}
