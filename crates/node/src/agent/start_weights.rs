//! A client task's start weights at the node (design/021).
//!
//! A task whose definition names start weights (`Initializer::Weights(hash)`) has one more
//! content-addressed blob beside its segments: the client's safetensors file, under
//! [`segments::START_WEIGHTS_INDEX`]. The client keeps it beside its segments and serves it
//! from the selection on; every miner and supervisor of the task fetches it with the
//! training segments (the client first, then the other seats that hold it, `routing`), checks
//! it against the hash on chain, keeps it on disk while the task runs and serves it on. Before
//! anything is trained or replayed from it, the file must hold a model of the task: the
//! task's shapes and every value finite (`pouw_work::start_model`). A file that hashes right
//! but does not is the client's fault: the task is not worked on here, and nothing panics.

use super::{segment_path, segments, SegmentUse};
use crate::node::Node;
use pouw_consensus::TaskRecord;
use pouw_primitives::TaskId;
use segments::START_WEIGHTS_INDEX;
use std::{path::Path, sync::Arc};

/// Client: keeps the start weights of a task it submits (if it has any) in the task's
/// directory `dir`, beside its segments.
pub(super) fn store_client_copy(dir: &Path, bytes: Option<&[u8]>) -> std::io::Result<()> {
    match bytes {
        Some(bytes) => std::fs::write(segment_path(dir, START_WEIGHTS_INDEX.into()), bytes),
        None => Ok(()),
    }
}

impl Node {
    /// Client: the start weights file of its task `task`, served by the phase rule of the
    /// training segments (`segments::revealed`) and only as it hashes to what the
    /// definition names.
    pub(super) fn client_start_weights(
        &self,
        record: &TaskRecord,
        task: &TaskId,
        height: u64,
    ) -> Option<Vec<u8>> {
        if !segments::revealed(record, START_WEIGHTS_INDEX, height) {
            return None;
        }
        let path = segment_path(&self.agent.client_dir(task), START_WEIGHTS_INDEX.into());
        let hashes = segments::blob_hashes(&record.definition);
        std::fs::read(path).ok().filter(|b| segments::segment_ok(&hashes, START_WEIGHTS_INDEX, b))
    }

    /// Worker: the model of the start weights of task `id` (fetched for `use_` while
    /// missing, `task_dataset` asks for it with the training segments): `Some(None)` when the
    /// task names none, `Some(Some(model))` once the file is here, checked against its hash
    /// and the task's model; `None` while it is missing, once the task ended, or when the
    /// task's file is not a model of the task (logged once: the task is then not worked on
    /// here, as with a dataset that does not assemble). Called once the dataset is in, so the
    /// file is decoded once per assignment or screening.
    pub(super) fn task_start_model(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
        use_: SegmentUse,
    ) -> Option<Option<Arc<pouw_ml::Model>>> {
        if record.definition.model.init.start_weights().is_none() {
            return Some(None);
        }
        if self.agent.segments.ended(&id) || self.agent.bad_datasets.contains(&id) {
            return None;
        }
        let wanted = [usize::from(START_WEIGHTS_INDEX)];
        self.ask_segments(id, record, &wanted, use_);
        if !self.agent.segments.has_all(&id, &wanted) {
            return None;
        }
        let hashes = segments::blob_hashes(&record.definition);
        let bytes = match self.agent.segments.read(&id, &wanted, &hashes) {
            Ok(mut read) => read.remove(&START_WEIGHTS_INDEX)?,
            Err(e) => {
                tracing::warn!(target: "node", task = %id.short(), error = %e, "the start weights are damaged");
                return None;
            }
        };
        match pouw_work::start_model(&record.definition, &bytes) {
            Ok(model) => Some(Some(Arc::new(model))),
            Err(e) => {
                tracing::error!(target: "node", task = %id.short(), error = %e, "the task's start weights are not a model of the task: the task is not worked on here");
                self.agent.bad_datasets.insert(id);
                None
            }
        }
    }
}
