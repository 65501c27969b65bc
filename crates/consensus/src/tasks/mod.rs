//! The task lifecycle on chain (SPEC section 3, design/005): registration and escrow,
//! worker selection, the dataset split, phases with deadlines, authorisation of worker
//! transactions, and the evaluators' verdict that pays the workers.
//!
//! ```text
//! block h:      PayForTask            -> Registered (fee in escrow)
//! block h+1:    selection (seed = hash of block h = prev_hash of h+1)
//!                 enough tickets      -> Training (tickets bound to the task)
//!                 too few             -> Refused (fee refunded in full)
//! Training:     MessageHistory (selected supervisors), SubmitModel (selected miners, once)
//!                 every miner submitted, or block T = h+1+training_blocks -> Finalising
//! Finalising:   ChargeForTask (selected evaluators, one vote each)
//!                 strict majority of the evaluators on one verdict -> Completed (paid out)
//!                 block F = T + evaluation_blocks first             -> Expired (refund)
//! Completed:    ChargeForTask of an evaluator whose share is held (a late vote), before F
//!                 the executed verdict -> its held share paid; another -> to the client
//!                 block F -> the shares still held go back to the client
//! ```
//!
//! Money of a task: the fee sits in `TaskRecord::escrow` until the task ends. On completion
//! the pot is `escrow + the stakes of the confiscated seats + the stakes of the penalised
//! committee seats`; it pays the miners by rank (the miners' share of the fee plus every
//! stake the verdict confiscates), the active supervisors an equal part of their quota each,
//! and every evaluator neither confiscated nor penalised the same share of the evaluators'
//! quota (`quota / those evaluators`, `Settlement::evaluator_share`): at once if it voted
//! the executed verdict, otherwise the share stays in escrow (`Settlement::held`) until its
//! late vote or the finalisation deadline F, when what is left goes back to the client. The
//! rest goes back to the client at once (including the stakes of the supervisors the
//! supervisors' majority outvoted on a history slot and of the evaluators that voted against
//! the executed verdict: design/007). Every other selected ticket is released at the
//! execution (its stake back to its owner), the held evaluators' too. The sum of balances,
//! escrows and stakes is unchanged by every step.

mod committees;
mod deadlines;
mod register;
mod select;
mod split;
mod verdict;
mod view;
mod workers;

pub use committees::*;
pub(crate) use deadlines::*;
pub use register::*;
pub use select::*;
pub use split::*;
pub use verdict::*;
pub use view::*;
pub use workers::*;

