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

// ---- money helpers -----------------------------------------------------------------------

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

/// The by-rank split of the miners' pot: with `n` ranked miners, the miner at rank `i`
/// (0 = best) gets `pot * (n - i) / (n (n + 1) / 2)` (floored), and the rounding remainder
/// goes to the best. Zero amounts are left out. Empty for an empty ranking.
pub fn rank_payouts(pot: Amount, ranking: &[Address]) -> Vec<Payout> {
    let n = u128::try_from(ranking.len()).unwrap_or(u128::MAX);
    let weights = n.checked_mul(n.saturating_add(1)).and_then(|v| v.checked_div(2)).unwrap_or(0);
    if weights == 0 {
        return vec![];
    }
    let pot128 = u128::from(pot.units());
    let mut amounts: Vec<u128> = (0..n)
        .map(|i| {
            pot128
                .checked_mul(n.saturating_sub(i))
                .and_then(|v| v.checked_div(weights))
                .unwrap_or(0)
        })
        .collect();
    let paid = amounts.iter().fold(0u128, |acc, a| acc.saturating_add(*a));
    if let Some(first) = amounts.first_mut() {
        *first = first.saturating_add(pot128.saturating_sub(paid));
    }
    ranking
        .iter()
        .zip(amounts)
        .filter(|(_, a)| *a > 0)
        .map(|(to, a)| Payout { to: *to, amount: Amount(u64::try_from(a).unwrap_or(0)) })
        .collect()
}

// ---- registration ------------------------------------------------------------------------

/// The rules of a PayForTask that need no state: positive fee, valid definition (ranges,
/// batch within the training set, committees of at least `3f + 1`), and the minimum task
/// cost (design/010): an iteration on a full batch earns at least `spec.min_task_nonces`
/// nonces ([`crate::pouw::task_nonce_budget`]) and spends at least `spec.min_flops_per_nonce`
/// training FLOPs per nonce ([`crate::pouw::iteration_flops`]), so no client can pay for a
/// task whose nonces are cheaper than the chain prices them; and its first layer gives the
/// order seed at least `spec.min_order_units` units to shuffle (design/010).
pub fn check_pay_for_task(
    task: &TaskDefinition,
    fee: Amount,
    spec: &ChainSpec,
) -> Result<(), ConsensusError> {
    if fee.is_zero() {
        return Err(ConsensusError::ZeroAmount("task fee"));
    }
    task.validate()?;
    let nonces = crate::pouw::task_nonce_budget(spec, task);
    if nonces < spec.min_task_nonces {
        return Err(ConsensusError::TaskTooCheap { nonces, min: spec.min_task_nonces });
    }
    let flops = crate::pouw::iteration_flops(task);
    if u128::from(flops) < u128::from(nonces).saturating_mul(u128::from(spec.min_flops_per_nonce)) {
        return Err(ConsensusError::TaskTooCheapPerNonce {
            flops,
            nonces,
            min_per_nonce: spec.min_flops_per_nonce,
        });
    }
    // The order seed must have enough orders to draw from (design/010, "The binding").
    let units = crate::pouw::ml_specs(task)
        .ok()
        .and_then(|(model, _)| model.layout().ok())
        .map_or(0, |layout| layout.order_units());
    let units = u64::try_from(units).unwrap_or(u64::MAX);
    if units < u64::from(spec.min_order_units) {
        return Err(ConsensusError::TaskOrderTooSmall {
            units,
            min: u64::from(spec.min_order_units),
        });
    }
    Ok(())
}

/// The client's bond of a task with this fee (design/014): `spec.client_bond_bps` of the fee,
/// floored. Locked by the PayForTask besides the fee.
pub fn client_bond(fee: Amount, spec: &ChainSpec) -> Result<Amount, ConsensusError> {
    let v = u128::from(fee.units())
        .checked_mul(u128::from(spec.client_bond_bps))
        .and_then(|v| v.checked_div(10_000))
        .and_then(|v| u64::try_from(v).ok())
        .ok_or(ConsensusError::AmountOverflow("client bond"))?;
    Ok(Amount(v))
}

/// The deadlines of a task registered in block `h`: (selection height `h + 1`, training
/// deadline `T = h + 1 + training_blocks`, finalisation deadline `F = T + evaluation_blocks`).
pub fn task_deadlines(
    task: &TaskDefinition,
    registered_at: u64,
) -> Result<(u64, u64, u64), ConsensusError> {
    let selection = registered_at.checked_add(1).ok_or(ConsensusError::DeadlineOverflow)?;
    let training = selection
        .checked_add(task.deadlines.training_blocks)
        .ok_or(ConsensusError::DeadlineOverflow)?;
    let finalisation = training
        .checked_add(task.deadlines.evaluation_blocks)
        .ok_or(ConsensusError::DeadlineOverflow)?;
    Ok((selection, training, finalisation))
}

fn schedule(overlay: &mut Overlay<'_>, height: u64, task: TaskId) {
    overlay.set(StateKey::TaskDeadline { height, task }, Some(StateValue::Marker));
}

fn save(overlay: &mut Overlay<'_>, id: TaskId, rec: TaskRecord) {
    overlay.set(StateKey::Task(id), Some(StateValue::Task(Box::new(rec))));
}

/// Registers a task: validates it, moves `fee` from the client into escrow and locks the
/// client's bond ([`client_bond`]), and schedules the selection at the next block.
pub(crate) fn pay_for_task(
    overlay: &mut Overlay<'_>,
    id: TaskId,
    client: Address,
    task: &TaskDefinition,
    fee: Amount,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    check_pay_for_task(task, fee, ctx.spec)?;
    if overlay.get(&StateKey::Task(id)).is_some() {
        return Err(ConsensusError::DuplicateTask(id));
    }
    let (selection, training_deadline, finalisation_deadline) = task_deadlines(task, ctx.height)?;
    let bond = client_bond(fee, ctx.spec)?;
    overlay.debit(&client, add(fee, bond, "fee and client bond")?)?;
    let record = TaskRecord {
        client,
        definition: task.clone(),
        fee,
        escrow: fee,
        bond,
        created_at: ctx.height,
        created_in: ctx.seed,
        seed: Hash::ZERO,
        training_deadline,
        finalisation_deadline,
        participants: Participants::default(),
        models: vec![],
        history_committers: vec![],
        accusations: vec![],
        convictions: vec![],
        status: TaskStatus::Registered,
        settlement: None,
    };
    save(overlay, id, record);
    schedule(overlay, selection, id);
    Ok(())
}

// ---- selection ---------------------------------------------------------------------------

/// A ticket that may be drawn for a role of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Ticket id.
    pub ticket: Hash,
    /// Its owner.
    pub owner: Address,
    /// Its stake (the draw weight).
    pub stake: Amount,
}

/// Whether `ticket` may serve `role` in a task with this definition and fee, by a client
/// `client`, whose finalisation deadline is `ends_at`: positive stake, a model within the
/// ticket's `max_params` (0 = any), a fee of at least the ticket's `min_fee`, a ticket that
/// outlives the task (`expires_at > ends_at`), not the client's own, and for the miner role
/// only, a GPU if the task needs one.
///
/// The client's filters cannot pick a committee (design/010, attack 2): the task's
/// `min_stake` is not a filter (every ticket locks at least the chain's `min_ticket_stake`,
/// and a floor above it would let a client whose own tickets alone meet it fill every seat),
/// and `needs_gpu` (a ticket's own claim) narrows the miners only, so supervisors, evaluators
/// and verifiers are drawn by stake from every live ticket of their role.
pub fn ticket_matches(
    ticket: &Ticket,
    role: Role,
    task: &TaskDefinition,
    fee: Amount,
    client: &Address,
    ends_at: u64,
) -> bool {
    let params = task.parameter_count().unwrap_or(u64::MAX);
    let gpu_ok = ticket.preferences.has_gpu || !task.preferences.needs_gpu || role != Role::Miner;
    !ticket.stake.is_zero()
        && gpu_ok
        && (ticket.preferences.max_params == 0 || params <= ticket.preferences.max_params)
        && ticket.preferences.min_fee <= fee
        && ticket.expires_at > ends_at
        && ticket.owner != *client
}

