//! The typed wire messages: what travels in gossip and in request-response, with their
//! canonical encoding (borsh, via [`pouw_primitives::codec`]) and a size limit per kind.
//!
//! The original node design's message types map onto these: NEW_BLOCK, NEW_TRANSACTION,
//! ML_ITERATION, TASK_SUBMISSION, VERIFICATION_REQUEST and SECURITY_ALERT are
//! [`GossipMessage`] variants (plus verifier attestations and transaction re-announcements);
//! everything a node fetches from one
//! peer (headers, blocks, proof data, dataset segments, models, message histories) is a
//! [`Request`] answered by a [`Response`].

use borsh::{BorshDeserialize, BorshSerialize};
use pouw_consensus::pouw::ProofData;
use pouw_primitives::{
    codec, Attestation, Block, Hash, Header, IterationMessage, SecurityAlert, TaskId, Transaction,
    Uint256, MAX_BLOCK_BYTES, MAX_ITERATION_MESSAGE_BYTES, MAX_TX_BYTES,
};
use serde::Serialize;
use std::fmt;

/// Upper bound on one encoded gossip message (a block is the largest).
pub const MAX_GOSSIP_BYTES: usize = MAX_BLOCK_BYTES + 1024;
/// Upper bound on one encoded request.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Upper bound on one encoded response (a batch of blocks with their proof data).
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Most headers one response carries.
pub const MAX_HEADERS_PER_RESPONSE: u32 = 2_000;
/// Most blocks one response carries (each with its proof data, a few hundred kB).
pub const MAX_BLOCKS_PER_RESPONSE: u32 = 32;
/// Most hashes in a locator.
pub const MAX_LOCATOR: usize = 64;

/// The seed design's message types, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageKind {
    /// A new block.
    NewBlock,
    /// A new transaction.
    NewTransaction,
    /// An iteration message of a task.
    MlIteration,
    /// A new task (a PAY_FOR_TASK transaction).
    TaskSubmission,
    /// A request to verifiers to attest a block.
    VerificationRequest,
    /// A verifier's attestation.
    Attestation,
    /// A security alert.
    SecurityAlert,
    /// A pending transaction announced again by hash.
    TxAnnounce,
}

impl MessageKind {
    /// The name the original node design uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::NewBlock => "NEW_BLOCK",
            Self::NewTransaction => "NEW_TRANSACTION",
            Self::MlIteration => "ML_ITERATION",
            Self::TaskSubmission => "TASK_SUBMISSION",
            Self::VerificationRequest => "VERIFICATION_REQUEST",
            Self::Attestation => "ATTESTATION",
            Self::SecurityAlert => "SECURITY_ALERT",
            Self::TxAnnounce => "TX_ANNOUNCE",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A gossip topic. Every topic name is prefixed by the network's genesis hash, so nodes of
/// different chains never mix messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Blocks.
    Blocks,
    /// Transactions (transfers, tickets, task submissions, verdicts...).
    Transactions,
    /// Iteration messages of one task.
    Task(TaskId),
    /// Verification requests and attestations.
    Verification,
    /// Security alerts.
    Alerts,
}

impl Topic {
    /// The topic string on the network of `genesis`.
    pub fn name(&self, genesis: &Hash) -> String {
        let net = genesis.to_string();
        match self {
            Self::Blocks => format!("/pouw/{net}/blocks/1"),
            Self::Transactions => format!("/pouw/{net}/txs/1"),
            Self::Task(id) => format!("/pouw/{net}/task/{id}/1"),
            Self::Verification => format!("/pouw/{net}/verification/1"),
            Self::Alerts => format!("/pouw/{net}/alerts/1"),
        }
    }
}

/// A verification request: "replay the iteration behind this block and attest it".
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct VerificationRequest {
    /// The block.
    pub block: Hash,
    /// Its height.
    pub height: u64,
}

/// "This transaction of mine is still waiting for a block": sent again and again (with
/// backoff) by the node that signed or received it from its client, until a block holds it.
/// Peers that do not have it ask the sender with [`Request::Transaction`]. `seq` differs
/// between announcements, so gossip (whose message id is the hash of the bytes) does not drop
/// a later one as a duplicate of an earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxAnnouncement {
    /// The transaction's hash.
    pub hash: Hash,
    /// Distinct per announcement of one node.
    pub seq: u64,
}

