//! Blocks and headers with the PoUW fields (SPEC section 2).

use crate::{
    codec, merkle_root, Attestation, CompactTarget, Hash, IterationMessage, Keypair, PublicKey,
    Signature, TaskId, Transaction,
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Upper bound on one encoded block.
pub const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;

/// The current header version (2: `attestation_root`, design/011).
pub const HEADER_VERSION: u32 = 2;

/// Unix time in milliseconds.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Now, from the system clock.
    pub fn now() -> Self {
        let d =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> u64 {
        self.0
    }
}

/// A block header. The proof-of-work hash is over the whole header, so every PoUW field is
/// bound by it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Header {
    /// Header format version.
    pub version: u32,
    /// Height (genesis = 0).
    pub height: u64,
    /// Parent block hash.
    pub prev_hash: Hash,
    /// Merkle root of the transaction ids.
    pub tx_root: Hash,
    /// Merkle root of the parent's signed attestations the block carries (design/011,
    /// [`Block::compute_attestation_root`]).
    pub attestation_root: Hash,
    /// State root after applying this block.
    pub state_root: Hash,
    /// Block time.
    pub timestamp: Timestamp,
    /// Proof-of-work target.
    pub target: CompactTarget,
    /// The miner, paid the block reward and fees.
    pub miner: PublicKey,
    /// The task whose training iteration produced the nonce.
    pub task_id: TaskId,
    /// Hash (id) of the iteration message (IT_RES) that produced the nonce.
    pub msg_hash: Hash,
    /// The task's latest committed message-history root.
    pub msg_history_root: Hash,
    /// The nonce derived from the iteration.
    pub nonce: Hash,
}

impl Header {
    /// The block hash (also the proof-of-work hash).
    pub fn hash(&self) -> Hash {
        Hash::tagged("pouw/header", &codec::encode(self))
    }

    /// The hash a miner commits to k iterations ahead: the header with `nonce` and
    /// `msg_hash` set to zero (the only fields that cannot be known in advance).
    pub fn zero_nonce_hash(&self) -> Hash {
        let mut h = self.clone();
        h.nonce = Hash::ZERO;
        h.msg_hash = Hash::ZERO;
        h.hash()
    }
}

/// The proof of useful work a mined block carries (design 003): the two signed iteration
/// messages every cheap check needs. The bulky proof data (start model, residual, batch, peer
/// messages) is addressed by the hashes inside `winning` and fetched separately.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PouwProof {
    /// The signed IT_RES whose end model and message map yield the nonce; its id is
    /// `header.msg_hash`.
    pub winning: IterationMessage,
    /// The same miner's signed IT_RES from `k = commitment_depth` iterations earlier, whose
    /// `commitment` is the header's zero-nonce hash.
    pub committing: IterationMessage,
}

/// A full block: header, the miner's signature over the header hash, the proof of useful work
/// behind the nonce (absent only in genesis) and the transactions.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block {
    /// Header.
    pub header: Header,
    /// The miner's signature over the header hash.
    pub signature: Signature,
    /// The PoUW proof (`winning.id() == header.msg_hash`); `None` only in genesis.
    pub proof: Option<PouwProof>,
    /// Transactions, in execution order.
    pub transactions: Vec<Transaction>,
    /// Attestations of the parent block by its verifier committee, sorted by verifier
    /// (design/011): each pays its verifier a share of this block's reward.
    pub attestations: Vec<Attestation>,
}

impl Block {
    /// The block hash.
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// The Merkle root of `txs`' ids.
    pub fn compute_tx_root(txs: &[Transaction]) -> Hash {
        let ids: Vec<Hash> = txs.iter().map(Transaction::hash).collect();
        merkle_root(&ids)
    }

    /// The Merkle root of `atts`, each leaf the hash of the whole signed attestation (so the
    /// header commits to the signatures too, as `tx_root` does through the transaction ids).
    pub fn compute_attestation_root(atts: &[Attestation]) -> Hash {
        let leaves: Vec<Hash> =
            atts.iter().map(|a| Hash::tagged("pouw/attestation-leaf", &codec::encode(a))).collect();
        merkle_root(&leaves)
    }

    /// Signs the header with the miner key (the header's `miner` must be this key).
    pub fn sign(&mut self, key: &Keypair) {
        self.signature = key.sign(self.header.hash().as_bytes());
    }

    /// Checks the miner's signature over the header hash.
    pub fn verify_signature(&self) -> Result<(), crate::SignatureError> {
        self.header.miner.verify(self.header.hash().as_bytes(), &self.signature)
    }

    /// Encoded size.
    pub fn size(&self) -> usize {
        codec::encode(self).len()
    }
}
