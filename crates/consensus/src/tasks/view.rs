//! The read-only view of a task served over RPC.

use super::*;

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
