//! Deadlines: what happens at a task's training and finalisation deadlines (expiry, refunds,
//! the client's bond).

use super::*;

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
pub(crate) fn refund_held_shares(
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
pub(crate) fn return_bond(
    overlay: &mut Overlay<'_>,
    rec: &mut TaskRecord,
) -> Result<Amount, ConsensusError> {
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
pub(crate) fn test_set_withheld(overlay: &Overlay<'_>, id: &TaskId, rec: &TaskRecord) -> bool {
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
pub(crate) fn expire(
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
