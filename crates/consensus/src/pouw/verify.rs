//! The verification pipeline of a PoUW block (design 003), cheapest checks first, as separate
//! steps so a caller can stop early: [`check_proof_cheap`] (signatures, task, commitment, map
//! syntax; microseconds; [`check_proof_structure`] is its task-free subset), then [`replay`]
//! (one training iteration). The caller checks the header itself (syntax, parent, time, target, `meets_target(header.hash(), target)`, block
//! signature) before both, and [`mark_iteration_used`] runs inside the state transition.

use super::{
    data::batch_hash_of, ml_specs, ml_update_rule, nonce_budget, nonce_index, nonce_precursor,
    PouwError, ProofData,
};
use crate::state::{Overlay, StateKey, StateValue};
use pouw_ml::{Batch, Exec, IterationError, Model, TrainState, MAP_INDEX_MASK};
use pouw_primitives::{Block, ChainSpec, Hash, Header, PouwProof, TaskDefinition};
use std::collections::BTreeSet;

/// The proof of a block; [`PouwError::MissingProof`] for a non-genesis block without one.
pub fn proof_of(block: &Block) -> Result<Option<&PouwProof>, PouwError> {
    match (&block.proof, block.header.height) {
        (None, 0) => Ok(None),
        (None, _) => Err(PouwError::MissingProof),
        (Some(p), _) => Ok(Some(p)),
    }
}

/// The proof's presence and its binding to the block, needing neither the task nor the spec:
/// a non-genesis block carries a proof ([`PouwError::MissingProof`]); `winning` is by
/// `header.miner`, is validly signed, is the message `header.msg_hash` names and is for
/// `header.task_id`; `committing` is by the same miner for the same task and is validly signed.
/// [`check_proof_cheap`] checks all of this too (and more); this is its subset for a caller
/// that has not resolved the task. Returns the proof (`None` for genesis).
pub fn check_proof_structure(block: &Block) -> Result<Option<&PouwProof>, PouwError> {
    let Some(proof) = proof_of(block)? else { return Ok(None) };
    check_winning_binding(&block.header, proof)?;
    let (w, c) = (&proof.winning.body, &proof.committing.body);
    if c.miner != w.miner || c.task_id != w.task_id {
        return Err(PouwError::CommittingOwner);
    }
    proof.committing.verify_signature().map_err(PouwError::CommittingSignature)?;
    Ok(Some(proof))
}

/// `winning` is by `header.miner`, validly signed, named by `header.msg_hash`, for
/// `header.task_id`.
fn check_winning_binding(header: &Header, proof: &PouwProof) -> Result<(), PouwError> {
    let w = &proof.winning.body;
    if w.miner != header.miner {
        return Err(PouwError::WinningMiner { message: w.miner, header: header.miner });
    }
    proof.winning.verify_signature().map_err(PouwError::WinningSignature)?;
    let id = proof.winning.id();
    if id != header.msg_hash {
        return Err(PouwError::MsgHash { header: header.msg_hash, message: id });
    }
    if w.task_id != header.task_id {
        return Err(PouwError::WinningTask { message: w.task_id, header: header.task_id });
    }
    Ok(())
}

