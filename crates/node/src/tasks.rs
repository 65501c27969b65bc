//! Task views for RPC and the CLI.

use pouw_consensus::{Overlay, State, TaskStatus};
use pouw_primitives::TaskId;
use serde_json::json;

/// The JSON view of task `id` in `state`, if registered.
pub(crate) fn task_json(state: &State, id: &TaskId) -> Option<serde_json::Value> {
    let record = Overlay::new(state).task(id)?;
    let d = &record.definition;
    let status = match record.status {
        TaskStatus::Open => json!({ "phase": "open" }),
        TaskStatus::Closed { at, .. } => json!({ "phase": "closed", "closed_at": at }),
    };
    Some(json!({
        "task_id": id,
        "client": record.client,
        "escrow": record.escrow,
        "created_at": record.created_at,
        "status": status,
        "model": { "layers": d.model.layers.len(), "classes": d.model.classes },
        "dataset": { "samples": d.dataset.samples, "test_permille": d.dataset.test_permille },
        "workers": {
            "miners": d.workers.miners,
            "supervisors": d.workers.supervisors,
            "evaluators": d.workers.evaluators,
            "max_faulty": d.workers.max_faulty,
        },
    }))
}
