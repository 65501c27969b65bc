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
//!
//! A client task's walk ends after its `E` epochs, unless the miner is the heir of a
//! conviction (design/009): the batches of a miner convicted on chain, its whole walk, are
//! then appended to the walks of the heirs the conviction names, heir `r` of `H` taking the
//! convicted walk's positions `r, r + H, r + 2H, ...` ([`Handover`]). Handovers apply in the
//! order of the convictions, each on the walks the earlier ones made, so a later conviction
//! only ever appends: an iteration's batch never changes once it is scheduled.
//!
//! Everything above is chain data: the segments are `samples / 10` samples each (from the
//! task definition), the split from the task's seed, the walks from its selection and
//! convictions. So every node computes which dataset samples an iteration must train
//! ([`TaskSchedule::scheduled_samples`]) without holding the data, and checks a client-task
//! batch against the task's segment hashes, which are the roots of Merkle trees over the
//! segments' samples, from the sample proofs in the proof data
//! ([`TaskSchedule::check_batch_proofs`], design/010).

use super::{batch_hash_of, PouwError};
use crate::{task_split_of, TaskRecord};
use pouw_ml::{merkle, Batch, BatchSchedule, Dataset, Digest, Segment, Split};
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

/// A convicted miner's walk handed over to heirs (design/009), as selection indices of the
/// task's miners: heir `r` of the `H` heirs (in selection order) trains the convicted walk's
/// positions `r, r + H, r + 2H, ...` after its own walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The convicted miner.
    pub convicted: usize,
    /// The heirs, in selection order.
    pub heirs: Vec<usize>,
}

impl Handover {
    /// The handovers of `record`'s convictions, in conviction order (names that are not
    /// selected miners are skipped; the chain never records such).
    pub fn of_task(record: &TaskRecord) -> Vec<Self> {
        let index = |a: &Address| record.participants.miners.iter().position(|s| s.worker == *a);
        record
            .convictions
            .iter()
            .filter_map(|c| {
                Some(Self {
                    convicted: index(&c.miner)?,
                    heirs: c.heirs.iter().filter_map(index).collect(),
                })
            })
            .collect()
    }
}

/// The epoch limit and handovers of a client task's walks, with the walk lengths they give:
/// `lengths[k][m]` is miner `m`'s walk length after the first `k` handovers.
#[derive(Debug, Clone)]
struct Walks {
    epochs: u32,
    handovers: Vec<Handover>,
    lengths: Vec<Vec<u64>>,
}

impl Walks {
    fn new(batches_per_epoch: usize, miners: usize, epochs: u32, handovers: Vec<Handover>) -> Self {
        let base = (0..miners)
            .map(|m| {
                let per_epoch = batches_per_epoch.saturating_sub(m).div_ceil(miners.max(1));
                u64::try_from(per_epoch).unwrap_or(u64::MAX).saturating_mul(u64::from(epochs))
            })
            .collect::<Vec<_>>();
        let mut lengths = vec![base];
        for h in &handovers {
            let Some(prev) = lengths.last() else { break };
            let mut next = prev.clone();
            let handed = prev.get(h.convicted).copied().unwrap_or(0);
            let heirs = u64::try_from(h.heirs.len()).unwrap_or(u64::MAX);
            for (rank, heir) in (0u64..).zip(&h.heirs) {
                if *heir == h.convicted {
                    continue;
                }
                let share = handed.saturating_sub(rank).div_ceil(heirs.max(1));
                if let Some(len) = next.get_mut(*heir) {
                    *len = len.saturating_add(share);
                }
            }
            lengths.push(next);
        }
        Self { epochs, handovers, lengths }
    }

    /// Miner `m`'s walk length after all the handovers.
    fn len(&self, m: usize) -> u64 {
        self.lengths.last().and_then(|l| l.get(m)).copied().unwrap_or(0)
    }