fn candidates(
    overlay: &Overlay<'_>,
    role: Role,
    task: &TaskDefinition,
    fee: Amount,
    client: &Address,
    ends_at: u64,
) -> Vec<Candidate> {
    tickets::free_tickets(overlay, role)
        .into_iter()
        .filter_map(|id| {
            let t = overlay.ticket(&id)?;
            ticket_matches(&t, role, task, fee, client, ends_at).then_some(Candidate {
                ticket: id,
                owner: t.owner,
                stake: t.stake,
            })
        })
        .collect()
}

fn role_code(role: Role) -> u8 {
    match role {
        Role::Miner => 0,
        Role::Supervisor => 1,
        Role::Evaluator => 2,
        Role::Verifier => 3,
    }
}

/// The `draw`-th random number of a task's selection for `role`:
/// `BLAKE3("pouw/select" || seed || task || role || draw)`, first 16 bytes little-endian.
pub fn selection_draw(seed: &Hash, task: &TaskId, role: Role, draw: u16) -> u128 {
    let mut bytes = Vec::with_capacity(67);
    bytes.extend_from_slice(seed.as_bytes());
    bytes.extend_from_slice(task.as_bytes());
    bytes.push(role_code(role));
    bytes.extend_from_slice(&draw.to_le_bytes());
    let h = Hash::tagged("pouw/select", &bytes);
    let mut b = [0u8; 16];
    for (dst, src) in b.iter_mut().zip(h.as_bytes().iter()) {
        *dst = *src;
    }
    u128::from_le_bytes(b)
}

/// Deterministic stake-weighted sampling without replacement: `wanted` draws from
/// `candidates` (in the given order, normally ticket-id order), skipping zero stakes and the
/// owners in `excluded`. Draw `d` picks the candidate whose cumulative-stake interval holds
/// `selection_draw(seed, task, role, d) mod total_stake`; the chosen candidate and every other
/// ticket of its owner leave the pool (one seat per worker). `Err(available)` (the number of
/// distinct eligible owners) if fewer than `wanted`.
pub fn select_weighted(
    seed: &Hash,
    task: &TaskId,
    role: Role,
    candidates: &[Candidate],
    wanted: u16,
    excluded: &BTreeSet<Address>,
) -> Result<Vec<Candidate>, u32> {
    let mut pool: Vec<&Candidate> =
        candidates.iter().filter(|c| !c.stake.is_zero() && !excluded.contains(&c.owner)).collect();
    let distinct = pool.iter().map(|c| c.owner).collect::<BTreeSet<_>>().len();
    let available = u32::try_from(distinct).unwrap_or(u32::MAX);
    if distinct < usize::from(wanted) {
        return Err(available);
    }
    let mut out = Vec::with_capacity(usize::from(wanted));
    for draw in 0..wanted {
        let total =
            pool.iter().fold(0u128, |acc, c| acc.saturating_add(u128::from(c.stake.units())));
        let r = selection_draw(seed, task, role, draw).checked_rem(total).ok_or(available)?;
        let mut acc = 0u128;
        let mut chosen = None;
        for c in &pool {
            acc = acc.saturating_add(u128::from(c.stake.units()));
            if r < acc {
                chosen = Some((*c).clone());
                break;
            }
        }
        let chosen = chosen.ok_or(available)?;
        pool.retain(|c| c.owner != chosen.owner);
        out.push(chosen);
    }
    Ok(out)
}

fn wanted(task: &TaskDefinition, role: Role) -> u16 {
    match role {
        Role::Miner => task.workers.miners,
        Role::Supervisor => task.workers.supervisors,
        Role::Evaluator => task.workers.evaluators,
        Role::Verifier => task.workers.verifiers,
    }
}

/// Selects the committee of a registered task at its selection block; refuses it (full
/// refund) if a role cannot be filled.
fn select_workers(
    overlay: &mut Overlay<'_>,
    id: TaskId,
    mut rec: TaskRecord,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    rec.seed = ctx.seed;
    let mut excluded = BTreeSet::from([rec.client]);
    let mut chosen: Vec<(Role, Vec<Candidate>)> = Vec::with_capacity(SELECTED_ROLES.len());
    for role in SELECTED_ROLES {
        let want = wanted(&rec.definition, role);
        let pool = candidates(
            overlay,
            role,
            &rec.definition,
            rec.fee,
            &rec.client,
            rec.finalisation_deadline,
        );
        match select_weighted(&rec.seed, &id, role, &pool, want, &excluded) {
            Ok(seats) => {
                excluded.extend(seats.iter().map(|c| c.owner));
                chosen.push((role, seats));
            }
            Err(available) => {
                let refund = rec.escrow;
                overlay.credit(&rec.client, refund)?;
                rec.escrow = Amount::ZERO;
                let bond_returned = return_bond(overlay, &mut rec)?;
                rec.status = TaskStatus::Refused {
                    at: ctx.height,
                    reason: Refusal::NotEnoughWorkers { role, wanted: want, available },
                };
                rec.settlement =
                    Some(Settlement { refund, bond_returned, ..Settlement::default() });
                save(overlay, id, rec);
                return Ok(());
            }
        }
    }
    for (role, seats) in chosen {
        for c in seats {
            tickets::bind_ticket(overlay, role, &c.ticket);
            let seat = Seat { worker: c.owner, ticket: c.ticket };
            match role {
                Role::Miner => rec.participants.miners.push(seat),
                Role::Supervisor => rec.participants.supervisors.push(seat),
                Role::Evaluator => rec.participants.evaluators.push(seat),
                Role::Verifier => rec.participants.verifiers.push(seat),
            }
        }
    }
    rec.status = TaskStatus::Training;
    schedule(overlay, rec.training_deadline, id);
    save(overlay, id, rec);
    Ok(())
}

/// Distinct workers with a live, free ticket matching a task, per selected role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerAvailability {
    /// Eligible miners.
    pub miners: u32,
    /// Eligible supervisors.
    pub supervisors: u32,
    /// Eligible evaluators.
    pub evaluators: u32,
    /// Eligible verifiers.
    pub verifiers: u32,
}

/// How many distinct workers could serve each role of `task` if its PayForTask went into the
/// block after `tip_height` (so selection at `tip_height + 2`): free tickets matching the
/// task ([`ticket_matches`]) whose owner is not `client`. Counted per role independently, so
/// a worker with tickets in two roles counts in both (selection gives it one seat).
pub fn available_workers(
    state: &State,
    task: &TaskDefinition,
    fee: Amount,
    client: &Address,
    tip_height: u64,
) -> Result<WorkerAvailability, ConsensusError> {
    let registered_at = tip_height.checked_add(1).ok_or(ConsensusError::DeadlineOverflow)?;
    let (_, _, ends_at) = task_deadlines(task, registered_at)?;
    let overlay = Overlay::new(state);
    let count = |role| {
        let owners: BTreeSet<Address> = candidates(&overlay, role, task, fee, client, ends_at)
            .into_iter()
            .map(|c| c.owner)
            .collect();
        u32::try_from(owners.len()).unwrap_or(u32::MAX)
    };
    Ok(WorkerAvailability {
        miners: count(Role::Miner),
        supervisors: count(Role::Supervisor),
        evaluators: count(Role::Evaluator),
        verifiers: count(Role::Verifier),
    })
}

