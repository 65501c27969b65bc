//! The extension point for the PoUW proof check.

use pouw_primitives::{Block, ChainSpec, Header};

/// An extra block check the chain runs on every new block after the cheap header and body
/// checks (version, height, timestamps, target, PoW, size, tx root, miner signature) and before
/// the block is stored or executed.
///
/// The PoUW issue implements this to verify the iteration message behind the nonce (replaying
/// the training step, checking `msg_hash`, `msg_history_root` and the used-iteration index). A
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