/// A gossip message. Its topic follows from its variant ([`GossipMessage::topic`]).
// Blocks travel by value: they are the common case, and boxing would change the node's API.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum GossipMessage {
    /// NEW_BLOCK: a block (its proof data is fetched with [`Request::Proof`]).
    NewBlock(Block),
    /// NEW_TRANSACTION.
    NewTransaction(Transaction),
    /// TASK_SUBMISSION: a PAY_FOR_TASK transaction.
    TaskSubmission(Transaction),
    /// ML_ITERATION: an iteration message, on its task's topic.
    MlIteration(IterationMessage),
    /// VERIFICATION_REQUEST.
    VerificationRequest(VerificationRequest),
    /// A verifier's attestation.
    Attestation(Attestation),
    /// SECURITY_ALERT.
    SecurityAlert(SecurityAlert),
    /// A pending transaction announced again by hash.
    TxAnnounce(TxAnnouncement),
}

impl GossipMessage {
    /// The seed's message type.
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::NewBlock(_) => MessageKind::NewBlock,
            Self::NewTransaction(_) => MessageKind::NewTransaction,
            Self::TaskSubmission(_) => MessageKind::TaskSubmission,
            Self::MlIteration(_) => MessageKind::MlIteration,
            Self::VerificationRequest(_) => MessageKind::VerificationRequest,
            Self::Attestation(_) => MessageKind::Attestation,
            Self::SecurityAlert(_) => MessageKind::SecurityAlert,
            Self::TxAnnounce(_) => MessageKind::TxAnnounce,
        }
    }

    /// The topic it travels on.
    pub fn topic(&self) -> Topic {
        match self {
            Self::NewBlock(_) => Topic::Blocks,
            Self::NewTransaction(_) | Self::TaskSubmission(_) | Self::TxAnnounce(_) => {
                Topic::Transactions
            }
            Self::MlIteration(m) => Topic::Task(m.body.task_id),
            Self::VerificationRequest(_) | Self::Attestation(_) => Topic::Verification,
            Self::SecurityAlert(_) => Topic::Alerts,
        }
    }

    /// The size limit of this kind of message.
    pub fn max_bytes(kind: MessageKind) -> usize {
        match kind {
            MessageKind::NewBlock => MAX_GOSSIP_BYTES,
            MessageKind::NewTransaction | MessageKind::TaskSubmission => MAX_TX_BYTES + 16,
            MessageKind::MlIteration => MAX_ITERATION_MESSAGE_BYTES + 16,
            MessageKind::VerificationRequest
            | MessageKind::Attestation
            | MessageKind::TxAnnounce => 1024,
            MessageKind::SecurityAlert => 16 * 1024,
        }
    }

    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a message received on `topic`: bounded, canonical, and on the right topic.
    pub fn decode(bytes: &[u8], topic: &Topic) -> Result<Self, WireError> {
        if bytes.len() > MAX_GOSSIP_BYTES {
            return Err(WireError::TooLarge { len: bytes.len(), max: MAX_GOSSIP_BYTES });
        }
        let msg: Self = codec::decode(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
        let max = Self::max_bytes(msg.kind());
        if bytes.len() > max {
            return Err(WireError::TooLarge { len: bytes.len(), max });
        }
        if msg.topic() != *topic {
            return Err(WireError::WrongTopic(msg.kind()));
        }
        Ok(msg)
    }
}

/// The status a node reports about its chain.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ChainStatus {
    /// Genesis hash (a different genesis is a different network).
    pub genesis: Hash,
    /// Tip hash.
    pub tip: Hash,
    /// Tip height.
    pub height: u64,
    /// Cumulative work of the tip, big-endian bytes.
    pub total_work: [u8; 32],
}

impl ChainStatus {
    /// The cumulative work as a number.
    pub fn work(&self) -> Uint256 {
        Uint256::from_be_bytes(self.total_work)
    }
}

