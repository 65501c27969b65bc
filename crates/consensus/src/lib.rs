//! pouw-consensus: the pure consensus rules of the chain (no I/O).
//!
//! - [`State`]: the ledger as a typed key/value map with an incremental state root;
//!   [`Overlay`] stages a block's writes so an invalid block changes nothing.
//! - [`apply_block`]: the state transition, a pure function of (state, block, spec) giving a
//!   [`StateDiff`] with the undo data of the block.
//! - [`genesis_block`] / [`genesis_state`]: derived from the [`ChainSpec`](pouw_primitives::ChainSpec).
//!
//! This crate must never panic on untrusted input: the lints below forbid unwraps, indexing
//! and unchecked arithmetic outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod error;
mod genesis;
pub mod pouw;
mod state;
mod transition;

pub use error::ConsensusError;
pub use genesis::{genesis_block, genesis_state};
pub use state::{
    Account, BlockUndo, LtHash, Overlay, State, StateDiff, StateKey, StateValue, TaskRecord, Ticket,
};
pub use transition::{apply_block, apply_tx, check_tx_stateless, BlockContext};
