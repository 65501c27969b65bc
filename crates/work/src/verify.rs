//! Re-verification of a stored chain from genesis, replays included (as `bitcoind
//! -checkblocks` or `reth db` checks do): the operator's proof that every stored block holds.

use pouw_chain::{Ancestors, Chain, PouwValidator};
use pouw_consensus::{
    apply_block, check_block_body, check_header, check_state_root, genesis_state, HeaderContext,
    MEDIAN_TIME_SPAN,
};
use pouw_ml::Exec;
use pouw_primitives::{Hash, Timestamp};
use pouw_storage::ProofStore;
use std::sync::Arc;

/// One block that failed re-verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    /// Height.
    pub height: u64,
    /// Block hash.
    pub hash: Hash,
    /// What failed.
    pub error: String,
}

/// The result of [`verify_chain`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blocks of the canonical chain above genesis.
    pub blocks: u64,
    /// Blocks that passed every check.
    pub verified: u64,
    /// The first block that failed (the ones above it build on it and are not checked).
    pub failed: Vec<VerifyFailure>,
}

struct Prefix<'a>(&'a [Hash]);

impl Ancestors for Prefix<'_> {
    fn hash_at(&self, height: u64) -> Option<Hash> {
        usize::try_from(height).ok().and_then(|h| self.0.get(h)).copied()
    }
}

/// Re-verifies every block of `chain`'s canonical chain from genesis: header rules (target,
/// timestamps, PoW), body rules, the PoUW proof (cheap checks and the bit-exact replay from
/// `proofs`), and the state transition against a state rebuilt from genesis. `progress` is
/// called after each block.
pub fn verify_chain(
    chain: &Chain,
    proofs: Arc<ProofStore>,
    exec: Exec,
    mut progress: impl FnMut(u64),
) -> VerifyReport {
    let spec = chain.spec();
    let validator = PouwValidator::new(proofs, exec);
    let canonical = chain.canonical().to_vec();
    let mut report = VerifyReport::default();
    let mut state = match genesis_state(spec) {
        Ok(s) => s,
        Err(e) => {
            report.failed.push(VerifyFailure { height: 0, hash: Hash::ZERO, error: e.to_string() });
            return report;
        }
    };
    report.blocks = canonical.len().saturating_sub(1) as u64;
    let now = Timestamp(u64::MAX / 2); // stored blocks were checked against their own time
    for (i, hash) in canonical.iter().enumerate().skip(1) {
        let height = i as u64;
        let fail = |error: String| VerifyFailure { height, hash: *hash, error };
        let result = (|| -> Result<(), String> {
            let block = chain.block(hash).map_err(|e| e.to_string())?.ok_or("block missing")?;
            let parent = chain.header(&block.header.prev_hash).ok_or("parent missing")?.clone();
            let ancestors: Vec<_> = canonical[..i]
                .iter()
                .rev()
                .take(MEDIAN_TIME_SPAN)
                .rev()
                .filter_map(|h| chain.header(h).map(|h| h.timestamp))
                .collect();
            let ctx = HeaderContext {
                spec,
                now,
                ancestor_timestamps: &ancestors,
                expected_target: chain.expected_target(&parent).map_err(|e| e.to_string())?,
            };
            check_header(&block.header, &parent, &ctx).map_err(|e| e.to_string())?;
            check_block_body(&block, spec).map_err(|e| e.to_string())?;
            pouw_chain::BlockValidator::validate_in_chain(&validator, &block, &parent, chain)
                .map_err(|e| e.to_string())?;
            pouw_chain::BlockValidator::validate(
                &validator,
                &block,
                &parent,
                spec,
                &Prefix(&canonical[..i]),
            )
            .map_err(|e| e.to_string())?;
            let diff = apply_block(&state, &block, spec).map_err(|e| e.to_string())?;
            check_state_root(&block.header, &diff).map_err(|e| e.to_string())?;
            state.apply_diff(&diff);
            Ok(())
        })();
        match result {
            Ok(()) => report.verified += 1,
            Err(e) => {
                report.failed.push(fail(e));
                break; // later blocks build on state this one did not produce
            }
        }
        progress(height);
    }
    report
}
