//! Consensus rule violations. Every variant names the rule broken.
//!
//! Peer scoring: every variant here is provable from the block or transaction alone (plus the
//! chain state it builds on), so a peer that relays a block failing with any of them sent
//! invalid data and may be banned; the chain maps errors to peer actions in one place. The
//! exceptions are listed by [`ConsensusError::may_become_valid`] (a block from the near future).
//! `InvalidChainSpec` and `BadRetargetWindow` are the local caller's fault, not the peer's.

use pouw_primitives::{
    Address, Amount, CodecError, CompactTarget, Hash, SignatureError, TaskId, Timestamp,
};

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
    /// The task's iteration earns fewer nonces than the chain's minimum task cost.
    #[error(
        "task too cheap: one iteration on a full batch earns {nonces} nonces, the chain's \
         minimum task cost is {min} (a larger model or batch)"
    )]
    TaskTooCheap {
        /// The nonce budget of a full batch (`pouw::task_nonce_budget`).
        nonces: u64,
        /// `spec.min_task_nonces`.
        min: u64,
    },
    /// The task's iteration spends fewer training FLOPs per nonce than the chain's minimum.
    #[error(
        "task too cheap: one iteration on a full batch spends {flops} FLOPs for {nonces} \
         nonces, the chain's minimum task cost is {min_per_nonce} FLOPs per nonce (more \
         hidden units, a larger batch or a smaller input)"
    )]
    TaskTooCheapPerNonce {
        /// Training FLOPs of a full batch (`pouw::iteration_flops`).
        flops: u64,
        /// The nonce budget of a full batch.
        nonces: u64,
        /// `spec.min_flops_per_nonce`.
        min_per_nonce: u64,
    },
    /// The task's first layer gives the order seed too few units to shuffle (design/010): a
    /// grinder could draw a second header with the same order cheaply and reuse one iteration.
    #[error(
        "the task's first layer has {units} units for the order seed to shuffle, at least {min} \
         are needed (a dense layer needs at least {min} inputs, a convolution {min} kernel taps)"
    )]
    TaskOrderTooSmall {
        /// Runs or taps of the first layer's reduction (`pouw_ml::Layout::order_units`).
        units: u64,
        /// `spec.min_order_units` (`pouw_ml::MIN_ORDER_UNITS` on the devnet).
        min: u64,
    },
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
    /// The task has been closed (its verdict was executed; a late vote also needs a held
    /// share and a block before the finalisation deadline), or it expired or was refused.
    #[error("task {0} is closed")]
    TaskClosed(TaskId),
    /// The record already exists (one message-history root per slot and supervisor, one model
    /// per miner).
    #[error("{what} for task {task} already recorded by {account}")]
    AlreadyRecorded {
        /// What was recorded twice.
        what: &'static str,
        /// Task.
        task: TaskId,
        /// Who.
        account: Address,
    },
    /// The miner was convicted on chain for this task (design/009): it may not mine the task,
    /// submit a model for it, or be accused again.
    #[error("miner {miner} was convicted on task {task}")]
    Convicted {
        /// Task.
        task: TaskId,
        /// The convicted miner.
        miner: Address,
    },
    /// A message-history slot beyond the last slot a task can have.
    #[error("message-history slot {slot} is out of range (slots are 0..{max})")]
    HistorySlotOutOfRange {
        /// The slot committed.
        slot: u32,
        /// [`crate::MAX_HISTORY_SLOTS`].
        max: u32,
    },
    /// An evaluator voted twice on one task.
    #[error("evaluator {evaluator} already voted on task {task}")]
    DoubleVote {
        /// Task.
        task: TaskId,
        /// Evaluator.
        evaluator: Address,
    },
    /// A verdict pays out more than the task's escrow.
    #[error("verdict pays {total}, escrow holds {escrow}")]
    PayoutsExceedEscrow {
        /// Sum of the payouts.
        total: Amount,
        /// The task's escrow.
        escrow: Amount,
    },
    /// An address appears twice in one list of a verdict.
    #[error("{list} lists {account} twice")]
    DuplicateInVerdict {
        /// `ranking`, `payouts` or `confiscations`.
        list: &'static str,
        /// The repeated address.
        account: Address,
    },
    /// No ticket with this id.
    #[error("unknown ticket {0}")]
    UnknownTicket(Hash),
    /// The task is not in the phase this transaction needs.
    #[error("cannot {action} for task {task}: it is {phase}")]
    WrongPhase {
        /// Task.
        task: TaskId,
        /// The task's phase ([`crate::TaskStatus::name`]).
        phase: &'static str,
        /// What was tried.
        action: &'static str,
    },
    /// A verdict names someone who was not selected for the task in that capacity.
    #[error("verdict's {list} names {account}, who is not a {expected} of task {task}")]
    NotAParticipant {
        /// `ranking`, `payouts` or `confiscations`.
        list: &'static str,
        /// Who.
        account: Address,
        /// What they should have been.
        expected: &'static str,
        /// Task.
        task: TaskId,
    },
    /// A verdict leaves out a miner convicted on chain (design/009) from its confiscations.
    #[error("verdict does not confiscate {0}, who was convicted on chain")]
    ConvictionNotConfiscated(Address),
    /// A verdict confiscates a seat whose fault is not proven on chain: only miners convicted on
    /// chain may be confiscated (design/013).
    #[error("verdict confiscates {0}, who is not convicted on chain")]
    UnprovenConfiscation(Address),
    /// A verdict ranks a miner that never submitted a model.
    #[error("verdict ranks {0}, who submitted no model")]
    RankedWithoutModel(Address),
    /// A verdict both ranks (pays) and confiscates a miner.
    #[error("verdict both ranks and confiscates {0}")]
    RankedAndConfiscated(Address),
    /// A verdict's payouts are not the by-rank split of the miners' pot.
    #[error("verdict payouts are not the by-rank split of the miners' pot {pot} (expected {expected:?})")]
    PayoutsNotByRank {
        /// The miners' pot (miners' share of the fee + confiscated stakes).
        pot: Amount,
        /// The payouts the ranking gives ([`crate::rank_payouts`]).
        expected: Vec<(Address, Amount)>,
    },
    /// A task's deadlines do not fit in a block height.
    #[error("task deadlines overflow the block height")]
    DeadlineOverflow,
    /// More transactions than the spec allows.
    #[error("block has {count} transactions, at most {max} allowed")]
    TooManyTransactions {
        /// Transactions in the block.
        count: usize,
        /// `spec.max_block_txs`.
        max: u32,
    },
    /// The encoded block is larger than the spec allows.
    #[error("block is {size} bytes, at most {max} allowed")]
    BlockTooLarge {
        /// Encoded size.
        size: u64,
        /// `spec.max_block_bytes`.
        max: u64,
    },
    /// Unknown header version.
    #[error("header version {got}, expected {expected}")]
    BadVersion {
        /// Supported version.
        expected: u32,
        /// Header's.
        got: u32,
    },
    /// `msg_history_root` is reserved and must be zero (design/010: no free header field).
    #[error("msg_history_root is {0}; it is reserved and must be zero")]
    NonZeroHistoryRoot(Hash),
    /// Height is not parent height + 1.
    #[error("header height {got}, expected {expected}")]
    BadHeight {
        /// Parent height + 1.
        expected: u64,
        /// Header's.
        got: u64,
    },
    /// `prev_hash` is not the parent's hash.
    #[error("header prev_hash {got}, parent is {expected}")]
    BadPrevHash {
        /// Parent's hash.
        expected: Hash,
        /// Header's.
        got: Hash,
    },
    /// Timestamp not after the median of the last 11 ancestors.
    #[error("timestamp {timestamp:?} is not after the median time past {median:?}")]
    TimestampTooOld {
        /// Header's.
        timestamp: Timestamp,
        /// Median of the ancestors' timestamps.
        median: Timestamp,
    },
    /// Timestamp too far ahead of the local clock. Not a provable fault: the block may become
    /// valid later (see [`ConsensusError::may_become_valid`]).
    #[error("timestamp {timestamp:?} is after the allowed {max:?}")]
    TimestampInFuture {
        /// Header's.
        timestamp: Timestamp,
        /// `now + spec.max_future_ms`.
        max: Timestamp,
    },
    /// The header's target is not what the retarget rule gives.
    #[error("header target {got}, expected {expected}")]
    WrongTarget {
        /// The rule's target.
        expected: CompactTarget,
        /// Header's.
        got: CompactTarget,
    },
    /// A compact target that does not expand to a valid target.
    #[error("invalid compact target {0}")]
    InvalidTarget(CompactTarget),
    /// The header hash does not meet its target.
    #[error("header hash {hash} does not meet the target")]
    InsufficientWork {
        /// The header hash.
        hash: Hash,
    },
    /// `attestation_root` does not commit to the block's attestations.
    #[error("attestation_root {got}, attestations give {expected}")]
    BadAttestationRoot {
        /// Computed.
        expected: Hash,
        /// Header's.
        got: Hash,
    },
    /// An attestation a block carries is not a payable attestation of its parent (design/011).
    #[error("attestation {index} of the block: {reason}")]
    BadAttestation {
        /// Position in the block.
        index: usize,
        /// The rule broken.
        reason: &'static str,
    },
    /// An attestation claim (ChallengeAttestation) is malformed or cannot be opened
    /// (design/017).
    #[error("attestation claim refused: {0}")]
    BadClaim(&'static str),
    /// A judge's vote (JudgeAttestation) is refused (design/017).
    #[error("judgement refused: {0}")]
    BadJudgement(&'static str),
    /// `tx_root` does not commit to the block's transactions.
    #[error("tx_root {got}, transactions give {expected}")]
    BadTxRoot {
        /// Computed.
        expected: Hash,
        /// Header's.
        got: Hash,
    },
    /// The miner's signature over the header does not verify.
    #[error("bad miner signature: {0}")]
    BadMinerSignature(SignatureError),
    /// A block at height 0: genesis is built from the spec, never imported.
    #[error("height 0 is the genesis block, built locally")]
    GenesisHeight,
    /// The header's `state_root` differs from the state after applying the block.
    #[error("state_root {header}, the block's state transition gives {computed}")]
    StateRootMismatch {
        /// Header's.
        header: Hash,
        /// Computed.
        computed: Hash,
    },
    /// The caller passed the wrong number of retarget-window timestamps (caller's fault).
    #[error("retarget needs {expected} timestamps, got {got}")]
    BadRetargetWindow {
        /// Needed.
        expected: usize,
        /// Given.
        got: usize,
    },
    /// A chain-spec parameter makes a rule impossible to evaluate (caller's fault).
    #[error("invalid chain spec: {0}")]
    InvalidChainSpec(&'static str),
    /// Encoding problem.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The PoUW proof broke a rule (each variant documents its peer action: all ban).
    #[error(transparent)]
    Pouw(#[from] crate::pouw::PouwError),
}

impl ConsensusError {
    /// True for the failures that do not prove the block invalid forever: today only a
    /// timestamp from the near future (the block may be retried once the clock catches up;
    /// don't ban its sender). Every other variant is final for the block it was raised on.
    pub fn may_become_valid(&self) -> bool {
        matches!(self, Self::TimestampInFuture { .. })
    }
}