/// [`available_workers`] against the task's wants: `Err` with the first role that cannot be
/// filled (what the selection would refuse the task for), so a client can stop before paying.
pub fn check_workers_available(
    state: &State,
    task: &TaskDefinition,
    fee: Amount,
    client: &Address,
    tip_height: u64,
) -> Result<WorkerAvailability, Refusal> {
    let a = available_workers(state, task, fee, client, tip_height).map_err(|_| {
        Refusal::NotEnoughWorkers { role: Role::Miner, wanted: task.workers.miners, available: 0 }
    })?;
    for (role, available) in [
        (Role::Miner, a.miners),
        (Role::Supervisor, a.supervisors),
        (Role::Evaluator, a.evaluators),
        (Role::Verifier, a.verifiers),
    ] {
        let want = wanted(task, role);
        if available < u32::from(want) {
            return Err(Refusal::NotEnoughWorkers { role, wanted: want, available });
        }
    }
    Ok(a)
}

// ---- the split ---------------------------------------------------------------------------

/// Which of the task's [`DATASET_SEGMENTS`] segments are for training, validation and test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskSplit {
    /// Segment indices (positions in the client's segment list), shuffled.
    pub order: Vec<usize>,
    /// Training segments: the front of `order`.
    pub train: Vec<usize>,
    /// Validation segments: just before the test segments.
    pub validation: Vec<usize>,
    /// Test segments: the back of `order` (the client keeps them until finalisation).
    pub test: Vec<usize>,
}

impl TaskSplit {
    /// The same split as the engine's [`pouw_ml::Split`] (for `pouw_ml::BatchSchedule`).
    pub fn to_ml(&self) -> pouw_ml::Split {
        pouw_ml::Split {
            order: self.order.clone(),
            train: self.train.clone(),
            validation: self.validation.clone(),
            test: self.test.clone(),
        }
    }
}

/// The engine's key-derivation context of the segment shuffle (`pouw_ml::Split`).
pub const SPLIT_CONTEXT: &str = "pouw-ml v1 segment split";

/// Shuffles the segment indices `0..10` with `seed`, exactly as the engine's
/// `pouw_ml::Split::new` does (Fisher-Yates from the back with the integer-only, unbiased
/// `pouw_ml::Rng::derived(SPLIT_CONTEXT, seed, 0)`, a BLAKE3-keyed xoshiro256**), so a local
/// dry run with `pouw train --seed <seed>` sees the same segments; then cuts the result with
/// integer counts: the last `test_segments` are the test set, the `validation_segments`
/// before them the validation set, the rest the training set.
pub fn split_segments(seed: &Hash, test_segments: u64, validation_segments: u64) -> TaskSplit {
    let mut order: Vec<usize> = (0..DATASET_SEGMENTS).collect();
    pouw_ml::Rng::derived(SPLIT_CONTEXT, seed.as_bytes(), 0).shuffle(&mut order);
    let n = DATASET_SEGMENTS;
    let test = usize::try_from(test_segments).unwrap_or(n).min(n);
    let validation = usize::try_from(validation_segments).unwrap_or(n).min(n.saturating_sub(test));
    let train_end = n.saturating_sub(test).saturating_sub(validation);
    TaskSplit {
        train: order.iter().take(train_end).copied().collect(),
        validation: order.iter().skip(train_end).take(validation).copied().collect(),
        test: order.iter().skip(train_end.saturating_add(validation)).copied().collect(),
        order,
    }
}

/// The split of a task fixed by the hash of the block holding its PayForTask (the seed), with
/// the default test fraction (300 per-mille = 3 test segments) and no validation segment:
/// `(training segment indices, test segment indices)`.
pub fn task_split(seed: Hash) -> (Vec<usize>, Vec<usize>) {
    let s = split_segments(&seed, 3, 0);
    (s.train, s.test)
}

/// The split of a task with its own `test_permille` and `validation_permille`
/// ([`pouw_primitives::DatasetDef::test_segments`]).
pub fn task_split_of(task: &TaskDefinition, seed: &Hash) -> TaskSplit {
    split_segments(seed, task.dataset.test_segments(), task.dataset.validation_segments())
}

// ---- deadlines ---------------------------------------------------------------------------

/// Runs the task deadlines due at `ctx.height`: selections of the tasks registered in the
/// previous block, training deadlines (-> Finalising) and finalisation deadlines (-> Expired).
/// O(tasks due): reads only the `TaskDeadline` index entries of this height.
pub(crate) fn process_deadlines(
    overlay: &mut Overlay<'_>,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    let height = ctx.height;
    let due: Vec<TaskId> = overlay
        .range_keys_inclusive(
            &StateKey::TaskDeadline { height, task: LOWEST },
            &StateKey::TaskDeadline { height, task: HIGHEST },
        )
        .into_iter()
        .filter_map(|k| match k {
            StateKey::TaskDeadline { task, .. } => Some(task),
            _ => None,
        })
        .collect();
    for id in due {
        overlay.set(StateKey::TaskDeadline { height, task: id }, None);
        let Some(mut rec) = overlay.task(&id) else { continue };
        match rec.status {
            TaskStatus::Registered => select_workers(overlay, id, rec, ctx)?,
            TaskStatus::Training => {
                rec.status = TaskStatus::Finalising { since: height };
                schedule(overlay, rec.finalisation_deadline, id);
                save(overlay, id, rec);
            }
            TaskStatus::Finalising { .. } => {
                if height >= rec.finalisation_deadline {
                    expire(overlay, id, rec, height)?;
                } else {
                    schedule(overlay, rec.finalisation_deadline, id);
                }
            }
            TaskStatus::Completed { .. } => {
                let holds = rec.settlement.as_ref().is_some_and(|s| !s.held.is_empty());
                if height >= rec.finalisation_deadline {
                    refund_held_shares(overlay, id, rec)?;
                } else if holds {
                    // Completed before the training deadline (early finalisation): the
                    // held shares wait for the finalisation deadline.
                    schedule(overlay, rec.finalisation_deadline, id);
                }
            }
            TaskStatus::Expired { .. } | TaskStatus::Refused { .. } => {}
        }
    }
    Ok(())
}

/// The finalisation deadline of a completed task: the evaluators' shares still held (their
/// votes never reached the chain) go back to the client, and nothing is held any more.
fn refund_held_shares(
    overlay: &mut Overlay<'_>,
    id: TaskId,
    mut rec: TaskRecord,
) -> Result<(), ConsensusError> {
    let refund = rec.escrow;
    let holds = rec.settlement.as_ref().is_some_and(|s| !s.held.is_empty());
    if refund.is_zero() && !holds {
        return Ok(());
    }
    overlay.credit(&rec.client, refund)?;
    let mut settlement = rec.settlement.take().unwrap_or_default();
    settlement.refund = add(settlement.refund, refund, "refund")?;
    settlement.held.clear();
    rec.escrow = Amount::ZERO;
    rec.settlement = Some(settlement);
    save(overlay, id, rec);
    Ok(())
}

/// The client's bond goes back to it (nothing if already settled); returns the amount.
fn return_bond(overlay: &mut Overlay<'_>, rec: &mut TaskRecord) -> Result<Amount, ConsensusError> {
    let bond = rec.bond;
    if !bond.is_zero() {
        overlay.credit(&rec.client, bond)?;
    }
    rec.bond = Amount::ZERO;
    Ok(bond)
}

