//! Proof-of-useful-work rules that need no replay: the nonce budget, nonce derivation and the
//! zero-nonce commitment (SPEC section 4).
//!
//! ```text
//! precursor = BLAKE3(end_model_hash || BLAKE3(message_map) || end_residual_hash)
//! nonce_j   = BLAKE3(precursor || j as u64 little-endian),   0 <= j < a
//! a         = min(2^20, floor((omega_i_ppb + omega_b_ppb * batch_bytes + omega_m_ppb * params
//!                              + omega_f_ppb * flops) / 10^9))
//! ```
//! A miner may try only the `a` nonces its iteration yields, with the header it committed to
//! `k = spec.commitment_depth` iterations earlier. There is no floor: an iteration whose cost
//! rounds to 0 nonces cannot mine, and a client task whose full batch earns fewer than
//! `spec.min_task_nonces` is refused at its PayForTask ([`task_nonce_budget`],
//! design/010).
//!
//! Submodules:
//! - `task`: task definition to ML specs ([`ml_specs`]), filler tasks ([`filler_task`]);
//! - `data`: the proof data a replay fetches ([`ProofData`]) and its content addresses;
//! - `verify`: [`check_proof_structure`], [`check_proof_cheap`], [`replay`] ([`replay_end`]), [`mark_iteration_used`];
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
pub use schedule::{
    check_peer_senders, max_sample_proofs, scheduled_position, segment_len, Handover, TaskSchedule,
};
pub use task::{
    filler_epoch, filler_epoch_opening_height, filler_task, filler_task_id, ml_specs,
    ml_update_rule, shipped_segment_hashes, FILLER_BATCH, FILLER_EPOCHS, FILLER_HIDDEN,
    FILLER_LEARNING_RATE, FILLER_TAU,
};
pub use verify::{
    check_proof_cheap, check_proof_structure, mark_iteration_used, proof_of, replay, replay_end,
    used_iteration_key, verify_proof,
};

use pouw_primitives::{ChainSpec, Hash, Header, IterationMessage, TaskDefinition};

/// Parts-per-billion denominator of omega_b and omega_m.
const PPB: u128 = 1_000_000_000;

/// Largest nonce budget any iteration gets (bounds the verifier's work whatever the spec says).
pub const MAX_NONCE_BUDGET: u64 = 1 << 20;

/// What one iteration costs, in the units the nonce budget prices: the canonical batch bytes,
/// the model's parameters and the training FLOPs of the batch (forward and backward).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IterationCost {
    /// `pouw_ml::Batch::byte_len` of the batch.
    pub batch_bytes: u64,
    /// Parameters of the model.
    pub params: u64,
    /// Training FLOPs of the batch ([`iteration_flops`] per sample times its rows).
    pub flops: u64,
}

impl IterationCost {
    /// The cost of an iteration of `task` on a batch of `rows` samples of `batch_bytes` bytes.
    /// Saturates on absurd shapes (they fail validation).
    pub fn of(task: &TaskDefinition, rows: u64, batch_bytes: u64) -> Self {
        let batch = u64::from(task.optimizer.batch_size).max(1);
        let per_sample = iteration_flops(task).checked_div(batch).unwrap_or(0);
        Self {
            batch_bytes,
            params: task.parameter_count().unwrap_or(u64::MAX),
            flops: per_sample.saturating_mul(rows),
        }
    }
}

/// The number of nonces `a` one iteration yields: its weighted cost, rounded down, with no
/// floor (0 for an iteration too cheap to mine) and capped at [`MAX_NONCE_BUDGET`]:
/// `floor((omega_i + omega_b * bytes + omega_m * params + omega_f * flops) / 10^9)`, the
/// weights in parts per billion of a nonce. The weights price the measured CPU time of an
/// honest PoUW iteration (design/010, "The budget follows the time"), so that every shape a
/// task may take buys its nonces at about the same CPU cost.
pub fn nonce_budget(spec: &ChainSpec, cost: &IterationCost) -> u64 {
    let term = |w: u64, x: u64| u128::from(w).saturating_mul(u128::from(x));
    let weighted = u128::from(spec.omega_i_ppb)
        .saturating_add(term(spec.omega_b_ppb, cost.batch_bytes))
        .saturating_add(term(spec.omega_m_ppb, cost.params))
        .saturating_add(term(spec.omega_f_ppb, cost.flops));
    let a = u64::try_from(weighted / PPB).unwrap_or(u64::MAX);
    a.min(MAX_NONCE_BUDGET)
}

