//! Registration: the PayForTask checks, the client's bond, the task's deadlines, and the escrow
//! of a paid task.

use super::*;

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