/// Whether the test set of a task that reached its finalisation deadline without a verdict
/// counts as withheld (design/014): fewer than a strict majority of its selected evaluators
/// recorded a vote (an evaluator votes only once it holds the test set, and honest evaluators
/// all vote once the client serves it), while at least one miner not convicted submitted a
/// model (there was something to evaluate).
fn test_set_withheld(overlay: &Overlay<'_>, id: &TaskId, rec: &TaskRecord) -> bool {
    let votes = rec
        .participants
        .evaluators
        .iter()
        .filter(|s| {
            overlay.hash_at(&StateKey::Verdict { task: *id, evaluator: s.worker }).is_some()
        })
        .count();
    let majority_voted = votes.saturating_mul(2) > rec.participants.evaluators.len();
    !majority_voted && rec.models.iter().any(|m| !rec.is_convicted(m))
}

/// The finalisation deadline passed without a majority: every selected ticket is released
/// (no confiscation). If the test set counts as withheld ([`test_set_withheld`]), the miners
/// that submitted a model and were not convicted are paid equal parts of the miners' share of
/// the fee plus the client's bond (no evaluation is possible, so no ranking), and the rest of
/// the escrow goes back to the client; otherwise the whole escrow and the bond go back to the
/// client (the evaluators disagreed or were silent: not the client's fault).
fn expire(
    overlay: &mut Overlay<'_>,
    id: TaskId,
    mut rec: TaskRecord,
    height: u64,
) -> Result<(), ConsensusError> {
    for (_, seat) in rec.participants.all() {
        tickets::release_ticket(overlay, &seat.ticket)?;
    }
    let mut settlement = Settlement::default();
    let mut refund = rec.escrow;
    if test_set_withheld(overlay, &id, &rec) {
        let miners: Vec<Address> =
            rec.models.iter().copied().filter(|m| !rec.is_convicted(m)).collect();
        let bond = rec.bond;
        rec.bond = Amount::ZERO;
        let pot = add(miners_share(rec.fee), bond, "withheld-test pot")?;
        let paid = pay_equal(overlay, pot, &miners, &mut settlement)?;
        settlement.bond_confiscated = bond;
        // The bond is in the pot: what the miners did not get (rounding) goes to the client.
        refund = add(refund, bond, "refund")?
            .checked_sub(paid)
            .ok_or(ConsensusError::PayoutsExceedEscrow { total: paid, escrow: refund })?;
    } else {
        settlement.bond_returned = return_bond(overlay, &mut rec)?;
    }
    if !refund.is_zero() {
        overlay.credit(&rec.client, refund)?;
    }
    settlement.refund = refund;
    rec.escrow = Amount::ZERO;
    rec.status = TaskStatus::Expired { at: height };
    rec.settlement = Some(settlement);
    save(overlay, id, rec);
    Ok(())
}

// ---- worker transactions -----------------------------------------------------------------

fn role_action(role: Role) -> &'static str {
    match role {
        Role::Miner => "submit a model as miner",
        Role::Supervisor => "commit message history as supervisor",
        Role::Evaluator => "vote as evaluator",
        Role::Verifier => "attest as verifier",
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Miner => "selected miner",
        Role::Supervisor => "selected supervisor",
        Role::Evaluator => "selected evaluator",
        Role::Verifier => "selected verifier",
    }
}

/// **The authorisation check** for worker transactions: `account` must have been selected for
/// `role` in this task (MessageHistory: a supervisor, SubmitModel: a miner, ChargeForTask: an
/// evaluator). Returns the id of the ticket that won the seat.
pub fn authorize_worker(
    task_id: &TaskId,
    task: &TaskRecord,
    account: &Address,
    role: Role,
) -> Result<Hash, ConsensusError> {
    task.participants.of(role).iter().find(|s| s.worker == *account).map(|s| s.ticket).ok_or(
        ConsensusError::NotAuthorized {
            account: *account,
            action: role_action(role),
            task: *task_id,
        },
    )
}

/// The task `id`, which must be in a phase `allowed` accepts.
fn task_in_phase(
    overlay: &Overlay<'_>,
    id: &TaskId,
    action: &'static str,
    allowed: impl Fn(&TaskStatus) -> bool,
) -> Result<TaskRecord, ConsensusError> {
    let task = overlay.task(id).ok_or(ConsensusError::UnknownTask(*id))?;
    if task.status.is_terminal() {
        return Err(ConsensusError::TaskClosed(*id));
    }
    if !allowed(&task.status) {
        return Err(ConsensusError::WrongPhase { task: *id, phase: task.status.name(), action });
    }
    Ok(task)
}

/// A supervisor commits the Merkle root of one slot of iteration messages (Training or
/// Finalising; one root per slot and supervisor).
pub(crate) fn message_history(
    overlay: &mut Overlay<'_>,
    supervisor: Address,
    task_id: TaskId,
    slot: u32,
    root: Hash,
) -> Result<(), ConsensusError> {
    let mut task = task_in_phase(overlay, &task_id, role_action(Role::Supervisor), |s| {
        matches!(s, TaskStatus::Training | TaskStatus::Finalising { .. })
    })?;
    authorize_worker(&task_id, &task, &supervisor, Role::Supervisor)?;
    if slot >= MAX_HISTORY_SLOTS {
        return Err(ConsensusError::HistorySlotOutOfRange { slot, max: MAX_HISTORY_SLOTS });
    }
    let key = StateKey::MessageHistory { task: task_id, slot, supervisor };
    if overlay.get(&key).is_some() {
        return Err(ConsensusError::AlreadyRecorded {
            what: "message-history slot",
            task: task_id,
            account: supervisor,
        });
    }
    overlay.set(key, Some(StateValue::Hash(root)));
    if !task.history_committers.contains(&supervisor) {
        task.history_committers.push(supervisor);
        save(overlay, task_id, task);
    }
    Ok(())
}

/// Checks that `m` is a message of `miner` for task `task_id`, signed by it (design/013).
fn check_evidence_message(
    task_id: &TaskId,
    miner: &Address,
    m: &IterationMessage,
) -> Result<(), ConsensusError> {
    let bad = |reason: String| ConsensusError::InvalidTx { kind: "accuse_miner", reason };
    if m.body.task_id != *task_id {
        return Err(bad(format!("evidence message is of task {}, not {task_id}", m.body.task_id)));
    }
    if m.body.miner != *miner {
        return Err(bad(format!("evidence message is signed by {}, not {miner}", m.body.miner)));
    }
    m.verify_signature()
        .map_err(|_| bad(format!("evidence message {} has a bad signature", m.id())))
}

/// Checks an accusation's evidence against the accused miner and the task (design/013), and
/// returns the iteration of a proven equivocation (which convicts on its own).
fn check_evidence(
    task_id: &TaskId,
    miner: &Address,
    evidence: &MinerEvidence,
) -> Result<Option<u64>, ConsensusError> {
    match evidence {
        MinerEvidence::Flagged { message } => {
            check_evidence_message(task_id, miner, message)?;
            Ok(None)
        }
        MinerEvidence::Equivocation { first, second } => {
            check_evidence_message(task_id, miner, first)?;
            check_evidence_message(task_id, miner, second)?;
            let bad = |reason: String| ConsensusError::InvalidTx { kind: "accuse_miner", reason };
            if first.body.iteration != second.body.iteration {
                return Err(bad(format!(
                    "equivocation evidence names iterations {} and {}",
                    first.body.iteration, second.body.iteration
                )));
            }
            if first.id() == second.id() {
                return Err(bad("equivocation evidence holds one message twice".into()));
            }
            Ok(Some(first.body.iteration))
        }
    }
}

