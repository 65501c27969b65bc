//! Why a PoUW proof is invalid: one variant per field or rule.
//!
//! Peer scoring: every variant is a provable fault. The proof, the proof data (checked against
//! the hashes the signed messages name) and the chain spec alone decide it, and honest software
//! never produces it, so a peer that relays a block failing with any variant is banned.

use pouw_primitives::{Hash, PublicKey, SignatureError, TaskDefError};

/// A PoUW proof broke a rule (design 003, SPEC section 4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PouwError {
    /// A block other than genesis carries no proof. Ban: every mined block carries one.
    #[error("the block carries no PoUW proof")]
    MissingProof,
    /// The task definition does not give a trainable model. Ban: the block names it.
    #[error("the task cannot be trained: {0}")]
    InvalidTask(String),
    /// `winning` is by another miner than `header.miner`. Ban.
    #[error("the winning message is by {message}, the header's miner is {header}")]
    WinningMiner {
        /// Miner of the message.
        message: PublicKey,
        /// Miner of the header.
        header: PublicKey,
    },
    /// `winning`'s signature does not verify under its miner key. Ban.
    #[error("the winning message's signature is invalid: {0}")]
    WinningSignature(SignatureError),
    /// `winning.id()` is not `header.msg_hash`. Ban.
    #[error("header.msg_hash is {header}, the winning message's id is {message}")]
    MsgHash {
        /// `header.msg_hash`.
        header: Hash,
        /// `winning.id()`.
        message: Hash,
    },
    /// `winning` is for another task than `header.task_id`. Ban.
    #[error("the winning message is for task {message}, the header for {header}")]
    WinningTask {
        /// Task of the message.
        message: Hash,
        /// `header.task_id`.
        header: Hash,
    },
    /// `winning.commitment` is not zero. A winning iteration's own block replaces the tip every
    /// commitment of that iteration could build on, so the field is void; a free field in the
    /// message would let the miner re-roll `header.msg_hash`, hence the PoW hash, without
    /// limit. Ban.
    #[error("the winning message commits to {0}; a winning message must commit to zero")]
    WinningCommitment(Hash),
    /// The winning message ran with another order seed than its header's zero-nonce hash: the
    /// iteration is not bound to this header (design/010). Ban.
    #[error("the winning message ran with order seed {claimed}, the header's zero-nonce hash is {header}")]
    OrderSeed {
        /// The seed the message names.
        claimed: Hash,
        /// The header's zero-nonce hash.
        header: Hash,
    },
    /// The epoch is not below the task's epoch count. Ban.
    #[error("epoch {epoch} is not below the task's {epochs} epochs")]
    EpochOutOfRange {
        /// Epoch of the winning message.
        epoch: u32,
        /// Epochs of the task.
        epochs: u32,
    },
    /// The epoch went backwards, or advanced more than once per iteration, between the
    /// committing and the winning message. Ban.
    #[error("epoch {winning} cannot follow epoch {committing} {depth} iterations later")]
    EpochOrder {
        /// Epoch of the committing message.
        committing: u32,
        /// Epoch of the winning message.
        winning: u32,
        /// Iterations between them.
        depth: u32,
    },
    /// A map entry's index is not above the previous one (entries are strictly ascending by
    /// index). Ban.
    #[error("map entry {position} is not above the previous entry")]
    MapOrder {
        /// Position in the map.
        position: usize,
    },
    /// A map entry addresses a parameter that does not exist. Ban.
    #[error("map entry {position} has index {index}, the model has {params} parameters")]
    MapIndex {
        /// Position in the map.
        position: usize,
        /// The index.
        index: u32,
        /// Parameter count.
        params: u64,
    },
    /// `peer_msgs` lists one message twice. Ban.
    #[error("peer message {0} is listed twice")]
    DuplicatePeer(Hash),
    /// `committing` is by another miner or for another task than `winning`. Ban.
    #[error("the committing message is by another miner or for another task")]
    CommittingOwner,
    /// `committing` is not exactly `k` iterations before `winning` (or `winning` is younger
    /// than `k` iterations). Ban.
    #[error("commitment made at iteration {committed_at}, expected {expected:?}")]
    CommitmentDepth {
        /// Iteration of the committing message.
        committed_at: u64,
        /// `winning.iteration - k` (none when `winning.iteration < k`).
        expected: Option<u64>,
    },
    /// `committing.commitment` is not the header's zero-nonce hash (another header, or a header
    /// on another tip). Ban.
    #[error("committed to {committed}, the header's zero-nonce hash is {actual}")]
    CommitmentHash {
        /// What was committed.
        committed: Hash,
        /// What the header gives.
        actual: Hash,
    },
    /// `committing`'s signature does not verify. Ban.
    #[error("the committing message's signature is invalid: {0}")]
    CommittingSignature(SignatureError),
    /// The (task, miner, iteration) of `winning` already won a block on this chain. Ban.
    #[error("iteration {iteration} of miner {miner} on task {task} already won a block")]
    IterationReused {
        /// Task.
        task: Hash,
        /// Miner.
        miner: PublicKey,
        /// Iteration index.
        iteration: u64,
    },
    /// Start parameters, residual or velocity of the wrong length. Ban: the data was fetched by
    /// hashes the miner signed.
    #[error("proof data {field} has {actual} values, the model needs {expected}")]
    StartStateLength {
        /// `start_params`, `start_residual` or `start_velocity`.
        field: &'static str,
        /// Values needed.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// A value of the start state (proof data) or of the replayed iteration's output is NaN or
    /// infinite. Ban: a NaN's payload bits may differ between two CPUs' floating-point paths (FMA
    /// or not, vector width), so the hashes and nonces derived from such a state are not
    /// reproducible and no node could agree on the block; honest software never mines one.
    #[error("{field} value {index} is not finite")]
    NonFinite {
        /// `start_params`, `start_residual`, `start_velocity`, `loss`, `end_params`,
        /// `end_residual` or `end_velocity`.
        field: &'static str,
        /// Position of the first non-finite value (0 for the loss).
        index: usize,
    },
    /// The start parameters do not hash to `winning.start_model_hash`. Ban.
    #[error("start model hashes to {actual}, the message says {expected}")]
    StartModelHash {
        /// From the message.
        expected: Hash,
        /// Of the data.
        actual: Hash,
    },
    /// Start residual and velocity do not hash to `winning.start_residual_hash`. Ban.
    #[error("start residual hashes to {actual}, the message says {expected}")]
    StartResidualHash {
        /// From the message.
        expected: Hash,
        /// Of the data.
        actual: Hash,
    },
    /// The batch bytes do not hash to `winning.batch_hash`. Ban.
    #[error("batch hashes to {actual}, the message says {expected}")]
    BatchHash {
        /// From the message.
        expected: Hash,
        /// Of the data.
        actual: Hash,
    },
    /// The batch bytes do not decode, or do not fit the model (width, labels). Ban.
    #[error("bad batch: {0}")]
    BadBatch(pouw_ml::BatchError),
    /// The batch does not have the task's batch size (the nonce budget grows with it). Ban.
    #[error("batch of {actual} samples, the task's batch size is {expected}")]
    BatchSize {
        /// The task's batch size.
        expected: u32,
        /// Samples in the batch.
        actual: usize,
    },
    /// The proof data has another number of peer messages than `peer_msgs`. Ban.
    #[error("{actual} peer messages for {expected} listed")]
    PeerCount {
        /// Listed in `winning.peer_msgs`.
        expected: usize,
        /// Given.
        actual: usize,
    },
    /// Peer message `index` is not the one `peer_msgs[index]` names. Ban.
    #[error("peer message {index} has id {actual}, peer_msgs lists {expected}")]
    PeerId {
        /// Position.
        index: usize,
        /// Listed id.
        expected: Hash,
        /// Id of the message given.
        actual: Hash,
    },
    /// Peer message `index` is not validly signed. Ban.
    #[error("peer message {index} has an invalid signature: {source}")]
    PeerSignature {
        /// Position.
        index: usize,
        /// The signature error.
        source: SignatureError,
    },
    /// Peer message `index` is for another task. Ban.
    #[error("peer message {index} is for task {task}")]
    PeerTask {
        /// Position.
        index: usize,
        /// Its task.
        task: Hash,
    },
    /// Peer message `index`'s map addresses a parameter that does not exist. Ban.
    #[error("peer message {index}, entry {entry}: index out of range")]
    PeerMapIndex {
        /// Position of the peer message.
        index: usize,
        /// Position of the entry.
        entry: usize,
    },
    /// The engine refused the replay for another reason. Ban: the inputs were all checked
    /// against the signed hashes.
    #[error("the replay failed: {0}")]
    Engine(String),
    /// The replayed message map differs from `winning.map`. Ban.
    #[error("the replayed map ({replayed} entries) differs from the message's ({claimed})")]
    Map {
        /// Entries in the message.
        claimed: usize,
        /// Entries replayed.
        replayed: usize,
    },
    /// The replayed loss bits differ from `winning.loss`. Ban.
    #[error("replayed loss bits {replayed:#010x}, the message says {claimed:#010x}")]
    Loss {
        /// From the message.
        claimed: u32,
        /// Replayed.
        replayed: u32,
    },
    /// The replayed accuracy bits differ from `winning.accuracy`. Ban.
    #[error("replayed accuracy bits {replayed:#010x}, the message says {claimed:#010x}")]
    Accuracy {
        /// From the message.
        claimed: u32,
        /// Replayed.
        replayed: u32,
    },
    /// The winning iteration did not train the batch (or is not in the epoch) the task's
    /// schedule gives the miner at that iteration (design/006). Ban.
    #[error(
        "iteration {iteration} of miner {miner_index} of {miners} must train batch {batch} of \
         epoch {epoch} (hash {expected}); the message claims epoch {claimed_epoch} and batch \
         hash {actual}"
    )]
    UnscheduledBatch {
        /// The winning iteration index.
        iteration: u64,
        /// The miner's position among the task's selected miners.
        miner_index: usize,
        /// Selected miners.
        miners: usize,
        /// The scheduled epoch.
        epoch: u32,
        /// The scheduled batch index in that epoch.
        batch: usize,
        /// The epoch the message claims.
        claimed_epoch: u32,
        /// Hash of the scheduled batch.
        expected: Hash,
        /// `winning.batch_hash`.
        actual: Hash,
    },
    /// A client-task batch sample is not the scheduled one: its Merkle proof does not lead
    /// from the sample (features, label and its scheduled index in its segment) to the task's
    /// hash of the scheduled segment (design/010). Ban.
    #[error(
        "iteration {iteration}: wrong Merkle proof for batch sample {sample}: it does not prove \
         that sample at index {index} of segment {segment}, where the schedule puts it"
    )]
    SampleProof {
        /// The winning iteration index.
        iteration: u64,
        /// Position of the sample in the batch.
        sample: usize,
        /// The scheduled segment (unshuffled index, as in the task's segment hashes).
        segment: usize,
        /// The scheduled index in that segment.
        index: usize,
    },
    /// A client-task batch or its sample proofs do not have the scheduled shape (epoch, sample
    /// count, width, proof length) or the batch bytes are not the ones the winning message
    /// names (design/010). Ban.
    #[error("iteration {iteration}: batch proof: {reason}")]
    BatchProof {
        /// The winning iteration index.
        iteration: u64,
        /// What is wrong.
        reason: String,
    },
    /// The schedule cannot give the miner a batch at the winning iteration (no batch for that
    /// miner, or an epoch beyond any schedule). Ban.
    #[error("no scheduled batch: {0}")]
    Schedule(String),
    /// Peer message `index` is signed by the block's own miner (its own updates are already
    /// in its model). Ban.
    #[error("peer message {index} is the block miner's own message")]
    PeerFromBlockMiner {
        /// Position.
        index: usize,
    },
    /// Peer message `index` is signed by a key that is not a selected miner of the task. Ban.
    #[error("peer message {index} is signed by {signer}, not a selected miner of the task")]
    PeerNotSelected {
        /// Position.
        index: usize,
        /// Its signer.
        signer: PublicKey,
    },
    /// `header.nonce` is not `nonce_at(precursor, j)` for any `j < a` of the replayed
    /// iteration. Ban.
    #[error("the nonce is not one of the {budget} nonces the iteration yields")]
    Nonce {
        /// `a`.
        budget: u64,
    },
}

impl From<super::CommitmentError> for PouwError {
    fn from(e: super::CommitmentError) -> Self {
        match e {
            super::CommitmentError::WrongOwner => Self::CommittingOwner,
            super::CommitmentError::WrongDepth { committed_at, expected } => {
                Self::CommitmentDepth { committed_at, expected: Some(expected) }
            }
            super::CommitmentError::HashMismatch { committed, actual } => {
                Self::CommitmentHash { committed, actual }
            }
        }
    }
}

impl From<TaskDefError> for PouwError {
    fn from(e: TaskDefError) -> Self {
        Self::InvalidTask(e.to_string())
    }
}