/// A request to one peer.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Request {
    /// The peer's chain status.
    Status,
    /// Canonical headers after the first locator hash the peer knows (headers-first sync).
    HeadersAfter {
        /// Block hashes from the tip back to genesis, sparse (at most [`MAX_LOCATOR`]).
        locator: Vec<Hash>,
        /// Most headers wanted (at most [`MAX_HEADERS_PER_RESPONSE`]).
        max: u32,
    },
    /// Blocks by hash, each with its proof data.
    Blocks(Vec<Hash>),
    /// The proof data of one block.
    Proof(Hash),
    /// One dataset segment of a task (served by the client).
    Segment {
        /// The task.
        task: TaskId,
        /// Segment index (0..10), or 10 for the client's start weights (design/021).
        index: u8,
    },
    /// A model (safetensors bytes) by its model hash.
    Model(Hash),
    /// The iteration messages a supervisor recorded for one task slot.
    History {
        /// The task.
        task: TaskId,
        /// The slot.
        slot: u64,
    },
    /// A supervisor's screening status for a task (evaluators wait for the screening to end
    /// before they vote, so that convicted miners are confiscated).
    Screening {
        /// The task.
        task: TaskId,
    },
    /// A pooled transaction by hash (after a [`GossipMessage::TxAnnounce`]).
    Transaction(Hash),
    /// The proof data of one block, leaving out what the asker rebuilds from chain data: as
    /// [`Request::Proof`], and a filler-task block's start state when it is the chain's filler
    /// state at the block's parent (design/016). Answered with [`Response::Proof`].
    ProofLean(Hash),
    /// The start state (model, residual and optimizer state, as proof data without batch or
    /// peers) of a miner's iteration of a client task, asked of that miner by one of the
    /// task's supervisors that drew the iteration for replay (design/020). Answered with
    /// [`Response::StartState`].
    StartState {
        /// The task.
        task: TaskId,
        /// The miner's iteration.
        iteration: u64,
    },
}

/// A supervisor's answer to [`Request::Screening`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ScreeningStatus {
    /// Every iteration message of the task's miners has been screened (the task is past
    /// training and nothing is left in the queues).
    pub done: bool,
    /// Messages screened.
    pub screened: u64,
    /// Of which flagged.
    pub flagged: u64,
}

impl Request {
    /// The request's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Status => "Status",
            Self::HeadersAfter { .. } => "HeadersAfter",
            Self::Blocks(_) => "Blocks",
            Self::Proof(_) => "Proof",
            Self::Segment { .. } => "Segment",
            Self::Model(_) => "Model",
            Self::History { .. } => "History",
            Self::Screening { .. } => "Screening",
            Self::Transaction(_) => "Transaction",
            Self::ProofLean(_) => "ProofLean",
            Self::StartState { .. } => "StartState",
        }
    }

    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Bounded canonical decoding, with the per-variant bounds checked.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(WireError::TooLarge { len: bytes.len(), max: MAX_REQUEST_BYTES });
        }
        let req: Self = codec::decode(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
        match &req {
            Self::HeadersAfter { locator, max }
                if locator.len() > MAX_LOCATOR || *max > MAX_HEADERS_PER_RESPONSE =>
            {
                return Err(WireError::Malformed("header request out of bounds".into()));
            }
            Self::Blocks(hashes) if hashes.len() > MAX_BLOCKS_PER_RESPONSE as usize => {
                return Err(WireError::Malformed(format!(
                    "{} blocks requested, at most {MAX_BLOCKS_PER_RESPONSE}",
                    hashes.len()
                )));
            }
            _ => {}
        }
        Ok(req)
    }
}

/// A block with the proof data a verifier needs to replay it (none for genesis).
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct BlockWithProof {
    /// The block.
    pub block: Block,
    /// Its proof data.
    pub proof: Option<ProofData>,
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, BorshSerialize, BorshDeserialize)]
pub enum Response {
    /// Answer to [`Request::Status`].
    Status(ChainStatus),
    /// Answer to [`Request::HeadersAfter`].
    Headers(Vec<Header>),
    /// Answer to [`Request::Blocks`]: the blocks the peer has, in the order asked.
    Blocks(Vec<BlockWithProof>),
    /// Answer to [`Request::Proof`].
    Proof(Option<ProofData>),
    /// Answer to [`Request::Segment`]: the segment bytes, if served.
    Segment(Option<Vec<u8>>),
    /// Answer to [`Request::Model`].
    Model(Option<Vec<u8>>),
    /// Answer to [`Request::History`].
    History(Vec<IterationMessage>),
    /// The peer could not answer.
    Error(String),
    /// Answer to [`Request::Screening`] (`None`: not a supervisor of that task).
    Screening(Option<ScreeningStatus>),
    /// Answer to [`Request::Transaction`]: the transaction, if the peer still has it.
    Transaction(Option<Box<Transaction>>),
    /// Answer to [`Request::StartState`] (`None`: not held any more, or not served to the
    /// asker).
    StartState(Option<ProofData>),
}

