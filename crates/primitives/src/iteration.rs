//! The iteration message IT_RES (SPEC section 4): what a miner announces after every training
//! iteration, and what a block points at through `msg_hash`.

use crate::{codec, Hash, Keypair, PublicKey, Signature, TaskId};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Upper bound on one encoded iteration message.
pub const MAX_ITERATION_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// The signed fields of an iteration message.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IterationBody {
    /// Task trained.
    pub task_id: TaskId,
    /// The miner.
    pub miner: PublicKey,
    /// Epoch.
    pub epoch: u32,
    /// The miner's iteration index within the task (counts from 0, never repeats).
    pub iteration: u64,
    /// Hash over the full mini-batch bytes.
    pub batch_hash: Hash,
    /// Hash of the model at the start of the iteration (before peer updates).
    pub start_model_hash: Hash,
    /// Hash of the gradient residual (and optimiser state) at the start.
    pub start_residual_hash: Hash,
    /// Ids of the peer iteration messages applied, in the order applied.
    pub peer_msgs: Vec<Hash>,
    /// The message map: packed `u32`, bit 31 = sign, bits 0-30 = flat parameter index.
    pub map: Vec<u32>,
    /// Batch loss as `f32` bits.
    pub loss: u32,
    /// Batch accuracy as `f32` bits.
    pub accuracy: u32,
    /// The zero-nonce header hash this miner commits to now, to be mined k iterations later.
    pub commitment: Hash,
    /// The order seed the iteration ran with: the zero-nonce hash of the header it mines (the
    /// one committed k iterations earlier), or zero when it mines nothing. It seeds the order
    /// of the first layer's reduction (`pouw_ml::InputOrder`), so the iteration's bits, and
    /// with them its nonces, hold for that header only (design/010). A block's winning message
    /// must carry its header's zero-nonce hash here.
    pub order_seed: Hash,
}

/// A signed iteration message.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IterationMessage {
    /// The signed fields.
    pub body: IterationBody,
    /// The miner's signature over the id.
    pub signature: Signature,
}

impl IterationBody {
    /// A body with only its identity set (task, miner, iteration) and every other field zero:
    /// what a block template's state transition reads of a proof, and a handy test message.
    pub fn identity(task_id: TaskId, miner: PublicKey, iteration: u64) -> Self {
        Self {
            task_id,
            miner,
            epoch: 0,
            iteration,
            batch_hash: Hash::ZERO,
            start_model_hash: Hash::ZERO,
            start_residual_hash: Hash::ZERO,
            peer_msgs: vec![],
            map: vec![],
            loss: 0,
            accuracy: 0,
            commitment: Hash::ZERO,
            order_seed: Hash::ZERO,
        }
    }

    /// The message id (what `msg_hash` and `peer_msgs` refer to).
    pub fn id(&self) -> Hash {
        Hash::tagged("pouw/itres", &codec::encode(self))
    }

    /// Signs the message.
    pub fn sign(self, key: &Keypair) -> IterationMessage {
        let signature = key.sign(self.id().as_bytes());
        IterationMessage { body: self, signature }
    }

    /// Hash of the message map alone (the nonce precursor's second half).
    pub fn map_hash(&self) -> Hash {
        map_hash(&self.map)
    }
}

/// Hash of a message map: `BLAKE3("pouw-ml/map/v1" || 0x00 || u32 count || entries)`, all
/// little-endian. This is the ML engine's `pouw_ml::map_hash`, bit for bit (the consensus crate
/// tests it): the nonce precursor has one definition.
pub fn map_hash(map: &[u32]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"pouw-ml/map/v1\0");
    h.update(&u32::try_from(map.len()).unwrap_or(u32::MAX).to_le_bytes());
    let mut buf = [0u8; 4096];
    for chunk in map.chunks(1024) {
        let mut len = 0;
        for (dst, v) in buf.chunks_exact_mut(4).zip(chunk) {
            dst.copy_from_slice(&v.to_le_bytes());
            len += 4;
        }
        h.update(&buf[..len]);
    }
    Hash(*h.finalize().as_bytes())
}

impl IterationMessage {
    /// The message id.
    pub fn id(&self) -> Hash {
        self.body.id()
    }

    /// Checks the miner's signature.
    pub fn verify_signature(&self) -> Result<(), crate::SignatureError> {
        self.body.miner.verify(self.id().as_bytes(), &self.signature)
    }
}
