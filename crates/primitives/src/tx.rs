//! Signed transactions (SPEC section 2).

use crate::{
    codec, Address, Amount, Attestation, Hash, Header, IterationMessage, Keypair, PublicKey,
    Signature, TaskDefinition, TaskId,
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Upper bound on one encoded transaction.
pub const MAX_TX_BYTES: usize = 64 * 1024;

/// A worker role that needs a staking ticket.
#[derive(
    Clone,
    Copy,
    Debug,
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
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Trains and mines.
    Miner,
    /// Records and audits the message history.
    Supervisor,
    /// Tests final models and splits the fee.
    Evaluator,
    /// Replays blocks and signs attestations.
    Verifier,
}

/// What a ticket holder offers.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct TicketPreferences {
    /// The worker has a GPU.
    pub has_gpu: bool,
    /// The largest model (in parameters) the worker accepts; 0 = any.
    pub max_params: u64,
    /// The smallest task fee the worker accepts.
    pub min_fee: Amount,
}

/// A payout in a ChargeForTask verdict.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Payout {
    /// Who is paid.
    pub to: Address,
    /// How much.
    pub amount: Amount,
}

/// What an AccuseMiner shows against the accused miner: its own signed iteration messages
/// of the task, which any node checks from the transaction alone (design/013).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MinerEvidence {
    /// The flagged iteration message, signed by the accused. Showing it wrong needs a replay
    /// with the task's data, too heavy for a transaction: it counts towards a strict majority
    /// of the task's supervisors.
    Flagged {
        /// The message.
        message: Box<IterationMessage>,
    },
    /// Two different messages signed by the accused for the same iteration of the task
    /// (equivocation): convicts on its own.
    Equivocation {
        /// One variant.
        first: Box<IterationMessage>,
        /// Another variant of the same iteration.
        second: Box<IterationMessage>,
    },
}

impl MinerEvidence {
    /// The id of the message the evidence is about (the first variant for an equivocation).
    pub fn message_id(&self) -> Hash {
        match self {
            Self::Flagged { message } => message.id(),
            Self::Equivocation { first, .. } => first.id(),
        }
    }
}

/// The kinds of transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TxKind {
    /// Moves `amount` to `to`.
    Transfer {
        /// Recipient.
        to: Address,
        /// Amount moved.
        amount: Amount,
    },
    /// Registers a task and escrows its fee; the task id is the hash of this transaction.
    PayForTask {
        /// The task.
        task: TaskDefinition,
        /// The fee escrowed for the task's workers (not the transaction fee).
        fee: Amount,
    },
    /// Locks `stake` as a worker ticket for `role` until `expires_at`.
    BuyTicket {
        /// Role offered.
        role: Role,
        /// Stake locked.
        stake: Amount,
        /// What the worker offers.
        preferences: TicketPreferences,
        /// Height at which the ticket expires and the stake is returned.
        expires_at: u64,
    },
    /// A supervisor commits the Merkle root of a slot of iteration messages.
    MessageHistory {
        /// Task.
        task_id: TaskId,
        /// Slot number.
        slot: u32,
        /// Merkle root of the slot's message hashes.
        root: Hash,
    },
    /// A miner submits its final model for evaluation.
    SubmitModel {
        /// Task.
        task_id: TaskId,
        /// Hash of the final model.
        model_hash: Hash,
    },
    /// An evaluator's verdict; effective once a majority of the task's evaluators agree.
    ChargeForTask {
        /// Task.
        task_id: TaskId,
        /// Miners ranked best first.
        ranking: Vec<Address>,
        /// Payments out of the escrowed fee.
        payouts: Vec<Payout>,
        /// Workers whose stakes are confiscated.
        confiscations: Vec<Address>,
    },
    /// A supervisor accuses a selected miner of the task of a fault its screening found
    /// (design/009): once a strict majority of the task's supervisors accused the same miner,
    /// the miner is convicted on chain and the honest miners take over its batches.
    AccuseMiner {
        /// Task.
        task_id: TaskId,
        /// The accused miner.
        miner: Address,
        /// The accused's own signed messages: the flagged one, or two variants of one iteration.
        evidence: MinerEvidence,
    },
    /// Claims that a verifier attested `valid: true` for a block whose replay fails
    /// (design/017): freezes the verifier's free verifier tickets and locks the sender's bond
    /// (the chain's `min_ticket_stake`) until judges drawn at the next block decide by strict
    /// majority; a conviction confiscates the frozen stakes.
    ChallengeAttestation {
        /// The verifier's signed attestation (`valid: true`).
        attestation: Attestation,
        /// The header of the attested block (its hash is the attested hash): what the judges
        /// fetch and replay.
        header: Box<Header>,
    },
    /// A judge's vote on an open attestation claim (design/017).
    JudgeAttestation {
        /// The claim (the id of the challenged attestation).
        claim: Hash,
        /// True: the attested block's replay fails (the attestation is false).
        guilty: bool,
    },
}

impl TxKind {
    /// Short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Transfer { .. } => "transfer",
            Self::PayForTask { .. } => "pay_for_task",
            Self::BuyTicket { .. } => "buy_ticket",
            Self::MessageHistory { .. } => "message_history",
            Self::SubmitModel { .. } => "submit_model",
            Self::ChargeForTask { .. } => "charge_for_task",
            Self::AccuseMiner { .. } => "accuse_miner",
            Self::ChallengeAttestation { .. } => "challenge_attestation",
            Self::JudgeAttestation { .. } => "judge_attestation",
        }
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TxBody {
    /// The chain this transaction is for (replay protection across chains).
    pub chain_id: u64,
    /// Sender; signs the transaction and pays the fee.
    pub sender: PublicKey,
    /// Sender's account nonce: the number of transactions it sent before.
    pub nonce: u64,
    /// Fee to the block's miner.
    pub fee: Amount,
    /// What the transaction does.
    pub kind: TxKind,
}

/// A signed transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Transaction {
    /// The signed fields.
    pub body: TxBody,
    /// The sender's signature over [`TxBody::signing_hash`].
    pub signature: Signature,
}

impl TxBody {
    /// The message the sender signs.
    pub fn signing_hash(&self) -> Hash {
        Hash::tagged("pouw/tx", &codec::encode(self))
    }

    /// Signs the body.
    pub fn sign(self, key: &Keypair) -> Transaction {
        let signature = key.sign(self.signing_hash().as_bytes());
        Transaction { body: self, signature }
    }
}

impl Transaction {
    /// The transaction id (hash of the whole signed transaction). A task's id is the id of its
    /// PayForTask transaction.
    pub fn hash(&self) -> Hash {
        Hash::tagged("pouw/txid", &codec::encode(self))
    }

    /// Checks the signature.
    pub fn verify_signature(&self) -> Result<(), crate::SignatureError> {
        self.body.sender.verify(self.body.signing_hash().as_bytes(), &self.signature)
    }

    /// Encoded size in bytes.
    pub fn size(&self) -> usize {
        codec::encode(self).len()
    }
}
