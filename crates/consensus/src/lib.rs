//! pouw-consensus: the pure consensus rules of the chain (no I/O).
//!
//! - [`State`]: the ledger as a typed key/value map with an incremental state root;
//!   [`Overlay`] stages a block's writes so an invalid block changes nothing.
//! - [`apply_block`]: the state transition, a pure function of (state, block, spec) giving a
//!   [`StateDiff`] with the undo data of the block. Per block: expire the tickets due at this
//!   height, run the task deadlines due (selection, end of training, expiry: design/005),
//!   apply every transaction ([`apply_tx`]: transfers, tasks and their escrow, tickets,
//!   message-history roots, model submissions, evaluator verdicts), pay the coinbase.
//! - Block validation ([`validate_and_apply`]): [`check_header`] (against the parent, with the
//!   target from [`next_target`]), [`check_block_body`], then the transition and the state
//!   root, cheapest checks first.
//! - [`genesis_block`] / [`genesis_state`]: derived from the [`ChainSpec`](pouw_primitives::ChainSpec).
//!
//! Conservation: balances + open tasks' escrows + tickets' stakes ([`State::total_value`])
//! change only by the block reward.
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

mod claims;
mod difficulty;
mod error;
mod genesis;
pub mod pouw;
mod state;
mod tasks;
mod template;
mod tickets;
mod transition;
mod validation;

pub use claims::{check_challenge, claim, claim_id, CLAIM_JUDGES, CLAIM_WINDOW, JUDGE_BLOCKS};
pub use difficulty::{
    capped_timespan, is_retarget_height, next_target, retarget, retarget_window_len,
    MAX_ADJUSTMENT, MAX_GAP_BLOCKS,
};
pub use error::ConsensusError;
pub use genesis::{genesis_block, genesis_state};
pub use state::{
    Account, AttestationClaim, BlockUndo, ClaimStatus, CommitteeDraw, Conviction, LtHash,
    MinerAccusation, Overlay, Participants, Penalty, PenaltyReason, Refusal, Seat, Settlement,
    State, StateDiff, StateKey, StateValue, TaskRecord, TaskStatus, Ticket,
};
pub use tasks::{
    accusations_open, attestation_quorum, authorize_worker, available_workers, block_verifiers,
    check_block_task, check_pay_for_task, check_workers_available, client_bond, committee_after,
    committee_of, evaluator_quota, expected_payouts, history_root, history_slot, miners_share,
    rank_payouts, select_weighted, selection_draw, split_segments, supervisor_quota,
    task_deadlines, task_record, task_split, task_split_of, task_view, ticket_matches,
    verdict_hash, Candidate, HistoryRootView, ModelView, TaskSplit, TaskView, VerdictView,
    WorkerAvailability, BLOCK_VERIFIERS, EVALUATOR_QUOTA_PERMILLE, HISTORY_SLOT_ITERATIONS,
    MAX_HISTORY_SLOTS, SELECTED_ROLES, SPLIT_CONTEXT, SUPERVISOR_QUOTA_PERMILLE,
};
pub use template::TemplateRoot;
pub use tickets::{confiscate_ticket, expire_tickets, release_ticket, tickets_of};
pub use transition::{
    apply_block, apply_tx, check_tx_stateless, payable_attestations, BlockContext,
};
pub use validation::{
    check_block_body, check_header, check_state_root, median_time_past, validate_and_apply,
    HeaderContext, MEDIAN_TIME_SPAN,
};
