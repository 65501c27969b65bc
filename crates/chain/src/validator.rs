//! The extension point for the PoUW proof check.

use pouw_primitives::{Block, ChainSpec, Hash, Header};

/// An extra block check the chain runs on every new block after the cheap header and body
/// checks (`pouw_consensus::check_header` and `check_block_body`: version, height, timestamps,
/// target, PoW, size, tx root, miner signature) and before the block is stored or executed.
///
/// This is where the PoUW proof is verified: the proof's presence and binding to the header
/// (`pouw_consensus::pouw::check_proof_structure`, or `check_proof_cheap` once the task is
/// resolved), then the replay of the training step. The body checks no longer look at
/// `block.proof`, so a validator that skips this accepts blocks without one. A
/// rejection marks nothing: the block is simply refused with
/// [`BlockError::Proof`](crate::BlockError::Proof), which scores the relaying peer.
///
/// Implementations must be deterministic (every node must agree) and must not panic on
/// untrusted input. They run on the importing thread; an expensive check should be
/// parallelised inside.
pub trait BlockValidator: Send + Sync + std::fmt::Debug {
    /// Checks `block`, whose parent is `parent`; `ancestors` gives the hash of the block's
    /// ancestor at a height (at most `parent.height`) on the block's own branch.
    fn validate(
        &self,
        block: &Block,
        parent: &Header,
        spec: &ChainSpec,
        ancestors: &dyn Ancestors,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// The chain's filler states (design/016), if this validator replays blocks.
    fn filler_states(&self) -> Option<&crate::FillerStates> {
        None
    }

    /// Checks of `block` that need the chain itself (headers and stored blocks of the block's
    /// branch), run before [`BlockValidator::validate`]: the PoUW validator's filler-start rule.
    fn validate_in_chain(
        &self,
        _block: &Block,
        _parent: &Header,
        _chain: &crate::Chain,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

/// Lookup of a block's ancestors on its own branch (side branches included).
pub trait Ancestors {
    /// The hash of the ancestor at `height`, if `height` is at most the parent's height.
    fn hash_at(&self, height: u64) -> Option<Hash>;
}

/// A validator that adds nothing to the cheap checks (the nonce is only checked against the
/// target): for tests of the ledger and the chain that build blocks without training. A node
/// runs [`PouwValidator`](crate::PouwValidator).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProofCheck;

impl BlockValidator for NoProofCheck {
    fn validate(
        &self,
        _block: &Block,
        _parent: &Header,
        _spec: &ChainSpec,
        _ancestors: &dyn Ancestors,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}
