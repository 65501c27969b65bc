//! The task lifecycle on chain: registration (escrow), worker commitments, and the
//! evaluators' verdict that pays the workers and closes the task (SPEC section 3).
//!
//! Money of a task: the client's fee sits in `TaskRecord::escrow` until a verdict reaches a
//! strict majority of the task's `workers.evaluators`. Executing the verdict forms a pot of
//! `escrow + the confiscated stakes`, pays every payout from it (payouts are at most the
//! escrow, checked when the vote is cast), and refunds the rest of the pot to the client. So
//! a confiscated stake ends with the client, as compensation for the sabotaged work, and the
//! sum of balances, escrows and stakes is unchanged by every step.

use crate::{
    state::{Overlay, StateKey, StateValue, TaskRecord, TaskStatus},
    tickets, BlockContext, ConsensusError,
};
use pouw_primitives::{codec, Address, Amount, Hash, Payout, Role, TaskDefinition, TaskId};
use std::collections::BTreeSet;

/// Registers a task: validates it, moves `fee` from the client into escrow.
pub(crate) fn pay_for_task(
    overlay: &mut Overlay<'_>,
    id: TaskId,
    client: Address,
    task: &TaskDefinition,
    fee: Amount,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    task.validate()?;
    if fee.is_zero() {
        return Err(ConsensusError::ZeroAmount("task fee"));
    }
    if overlay.get(&StateKey::Task(id)).is_some() {
        return Err(ConsensusError::DuplicateTask(id));
    }
    overlay.debit(&client, fee)?;
    let record = TaskRecord {
        client,
        definition: task.clone(),
        escrow: fee,
        created_at: ctx.height,
        created_in: ctx.seed,
        status: TaskStatus::Open,
    };
    overlay.set(StateKey::Task(id), Some(StateValue::Task(Box::new(record))));
    Ok(())
}

/// The open task `id`.
fn open_task(overlay: &Overlay<'_>, id: &TaskId) -> Result<TaskRecord, ConsensusError> {
    let task = overlay.task(id).ok_or(ConsensusError::UnknownTask(*id))?;
    match task.status {
        TaskStatus::Open => Ok(task),
        TaskStatus::Closed { .. } => Err(ConsensusError::TaskClosed(*id)),
    }
}

/// **The one authorisation check** for worker transactions (MessageHistory needs a
/// supervisor, SubmitModel a miner, ChargeForTask an evaluator). Returns the id of the ticket
/// that authorises `account`.
///
/// Interim rule, until committee selection (SPEC section 3, step 1) lands: `account` must hold
/// a live ticket of `role` whose stake is at least the task's `preferences.min_stake` and that
/// has a GPU if the task needs one. Every ticket in state is live (tickets expiring at height
/// h are removed before the block at h runs its transactions); the `expires_at` check below
/// only guards that invariant. The selection issue replaces this function's body with "was
/// `account` selected for `role` in `task`" (reading the selection recorded in state) and
/// nothing else needs to change.
pub fn authorize_worker(
    overlay: &Overlay<'_>,
    task_id: &TaskId,
    task: &TaskRecord,
    account: &Address,
    role: Role,
    height: u64,
) -> Result<Hash, ConsensusError> {
    let prefs = &task.definition.preferences;
    tickets::tickets_of(overlay, account, role)
        .into_iter()
        .find(|id| {
            overlay.ticket(id).is_some_and(|t| {
                t.expires_at > height
                    && t.stake >= prefs.min_stake
                    && (t.preferences.has_gpu || !prefs.needs_gpu)
            })
        })
        .ok_or(ConsensusError::NotAuthorized {
            account: *account,
            action: role_action(role),
            task: *task_id,
        })
}

fn role_action(role: Role) -> &'static str {
    match role {
        Role::Miner => "submit a model as miner",
        Role::Supervisor => "commit message history as supervisor",
        Role::Evaluator => "vote as evaluator",
        Role::Verifier => "attest as verifier",
    }
}

/// A supervisor commits the Merkle root of one slot of iteration messages.
pub(crate) fn message_history(
    overlay: &mut Overlay<'_>,
    supervisor: Address,
    task_id: TaskId,
    slot: u32,
    root: Hash,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    let task = open_task(overlay, &task_id)?;
    authorize_worker(overlay, &task_id, &task, &supervisor, Role::Supervisor, ctx.height)?;
    let key = StateKey::MessageHistory { task: task_id, slot, supervisor };
    if overlay.get(&key).is_some() {
        return Err(ConsensusError::AlreadyRecorded {
            what: "message-history slot",
            task: task_id,
            account: supervisor,
        });
    }
    overlay.set(key, Some(StateValue::Hash(root)));
    Ok(())
}