use crate::{
    state::{
        CommitteeDraw, Conviction, MinerAccusation, Overlay, Participants, Penalty, PenaltyReason,
        Refusal, Seat, Settlement, StateKey, StateValue, TaskRecord, TaskStatus, Ticket,
    },
    tickets, BlockContext, ConsensusError, State,
};
use pouw_primitives::{
    codec, merkle_root, Address, Amount, Block, ChainSpec, Hash, Header, IterationMessage,
    MinerEvidence, Payout, PublicKey, Role, TaskDefinition, TaskId, DATASET_SEGMENTS,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Share of the fee paid to the supervisors, in per-mille (split equally among the
/// supervisors that committed at least one message-history root).
pub const SUPERVISOR_QUOTA_PERMILLE: u64 = 100;
/// Share of the fee paid to the evaluators, in per-mille (split equally among the selected
/// evaluators the executed verdict neither confiscated nor penalised; the shares of those
/// that vote after the execution are held until the finalisation deadline).
pub const EVALUATOR_QUOTA_PERMILLE: u64 = 100;
/// Iterations of each miner per message-history slot: slot `s` of a task holds the iteration
/// messages of its selected miners whose `body.iteration` lies in `[s * S, (s + 1) * S)`
/// (design/007), so honest supervisors that saw the same messages commit the same root.
pub const HISTORY_SLOT_ITERATIONS: u64 = 64;
/// Message-history slots a task can have (`0..MAX_HISTORY_SLOTS`): more than 262,000
/// iterations per miner; bounds what a verdict's execution reads.
pub const MAX_HISTORY_SLOTS: u32 = 4096;
/// The roles a task selects, in selection order (verifiers last, so a task that wants none
/// draws its other roles exactly as before verifiers were selected).
pub const SELECTED_ROLES: [Role; 4] =
    [Role::Miner, Role::Supervisor, Role::Evaluator, Role::Verifier];
/// Verifiers drawn per block for a block whose task selected none (filler tasks, and client
/// tasks with `workers.verifiers = 0`); fewer when fewer free verifier tickets are live.
pub const BLOCK_VERIFIERS: u16 = 3;

const LOWEST: Hash = Hash([0; 32]);
const HIGHEST: Hash = Hash([0xff; 32]);

/// The message-history slot of a miner's `iteration` ([`HISTORY_SLOT_ITERATIONS`] per slot;
/// saturates at `u32::MAX`, beyond [`MAX_HISTORY_SLOTS`]).
pub fn history_slot(iteration: u64) -> u32 {
    u32::try_from(iteration.checked_div(HISTORY_SLOT_ITERATIONS).unwrap_or(0)).unwrap_or(u32::MAX)
}

/// The Merkle root of a slot's iteration messages, given their ids: the ids sorted (and
/// duplicates dropped) so the root does not depend on the order they arrived in, then
/// [`merkle_root`].
pub fn history_root(ids: &[Hash]) -> Hash {
    let sorted: Vec<Hash> = ids.iter().copied().collect::<BTreeSet<Hash>>().into_iter().collect();
    merkle_root(&sorted)
}

fn permille(amount: Amount, p: u64) -> Amount {
    let v = u128::from(amount.units())
        .checked_mul(u128::from(p))
        .and_then(|v| v.checked_div(1000))
        .unwrap_or(0);
    Amount(u64::try_from(v).unwrap_or(0))
}

/// The supervisors' quota of a fee.
pub fn supervisor_quota(fee: Amount) -> Amount {
    permille(fee, SUPERVISOR_QUOTA_PERMILLE)
}

/// The evaluators' quota of a fee.
pub fn evaluator_quota(fee: Amount) -> Amount {
    permille(fee, EVALUATOR_QUOTA_PERMILLE)
}

/// The miners' share of a fee: the fee minus both quotas.
pub fn miners_share(fee: Amount) -> Amount {
    fee.checked_sub(supervisor_quota(fee))
        .and_then(|r| r.checked_sub(evaluator_quota(fee)))
        .unwrap_or(Amount::ZERO)
}

fn add(a: Amount, b: Amount, what: &'static str) -> Result<Amount, ConsensusError> {
    a.checked_add(b).ok_or(ConsensusError::AmountOverflow(what))
}

fn schedule(overlay: &mut Overlay<'_>, height: u64, task: TaskId) {
    overlay.set(StateKey::TaskDeadline { height, task }, Some(StateValue::Marker));
}

fn save(overlay: &mut Overlay<'_>, id: TaskId, rec: TaskRecord) {
    overlay.set(StateKey::Task(id), Some(StateValue::Task(Box::new(rec))));
}

/// A block whose PoUW proof trains a client task (a task in state) must train a task in
/// Training, and its miner must be one of the task's selected miners. Checked against the
/// parent state, before the block's own deadlines run. Blocks on other task ids (filler
/// tasks) are the PoUW validator's business.
pub fn check_block_task(state: &State, block: &Block) -> Result<(), ConsensusError> {
    if block.proof.is_none() {
        return Ok(());
    }
    let id = block.header.task_id;
    let Some(task) = task_record(state, &id) else { return Ok(()) };
    if task.status != TaskStatus::Training {
        return Err(ConsensusError::WrongPhase {
            task: id,
            phase: task.status.name(),
            action: "mine a block",
        });
    }
    if !task.participants.miners.iter().any(|s| s.worker == block.header.miner) {
        return Err(ConsensusError::NotAuthorized {
            account: block.header.miner,
            action: "mine a block as miner",
            task: id,
        });
    }
    if task.is_convicted(&block.header.miner) {
        return Err(ConsensusError::Convicted { task: id, miner: block.header.miner });
    }
    Ok(())
}

/// The record of task `id` in `state`.
pub fn task_record(state: &State, id: &TaskId) -> Option<TaskRecord> {
    match state.get(&StateKey::Task(*id)) {
        Some(StateValue::Task(t)) => Some((**t).clone()),
        _ => None,
    }
}