/// A supervisor accuses a selected miner (Training only; once per supervisor and miner), with
/// the miner's own signed messages as evidence, checked here (design/013). A strict majority
/// of the task's supervisors accusing the same miner with flagged messages convicts it; one
/// equivocation (two different signed messages for one iteration) convicts it on its own
/// (design/009): its batches go to the heirs the [`Conviction`] records, it may no longer
/// mine the task or submit a model, and training no longer waits for its model.
pub(crate) fn accuse_miner(
    overlay: &mut Overlay<'_>,
    supervisor: Address,
    task_id: TaskId,
    miner: Address,
    evidence: &MinerEvidence,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    let mut task = task_in_phase(overlay, &task_id, role_action(Role::Supervisor), |s| {
        matches!(s, TaskStatus::Training)
    })?;
    authorize_worker(&task_id, &task, &supervisor, Role::Supervisor)?;
    if !task.participants.miners.iter().any(|s| s.worker == miner) {
        return Err(ConsensusError::InvalidTx {
            kind: "accuse_miner",
            reason: format!("{miner} is not a selected miner of task {task_id}"),
        });
    }
    if task.is_convicted(&miner) {
        return Err(ConsensusError::Convicted { task: task_id, miner });
    }
    if task.accusations.iter().any(|a| a.supervisor == supervisor && a.miner == miner) {
        return Err(ConsensusError::AlreadyRecorded {
            what: "accusation of that miner",
            task: task_id,
            account: supervisor,
        });
    }
    let equivocation = check_evidence(&task_id, &miner, evidence)?;
    let evidence = evidence.message_id();
    task.accusations.push(MinerAccusation { supervisor, miner, evidence, at: ctx.height });
    let accusers = task.accusations.iter().filter(|a| a.miner == miner).count();
    if equivocation.is_some() || accusers > task.participants.supervisors.len() / 2 {
        let heirs = task
            .participants
            .miners
            .iter()
            .map(|s| s.worker)
            .filter(|m| *m != miner && !task.models.contains(m) && !task.is_convicted(m))
            .collect();
        task.convictions.push(Conviction { miner, at: ctx.height, heirs, equivocation });
        if training_done(&task) {
            task.status = TaskStatus::Finalising { since: ctx.height };
        }
    }
    save(overlay, task_id, task);
    Ok(())
}

/// Whether every selected miner not convicted has submitted its model (and at least one did).
fn training_done(task: &TaskRecord) -> bool {
    let submitted = task.models.iter().filter(|m| !task.is_convicted(m)).count();
    let expected =
        task.participants.miners.iter().filter(|s| !task.is_convicted(&s.worker)).count();
    submitted > 0 && submitted >= expected
}