/// The checks that need no proof data, in order: `winning` is by `header.miner`, is validly
/// signed, is the message `header.msg_hash` names, is for `header.task_id`, commits to zero;
/// `committing` is by the same miner for the same task exactly `k` iterations earlier, committed
/// to `header.zero_nonce_hash()` and is validly signed; `winning` ran with that hash as its
/// order seed; the epochs are in range and ordered; the
/// winning map is strictly ascending and in range; `peer_msgs` has no duplicate.
///
/// `task` is the definition of `header.task_id`, resolved by the caller (a live task the miner
/// was selected for, or the current filler task, which any miner may mine).
pub fn check_proof_cheap(
    spec: &ChainSpec,
    header: &Header,
    proof: &PouwProof,
    task: &TaskDefinition,
) -> Result<(), PouwError> {
    check_winning_binding(header, proof)?;
    let (w, c) = (&proof.winning.body, &proof.committing.body);
    if !w.commitment.is_zero() {
        return Err(PouwError::WinningCommitment(w.commitment));
    }
    // The commitment: owner, depth, hash (a header on another tip has another hash).
    if c.miner != w.miner || c.task_id != w.task_id {
        return Err(PouwError::CommittingOwner);
    }
    if w.iteration.checked_sub(u64::from(spec.commitment_depth)).is_none() {
        return Err(PouwError::CommitmentDepth { committed_at: c.iteration, expected: None });
    }
    super::check_commitment(spec, header, &proof.winning, &proof.committing)?;
    let seed = Hash(super::order_seed(header));
    if w.order_seed != seed {
        return Err(PouwError::OrderSeed { claimed: w.order_seed, header: seed });
    }
    proof.committing.verify_signature().map_err(PouwError::CommittingSignature)?;
    // Epoch sanity.
    let epochs = task.optimizer.epochs;
    if w.epoch >= epochs {
        return Err(PouwError::EpochOutOfRange { epoch: w.epoch, epochs });
    }
    let depth = spec.commitment_depth;
    let advanced = w.epoch.checked_sub(c.epoch);
    if !matches!(advanced, Some(d) if d <= depth) {
        return Err(PouwError::EpochOrder { committing: c.epoch, winning: w.epoch, depth });
    }
    // Map syntax.
    let params = task
        .parameter_count()
        .ok_or_else(|| PouwError::InvalidTask("the parameter count overflows".into()))?;
    let mut previous: Option<u32> = None;
    for (position, &entry) in w.map.iter().enumerate() {
        let index = entry & MAP_INDEX_MASK;
        if u64::from(index) >= params {
            return Err(PouwError::MapIndex { position, index, params });
        }
        if previous.is_some_and(|p| index <= p) {
            return Err(PouwError::MapOrder { position });
        }
        previous = Some(index);
    }
    let mut seen = BTreeSet::new();
    for peer in &w.peer_msgs {
        if !seen.insert(*peer) {
            return Err(PouwError::DuplicatePeer(*peer));
        }
    }
    Ok(())
}

/// Replays the winning iteration from the proof data, bound to `header` (its zero-nonce hash
/// seeds the order of the first layer's reduction, [`super::order_seed`]), and checks every
/// output against the winning message, bit for bit, then the nonce. Run it after [`check_proof_cheap`]; it checks
/// the data against the signed hashes before spending the iteration, in order: start-state
/// lengths, start state finite (no NaN or infinity), start model hash, start residual hash, batch hash, batch decoding and size, peer
/// count, each peer's id, signature and task; then the iteration; then loss, end model, end
/// residual and end velocity finite; then map, loss bits,
/// accuracy bits and `header.nonce == nonce_at(precursor, j)` for some `j < a`.
pub fn replay(
    spec: &ChainSpec,
    header: &Header,
    proof: &PouwProof,
    task: &TaskDefinition,
    data: &ProofData,
    exec: Exec,
) -> Result<(), PouwError> {
    replay_end(spec, header, proof, task, data, exec).map(drop)
}

