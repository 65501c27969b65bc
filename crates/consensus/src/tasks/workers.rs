//! Worker transactions: who may send MessageHistory, AccuseMiner and SubmitModel for a task,
//! and what they change.

use super::*;

pub(crate) fn role_action(role: Role) -> &'static str {
    match role {
        Role::Miner => "submit a model as miner",
        Role::Supervisor => "commit message history as supervisor",
        Role::Evaluator => "vote as evaluator",
        Role::Verifier => "attest as verifier",
    }
}

pub(crate) fn role_name(role: Role) -> &'static str {
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
pub(crate) fn task_in_phase(
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
pub(crate) fn check_evidence_message(
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
pub(crate) fn check_evidence(
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

/// A supervisor accuses a selected miner (in Training, or in Finalising until the first
/// verdict vote is recorded; once per supervisor and miner), with
/// the miner's own signed messages as evidence, checked here (design/013). A strict majority
/// of the task's supervisors accusing the same miner with flagged messages convicts it; one
/// equivocation (two different signed messages for one iteration) convicts it on its own
/// (design/009): its batches go to the heirs the [`Conviction`] records, it may no longer
/// mine the task or submit a model, and training no longer waits for its model. A conviction
/// in Finalising hands nothing over (training is over: no heirs) and closes with the first
/// vote, so every vote counted was cast knowing every conviction (design/009, "Late
/// accusations").
pub(crate) fn accuse_miner(
    overlay: &mut Overlay<'_>,
    supervisor: Address,
    task_id: TaskId,
    miner: Address,
    evidence: &MinerEvidence,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    const ACTION: &str = "accuse a miner as supervisor";
    let mut task = task_in_phase(overlay, &task_id, ACTION, |s| {
        matches!(s, TaskStatus::Training | TaskStatus::Finalising { .. })
    })?;
    let training = matches!(task.status, TaskStatus::Training);
    if !open_for_accusations(overlay, &task_id, &task) {
        return Err(ConsensusError::WrongPhase {
            task: task_id,
            phase: "finalising with a verdict vote recorded",
            action: ACTION,
        });
    }
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
        let heirs = if training {
            task.participants
                .miners
                .iter()
                .map(|s| s.worker)
                .filter(|m| *m != miner && !task.models.contains(m) && !task.is_convicted(m))
                .collect()
        } else {
            Vec::new()
        };
        task.convictions.push(Conviction { miner, at: ctx.height, heirs, equivocation });
        if training && training_done(&task) {
            task.status = TaskStatus::Finalising { since: ctx.height };
        }
    }
    save(overlay, task_id, task);
    Ok(())
}

/// Whether an AccuseMiner for task `id` can apply on `state`: the task trains, or it
/// finalises and no verdict vote is recorded yet (design/009, "Late accusations").
pub fn accusations_open(state: &State, id: &TaskId) -> bool {
    task_record(state, id).is_some_and(|task| open_for_accusations(&Overlay::new(state), id, &task))
}

/// [`accusations_open`] for `task` (the record of `task_id`) on `overlay`: the one rule the
/// chain applies to an AccuseMiner and a supervisor reads before sending one.
fn open_for_accusations(overlay: &Overlay<'_>, task_id: &TaskId, task: &TaskRecord) -> bool {
    match task.status {
        TaskStatus::Training => true,
        TaskStatus::Finalising { .. } => !task.participants.evaluators.iter().any(|s| {
            overlay.get(&StateKey::Verdict { task: *task_id, evaluator: s.worker }).is_some()
        }),
        _ => false,
    }
}

/// Whether every selected miner not convicted has submitted its model (and at least one did).
pub(crate) fn training_done(task: &TaskRecord) -> bool {
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
