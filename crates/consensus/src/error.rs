//! Consensus rule violations. Every variant names the rule broken.
//!
//! Peer scoring: every variant here is provable from the block or transaction alone (plus the
//! chain state it builds on), so a peer that relays a block failing with any of them sent
//! invalid data and may be banned; the chain maps errors to peer actions in one place.

use pouw_primitives::{Address, Amount, CodecError, Hash, SignatureError, TaskId};

/// A transaction or block broke a consensus rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusError {
    /// Signature check failed.
    #[error("bad signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The transaction is for another chain.
    #[error("transaction for chain {got}, this chain is {expected}")]
    WrongChain {
        /// This chain's id.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// The nonce is not the sender's next nonce.
    #[error("wrong nonce for {account}: expected {expected}, got {got}")]
    WrongNonce {
        /// Sender.
        account: Address,
        /// The account's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// Not enough balance.
    #[error("insufficient balance in {account}: has {balance}, needs {needed}")]
    InsufficientBalance {
        /// Account.
        account: Address,
        /// Its balance.
        balance: Amount,
        /// What was needed.
        needed: Amount,
    },
    /// A balance would exceed `u64`.
    #[error("balance of {0} would overflow")]
    BalanceOverflow(Address),
    /// An amount computation overflowed.
    #[error("amount overflow in {0}")]
    AmountOverflow(&'static str),
    /// The nonce counter would overflow.
    #[error("nonce of {0} would overflow")]
    NonceOverflow(Address),
    /// An amount that must be positive is zero.
    #[error("{0} must be positive")]
    ZeroAmount(&'static str),
    /// A transfer to oneself.
    #[error("transfer to the sender itself")]
    SelfTransfer,
    /// The task definition is invalid.
    #[error(transparent)]
    InvalidTask(#[from] pouw_primitives::TaskDefError),
    /// A task with this id exists already.
    #[error("task {0} already exists")]
    DuplicateTask(TaskId),
    /// No such task.
    #[error("unknown task {0}")]
    UnknownTask(TaskId),
    /// The ticket stake is below the minimum.
    #[error("ticket stake {stake} is below the minimum {min}")]
    StakeTooLow {
        /// Offered stake.
        stake: Amount,
        /// Chain minimum.
        min: Amount,
    },
    /// The ticket expiry is not in the allowed window.
    #[error("ticket expiry {expires_at} is outside ({height}, {max}]")]
    BadTicketExpiry {
        /// Requested expiry.
        expires_at: u64,
        /// Current height.
        height: u64,
        /// Latest allowed expiry.
        max: u64,
    },
    /// The sender may not do this for this task.
    #[error("{account} is not allowed to {action} for task {task}")]
    NotAuthorized {
        /// Who tried.
        account: Address,
        /// What.
        action: &'static str,
        /// Task.
        task: TaskId,
    },
    /// A transaction is malformed in a way not covered above.
    #[error("invalid {kind} transaction: {reason}")]
    InvalidTx {
        /// Transaction kind.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A transaction failed inside a block.
    #[error("transaction {index} ({id}) is invalid: {source}")]
    TxInBlock {
        /// Position in the block.
        index: usize,
        /// Transaction id.
        id: Hash,
        /// The rule broken.
        source: Box<Self>,
    },
    /// The same transaction appears twice in a block.
    #[error("transaction {0} appears twice in the block")]
    DuplicateTx(Hash),
    /// Too many transactions or bytes.
    #[error("block too large: {0}")]
    BlockTooLarge(String),
    /// Encoding problem.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The PoUW proof broke a rule (each variant documents its peer action: all ban).
    #[error(transparent)]
    Pouw(#[from] crate::pouw::PouwError),
}
