//! Verdicts and payouts: the evaluators' ChargeForTask, the vote count, the committee
//! penalties and the execution of the verdict that pays the workers.

use super::*;

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

/// The hash that identifies a verdict: two evaluators agree iff their verdicts hash alike.
pub fn verdict_hash(ranking: &[Address], payouts: &[Payout], confiscations: &[Address]) -> Hash {
    Hash::tagged("pouw/verdict", &codec::encode(&(ranking, payouts, confiscations)))
}

pub(crate) fn no_duplicates<'a>(
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
pub(crate) fn check_verdict(
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
pub(crate) fn count_vote(
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
pub(crate) fn late_vote(
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
pub(crate) fn pay_equal(
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
pub(crate) fn committed_histories(
    overlay: &Overlay<'_>,
    id: &TaskId,
) -> BTreeMap<u32, Vec<(Address, Hash)>> {
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
pub(crate) fn committee_penalties(
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
pub(crate) fn execute_verdict(
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