impl Response {
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Bounded canonical decoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(WireError::TooLarge { len: bytes.len(), max: MAX_RESPONSE_BYTES });
        }
        codec::decode(bytes).map_err(|e| WireError::Malformed(e.to_string()))
    }
}

/// Why bytes from the network are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Over the size limit.
    #[error("message of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a canonical encoding of a message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A valid message on a topic it does not belong to.
    #[error("{0} message on the wrong topic")]
    WrongTopic(MessageKind),
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_primitives::{Keypair, TxBody, TxKind};

    fn tx() -> Transaction {
        let key = Keypair::from_label("a");
        TxBody {
            chain_id: 1,
            sender: key.public(),
            nonce: 0,
            fee: pouw_primitives::Amount(1),
            kind: TxKind::Transfer { to: key.public(), amount: pouw_primitives::Amount(5) },
        }
        .sign(&key)
    }

    #[test]
    fn gossip_round_trips_and_checks_topic() {
        let msg = GossipMessage::NewTransaction(tx());
        let bytes = msg.encode();
        assert_eq!(GossipMessage::decode(&bytes, &Topic::Transactions).unwrap(), msg);
        assert_eq!(
            GossipMessage::decode(&bytes, &Topic::Blocks),
            Err(WireError::WrongTopic(MessageKind::NewTransaction))
        );
        let mut trailing = bytes;
        trailing.push(0);
        assert!(matches!(
            GossipMessage::decode(&trailing, &Topic::Transactions),
            Err(WireError::Malformed(_))
        ));
        assert!(GossipMessage::decode(&[0xff; 3], &Topic::Blocks).is_err());
    }

    #[test]
    fn announcements_differ_per_seq_and_travel_with_transactions() {
        let a = GossipMessage::TxAnnounce(TxAnnouncement { hash: tx().hash(), seq: 1 });
        let b = GossipMessage::TxAnnounce(TxAnnouncement { hash: tx().hash(), seq: 2 });
        assert_ne!(a.encode(), b.encode(), "a later announcement is not a duplicate");
        assert_eq!(GossipMessage::decode(&a.encode(), &Topic::Transactions).unwrap(), a);
        assert!(a.encode().len() <= GossipMessage::max_bytes(MessageKind::TxAnnounce));
        assert_eq!(
            GossipMessage::decode(&a.encode(), &Topic::Blocks),
            Err(WireError::WrongTopic(MessageKind::TxAnnounce))
        );
        let req = Request::Transaction(tx().hash());
        assert_eq!(Request::decode(&req.encode()).unwrap(), req);
        for resp in [Response::Transaction(Some(Box::new(tx()))), Response::Transaction(None)] {
            assert_eq!(Response::decode(&resp.encode()).unwrap(), resp);
        }
    }

    #[test]
    fn requests_are_bounded() {
        let ok = Request::HeadersAfter { locator: vec![Hash::ZERO; 3], max: 100 };
        assert_eq!(Request::decode(&ok.encode()).unwrap(), ok);
        let big = Request::HeadersAfter { locator: vec![Hash::ZERO; MAX_LOCATOR + 1], max: 1 };
        assert!(Request::decode(&big.encode()).is_err());
        let many = Request::Blocks(vec![Hash::ZERO; MAX_BLOCKS_PER_RESPONSE as usize + 1]);
        assert!(Request::decode(&many.encode()).is_err());
        assert!(matches!(
            Request::decode(&vec![0u8; MAX_REQUEST_BYTES + 1]),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn topic_names_are_per_network() {
        let a = Topic::Blocks.name(&Hash::digest(b"a"));
        let b = Topic::Blocks.name(&Hash::digest(b"b"));
        assert_ne!(a, b);
        assert!(a.starts_with("/pouw/"));
        for kind in [MessageKind::NewBlock, MessageKind::SecurityAlert] {
            assert!(kind.name().chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
    }
}
