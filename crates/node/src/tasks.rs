//! Task views for RPC and the CLI.

use pouw_consensus::{task_view, State};
use pouw_primitives::TaskId;

/// The JSON view of task `id` in `state` (phase, client, fee, participants, models, verdicts,
/// payouts, deadlines), if registered.
pub(crate) fn task_json(state: &State, id: &TaskId) -> Option<serde_json::Value> {
    task_view(state, id).and_then(|v| serde_json::to_value(v).ok())
}
