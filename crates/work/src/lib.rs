//! pouw-work: the loops of the worker roles. Today: the miner, and the re-verification of a
//! stored chain ([`verify_chain`]).
//!
//! A [`Miner`] trains the task of the next block (the chain's filler task when no client task
//! is assigned) one PoUW iteration per [`Miner::step`], and mines with every iteration:
//!
//! ```text
//! iteration i ──▶ IT_RES_i ──┬─ win?  header committed at i-k (same tip), msg_hash = id(IT_RES_i
//!                            │        with commitment 0), nonces j < a  ──▶ block + proof data
//!                            └─ else: IT_RES_i commits to the zero-nonce header for the current
//!                                     tip, to be mined at iteration i+k
//! ```
//! A winning message commits to zero (design/003): the block it makes replaces the tip, which
//! voids any commitment it could carry.

mod grind;
mod miner;
mod start;
mod verify;

pub use grind::{thread_cpu_ns, Grinder, MiningStats};
pub use miner::{
    initial_state, initial_state_with, Assignment, BatchWalk, FinishedModel, MinedBlock, Miner,
    MinerError, Poison, StepMetrics, StepOutput, Template, END_POISON_LAST, LATE_POISON_FROM,
    STALE_LAG, SUBMIT_BEFORE_DEADLINE,
};
pub use start::{start_model, StartError};
pub use verify::{verify_chain, VerifyFailure, VerifyReport};