/// `batch_bytes` of a full batch of `task`: `8 + 4 * batch * (width + 1)` (the canonical
/// encoding of `batch_size` samples of `width = prod(input_shape)` f32 features and a u32
/// label, as `pouw_ml::Batch::byte_len`). Saturates on absurd shapes (they fail validation).
pub fn full_batch_bytes(task: &TaskDefinition) -> u64 {
    let width =
        task.model.input_shape.iter().fold(1u64, |acc, &d| acc.saturating_mul(u64::from(d)));
    let batch = u64::from(task.optimizer.batch_size);
    batch.saturating_mul(width.saturating_add(1)).saturating_mul(4).saturating_add(8)
}

/// Training FLOPs of one iteration of `task` on a full batch: forward and backward,
/// `2 * batch * macs` each, where `macs` are the multiply-accumulates of one sample's forward
/// products (dense: `in * out`; conv2d: `out_positions * filters * C * k * k`, the im2col
/// product; `TaskDefinition::model_cost`). Biases, activations, pooling and the update are left
/// out, so this undercounts the iteration's work. Saturates on absurd shapes (0 for a model
/// whose layers do not fit, which fails validation).
pub fn iteration_flops(task: &TaskDefinition) -> u64 {
    let macs = task.model_cost().map_or(0, |c| c.forward_macs);
    // Two passes of 2 FLOPs (a multiply and an add) per multiply-accumulate per sample.
    macs.saturating_mul(u64::from(task.optimizer.batch_size)).saturating_mul(4)
}

/// The nonce budget of one iteration of `task` on a full batch: what the minimum task cost
/// (`spec.min_task_nonces`) is checked against. A shorter last batch of an epoch may earn
/// less.
pub fn task_nonce_budget(spec: &ChainSpec, task: &TaskDefinition) -> u64 {
    let rows = u64::from(task.optimizer.batch_size);
    nonce_budget(spec, &IterationCost::of(task, rows, full_batch_bytes(task)))
}

/// The nonce precursor of an iteration: its end model hash, map hash and end residual hash.
///
/// The end residual hash is there for the binding of the iteration to the header it mines
/// (design/010): the header's zero-nonce hash seeds the order of the first layer's reduction
/// (`pouw_ml::InputOrder`), which changes the rounding of the gradient. The end model moves in
/// whole steps of `lr * tau` and rarely shows it; the residual keeps every bit of the gradient
/// and always does. So every header a miner tries needs its own iteration to get its nonces.
pub fn nonce_precursor(end_model_hash: &Hash, map_hash: &Hash, end_residual_hash: &Hash) -> Hash {
    Hash::concat(&[end_model_hash.as_bytes(), map_hash.as_bytes(), end_residual_hash.as_bytes()])
}

