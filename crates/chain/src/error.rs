//! Import errors.

use pouw_consensus::ConsensusError;
use pouw_primitives::Hash;
use pouw_storage::StorageError;

/// Why a block is invalid. Each rule has its own variant.
///
/// Peer scoring: unless noted, every variant is provable from the block and its ancestors
/// alone, so the peer that sent the block sent invalid data (ban-worthy). See
/// [`BlockError::is_peer_fault`], the one place that decides it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// A consensus rule from `pouw-consensus`: a header rule (version, height, parent hash,
    /// target, timestamps, proof of work), a body rule (transaction count, size, height,
    /// miner signature, tx root) or the state transition (a transaction or the coinbase).
    ///
    /// Peer scoring: a fault unless [`ConsensusError::may_become_valid`] (a timestamp from
    /// the near future: clocks differ and the block may become valid later).
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
    /// The [`BlockValidator`](crate::BlockValidator) rejected the block (PoUW proof).
    #[error("proof rejected: {0}")]
    Proof(Box<dyn std::error::Error + Send + Sync>),
    /// The header's `state_root` differs from the state after execution.
    #[error("state_root {got}, execution gives {expected}")]
    BadStateRoot {
        /// Computed.
        expected: Hash,
        /// The header's.
        got: Hash,
    },
    /// The block descends from an invalid block.
    #[error("descends from invalid block {0}")]
    InvalidAncestor(Hash),
}

impl BlockError {
    /// True if a peer that relayed a block failing this way sent invalid data.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            Self::Consensus(e) => !e.may_become_valid(),
            // The PoUW validator's own "cannot check it here now" errors are not faults.
            Self::Proof(e) => e
                .downcast_ref::<crate::ProofCheckError>()
                .is_none_or(crate::ProofCheckError::is_fault),
            Self::BadStateRoot { .. } | Self::InvalidAncestor(_) => true,
        }
    }
}

/// Why [`Chain`](crate::Chain) could not import a block or answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A block is invalid: the one imported, or an ancestor executed while switching to its
    /// branch. The node stays on (or returns to) the best valid chain.
    #[error("block {hash} is invalid: {error}")]
    Invalid {
        /// The block that broke the rule.
        hash: Hash,
        /// The rule.
        #[source]
        error: Box<BlockError>,
    },
    /// The parent is unknown (the block is kept in the orphan pool, if there is room).
    #[error("block {hash} has unknown parent {parent}")]
    UnknownParent {
        /// Block.
        hash: Hash,
        /// Its parent.
        parent: Hash,
    },
    /// The block was already found invalid.
    #[error("block {0} is known to be invalid")]
    KnownInvalid(Hash),
    /// The block is already stored (from [`Chain::admit`](crate::Chain::admit); an import of
    /// it is [`ImportOutcome::AlreadyKnown`](crate::ImportOutcome::AlreadyKnown)).
    #[error("block {0} is already stored")]
    Known(Hash),
    /// The database failed; the node must stop.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ChainError {
    pub(crate) fn invalid(hash: Hash, error: impl Into<BlockError>) -> Self {
        Self::Invalid { hash, error: Box::new(error.into()) }
    }

    /// True if this proves the block's sender wrong (an invalid block); false for blocks that
    /// cannot be checked yet and for local failures.
    pub fn is_peer_fault(&self) -> bool {
        match self {
            Self::Invalid { error, .. } => error.is_peer_fault(),
            _ => false,
        }
    }

    /// The database failure behind this error, if there is one (the chain's database, or the
    /// proof store the block validator read), else the error itself. A database failure is
    /// fatal for the owner: nothing was committed by the failing call, and the database must
    /// be reopened.
    pub fn into_storage_error(self) -> Result<StorageError, Self> {
        match self {
            Self::Storage(e) => Ok(e),
            Self::Invalid { hash, error } => match *error {
                BlockError::Proof(e) => match e.downcast::<crate::ProofCheckError>() {
                    Ok(p) => match *p {
                        crate::ProofCheckError::Storage(e) => Ok(e),
                        other => Err(Self::invalid(hash, BlockError::Proof(Box::new(other)))),
                    },
                    Err(e) => Err(Self::invalid(hash, BlockError::Proof(e))),
                },
                other => Err(Self::Invalid { hash, error: Box::new(other) }),
            },
            other => Err(other),
        }
    }

    /// The block error, if this is [`ChainError::Invalid`].
    pub fn block_error(&self) -> Option<&BlockError> {
        match self {
            Self::Invalid { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProofCheckError;

    #[test]
    fn proof_errors_that_only_say_not_yet_are_not_faults() {
        let missing = BlockError::Proof(Box::new(ProofCheckError::MissingData(Hash::ZERO)));
        assert!(!missing.is_peer_fault());
        let unknown = BlockError::Proof(Box::new(ProofCheckError::UnknownTask {
            task: Hash::ZERO,
            filler: Hash::ZERO,
        }));
        assert!(unknown.is_peer_fault());
        assert!(!ChainError::invalid(Hash::ZERO, missing).is_peer_fault());
        assert!(ChainError::invalid(Hash::ZERO, unknown).is_peer_fault());
    }
}
