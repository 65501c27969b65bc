//! The miner's side of the nonce: after every iteration, try the `a` nonces it yields with the
//! header committed to `k` iterations earlier.

use super::{nonce_at, nonce_precursor};
use pouw_primitives::{codec, meets_target, Hash, Header, Uint256};

/// Tag of the header hash (`Header::hash`).
const HEADER_TAG: &str = "pouw/header";

/// Tries the `budget` nonces of an iteration (`a = nonce_budget(spec, cost)`, the caller's) on
/// `committed_header` (the zero-nonce header committed `k` iterations earlier) with
/// `msg_hash = winning_id`; returns the first header whose hash meets `target`.
///
/// The iteration must have been run bound to that header: `TrainState::iterate_bound` with
/// `committed_header.zero_nonce_hash()` as its order seed (see [`super::order_seed`]); the
/// replay runs it so, and an iteration run in another order fails it.
///
/// The header is encoded once and the nonce overwritten in place (it is the last field of the
/// encoding), so the loop allocates nothing. The winning message must commit to zero (see
/// `PouwError::WinningCommitment`): build its body with `commitment = Hash::ZERO` to get
/// `winning_id`, and if this returns a header, publish that message.
pub fn mine_iteration(
    committed_header: &Header,
    winning_id: Hash,
    end_model_hash: Hash,
    map_hash: Hash,
    end_residual_hash: Hash,
    budget: u64,
    target: Uint256,
) -> Option<Header> {
    let a = budget;
    let precursor = nonce_precursor(&end_model_hash, &map_hash, &end_residual_hash);
    let mut header = committed_header.clone();
    header.msg_hash = winning_id;
    header.nonce = Hash::ZERO;
    let mut buf = codec::encode(&header);
    let nonce_at_offset = buf.len().checked_sub(32)?;
    for j in 0..a {
        let nonce = nonce_at(&precursor, j);
        buf.get_mut(nonce_at_offset..)?.copy_from_slice(nonce.as_bytes());
        if meets_target(&Hash::tagged(HEADER_TAG, &buf), target) {
            header.nonce = nonce;
            return Some(header);
        }
    }
    None
}

/// The iteration message body of one engine iteration (no peer messages, commitment zero: the
/// caller sets `peer_msgs` and, for a committing message, `commitment`).
pub fn iteration_body(
    task_id: pouw_primitives::TaskId,
    miner: pouw_primitives::PublicKey,
    epoch: u32,
    iteration: u64,
    out: &pouw_ml::IterationOutput,
) -> pouw_primitives::IterationBody {
    pouw_primitives::IterationBody {
        task_id,
        miner,
        epoch,
        iteration,
        batch_hash: Hash(out.batch_hash.0),
        start_model_hash: Hash(out.start_model_hash.0),
        start_residual_hash: Hash(out.start_residual_hash.0),
        peer_msgs: vec![],
        map: out.map.clone(),
        loss: out.loss_bits,
        accuracy: out.accuracy_bits,
        commitment: Hash::ZERO,
        order_seed: Hash::ZERO,
    }
}