    /// The (miner, base iteration) whose own batch miner `m` trains at its iteration `n`:
    /// follows the handovers back, latest first, to the walk of the miner the batch was first
    /// scheduled to.
    fn origin(&self, mut m: usize, mut n: u64) -> Option<(usize, u64)> {
        for k in (0..self.handovers.len()).rev() {
            let before = self.lengths.get(k)?.get(m).copied()?;
            if n < before {
                continue;
            }
            let h = self.handovers.get(k)?;
            let rank = h.heirs.iter().position(|x| *x == m).filter(|_| m != h.convicted)?;
            let heirs = u64::try_from(h.heirs.len()).ok()?;
            let j = n.checked_sub(before)?;
            let at = u64::try_from(rank).ok()?.checked_add(j.checked_mul(heirs)?)?;
            if at >= self.lengths.get(k)?.get(h.convicted).copied()? {
                return None;
            }
            m = h.convicted;
            n = at;
        }
        let base = self.lengths.first()?.get(m).copied()?;
        (n < base).then_some((m, n))
    }
}

/// The batch schedule of one miner of a task.
#[derive(Debug, Clone)]
pub struct TaskSchedule {
    batches: BatchSchedule,
    miner_index: usize,
    miners: usize,
    /// A client task's epoch limit and handovers; `None`: endless (filler tasks).
    walks: Option<Walks>,
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

