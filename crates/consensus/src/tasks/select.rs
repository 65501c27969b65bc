//! Worker selection: tickets that match a task, the stake-weighted draw, and the workers
//! available for a task before it is paid.

use super::*;

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

pub(crate) fn candidates(
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

pub(crate) fn role_code(role: Role) -> u8 {
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

pub(crate) fn wanted(task: &TaskDefinition, role: Role) -> u16 {
    match role {
        Role::Miner => task.workers.miners,
        Role::Supervisor => task.workers.supervisors,
        Role::Evaluator => task.workers.evaluators,
        Role::Verifier => task.workers.verifiers,
    }
}

/// Selects the committee of a registered task at its selection block; refuses it (full
/// refund) if a role cannot be filled.
pub(crate) fn select_workers(
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
