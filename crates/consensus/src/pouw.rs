//! Proof-of-useful-work rules that need no replay: the nonce budget, nonce derivation and the
//! zero-nonce commitment (SPEC section 4).
//!
//! ```text
//! precursor = BLAKE3(end_model_hash || BLAKE3(message_map))
//! nonce_j   = BLAKE3(precursor || j as u64 little-endian),   0 <= j < a
//! a         = max(1, floor((omega_b_ppb * batch_bytes + omega_m_ppb * params) / 10^9))
//! ```
//! A miner may try only the `a` nonces its iteration yields, with the header it committed to
//! `k = spec.commitment_depth` iterations earlier.
//!
//! Submodules:
//! - `task`: task definition to ML specs ([`ml_specs`]), filler tasks ([`filler_task`]);
//! - `data`: the proof data a replay fetches ([`ProofData`]) and its content addresses;
//! - `verify`: [`check_proof_structure`], [`check_proof_cheap`], [`replay`], [`mark_iteration_used`];
//! - `mine`: the miner's nonce loop ([`mine_iteration`]);
//! - `schedule`: which batch an iteration must train ([`TaskSchedule`]) and who may send the
//!   peer messages it applies ([`check_peer_senders`]) (design/006);
//! - `error`: [`PouwError`], one variant per rule.

mod data;
mod error;
mod mine;
mod schedule;
mod task;
mod verify;

pub use data::{batch_hash_of, model_hash_of, residual_hash_of, ProofData, ProofDataKeys};
pub use error::PouwError;
pub use mine::{iteration_body, mine_iteration};
pub use schedule::{check_peer_senders, scheduled_position, Handover, TaskSchedule};
pub use task::{
    filler_epoch, filler_epoch_opening_height, filler_task, filler_task_id, ml_specs,
    shipped_segment_hashes, FILLER_BATCH, FILLER_EPOCHS, FILLER_HIDDEN, FILLER_LEARNING_RATE,
    FILLER_TAU,
};
pub use verify::{
    check_proof_cheap, check_proof_structure, mark_iteration_used, proof_of, replay,
    used_iteration_key, verify_proof,
};

use pouw_primitives::{ChainSpec, Hash, Header, IterationMessage};

/// Parts-per-billion denominator of omega_b and omega_m.
const PPB: u128 = 1_000_000_000;

/// Largest nonce budget any iteration gets (bounds the verifier's work whatever the spec says).
pub const MAX_NONCE_BUDGET: u64 = 1 << 20;

/// The number of nonces `a` one iteration yields.
pub fn nonce_budget(spec: &ChainSpec, batch_bytes: u64, params: u64) -> u64 {
    let weighted = u128::from(spec.omega_b_ppb)
        .saturating_mul(u128::from(batch_bytes))
        .saturating_add(u128::from(spec.omega_m_ppb).saturating_mul(u128::from(params)));
    let a = u64::try_from(weighted / PPB).unwrap_or(u64::MAX);
    a.clamp(1, MAX_NONCE_BUDGET)
}

/// The nonce precursor of an iteration.
pub fn nonce_precursor(end_model_hash: &Hash, map_hash: &Hash) -> Hash {
    Hash::concat(&[end_model_hash.as_bytes(), map_hash.as_bytes()])
}

/// The `j`-th nonce of an iteration.
pub fn nonce_at(precursor: &Hash, j: u64) -> Hash {
    Hash::concat(&[precursor.as_bytes(), &j.to_le_bytes()])
}

/// The index `j < a` at which `nonce` was derived, if any.
pub fn nonce_index(precursor: &Hash, a: u64, nonce: &Hash) -> Option<u64> {
    (0..a).find(|&j| nonce_at(precursor, j) == *nonce)
}

/// Why a commitment does not cover a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitmentError {
    /// The committing message is by another miner or for another task.
    #[error("the committing message is by another miner or for another task")]
    WrongOwner,
    /// The committing message is not exactly k iterations before the winning one.
    #[error("commitment made at iteration {committed_at}, expected {expected}")]
    WrongDepth {
        /// Iteration of the committing message.
        committed_at: u64,
        /// Iteration it should have been made at.
        expected: u64,
    },
    /// The committed hash is not this header's zero-nonce hash (another header, another tip).
    #[error("committed to {committed}, the header's zero-nonce hash is {actual}")]
    HashMismatch {
        /// What was committed.
        committed: Hash,
        /// What the header gives.
        actual: Hash,
    },
}

/// Checks that `committing` (the miner's message k iterations before `winning`) committed to
/// `header`. Signatures are checked by the caller.
pub fn check_commitment(
    spec: &ChainSpec,
    header: &Header,
    winning: &IterationMessage,
    committing: &IterationMessage,
) -> Result<(), CommitmentError> {
    let (w, c) = (&winning.body, &committing.body);
    if c.miner != w.miner || c.task_id != w.task_id {
        return Err(CommitmentError::WrongOwner);
    }
    let expected = w.iteration.checked_sub(u64::from(spec.commitment_depth));
    if expected != Some(c.iteration) {
        return Err(CommitmentError::WrongDepth {
            committed_at: c.iteration,
            expected: expected.unwrap_or(0),
        });
    }
    let actual = header.zero_nonce_hash();
    if c.commitment != actual {
        return Err(CommitmentError::HashMismatch { committed: c.commitment, actual });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_floored_and_at_least_one() {
        let mut spec = ChainSpec::devnet();
        spec.omega_b_ppb = 0;
        spec.omega_m_ppb = 0;
        assert_eq!(nonce_budget(&spec, 1 << 20, 1 << 20), 1);
        spec.omega_b_ppb = 1_000; // 1e-6 per byte
        spec.omega_m_ppb = 10_000; // 1e-5 per parameter
                                   // 32 x 784 f32 features + labels ~ 100 kB; 101,770 parameters
        let a = nonce_budget(&spec, 100_480 + 128 + 8, 101_770);
        assert_eq!(a, (1_000 * 100_616 + 10_000 * 101_770) / 1_000_000_000);
        spec.omega_m_ppb = u64::MAX;
        assert_eq!(nonce_budget(&spec, u64::MAX, u64::MAX), MAX_NONCE_BUDGET);
    }

    #[test]
    fn nonces_are_found_only_below_the_budget() {
        let p = nonce_precursor(&Hash::digest(b"model"), &Hash::digest(b"map"));
        let n3 = nonce_at(&p, 3);
        assert_eq!(nonce_index(&p, 4, &n3), Some(3));
        assert_eq!(nonce_index(&p, 3, &n3), None);
        assert_ne!(nonce_at(&p, 0), nonce_at(&p, 1));
        let q = nonce_precursor(&Hash::digest(b"model"), &Hash::digest(b"map2"));
        assert_eq!(nonce_index(&q, 4, &n3), None);
    }
}