    /// [`TaskSchedule::new`] with the split already made (`task_split_of(task, seed)`); the
    /// dataset must have the task's segment length.
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
        let want = segment_len(task);
        if segments.first().map(|s| s.len) != Some(want) {
            return Err(PouwError::Schedule(format!(
                "the dataset's segments do not have the task's {want} samples each"
            )));
        }
        Ok(Self::of_split(task_id, task, split, miner_index, miners))
    }

    /// The schedule from chain data alone: the task's definition (segments of
    /// `samples / 10` samples), its split and its selection.
    pub fn of_split(
        task_id: &TaskId,
        task: &TaskDefinition,
        split: &Split,
        miner_index: usize,
        miners: usize,
    ) -> Self {
        let len = segment_len(task);
        let segments: Vec<Segment> = (0..DATASET_SEGMENTS)
            .map(|index| Segment { index, start: index.saturating_mul(len), len })
            .collect();
        let batch_size = usize::try_from(task.optimizer.batch_size).unwrap_or(usize::MAX);
        let batches = BatchSchedule::new(&segments, split, batch_size, task_id.0);
        Self { batches, miner_index, miners: miners.max(1), walks: None }
    }

    /// Ends the walks after `epochs` epochs and appends the `handovers` of the task's
    /// convictions (client tasks; [`Handover::of_task`]).
    pub fn with_walks(mut self, epochs: u32, handovers: Vec<Handover>) -> Self {
        self.walks =
            Some(Walks::new(self.batches.batches_per_epoch(), self.miners, epochs, handovers));
        self
    }

    /// Replaces the handovers (a conviction was recorded since); a no-op for a schedule
    /// without an epoch limit or when they did not change.
    pub fn set_handovers(&mut self, handovers: Vec<Handover>) {
        if let Some(w) = &self.walks {
            if w.handovers != handovers {
                let epochs = w.epochs;
                self.walks = Some(Walks::new(
                    self.batches.batches_per_epoch(),
                    self.miners,
                    epochs,
                    handovers,
                ));
            }
        }
    }

    /// The number of iterations in this miner's walk (`None`: endless).
    pub fn walk_len(&self) -> Option<u64> {
        self.walks.as_ref().map(|w| w.len(self.miner_index))
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
        let (miner, n) = match &self.walks {
            None => Some((self.miner_index, iteration)),
            Some(w) => w.origin(self.miner_index, iteration),
        }
        .ok_or_else(|| self.no_batch(iteration))?;
        scheduled_position(self.batches.batches_per_epoch(), miner, self.miners, n)
            .ok_or_else(|| self.no_batch(iteration))
    }

    fn no_batch(&self, iteration: u64) -> PouwError {
        let walk = match &self.walks {
            Some(w) => format!(
                "; its walk holds {} iterations: {} epochs, {} handovers",
                w.len(self.miner_index),
                w.epochs,
                w.handovers.len()
            ),
            None => String::new(),
        };
        PouwError::Schedule(format!(
            "miner {} of {} has no batch at iteration {iteration} ({} batches per epoch{walk})",
            self.miner_index,
            self.miners,
            self.batches.batches_per_epoch()
        ))
    }

    /// (epoch, batch index, dataset sample indices in batch order) of this miner's iteration
    /// `iteration`: chain data only.
    pub fn scheduled_samples(&self, iteration: u64) -> Result<(u32, usize, Vec<u32>), PouwError> {
        let (epoch, b) = self.position(iteration)?;
        let order = self.batches.epoch_order(epoch);
        Ok((epoch, b, self.batches.batch(&order, b).to_vec()))
    }

    /// The rule every node checks on a client-task block, from chain data and the proof data
    /// alone (design/010): the winning iteration `body` is in its scheduled epoch, `batch` (the
    /// proof data's batch bytes) hashes to `body.batch_hash` and holds exactly the scheduled
    /// samples in order, each proven by its Merkle proof in `proofs` (consumed in batch
    /// order, none left over) to sit at its scheduled index of its scheduled segment, whose
    /// hash is the task's `segment_hashes` entry.
    pub fn check_batch_proofs(
        &self,
        task: &TaskDefinition,
        body: &IterationBody,
        batch: &[u8],
        proofs: &[Hash],
    ) -> Result<(), PouwError> {
        let iteration = body.iteration;
        let bad = |reason: String| PouwError::BatchProof { iteration, reason };
        let (epoch, _, indices) = self.scheduled_samples(iteration)?;
        if body.epoch != epoch {
            return Err(bad(format!("the message claims epoch {}, scheduled {epoch}", body.epoch)));
        }
        if batch_hash_of(batch) != body.batch_hash {
            return Err(bad("the batch bytes are not the batch the message names".into()));
        }
        let decoded =
            Batch::from_canonical_bytes(batch).map_err(|e| bad(format!("batch bytes: {e}")))?;
        if decoded.len() != indices.len() {
            return Err(bad(format!(
                "the batch has {} samples, the schedule {}",
                decoded.len(),
                indices.len()
            )));
        }
        let width = decoded.width();
        let width32 = u32::try_from(width).map_err(|_| bad("width overflows".into()))?;
        let len = segment_len(task);
        let hashes = &task.dataset.segment_hashes;
        let mut rest = proofs;
        for (sample, (&g, label)) in indices.iter().zip(decoded.labels()).enumerate() {
            let g = usize::try_from(g).map_err(|_| bad("sample index overflows".into()))?;
            let (segment, index) = (g.checked_div(len), g.checked_rem(len));
            let (Some(segment), Some(index)) = (segment, index) else {
                return Err(bad("the task's segments are empty".into()));
            };
            let wrong = PouwError::SampleProof { iteration, sample, segment, index };
            let Some(root) = hashes.get(segment) else { return Err(wrong) };
            let need = merkle::proof_len(len, index).ok_or_else(|| wrong.clone())?;
            if rest.len() < need {
                return Err(bad(format!(
                    "the sample proofs end at sample {sample} ({} hashes short)",
                    need.saturating_sub(rest.len())
                )));
            }
            let (path, tail) = rest.split_at(need);
            rest = tail;
            let start = sample.checked_mul(width).ok_or_else(|| wrong.clone())?;
            let x = start
                .checked_add(width)
                .and_then(|end| decoded.features().get(start..end))
                .ok_or_else(|| wrong.clone())?;
            let index32 = u32::try_from(index).map_err(|_| wrong.clone())?;
            let leaf = merkle::sample_leaf(index32, x, *label);
            let path: Vec<Digest> = path.iter().map(|h| Digest(h.0)).collect();
            match merkle::root_from_proof(len, width32, index, leaf, &path) {
                Some(r) if r.0 == root.0 => {}
                _ => return Err(wrong),
            }
        }
        if !rest.is_empty() {
            return Err(bad(format!("{} sample proof hashes left over", rest.len())));
        }
        Ok(())
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

/// Samples per segment of `task` (`samples / 10`, as the engine cuts them).
pub fn segment_len(task: &TaskDefinition) -> usize {
    usize::try_from(task.dataset.segment_samples()).unwrap_or(usize::MAX)
}

/// Upper bound on the sample proofs of one client-task block: `batch * ceil(log2(segment
/// samples))` hashes (design/010).
pub fn max_sample_proofs(task: &TaskDefinition) -> u64 {
    let len = task.dataset.segment_samples();
    let depth = u64::from(len.max(1).next_power_of_two().trailing_zeros());
    u64::from(task.optimizer.batch_size).saturating_mul(depth)
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

    /// Every (epoch, batch) miner `m` trains, in walk order, with `b` batches per epoch.
    fn walk(w: &Walks, b: usize, miners: usize, m: usize) -> Vec<(u32, usize)> {
        (0..w.len(m))
            .map(|n| {
                let (origin, at) = w.origin(m, n).unwrap();
                scheduled_position(b, origin, miners, at).unwrap()
            })
            .collect()
    }

    #[test]
    fn handovers_give_a_convicted_miners_batches_to_its_heirs_once_each() {
        let (b, miners, epochs) = (10, 4, 2);
        let all: BTreeSet<(u32, usize)> =
            (0..epochs).flat_map(|e| (0..b).map(move |x| (e, x))).collect();
        let plain = Walks::new(b, miners, epochs, vec![]);
        assert_eq!(plain.len(3), 4, "miner 3: batches 3 and 7 of two epochs");
        assert_eq!(plain.origin(3, 4), None, "the walk ends after its epochs");
        // Miner 3 convicted: miners 0-2 take over its walk (3, 7 of epoch 0, 3, 7 of epoch 1).
        let one =
            Walks::new(b, miners, epochs, vec![Handover { convicted: 3, heirs: vec![0, 1, 2] }]);
        let w0 = walk(&one, b, miners, 0);
        assert_eq!(&w0[..6], walk(&plain, b, miners, 0).as_slice(), "own walk unchanged");
        assert_eq!(&w0[6..], [(0, 3), (1, 7)]);
        assert_eq!(walk(&one, b, miners, 1)[6..], [(0, 7)]);
        assert_eq!(walk(&one, b, miners, 2)[4..], [(1, 3)]);
        let trained: Vec<_> = (0..3).flat_map(|m| walk(&one, b, miners, m)).collect();
        assert_eq!(trained.len(), all.len(), "no batch twice");
        assert_eq!(trained.into_iter().collect::<BTreeSet<_>>(), all);
        // Then miner 1 too: miners 0 and 2 split its walk, handed-over batches included; what
        // was scheduled before stays as it was.
        let two = Walks::new(
            b,
            miners,
            epochs,
            vec![
                Handover { convicted: 3, heirs: vec![0, 1, 2] },
                Handover { convicted: 1, heirs: vec![0, 2] },
            ],
        );
        for m in [0, 2] {
            let before = walk(&one, b, miners, m);
            assert_eq!(walk(&two, b, miners, m)[..before.len()], before[..]);
        }
        let trained: Vec<_> = [0, 2].iter().flat_map(|m| walk(&two, b, miners, *m)).collect();
        assert_eq!(trained.len(), all.len(), "no batch twice");
        assert_eq!(trained.into_iter().collect::<BTreeSet<_>>(), all);
        assert_eq!(two.origin(1, 0), Some((1, 0)), "a convict's own walk is still defined");
        assert_eq!(two.origin(3, 4), None, "a convict inherits nothing");
        // No heirs (everyone else done): nothing is handed over.
        let none = Walks::new(b, miners, epochs, vec![Handover { convicted: 3, heirs: vec![] }]);
        assert_eq!((0..4).map(|m| none.len(m)).collect::<Vec<_>>(), [6, 6, 4, 4]);
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

    #[test]
    fn the_schedule_needs_no_data_and_refuses_a_dataset_of_another_shape() {
        let spec = ChainSpec::devnet();
        let (id, task) = filler_task(&spec, &Hash::digest(b"opening"));
        let data = pouw_ml::shipped_mnist_ref();
        let split = crate::task_split_of(&task, &id).to_ml();
        let with_data = TaskSchedule::with_split(&id, &task, &split, data, 1, 3).unwrap();
        let chain_only = TaskSchedule::of_split(&id, &task, &split, 1, 3);
        for n in [0, 5, 300] {
            let (epoch, b, indices) = chain_only.scheduled_samples(n).unwrap();
            assert_eq!(with_data.position(n).unwrap(), (epoch, b));
            let (_, _, hash) = with_data.scheduled_batch(data, n).unwrap();
            assert_eq!(Hash(data.gather(&indices).hash().0), hash);
        }
        // A task whose segments are longer than the dataset's.
        let mut other = task;
        other.dataset.samples += 10;
        let e = TaskSchedule::with_split(&id, &other, &split, data, 0, 1).unwrap_err();
        assert!(matches!(e, PouwError::Schedule(_)), "{e}");
        assert_eq!(max_sample_proofs(&other), 32 * 10, "batch 32, segments of 1,001 samples");
    }
}