/// [`replay`], returning the iteration's end state (model, residual and optimizer state) when
/// every check passes: a filler-task block's end state is the start of the next filler-task
/// block on its branch (design/016).
pub fn replay_end(
    spec: &ChainSpec,
    header: &Header,
    proof: &PouwProof,
    task: &TaskDefinition,
    data: &ProofData,
    exec: Exec,
) -> Result<TrainState, PouwError> {
    let w = &proof.winning.body;
    let (model_spec, optimizer) = ml_specs(task)?;
    let layout = model_spec.layout().map_err(|e| PouwError::InvalidTask(e.to_string()))?;
    let params = layout.params;
    let rule = ml_update_rule(task);
    let velocity_len = rule.state_len(params, optimizer.momentum);
    for (field, expected, actual) in [
        ("start_params", params, data.start_params.len()),
        ("start_residual", params, data.start_residual.len()),
        ("start_velocity", velocity_len, data.start_velocity.len()),
    ] {
        if expected != actual {
            return Err(PouwError::StartStateLength { field, expected, actual });
        }
    }
    let classes = model_spec.classes;
    // The copies the replay needs anyway, each checked finite in the same pass.
    let model = Model::from_params(model_spec, finite_copy("start_params", &data.start_params)?)
        .map_err(|e| PouwError::Engine(e.to_string()))?;
    let mut state = TrainState::from_parts_with_rule(
        model,
        optimizer,
        rule,
        finite_copy("start_residual", &data.start_residual)?,
        finite_copy("start_velocity", &data.start_velocity)?,
    )
    .map_err(|e| PouwError::Engine(e.to_string()))?;
    // Hashed once: the iteration below reports these same hashes as its start hashes.
    let (model, residual) = state.start_hashes();
    let (model, residual) = (Hash(model.0), Hash(residual.0));
    if model != w.start_model_hash {
        return Err(PouwError::StartModelHash { expected: w.start_model_hash, actual: model });
    }
    if residual != w.start_residual_hash {
        return Err(PouwError::StartResidualHash {
            expected: w.start_residual_hash,
            actual: residual,
        });
    }
    let batch_hash = batch_hash_of(&data.batch);
    if batch_hash != w.batch_hash {
        return Err(PouwError::BatchHash { expected: w.batch_hash, actual: batch_hash });
    }
    let batch = Batch::from_canonical_bytes(&data.batch).map_err(PouwError::BadBatch)?;
    if u32::try_from(batch.len()).ok() != Some(task.optimizer.batch_size) {
        return Err(PouwError::BatchSize {
            expected: task.optimizer.batch_size,
            actual: batch.len(),
        });
    }
    batch.validate(layout.inputs, classes).map_err(PouwError::BadBatch)?;
    if data.peers.len() != w.peer_msgs.len() {
        return Err(PouwError::PeerCount { expected: w.peer_msgs.len(), actual: data.peers.len() });
    }
    for (index, (peer, expected)) in data.peers.iter().zip(&w.peer_msgs).enumerate() {
        let actual = peer.id();
        if actual != *expected {
            return Err(PouwError::PeerId { index, expected: *expected, actual });
        }
        peer.verify_signature().map_err(|source| PouwError::PeerSignature { index, source })?;
        if peer.body.task_id != w.task_id {
            return Err(PouwError::PeerTask { index, task: peer.body.task_id });
        }
    }

    let peer_maps: Vec<&[u32]> = data.peers.iter().map(|p| p.body.map.as_slice()).collect();
    // Bound to this header: the order seed is its zero-nonce hash (what the committing message
    // committed to, checked by `check_proof_cheap`).
    let seed = super::order_seed(header);
    let out = state.iterate_bound(exec, &batch, &peer_maps, &seed).map_err(|e| match e {
        IterationError::PeerIndex { map, entry, .. } => {
            PouwError::PeerMapIndex { index: map, entry }
        }
        IterationError::Batch(b) => PouwError::BadBatch(b),
        other => PouwError::Engine(other.to_string()),
    })?;

    // A finite start and batch can still overflow; the end state is what the nonce and the
    // next iteration's start hash on.
    if !f32::from_bits(out.loss_bits).is_finite() {
        return Err(PouwError::NonFinite { field: "loss", index: 0 });
    }
    for (field, values) in [
        ("end_params", state.model().params()),
        ("end_residual", state.residual()),
        ("end_velocity", state.velocity()),
    ] {
        check_finite(field, values)?;
    }

    if out.map != w.map {
        return Err(PouwError::Map { claimed: w.map.len(), replayed: out.map.len() });
    }
    if out.loss_bits != w.loss {
        return Err(PouwError::Loss { claimed: w.loss, replayed: out.loss_bits });
    }
    if out.accuracy_bits != w.accuracy {
        return Err(PouwError::Accuracy { claimed: w.accuracy, replayed: out.accuracy_bits });
    }
    let cost = super::IterationCost::of(
        task,
        u64::try_from(batch.len()).unwrap_or(u64::MAX),
        u64::try_from(batch.byte_len()).unwrap_or(u64::MAX),
    );
    let budget = nonce_budget(spec, &cost);
    let precursor = nonce_precursor(
        &Hash(out.end_model_hash.0),
        // The engine's map hash of the replayed map (`map_hash` bit for bit), already computed.
        &Hash(out.map_hash.0),
        &Hash(out.end_residual_hash.0),
    );
    if nonce_index(&precursor, budget, &header.nonce).is_none() {
        return Err(PouwError::Nonce { budget });
    }
    Ok(state)
}

/// Values checked per step of [`finite_copy`] and [`check_finite`]: small enough to stay in L1
/// between the check and the copy, large enough for the check to run vectorised.
const FINITE_CHUNK: usize = 256;