/// The order seed of an iteration that mines `header`: its zero-nonce hash, which the
/// committing message commits to. The iteration's first-layer reduction runs in the order it
/// draws (`pouw_ml::TrainState::iterate_bound`), so another header needs another iteration.
pub fn order_seed(header: &Header) -> [u8; 32] {
    header.zero_nonce_hash().0
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

    fn cost(batch_bytes: u64, params: u64, flops: u64) -> IterationCost {
        IterationCost { batch_bytes, params, flops }
    }

    #[test]
    fn budget_is_floored_with_no_minimum() {
        let mut spec = ChainSpec::devnet();
        spec.omega_i_ppb = 0;
        // A cost under 10^9 ppb earns no nonce at all.
        assert_eq!(nonce_budget(&spec, &cost(0, 0, 0)), 0);
        assert_eq!(nonce_budget(&spec, &cost(296, 59, 1_000)), 0);
        spec.omega_i_ppb = 1_000_000_000;
        assert_eq!(nonce_budget(&spec, &cost(0, 0, 0)), 1);
        spec.omega_i_ppb = 0;
        spec.omega_b_ppb = 0;
        spec.omega_m_ppb = 0;
        spec.omega_f_ppb = 0;
        assert_eq!(nonce_budget(&spec, &cost(1 << 20, 1 << 20, 1 << 30)), 0);
        spec.omega_b_ppb = 1_000; // 1e-6 per byte
        spec.omega_m_ppb = 10_000; // 1e-5 per parameter
        spec.omega_f_ppb = 100; // 1e-7 per FLOP
        let a = nonce_budget(&spec, &cost(100_616, 101_770, 13_008_896));
        assert_eq!(a, (1_000 * 100_616 + 10_000 * 101_770 + 100 * 13_008_896) / 1_000_000_000);
        spec.omega_m_ppb = u64::MAX;
        assert_eq!(nonce_budget(&spec, &cost(u64::MAX, u64::MAX, u64::MAX)), MAX_NONCE_BUDGET);
    }

    #[test]
    fn task_budgets_of_the_shipped_tasks() {
        let spec = ChainSpec::devnet();
        // The filler task: 784-64-10, batch 32 (design/010's cost table): 17.38 units of 10 us.
        let (_, filler) = filler_task(&spec, &Hash::digest(b"opening"));
        assert_eq!(full_batch_bytes(&filler), 100_488);
        assert_eq!(filler.parameter_count(), Some(50_890));
        let filler_flops = iteration_flops(&filler);
        assert_eq!(filler_flops, 4 * 32 * (784 * 64 + 64 * 10));
        assert_eq!(task_nonce_budget(&spec, &filler), 17);
        // tasks/devnet.toml: 784-128-10, batch 32: 30.2 units.
        let mut devnet = filler;
        devnet.model.layers = vec![
            pouw_primitives::LayerDef::Dense {
                units: 128,
                activation: pouw_primitives::Activation::Relu,
            },
            pouw_primitives::LayerDef::Dense {
                units: 10,
                activation: pouw_primitives::Activation::None,
            },
        ];
        assert_eq!(devnet.parameter_count(), Some(101_770));
        assert_eq!(task_nonce_budget(&spec, &devnet), 30);
        assert_eq!(iteration_flops(&devnet), 4 * 32 * (784 * 128 + 128 * 10));
        // A shorter batch costs less: half the rows, half the bytes and FLOPs.
        let half = IterationCost::of(&devnet, 16, 8 + 4 * 16 * 785);
        assert_eq!(half.flops, iteration_flops(&devnet) / 2);
        assert_eq!(nonce_budget(&spec, &half), 23);
        // Both spend more FLOPs per nonce than the devnet's `min_flops_per_nonce`, and earn
        // more than its `min_task_nonces`.
        assert!(filler_flops / 17 >= spec.min_flops_per_nonce);
        assert!(iteration_flops(&devnet) / 30 >= spec.min_flops_per_nonce);
        assert!(17 >= spec.min_task_nonces);
        // The property test's 4-8-3 task with batch 8 earns the fixed part only, under the
        // devnet's minimum task cost.
        let tiny = pouw_primitives::test_utils::valid_task(1);
        assert_eq!(full_batch_bytes(&tiny), 8 + 4 * 8 * 5);
        assert_eq!(task_nonce_budget(&spec, &tiny), 2);
        assert!(2 < spec.min_task_nonces);
    }

    #[test]
    fn nonces_are_found_only_below_the_budget() {
        let p =
            nonce_precursor(&Hash::digest(b"model"), &Hash::digest(b"map"), &Hash::digest(b"res"));
        let n3 = nonce_at(&p, 3);
        assert_eq!(nonce_index(&p, 4, &n3), Some(3));
        assert_eq!(nonce_index(&p, 3, &n3), None);
        assert_ne!(nonce_at(&p, 0), nonce_at(&p, 1));
        let q =
            nonce_precursor(&Hash::digest(b"model"), &Hash::digest(b"map2"), &Hash::digest(b"res"));
        assert_eq!(nonce_index(&q, 4, &n3), None);
    }
}