/// A selected miner submits the hash of its final model (Training only; once per miner).
/// When every selected miner has submitted, the task moves to Finalising at once.
pub(crate) fn submit_model(
    overlay: &mut Overlay<'_>,
    miner: Address,
    task_id: TaskId,
    model_hash: Hash,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    let mut task = task_in_phase(overlay, &task_id, role_action(Role::Miner), |s| {
        matches!(s, TaskStatus::Training)
    })?;
    authorize_worker(&task_id, &task, &miner, Role::Miner)?;
    if task.is_convicted(&miner) {
        return Err(ConsensusError::Convicted { task: task_id, miner });
    }
    let key = StateKey::SubmittedModel { task: task_id, miner };
    if overlay.get(&key).is_some() {
        return Err(ConsensusError::AlreadyRecorded {
            what: "model",
            task: task_id,
            account: miner,
        });
    }
    overlay.set(key, Some(StateValue::Hash(model_hash)));
    task.models.push(miner);
    if training_done(&task) {
        // The training-deadline entry stays; at that height it re-schedules the expiry.
        task.status = TaskStatus::Finalising { since: ctx.height };
    }
    save(overlay, task_id, task);
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

/// Checks a verdict against the task and returns the seats it confiscates and the miners' pot
/// (miners' share of the fee + their stakes).
fn check_verdict(
    overlay: &Overlay<'_>,
    task_id: &TaskId,
    task: &TaskRecord,
    v: &Verdict<'_>,
) -> Result<(Vec<Seat>, Amount), ConsensusError> {
    no_duplicates("ranking", v.ranking)?;
    no_duplicates("payouts", v.payouts.iter().map(|p| &p.to))?;
    no_duplicates("confiscations", v.confiscations)?;
    if let Some(c) = task.convictions.iter().find(|c| !v.confiscations.contains(&c.miner)) {
        return Err(ConsensusError::ConvictionNotConfiscated(c.miner));
    }
    let mut confiscated = Vec::with_capacity(v.confiscations.len());
    let mut pot = miners_share(task.fee);
    for a in v.confiscations {
        // Only a fault proven on chain costs a stake: a conviction (design/013).
        if !task.is_convicted(a) {
            return Err(ConsensusError::UnprovenConfiscation(*a));
        }
        let (_, seat) = task.participants.seat_of(a).ok_or(ConsensusError::NotAParticipant {
            list: "confiscations",
            account: *a,
            expected: "selected worker",
            task: *task_id,
        })?;
        let ticket =
            overlay.ticket(&seat.ticket).ok_or(ConsensusError::UnknownTicket(seat.ticket))?;
        pot = add(pot, ticket.stake, "miners' pot")?;
        confiscated.push(seat.clone());
    }
    let is_miner = |a: &Address| task.participants.miners.iter().any(|s| s.worker == *a);
    for a in v.ranking {
        if !is_miner(a) {
            return Err(ConsensusError::NotAParticipant {
                list: "ranking",
                account: *a,
                expected: role_name(Role::Miner),
                task: *task_id,
            });
        }
        if !task.models.contains(a) {
            return Err(ConsensusError::RankedWithoutModel(*a));
        }
        if v.confiscations.contains(a) {
            return Err(ConsensusError::RankedAndConfiscated(*a));
        }
    }
    for p in v.payouts {
        if p.amount.is_zero() {
            return Err(ConsensusError::ZeroAmount("payout"));
        }
        if !is_miner(&p.to) {
            return Err(ConsensusError::NotAParticipant {
                list: "payouts",
                account: p.to,
                expected: role_name(Role::Miner),
                task: *task_id,
            });
        }
    }
    let expected = rank_payouts(pot, v.ranking);
    if expected.as_slice() != v.payouts {
        return Err(ConsensusError::PayoutsNotByRank {
            pot,
            expected: expected.into_iter().map(|p| (p.to, p.amount)).collect(),
        });
    }
    Ok((confiscated, pot))
}

/// The payouts a verdict with this ranking and these confiscations must carry for the task
/// `task_id` in `state` (what an evaluator puts in its ChargeForTask). On a Completed task
/// (a late vote) the confiscated tickets are gone: confiscations naming exactly the seats the
/// executed verdict confiscated count the stake its settlement recorded, so a late vote for
/// the executed verdict carries the same payouts.
pub fn expected_payouts(
    state: &State,
    task_id: &TaskId,
    ranking: &[Address],
    confiscations: &[Address],
) -> Result<Vec<Payout>, ConsensusError> {
    let overlay = Overlay::new(state);
    let task = overlay.task(task_id).ok_or(ConsensusError::UnknownTask(*task_id))?;
    let mut pot = miners_share(task.fee);
    if let (TaskStatus::Completed { .. }, Some(s)) = (&task.status, &task.settlement) {
        let executed: BTreeSet<Address> = s.confiscated.iter().map(|c| c.worker).collect();
        if executed == confiscations.iter().copied().collect::<BTreeSet<Address>>() {
            pot = add(pot, s.confiscated_stake, "miners' pot")?;
            return Ok(rank_payouts(pot, ranking));
        }
    }
    for a in confiscations {
        if let Some((_, seat)) = task.participants.seat_of(a) {
            if let Some(t) = overlay.ticket(&seat.ticket) {
                pot = add(pot, t.stake, "miners' pot")?;
            }
        }
    }
    Ok(rank_payouts(pot, ranking))
}

/// An evaluator's vote (one per selected evaluator). In Finalising it executes the verdict
/// when it reaches a strict majority of the selected evaluators; once the task is Completed,
/// before the finalisation deadline, it is a late vote ([`late_vote`]).
pub(crate) fn charge_for_task(
    overlay: &mut Overlay<'_>,
    evaluator: Address,
    v: Verdict<'_>,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    let task_id = v.task_id;
    if let Some(task) = overlay.task(&task_id) {
        if let TaskStatus::Completed { verdict, .. } = task.status {
            return late_vote(overlay, evaluator, &v, task, verdict, ctx);
        }
    }
    let task = task_in_phase(overlay, &task_id, role_action(Role::Evaluator), |s| {
        matches!(s, TaskStatus::Finalising { .. })
    })?;
    authorize_worker(&task_id, &task, &evaluator, Role::Evaluator)?;
    let vote_key = StateKey::Verdict { task: task_id, evaluator };
    if overlay.get(&vote_key).is_some() {
        return Err(ConsensusError::DoubleVote { task: task_id, evaluator });
    }
    let (confiscated, _) = check_verdict(overlay, &task_id, &task, &v)?;
    let verdict = verdict_hash(v.ranking, v.payouts, v.confiscations);
    overlay.set(vote_key, Some(StateValue::Hash(verdict)));
    let votes = count_vote(overlay, task_id, verdict)?;
    let evaluators = u64::try_from(task.participants.evaluators.len()).unwrap_or(u64::MAX);
    let majority = votes.checked_mul(2).is_some_and(|twice| twice > evaluators);
    if majority {
        execute_verdict(overlay, task_id, task, v, confiscated, verdict, ctx.height)?;
    }
    Ok(())
}

/// Adds one vote for `verdict` to the count of task `task_id`'s votes for it.
fn count_vote(
    overlay: &mut Overlay<'_>,
    task_id: TaskId,
    verdict: Hash,
) -> Result<u64, ConsensusError> {
    let count_key = StateKey::VerdictVotes { task: task_id, verdict };
    let votes = match overlay.get(&count_key) {
        Some(StateValue::Count(n)) => n,
        _ => 0,
    }
    .checked_add(1)
    .ok_or(ConsensusError::AmountOverflow("votes"))?;
    overlay.set(count_key, Some(StateValue::Count(votes)));
    Ok(votes)
}

/// A vote on a Completed task (design/005, "Late votes"): accepted from a selected evaluator
/// that had not voted when the verdict executed and whose share of the evaluators' quota is
/// held (`Settlement::held`), in a block before the finalisation deadline. The vote is
/// recorded; the held share leaves the escrow: to the evaluator if it voted the executed
/// verdict, to the client otherwise (a vote cast after the execution cannot change the
/// outcome, so it is not paid but not penalised either: the evaluator's ticket was released
/// at the execution). Anything else is refused: after the deadline or without a held share
/// `TaskClosed`, a second vote `DoubleVote`.
fn late_vote(
    overlay: &mut Overlay<'_>,
    evaluator: Address,
    v: &Verdict<'_>,
    mut task: TaskRecord,
    executed: Hash,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    let task_id = v.task_id;
    if ctx.height >= task.finalisation_deadline {
        return Err(ConsensusError::TaskClosed(task_id));
    }
    authorize_worker(&task_id, &task, &evaluator, Role::Evaluator)?;
    let vote_key = StateKey::Verdict { task: task_id, evaluator };
    if overlay.get(&vote_key).is_some() {
        return Err(ConsensusError::DoubleVote { task: task_id, evaluator });
    }
    let mut settlement = task.settlement.take().unwrap_or_default();
    if !settlement.held.contains(&evaluator) {
        // Its seat was confiscated by the verdict, or the shares were zero.
        return Err(ConsensusError::TaskClosed(task_id));
    }
    settlement.held.retain(|w| *w != evaluator);
    let share = settlement.evaluator_share;
    task.escrow = task
        .escrow
        .checked_sub(share)
        .ok_or(ConsensusError::PayoutsExceedEscrow { total: share, escrow: task.escrow })?;
    let verdict = verdict_hash(v.ranking, v.payouts, v.confiscations);
    overlay.set(vote_key, Some(StateValue::Hash(verdict)));
    count_vote(overlay, task_id, verdict)?;
    if verdict == executed {
        overlay.credit(&evaluator, share)?;
        settlement.payouts.push(Payout { to: evaluator, amount: share });
    } else {
        overlay.credit(&task.client, share)?;
        settlement.refund = add(settlement.refund, share, "refund")?;
    }
    task.settlement = Some(settlement);
    save(overlay, task_id, task);
    Ok(())
}

/// Credits `quota` in equal parts to `workers` (floored; the remainder stays in the pot).
fn pay_equal(
    overlay: &mut Overlay<'_>,
    quota: Amount,
    workers: &[Address],
    settlement: &mut Settlement,
) -> Result<Amount, ConsensusError> {
    let n = u64::try_from(workers.len()).unwrap_or(u64::MAX);
    let share = Amount(quota.units().checked_div(n).unwrap_or(0));
    let mut paid = Amount::ZERO;
    if share.is_zero() {
        return Ok(paid);
    }
    for w in workers {
        overlay.credit(w, share)?;
        settlement.payouts.push(Payout { to: *w, amount: share });
        paid = add(paid, share, "quota")?;
    }
    Ok(paid)
}

/// Every message-history root committed for task `id`, by slot: `(supervisor, root)` in
/// supervisor order.
fn committed_histories(overlay: &Overlay<'_>, id: &TaskId) -> BTreeMap<u32, Vec<(Address, Hash)>> {
    let keys = overlay.range_keys_inclusive(
        &StateKey::MessageHistory { task: *id, slot: 0, supervisor: PublicKey([0; 32]) },
        &StateKey::MessageHistory { task: *id, slot: u32::MAX, supervisor: PublicKey([0xff; 32]) },
    );
    let mut slots: BTreeMap<u32, Vec<(Address, Hash)>> = BTreeMap::new();
    for key in keys {
        if let StateKey::MessageHistory { slot, supervisor, .. } = key {
            if let Some(root) = overlay.hash_at(&key) {
                slots.entry(slot).or_default().push((supervisor, root));
            }
        }
    }
    slots
}

/// The committee members a verdict's execution penalises (design/007), skipping the seats
/// the verdict itself confiscates:
/// - a supervisor that committed, for some slot, another root than the one a strict majority
///   of the selected supervisors committed for it (the first such slot is named);
/// - an evaluator whose recorded vote is not the executed verdict.
///
/// A slot without a majority root (a tie, or too few commits) penalises nobody.
fn committee_penalties(
    overlay: &Overlay<'_>,
    task_id: &TaskId,
    task: &TaskRecord,
    verdict: Hash,
    confiscated: &[Seat],
) -> Result<Vec<Penalty>, ConsensusError> {
    let spared = |seat: &Seat| confiscated.iter().any(|c| c.ticket == seat.ticket);
    let supervisors = u64::try_from(task.participants.supervisors.len()).unwrap_or(u64::MAX);
    let mut outvoted: BTreeMap<Address, PenaltyReason> = BTreeMap::new();
    // A miner proven to have signed two messages for one iteration can make honest
    // supervisors commit different roots for any slot: that is its fault, so once such a
    // conviction is on chain no supervisor loses its stake for a history root (design/013).
    let equivocated = task.convictions.iter().any(|c| c.equivocation.is_some());
    let histories =
        if equivocated { BTreeMap::new() } else { committed_histories(overlay, task_id) };
    for (slot, commits) in histories {
        let mut votes: BTreeMap<Hash, u64> = BTreeMap::new();
        for (_, root) in &commits {
            let n = votes.entry(*root).or_insert(0);
            *n = n.saturating_add(1);
        }
        let majority = votes
            .iter()
            .find(|(_, n)| n.checked_mul(2).is_some_and(|twice| twice > supervisors))
            .map(|(root, _)| *root);
        let Some(majority) = majority else { continue };
        for (supervisor, root) in commits {
            if root != majority {
                outvoted.entry(supervisor).or_insert(PenaltyReason::OutvotedHistory {
                    slot,
                    committed: root,
                    majority,
                });
            }
        }
    }
    let mut penalties = Vec::new();
    let mut penalise = |role: Role, seat: &Seat, reason: PenaltyReason| {
        let ticket =
            overlay.ticket(&seat.ticket).ok_or(ConsensusError::UnknownTicket(seat.ticket))?;
        penalties.push(Penalty { seat: seat.clone(), role, stake: ticket.stake, reason });
        Ok::<(), ConsensusError>(())
    };
    for seat in &task.participants.supervisors {
        if let Some(reason) = outvoted.remove(&seat.worker) {
            if !spared(seat) {
                penalise(Role::Supervisor, seat, reason)?;
            }
        }
    }
    for seat in &task.participants.evaluators {
        let vote = overlay.hash_at(&StateKey::Verdict { task: *task_id, evaluator: seat.worker });
        if let Some(voted) = vote.filter(|v| *v != verdict) {
            if !spared(seat) {
                penalise(
                    Role::Evaluator,
                    seat,
                    PenaltyReason::DissentingVote { voted, executed: verdict },
                )?;
            }
        }
    }
    Ok(penalties)
}

/// Pays a verdict that reached a majority; see the module docs for where the money goes.
fn execute_verdict(
    overlay: &mut Overlay<'_>,
    task_id: TaskId,
    mut task: TaskRecord,
    v: Verdict<'_>,
    confiscated: Vec<Seat>,
    verdict: Hash,
    height: u64,
) -> Result<(), ConsensusError> {
    let mut settlement = Settlement::default();
    let mut available = task.escrow;
    for seat in &confiscated {
        let t = tickets::confiscate_ticket(overlay, &seat.ticket)?;
        available = add(available, t.stake, "verdict pot")?;
        settlement.confiscated_stake = add(settlement.confiscated_stake, t.stake, "confiscated")?;
    }
    // Outvoted committee members: their stakes go to the client's refund (below).
    let penalties = committee_penalties(overlay, &task_id, &task, verdict, &confiscated)?;
    for p in &penalties {
        let t = tickets::confiscate_ticket(overlay, &p.seat.ticket)?;
        available = add(available, t.stake, "verdict pot")?;
    }
    settlement.confiscated = confiscated;
    settlement.penalties = penalties;
    let is_confiscated = |a: &Address| {
        settlement.confiscated.iter().any(|s| s.worker == *a)
            || settlement.penalties.iter().any(|p| p.seat.worker == *a)
    };
    let mut paid = Amount::ZERO;
    for p in v.payouts {
        overlay.credit(&p.to, p.amount)?;
        settlement.payouts.push(p.clone());
        paid = add(paid, p.amount, "payouts")?;
    }
    let supervisors: Vec<Address> = task
        .participants
        .supervisors
        .iter()
        .map(|s| s.worker)
        .filter(|w| task.history_committers.contains(w) && !is_confiscated(w))
        .collect();
    // Evaluators: the quota is split over every selected evaluator neither confiscated nor
    // penalised, voted or not; the shares of those that have not voted yet are held.
    let evaluators: Vec<Address> = task
        .participants
        .evaluators
        .iter()
        .map(|s| s.worker)
        .filter(|w| !is_confiscated(w))
        .collect();
    let s = pay_equal(overlay, supervisor_quota(task.fee), &supervisors, &mut settlement)?;
    let n = u64::try_from(evaluators.len()).unwrap_or(u64::MAX);
    let share = evaluator_quota(task.fee).checked_div(n).unwrap_or(Amount::ZERO);
    settlement.evaluator_share = share;
    let mut e = Amount::ZERO;
    if !share.is_zero() {
        for w in evaluators {
            match overlay.hash_at(&StateKey::Verdict { task: task_id, evaluator: w }) {
                Some(voted) if voted == verdict => {
                    overlay.credit(&w, share)?;
                    settlement.payouts.push(Payout { to: w, amount: share });
                    e = add(e, share, "quota")?;
                }
                // Not reached: an evaluator that voted otherwise is penalised.
                Some(_) => {}
                None => settlement.held.push(w),
            }
        }
    }
    let held = u64::try_from(settlement.held.len())
        .ok()
        .and_then(|n| share.checked_mul(n))
        .ok_or(ConsensusError::AmountOverflow("held shares"))?;
    // Paid out or held: the client's refund is what is left.
    paid = add(add(add(paid, s, "payouts")?, e, "payouts")?, held, "payouts")?;
    for (_, seat) in task.participants.all() {
        let taken = settlement.confiscated.iter().any(|c| c.ticket == seat.ticket)
            || settlement.penalties.iter().any(|p| p.seat.ticket == seat.ticket);
        if !taken {
            tickets::release_ticket(overlay, &seat.ticket)?;
        }
    }
    let refund = available
        .checked_sub(paid)
        .ok_or(ConsensusError::PayoutsExceedEscrow { total: paid, escrow: available })?;
    if !refund.is_zero() {
        overlay.credit(&task.client, refund)?;
    }
    settlement.refund = refund;
    // What stays in escrow: the held evaluators' shares, until their votes or the
    // finalisation deadline (whose deadline entry is still ahead: see `process_deadlines`).
    task.escrow = held;
    settlement.bond_returned = return_bond(overlay, &mut task)?;
    task.status = TaskStatus::Completed { at: height, verdict };
    task.settlement = Some(settlement);
    save(overlay, task_id, task);
    Ok(())
}

// ---- blocks mined on client tasks --------------------------------------------------------

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

// ---- verifiers of a block -----------------------------------------------------------------

/// The verifier committee of the block with `header` (design/006), drawn on `state`, the
/// state **after** that block: the selected verifiers of the client task it trains, if that
/// task selected any; otherwise (filler tasks, tasks with `workers.verifiers = 0`) a draw of
/// up to [`BLOCK_VERIFIERS`] owners of free verifier tickets bought before the block and live
/// after it, stake-weighted like the
/// task selection ([`select_weighted`]) with the block's own hash as the seed and its task as
/// the task, never the block's own miner. Empty when no verifier ticket is live.
///
/// The seed is the block's hash, which covers its nonce: its miner learns its committee only
/// once the block is mined, and can only choose another by mining another block (design/017,
/// "The residual grinding bound"). The state after the block cannot hold its committee (the
/// block's hash covers its state root), so the state records the draw's other inputs
/// ([`StateKey::BlockCommittee`]) and [`committee_of`] draws it from there.
pub fn block_verifiers(state: &State, header: &Header) -> Vec<Address> {
    let draw = CommitteeDraw { task: header.task_id, miner: header.miner, height: header.height };
    verifiers_in(&Overlay::new(state), &draw, &header.hash())
}

/// The committee of the block `block_hash`, on `state`, the state after it (its own state, or
/// its child's parent state): drawn from the inputs that block recorded
/// ([`StateKey::BlockCommittee`]) with `block_hash` as the seed. Empty if `state` records no
/// draw. What a node computes once it imported a block, and what the next block pays.
pub fn committee_of(state: &State, block_hash: &Hash) -> Vec<Address> {
    let overlay = Overlay::new(state);
    match overlay.get(&StateKey::BlockCommittee) {
        Some(StateValue::CommitteeDraw(draw)) => verifiers_in(&overlay, &draw, block_hash),
        _ => Vec::new(),
    }
}

/// [`committee_of`] on the state after a block not yet stored: its `parent` state and the
/// `diff` its execution gave. What a light node computes before it imports the block.
pub fn committee_after(parent: &State, diff: &crate::StateDiff, block_hash: &Hash) -> Vec<Address> {
    let mut overlay = Overlay::new(parent);
    for (key, value) in &diff.changes {
        overlay.set(key.clone(), value.clone());
    }
    match overlay.get(&StateKey::BlockCommittee) {
        Some(StateValue::CommitteeDraw(draw)) => verifiers_in(&overlay, &draw, block_hash),
        _ => Vec::new(),
    }
}

/// The committee draw itself (see [`block_verifiers`]).
fn verifiers_in(overlay: &Overlay<'_>, draw: &CommitteeDraw, seed: &Hash) -> Vec<Address> {
    if let Some(rec) = overlay.task(&draw.task) {
        if !rec.participants.verifiers.is_empty() {
            return rec.participants.verifiers.iter().map(|s| s.worker).collect();
        }
    }
    let pool: Vec<Candidate> = tickets::free_tickets(overlay, Role::Verifier)
        .into_iter()
        .filter_map(|id| {
            let t = overlay.ticket(&id)?;
            // Bought before the block (not by its own transactions) and outliving it.
            (t.created_at < draw.height && t.expires_at > draw.height).then_some(Candidate {
                ticket: id,
                owner: t.owner,
                stake: t.stake,
            })
        })
        .collect();
    let excluded = BTreeSet::from([draw.miner]);
    let owners: BTreeSet<Address> = pool
        .iter()
        .filter(|c| !c.stake.is_zero() && !excluded.contains(&c.owner))
        .map(|c| c.owner)
        .collect();
    let want = u16::try_from(owners.len()).unwrap_or(u16::MAX).min(BLOCK_VERIFIERS);
    select_weighted(seed, &draw.task, Role::Verifier, &pool, want, &excluded)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.owner)
        .collect()
}