/// [`PouwError::NonFinite`] naming the first NaN or infinity in `values`, if any.
fn check_finite(field: &'static str, values: &[f32]) -> Result<(), PouwError> {
    for (chunk_index, chunk) in values.chunks(FINITE_CHUNK).enumerate() {
        non_finite_in(field, chunk_index, chunk)?;
    }
    Ok(())
}

/// A copy of `values` (proof data `field`), refused with [`PouwError::NonFinite`] if any value
/// is NaN or infinite: one pass over the data, chunk by chunk (check, then copy while the chunk
/// is in cache), instead of a copy and a separate scan.
fn finite_copy(field: &'static str, values: &[f32]) -> Result<Vec<f32>, PouwError> {
    let mut out = Vec::with_capacity(values.len());
    for (chunk_index, chunk) in values.chunks(FINITE_CHUNK).enumerate() {
        non_finite_in(field, chunk_index, chunk)?;
        out.extend_from_slice(chunk);
    }
    Ok(out)
}

/// Checks chunk `chunk_index` of `field`: a branch-free fold (which vectorises) and, only when
/// it fails, a search for the position to report.
fn non_finite_in(field: &'static str, chunk_index: usize, chunk: &[f32]) -> Result<(), PouwError> {
    if chunk.iter().fold(true, |ok, v| ok & v.is_finite()) {
        return Ok(());
    }
    let within = chunk.iter().position(|v| !v.is_finite()).unwrap_or(0);
    let index = chunk_index.saturating_mul(FINITE_CHUNK).saturating_add(within);
    Err(PouwError::NonFinite { field, index })
}

/// [`check_proof_cheap`] then [`replay`].
pub fn verify_proof(
    spec: &ChainSpec,
    header: &Header,
    proof: &PouwProof,
    task: &TaskDefinition,
    data: &ProofData,
    exec: Exec,
) -> Result<(), PouwError> {
    check_proof_cheap(spec, header, proof, task)?;
    replay(spec, header, proof, task, data, exec)
}

/// The state key recording that the winning (task, miner, iteration) of `proof` has won.
pub fn used_iteration_key(proof: &PouwProof) -> StateKey {
    let w = &proof.winning.body;
    StateKey::UsedIteration { task: w.task_id, miner: w.miner, iteration: w.iteration }
}

/// "A (task, miner, iteration) wins at most once": fails if the block's winning iteration has
/// won before, records it otherwise. A state entry, so reverting the block with its undo data
/// frees it again. Blocks without a proof (genesis) record nothing.
pub fn mark_iteration_used(overlay: &mut Overlay<'_>, block: &Block) -> Result<(), PouwError> {
    let Some(proof) = block.proof.as_ref() else { return Ok(()) };
    let key = used_iteration_key(proof);
    if overlay.get(&key).is_some() {
        let w = &proof.winning.body;
        return Err(PouwError::IterationReused {
            task: w.task_id,
            miner: w.miner,
            iteration: w.iteration,
        });
    }
    overlay.set(key, Some(StateValue::Marker));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_copy_copies_or_names_the_first_non_finite_value() {
        let values: Vec<f32> = (0..1000u16).map(|i| f32::from(i) - 500.0).collect();
        assert_eq!(finite_copy("start_params", &values).unwrap(), values);
        assert_eq!(finite_copy("start_velocity", &[]).unwrap(), Vec::<f32>::new());
        // At chunk boundaries and inside chunks, NaN of any payload and both infinities.
        for (at, bad) in [
            (0, f32::NAN),
            (FINITE_CHUNK - 1, f32::INFINITY),
            (FINITE_CHUNK, f32::NEG_INFINITY),
            (999, f32::from_bits(0xffc0_0001)),
            (513, f32::from_bits(0x7f80_0001)), // a signalling NaN
        ] {
            let mut v = values.clone();
            v[at] = bad;
            v[999.min(at + 7)] = f32::NAN; // a later one is not reported
            let want = PouwError::NonFinite { field: "start_residual", index: at };
            assert_eq!(finite_copy("start_residual", &v), Err(want.clone()));
            assert_eq!(check_finite("start_residual", &v), Err(want));
        }
        // The extremes of the finite range pass.
        let edges = [f32::MAX, f32::MIN, f32::MIN_POSITIVE, -0.0, f32::from_bits(1)];
        assert_eq!(finite_copy("start_params", &edges).unwrap(), edges);
    }
}