/// A miner submits the hash of its final model (once per task).
pub(crate) fn submit_model(
    overlay: &mut Overlay<'_>,
    miner: Address,
    task_id: TaskId,
    model_hash: Hash,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    let task = open_task(overlay, &task_id)?;
    authorize_worker(overlay, &task_id, &task, &miner, Role::Miner, ctx.height)?;
    let key = StateKey::SubmittedModel { task: task_id, miner };
    if overlay.get(&key).is_some() {
        return Err(ConsensusError::AlreadyRecorded {
            what: "model",
            task: task_id,
            account: miner,
        });
    }
    overlay.set(key, Some(StateValue::Hash(model_hash)));
    Ok(())
}

/// The hash that identifies a verdict: two evaluators agree iff their verdicts hash alike.
pub fn verdict_hash(ranking: &[Address], payouts: &[Payout], confiscations: &[Address]) -> Hash {
    Hash::tagged("pouw/verdict", &codec::encode(&(ranking, payouts, confiscations)))
}

fn no_duplicates<'a>(
    list: &'static str,
    items: impl IntoIterator<Item = &'a Address>,
) -> Result<(), ConsensusError> {
    let mut seen = BTreeSet::new();
    for a in items {
        if !seen.insert(*a) {
            return Err(ConsensusError::DuplicateInVerdict { list, account: *a });
        }
    }
    Ok(())
}

/// The verdict of one evaluator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verdict<'a> {
    pub(crate) task_id: TaskId,
    pub(crate) ranking: &'a [Address],
    pub(crate) payouts: &'a [Payout],
    pub(crate) confiscations: &'a [Address],
}

/// An evaluator's vote; executes the verdict when it reaches a strict majority of the task's
/// `workers.evaluators`.
pub(crate) fn charge_for_task(
    overlay: &mut Overlay<'_>,
    evaluator: Address,
    v: Verdict<'_>,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    let task_id = v.task_id;
    let task = open_task(overlay, &task_id)?;
    // Syntax of the verdict first: it is the same for every evaluator.
    no_duplicates("ranking", v.ranking)?;
    no_duplicates("payouts", v.payouts.iter().map(|p| &p.to))?;
    no_duplicates("confiscations", v.confiscations)?;
    let mut total = Amount::ZERO;
    for p in v.payouts {
        if p.amount.is_zero() {
            return Err(ConsensusError::ZeroAmount("payout"));
        }
        total = total.checked_add(p.amount).ok_or(ConsensusError::AmountOverflow("payouts"))?;
    }
    if total > task.escrow {
        return Err(ConsensusError::PayoutsExceedEscrow { total, escrow: task.escrow });
    }
    authorize_worker(overlay, &task_id, &task, &evaluator, Role::Evaluator, ctx.height)?;
    let vote_key = StateKey::Verdict { task: task_id, evaluator };
    if overlay.get(&vote_key).is_some() {
        return Err(ConsensusError::DoubleVote { task: task_id, evaluator });
    }
    let verdict = verdict_hash(v.ranking, v.payouts, v.confiscations);
    overlay.set(vote_key, Some(StateValue::Hash(verdict)));
    let count_key = StateKey::VerdictVotes { task: task_id, verdict };
    let votes = match overlay.get(&count_key) {
        Some(StateValue::Count(n)) => n,
        _ => 0,
    }
    .checked_add(1)
    .ok_or(ConsensusError::AmountOverflow("votes"))?;
    overlay.set(count_key, Some(StateValue::Count(votes)));
    let evaluators = u64::from(task.definition.workers.evaluators);
    let majority = votes.checked_mul(2).is_some_and(|twice| twice > evaluators);
    if majority {
        execute_verdict(overlay, task_id, task, v, verdict, ctx.height)?;
    }
    Ok(())
}

/// Pays a verdict that reached a majority; see the module docs for where the money goes.
fn execute_verdict(
    overlay: &mut Overlay<'_>,
    task_id: TaskId,
    mut task: TaskRecord,
    v: Verdict<'_>,
    verdict: Hash,
    height: u64,
) -> Result<(), ConsensusError> {
    let mut pot = task.escrow;
    for worker in v.confiscations {
        let taken = tickets::confiscate_all(overlay, worker)?;
        pot = pot.checked_add(taken).ok_or(ConsensusError::AmountOverflow("verdict pot"))?;
    }
    for p in v.payouts {
        pot = pot
            .checked_sub(p.amount)
            .ok_or(ConsensusError::PayoutsExceedEscrow { total: p.amount, escrow: pot })?;
        overlay.credit(&p.to, p.amount)?;
    }
    if !pot.is_zero() {
        overlay.credit(&task.client, pot)?;
    }
    task.escrow = Amount::ZERO;
    task.status = TaskStatus::Closed { at: height, verdict };
    overlay.set(StateKey::Task(task_id), Some(StateValue::Task(Box::new(task))));
    Ok(())
}
