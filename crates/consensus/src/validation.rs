//! Block-level rules: the header against its parent, the body against the header, and the
//! state root against the state transition. Pure functions; the chain crate supplies the
//! parent, the ancestors' timestamps, the expected target ([`crate::next_target`]) and `now`.
//!
//! ```text
//! check_header        version, height, prev_hash, target, timestamp window, PoW   (no body)
//!   -> check_block_body  tx count, encoded size, height != 0, miner signature, tx_root
//!   -> [PoUW proof verification (crate::pouw): check_proof_structure / check_proof_cheap,
//!       replay; run by the caller, e.g. the chain's BlockValidator]
//!   -> apply_block       transactions and state transition (the expensive part)
//!   -> state root        header.state_root == diff.state_root
//! ```
//! [`validate_and_apply`] runs the whole pipeline, cheapest checks first, so no signature is
//! checked and no transaction executed for a block that fails a header rule.

use crate::{apply_block, ConsensusError, State, StateDiff};
use pouw_primitives::{
    meets_target, Block, ChainSpec, CompactTarget, Header, Timestamp, HEADER_VERSION,
};

/// How many ancestors' timestamps the median-time-past rule looks at.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// What [`check_header`] needs besides the header and its parent.
#[derive(Debug, Clone, Copy)]
pub struct HeaderContext<'a> {
    /// The chain spec.
    pub spec: &'a ChainSpec,
    /// The local clock.
    pub now: Timestamp,
    /// Timestamps of the most recent ancestors, oldest first, ending with the parent's; only
    /// the last [`MEDIAN_TIME_SPAN`] are used. Fewer near genesis; if empty, the parent's
    /// timestamp alone is used.
    pub ancestor_timestamps: &'a [Timestamp],
    /// The target the retarget rule gives for this height ([`crate::next_target`]).
    pub expected_target: CompactTarget,
}

/// The median of the last [`MEDIAN_TIME_SPAN`] timestamps (upper median for an even count);
/// `None` for an empty slice.
pub fn median_time_past(timestamps: &[Timestamp]) -> Option<Timestamp> {
    let skip = timestamps.len().saturating_sub(MEDIAN_TIME_SPAN);
    let mut last: Vec<Timestamp> = timestamps.iter().skip(skip).copied().collect();
    last.sort_unstable();
    last.get(last.len() / 2).copied()
}

/// Checks a header against its parent, cheapest rule first: version, `msg_history_root` zero
/// (reserved), height, prev_hash,
/// target, timestamp after the median time past and not too far in the future, then the
/// proof of work (`meets_target(header.hash(), target)`). Does not look at the body.
pub fn check_header(
    header: &Header,
    parent: &Header,
    ctx: &HeaderContext<'_>,
) -> Result<(), ConsensusError> {
    if header.version != HEADER_VERSION {
        return Err(ConsensusError::BadVersion { expected: HEADER_VERSION, got: header.version });
    }
    // Reserved: a free field would be one more header variant per iteration (design/010); the
    // task's message-history roots are in the state (MessageHistory transactions).
    if !header.msg_history_root.is_zero() {
        return Err(ConsensusError::NonZeroHistoryRoot(header.msg_history_root));
    }
    let expected_height =
        parent.height.checked_add(1).ok_or(ConsensusError::AmountOverflow("height"))?;
    if header.height != expected_height {
        return Err(ConsensusError::BadHeight { expected: expected_height, got: header.height });
    }
    let parent_hash = parent.hash();
    if header.prev_hash != parent_hash {
        return Err(ConsensusError::BadPrevHash { expected: parent_hash, got: header.prev_hash });
    }
    if header.target != ctx.expected_target {
        return Err(ConsensusError::WrongTarget {
            expected: ctx.expected_target,
            got: header.target,
        });
    }
    let median = median_time_past(ctx.ancestor_timestamps).unwrap_or(parent.timestamp);
    if header.timestamp <= median {
        return Err(ConsensusError::TimestampTooOld { timestamp: header.timestamp, median });
    }
    let max = Timestamp(ctx.now.millis().saturating_add(ctx.spec.max_future_ms));
    if header.timestamp > max {
        return Err(ConsensusError::TimestampInFuture { timestamp: header.timestamp, max });
    }
    let target = header.target.to_target().ok_or(ConsensusError::InvalidTarget(header.target))?;
    let hash = header.hash();
    if !meets_target(&hash, target) {
        return Err(ConsensusError::InsufficientWork { hash });
    }
    Ok(())
}

/// Checks a (non-genesis) block's body against its header: transaction count, encoded size,
/// height (0 is the genesis block, never imported: it is built from the spec), the miner's
/// signature over the header, then `tx_root` (hashing every transaction, the costliest check
/// here) and `attestation_root` (the attestations themselves are checked against the parent's
/// committee by [`apply_block`], design/011).
///
/// The PoUW proof (`block.proof`: presence, binding to the header, signatures, commitment,
/// replay) is the PoUW proof verification's job: [`crate::pouw::check_proof_structure`],
/// [`crate::pouw::check_proof_cheap`] and [`crate::pouw::replay`].
pub fn check_block_body(block: &Block, spec: &ChainSpec) -> Result<(), ConsensusError> {
    let count = block.transactions.len();
    if u64::try_from(count).map_or(true, |c| c > u64::from(spec.max_block_txs)) {
        return Err(ConsensusError::TooManyTransactions { count, max: spec.max_block_txs });
    }
    let size = u64::try_from(block.size()).unwrap_or(u64::MAX);
    if size > spec.max_block_bytes {
        return Err(ConsensusError::BlockTooLarge { size, max: spec.max_block_bytes });
    }
    if block.header.height == 0 {
        return Err(ConsensusError::GenesisHeight);
    }
    block.verify_signature().map_err(ConsensusError::BadMinerSignature)?;
    let tx_root = Block::compute_tx_root(&block.transactions);
    if tx_root != block.header.tx_root {
        return Err(ConsensusError::BadTxRoot { expected: tx_root, got: block.header.tx_root });
    }
    let attestation_root = Block::compute_attestation_root(&block.attestations);
    if attestation_root != block.header.attestation_root {
        return Err(ConsensusError::BadAttestationRoot {
            expected: attestation_root,
            got: block.header.attestation_root,
        });
    }
    Ok(())
}

/// Checks that the header commits to the state the block produces.
pub fn check_state_root(header: &Header, diff: &StateDiff) -> Result<(), ConsensusError> {
    if header.state_root != diff.state_root {
        return Err(ConsensusError::StateRootMismatch {
            header: header.state_root,
            computed: diff.state_root,
        });
    }
    Ok(())
}

/// The whole pipeline for a block on top of `parent` whose post-state is `state`:
/// [`check_header`], [`check_block_body`], [`crate::pouw::check_proof_structure`] (the proof's
/// presence and binding; the task-dependent checks and the replay stay the caller's),
/// [`apply_block`], [`check_state_root`]. Returns the
/// diff to store (with its undo data). `state` is never modified.
pub fn validate_and_apply(
    state: &State,
    block: &Block,
    parent: &Header,
    ctx: &HeaderContext<'_>,
) -> Result<StateDiff, ConsensusError> {
    check_header(&block.header, parent, ctx)?;
    check_block_body(block, ctx.spec)?;
    crate::pouw::check_proof_structure(block)?;
    let diff = apply_block(state, block, ctx.spec)?;
    check_state_root(&block.header, &diff)?;
    Ok(diff)
}
