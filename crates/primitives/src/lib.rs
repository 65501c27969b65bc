//! pouw-primitives: the types every part of the node shares, and their canonical encoding.
//!
//! - [`Hash`] (BLAKE3-256), [`PublicKey`]/[`Address`], [`Signature`], [`Keypair`] (ed25519);
//! - [`Amount`] (u64 base units, checked arithmetic only), [`Timestamp`], [`CompactTarget`];
//! - [`Transaction`] with every [`TxKind`], [`TaskDefinition`], [`Header`], [`Block`],
//!   [`IterationMessage`], [`PouwProof`];
//! - [`ChainSpec`] with the built-in devnet;
//! - the canonical codec ([`codec`]): one encoding per value, decoding rejects trailing bytes
//!   and every non-canonical form.
//!
//! Feature `test-utils`: proptest strategies for every type ([`test_utils`]).
//!
//! No I/O beyond reading a chain-spec file.

mod amount;
mod attest;
mod block;
mod chainspec;
pub mod codec;
mod hash;
mod iteration;
mod keys;
mod target;
mod task;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
mod tx;

pub use amount::{Amount, ParseAmountError, COIN};
pub use attest::{
    AlertError, AlertKind, Attestation, AttestationBody, SecurityAlert, SecurityAlertBody,
    MAX_ALERT_DETAIL_BYTES, MAX_ALERT_EVIDENCE,
};
pub use block::{Block, Header, PouwProof, Timestamp, HEADER_VERSION, MAX_BLOCK_BYTES};
pub use chainspec::{Allocation, ChainSpec, ChainSpecError, Genesis, DEVNET_ACCOUNTS};
pub use codec::{decode, decode_bounded, encode, Canonical, CodecError};
pub use hash::{merkle_root, Hash, ParseHexError};
pub use iteration::{map_hash, IterationBody, IterationMessage, MAX_ITERATION_MESSAGE_BYTES};
pub use keys::{Address, Keypair, PublicKey, Signature, SignatureError};
pub use target::{meets_target, work_for_target, CompactTarget, Uint256};
pub use task::{
    limits as task_limits, Activation, AdamDef, DatasetDef, DatasetFormat, Deadlines, Initializer,
    LayerDef, ModelCost, ModelDef, OptimizerDef, TaskDefError, TaskDefinition, TaskId,
    TaskPreferences, UpdateRuleDef, WorkersWanted, DATASET_SEGMENTS, F32,
};
pub use tx::{
    MinerEvidence, Payout, Role, TicketPreferences, Transaction, TxBody, TxKind, MAX_TX_BYTES,
};
