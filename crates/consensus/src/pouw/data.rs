//! The proof data a verifier fetches to replay an iteration, its canonical encoding and its
//! content addresses (each piece is named by a hash in the winning IT_RES).

use borsh::{BorshDeserialize, BorshSerialize};
use pouw_ml::ModelSpec;
use pouw_primitives::{codec, Hash, IterationBody, IterationMessage};

/// Tag of the ML engine's batch hash: `Batch::hash` is `BLAKE3(tag || 0x00 || bytes)`.
const BATCH_TAG: &str = "pouw-ml/batch/v1";

/// Everything a replay needs besides the proof and the task.
///
/// Canonical encoding (borsh, via [`codec`]): the three float vectors as `u32` length followed
/// by the IEEE-754 bits of each value (`u32` little-endian, so every float, NaN and `-0.0`
/// included, has exactly one encoding), then the batch as `u32` length + bytes, then the peer
/// messages as `u32` count + each message's borsh encoding, then the sample proofs as `u32`
/// count + 32 bytes each.
#[derive(Clone, Debug, PartialEq)]
pub struct ProofData {
    /// The model at the start of the iteration (before peer updates), flat parameters.
    pub start_params: Vec<f32>,
    /// The gradient residual at the start.
    pub start_residual: Vec<f32>,
    /// The optimizer velocity at the start (empty when the task's momentum is 0).
    pub start_velocity: Vec<f32>,
    /// The mini-batch, in `pouw_ml::Batch::canonical_bytes` form.
    pub batch: Vec<u8>,
    /// The peer messages applied, in the order of `winning.peer_msgs`.
    pub peers: Vec<IterationMessage>,
    /// A client-task block: the Merkle proof of each sample of the batch in its segment
    /// (`pouw_ml::merkle`), in batch order, concatenated: sample `j` at index `i` of a segment
    /// of `n` samples takes `merkle::proof_len(n, i)` hashes (at most `ceil(log2 n)`), so the
    /// whole is at most `batch * ceil(log2 n) * 32` bytes (design/010). Empty for a filler
    /// task (every node holds its data).
    pub sample_proofs: Vec<Hash>,
}

#[derive(BorshSerialize, BorshDeserialize)]
struct Wire {
    start_params: Vec<u32>,
    start_residual: Vec<u32>,
    start_velocity: Vec<u32>,
    batch: Vec<u8>,
    peers: Vec<IterationMessage>,
    sample_proofs: Vec<Hash>,
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn floats(v: Vec<u32>) -> Vec<f32> {
    v.into_iter().map(f32::from_bits).collect()
}

impl BorshSerialize for ProofData {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        Wire {
            start_params: bits(&self.start_params),
            start_residual: bits(&self.start_residual),
            start_velocity: bits(&self.start_velocity),
            batch: self.batch.clone(),
            peers: self.peers.clone(),
            sample_proofs: self.sample_proofs.clone(),
        }
        .serialize(writer)
    }
}

impl BorshDeserialize for ProofData {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let w = Wire::deserialize_reader(reader)?;
        Ok(Self {
            start_params: floats(w.start_params),
            start_residual: floats(w.start_residual),
            start_velocity: floats(w.start_velocity),
            batch: w.batch,
            peers: w.peers,
            sample_proofs: w.sample_proofs,
        })
    }
}

/// The content addresses of the proof data of one iteration: what a verifier asks a proof
/// store (or a peer) for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofDataKeys {
    /// `model_hash` of the start parameters.
    pub model: Hash,
    /// `residual_hash` of the start residual and velocity (one piece).
    pub residual: Hash,
    /// Batch hash of the batch bytes.
    pub batch: Hash,
    /// Ids of the peer messages, in order.
    pub peers: Vec<Hash>,
}

impl ProofDataKeys {
    /// What the winning message names.
    pub fn of(winning: &IterationBody) -> Self {
        Self {
            model: winning.start_model_hash,
            residual: winning.start_residual_hash,
            batch: winning.batch_hash,
            peers: winning.peer_msgs.clone(),
        }
    }
}

/// The chain's model hash of parameters: the ML engine's `model_hash` (it covers the shape).
pub fn model_hash_of(model: &ModelSpec, params: &[f32]) -> Hash {
    Hash(pouw_ml::model_hash(model, params).0)
}

/// The chain's residual hash: the ML engine's `residual_hash` of residual and velocity.
pub fn residual_hash_of(residual: &[f32], velocity: &[f32]) -> Hash {
    Hash(pouw_ml::residual_hash(residual, velocity).0)
}

/// The batch hash of canonical batch bytes, without decoding them (equals `Batch::hash` of
/// the decoded batch).
pub fn batch_hash_of(batch_bytes: &[u8]) -> Hash {
    Hash::tagged(BATCH_TAG, batch_bytes)
}

impl ProofData {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes the canonical encoding (trailing bytes rejected).
    pub fn decode(bytes: &[u8]) -> Result<Self, pouw_primitives::CodecError> {
        codec::decode(bytes)
    }

    /// The addresses of this data's pieces (as a store files them).
    pub fn keys(&self, model: &ModelSpec) -> ProofDataKeys {
        ProofDataKeys {
            model: model_hash_of(model, &self.start_params),
            residual: residual_hash_of(&self.start_residual, &self.start_velocity),
            batch: batch_hash_of(&self.batch),
            peers: self.peers.iter().map(IterationMessage::id).collect(),
        }
    }
}
