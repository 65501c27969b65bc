//! pouw-chain: block tree, fork choice, import pipeline, reorgs and the mempool.
//!
//! - [`Chain`]: opens the node's [`Store`](pouw_storage::Store) (creating genesis on first
//!   open), imports blocks ([`Chain::import_block`]) through the cheap header/body rules, the
//!   [`BlockValidator`] extension point (PoUW proof check) and execution, and keeps the
//!   heaviest valid branch (most cumulative work, ties to the first seen) as the canonical
//!   chain. Side-chain blocks are stored but executed only when their branch becomes heavier;
//!   a reorg undoes state with the stored undo data and commits as one transaction.
//! - [`Mempool`]: pending transactions by fee rate, nonce-gap queue, bounds with eviction,
//!   replacement, and re-adding transactions of reverted blocks.
//! - Block rules (header, body, median time past, retarget) are `pouw-consensus`'s
//!   ([`pouw_consensus::check_header`], [`pouw_consensus::check_block_body`],
//!   [`pouw_consensus::next_target`]); their errors become [`BlockError::Consensus`].
//!
//! Feature `test-utils`: [`test_utils`] (easy-target spec, `BlockBuilder`, `ChainHarness`).

mod chain;
mod error;
mod filler_state;
mod mempool;
mod pouw_validator;
mod proof_data;
mod validator;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

pub use chain::{Chain, ChainConfig, HeaderChecked, ImportOutcome, ProofChecked, TipChange};
pub use error::{BlockError, ChainError};
pub use filler_state::{FillerStart, FillerStates};
pub use mempool::{AddOutcome, Mempool, MempoolConfig, MempoolError};
pub use pouw_validator::{check_client_batch, PouwValidator, ProofCheckError};
pub use proof_data::{block_task, check_proof_data, precheck, ProofDataError};
pub use validator::{Ancestors, BlockValidator, NoProofCheck};
