//! The extension point for the PoUW proof check.

use pouw_primitives::{Block, ChainSpec, Header};

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
    /// Checks `block`, whose parent is `parent`.
    fn validate(
        &self,
        block: &Block,
        parent: &Header,
        spec: &ChainSpec,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// The chain's default validator: adds nothing to the cheap checks (the nonce is only checked
/// against the target). Used until the PoUW proof check lands.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProofCheck;

impl BlockValidator for NoProofCheck {
    fn validate(
        &self,
        _block: &Block,
        _parent: &Header,
        _spec: &ChainSpec,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}