/// Attestations a block needs from its `verifiers` (of [`block_verifiers`]) to be accepted
/// without replay by a light node: a strict majority, `n / 2 + 1`. `None` when there are no
/// verifiers (the block must be replayed).
pub fn attestation_quorum(verifiers: usize) -> Option<usize> {
    (verifiers > 0).then(|| (verifiers / 2).saturating_add(1))
}

// ---- queries -----------------------------------------------------------------------------

/// The record of task `id` in `state`.
pub fn task_record(state: &State, id: &TaskId) -> Option<TaskRecord> {
    match state.get(&StateKey::Task(*id)) {
        Some(StateValue::Task(t)) => Some((**t).clone()),
        _ => None,
    }
}

/// A submitted model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelView {
    /// The miner.
    pub miner: Address,
    /// The model hash it submitted.
    pub model_hash: Hash,
}

/// An evaluator's vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerdictView {
    /// The evaluator.
    pub evaluator: Address,
    /// The [`verdict_hash`] it voted for.
    pub verdict: Hash,
}

/// A supervisor's committed message-history root for one slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryRootView {
    /// The slot.
    pub slot: u32,
    /// The supervisor.
    pub supervisor: Address,
    /// The root it committed.
    pub root: Hash,
}

/// Everything the chain knows about a task, for RPC and CLI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskView {
    /// Task id.
    pub id: TaskId,
    /// Phase (with the refusal reason, the verdict hash or the height it ended at).
    pub phase: TaskStatus,
    /// The client.
    pub client: Address,
    /// The fee paid.
    pub fee: Amount,
    /// Still in escrow (on a Completed task: the evaluators' shares held for their late votes
    /// until the finalisation deadline, listed in `settlement.held`).
    pub escrow: Amount,
    /// The client's bond still locked (design/014); `settlement` says whether it was
    /// returned or confiscated.
    pub bond: Amount,
    /// Height of the PayForTask block.
    pub created_at: u64,
    /// The selection and split seed (hash of the PayForTask block), once selected.
    pub seed: Option<Hash>,
    /// The split, once selected.
    pub split: Option<TaskSplit>,
    /// Height at which training ends.
    pub training_deadline: u64,
    /// Height at which an undecided task expires.
    pub finalisation_deadline: u64,
    /// Selected workers per role.
    pub participants: Participants,
    /// Submitted models.
    pub models: Vec<ModelView>,
    /// Supervisors that committed message-history roots.
    pub history_committers: Vec<Address>,
    /// Every committed message-history root, by slot then supervisor.
    pub history: Vec<HistoryRootView>,
    /// Evaluator votes.
    pub verdicts: Vec<VerdictView>,
    /// Supervisors' accusations of miners (design/009).
    pub accusations: Vec<MinerAccusation>,
    /// Miners convicted on chain and who took over their batches.
    pub convictions: Vec<Conviction>,
    /// What was paid (after completion, expiry or refusal).
    pub settlement: Option<Settlement>,
}

