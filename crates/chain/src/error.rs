//! Import errors.

use pouw_consensus::ConsensusError;
use pouw_primitives::{CompactTarget, Hash, SignatureError, Timestamp};
use pouw_storage::StorageError;

/// Why a block is invalid. Each rule has its own variant.
///
/// Peer scoring: unless noted, every variant is provable from the block and its ancestors
/// alone, so the peer that sent the block sent invalid data (ban-worthy). See
/// [`BlockError::is_peer_fault`], the one place that decides it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// Unknown header version.
    #[error("header version {got}, expected {expected}")]
    BadVersion {
        /// Supported version.
        expected: u32,
        /// The header's.
        got: u32,
    },
    /// Height is not the parent's plus one.
    #[error("height {got}, expected {expected}")]
    BadHeight {
        /// Parent height + 1.
        expected: u64,
        /// The header's.
        got: u64,
    },
    /// Timestamp not after the median of the last 11 blocks.
    #[error("timestamp {timestamp:?} is not after the median time past {median:?}")]
    TimestampTooOld {
        /// The header's.
        timestamp: Timestamp,
        /// Median of the last 11 ancestors' timestamps.
        median: Timestamp,
    },
    /// Timestamp too far ahead of the local clock.
    ///
    /// Peer scoring: not a fault (clocks differ); the block may become valid later.
    #[error("timestamp {timestamp:?} is after the latest allowed {max:?}")]
    TimestampInFuture {
        /// The header's.
        timestamp: Timestamp,
        /// Local now + `max_future_ms`.
        max: Timestamp,
    },
    /// Target differs from the retarget rule.
    #[error("target {got}, the retarget rule gives {expected}")]
    BadTarget {
        /// Rule output.
        expected: CompactTarget,
        /// The header's.
        got: CompactTarget,
    },
    /// The header hash does not meet its target.
    #[error("header hash {hash} does not meet target {target}")]
    InsufficientWork {
        /// Header hash.
        hash: Hash,
        /// Target.
        target: CompactTarget,
    },
    /// Encoded block too large.
    #[error("block is {size} bytes, over the limit of {max}")]
    TooLarge {
        /// Encoded size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// Too many transactions.
    #[error("block has {count} transactions, over the limit of {max}")]
    TooManyTxs {
        /// Count.
        count: u64,
        /// Limit.
        max: u64,
    },
    /// `tx_root` does not match the transactions.
    #[error("tx_root {got}, transactions give {expected}")]
    BadTxRoot {
        /// Computed.
        expected: Hash,
        /// The header's.
        got: Hash,
    },
    /// The miner signature does not verify.
    #[error("bad miner signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The [`BlockValidator`](crate::BlockValidator) rejected the block (PoUW proof).
    #[error("proof rejected: {0}")]
    Proof(Box<dyn std::error::Error + Send + Sync>),
    /// A transaction or the coinbase broke a state-transition rule.
    #[error("execution failed: {0}")]
    Execution(#[from] ConsensusError),
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
        !matches!(self, Self::TimestampInFuture { .. })
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
    /// The database failed; the node must stop.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ChainError {
    pub(crate) fn invalid(hash: Hash, error: impl Into<BlockError>) -> Self {
        Self::Invalid { hash, error: Box::new(error.into()) }
    }

    /// The block error, if this is [`ChainError::Invalid`].
    pub fn block_error(&self) -> Option<&BlockError> {
        match self {
            Self::Invalid { error, .. } => Some(error),
            _ => None,
        }
    }
}