/// The [`TaskView`] of task `id`, if it exists.
pub fn task_view(state: &State, id: &TaskId) -> Option<TaskView> {
    let rec = task_record(state, id)?;
    let hash = |key: StateKey| match state.get(&key) {
        Some(StateValue::Hash(h)) => Some(*h),
        _ => None,
    };
    let selected = !matches!(rec.status, TaskStatus::Registered | TaskStatus::Refused { .. });
    let models = rec
        .models
        .iter()
        .filter_map(|m| {
            hash(StateKey::SubmittedModel { task: *id, miner: *m })
                .map(|model_hash| ModelView { miner: *m, model_hash })
        })
        .collect();
    let verdicts = rec
        .participants
        .evaluators
        .iter()
        .filter_map(|s| {
            hash(StateKey::Verdict { task: *id, evaluator: s.worker })
                .map(|verdict| VerdictView { evaluator: s.worker, verdict })
        })
        .collect();
    let from = StateKey::MessageHistory { task: *id, slot: 0, supervisor: PublicKey([0; 32]) };
    let to =
        StateKey::MessageHistory { task: *id, slot: u32::MAX, supervisor: PublicKey([0xff; 32]) };
    let history = state
        .range(from..=to)
        .filter_map(|(k, v)| match (k, v) {
            (StateKey::MessageHistory { slot, supervisor, .. }, StateValue::Hash(root)) => {
                Some(HistoryRootView { slot: *slot, supervisor: *supervisor, root: *root })
            }
            _ => None,
        })
        .collect();
    Some(TaskView {
        id: *id,
        history,
        client: rec.client,
        fee: rec.fee,
        escrow: rec.escrow,
        bond: rec.bond,
        created_at: rec.created_at,
        seed: selected.then_some(rec.seed),
        split: selected.then(|| task_split_of(&rec.definition, &rec.seed)),
        training_deadline: rec.training_deadline,
        finalisation_deadline: rec.finalisation_deadline,
        models,
        history_committers: rec.history_committers,
        verdicts,
        accusations: rec.accusations,
        convictions: rec.convictions,
        settlement: rec.settlement,
        participants: rec.participants,
        phase: rec.status,
    })
}
