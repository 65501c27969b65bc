//! The client's part in a task (design/005, design/014): the task file loaded, checked
//! against the live tickets and paid for (PayForTask), and the models answered to this node
//! (an evaluator's to test, or the client's best model of a completed task).

use super::*;

/// Why a task could not be submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitTaskError {
    /// The task file is invalid (names the field).
    #[error(transparent)]
    File(#[from] pouw_ml::ClientTaskError),
    /// Not enough workers are available now.
    #[error("the task cannot be staffed now: {0}")]
    Workers(String),
    /// The node refused the transaction.
    #[error("transaction refused: {0}")]
    Rejected(String),
    /// Storing the segments failed.
    #[error("storing the task's segments in {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Miner under attack `bad-model`: the final model replaced by one of another shape (the
/// input one wider; `other_shape`) or by the trained one with every parameter NaN. It is
/// stored, served and submitted like an honest model; evaluators must refuse it, not crash.
pub(super) fn bad_model(f: FinishedModel, other_shape: bool) -> FinishedModel {
    let model = if other_shape {
        let mut spec = f.model.spec().clone();
        let width = spec.input_shape.iter().try_fold(1u32, |w, &d| w.checked_mul(d)).unwrap_or(1);
        spec.input_shape = vec![width.saturating_add(1)];
        pouw_ml::Model::new(spec).unwrap_or(f.model)
    } else {
        let mut m = f.model;
        m.params_mut().fill(f32::NAN);
        m
    };
    let model_hash = Hash(model.hash().0);
    tracing::warn!(target: "miner", task = %f.task_id.short(), model = %model_hash.short(), other_shape, "deliberately submitting a bad final model (attack bad-model)");
    FinishedModel { task_id: f.task_id, model, model_hash }
}

/// The task's model spec, and whether `model` fits it ([`pouw_ml::Model::check_fits`]): a
/// model of another shape, or with a parameter NaN or infinite, is refused before it is run.
pub(super) fn check_model_fits(record: &TaskRecord, model: &pouw_ml::Model) -> Result<(), String> {
    let (spec, _) =
        pouw_consensus::pouw::ml_specs(&record.definition).map_err(|e| e.to_string())?;
    model.check_fits(&spec).map_err(|e| e.to_string())
}

impl Node {
    /// Client: loads a task file, checks it can be staffed, stores its segments and pays for it.
    pub(crate) fn submit_task(
        &mut self,
        file: &std::path::Path,
    ) -> Result<TaskId, SubmitTaskError> {
        let dir = file.parent().unwrap_or_else(|| std::path::Path::new("."));
        let task = pouw_ml::load_client_task(file, dir)?;
        {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            pouw_consensus::check_workers_available(
                chain.state(),
                &task.definition,
                task.fee,
                &self.me(),
                chain.height(),
            )
            .map_err(|e| SubmitTaskError::Workers(e.to_string()))?;
        }
        let tx = self.own_tx(TxKind::PayForTask { task: task.definition, fee: task.fee });
        let id = tx.hash();
        let dirp = self.agent.client_dir(&id);
        let io = |source| SubmitTaskError::Io { path: dirp.display().to_string(), source };
        std::fs::create_dir_all(&dirp).map_err(io)?;
        for (i, seg) in task.segments.iter().enumerate() {
            std::fs::write(segment_path(&dirp, i), seg).map_err(io)?;
        }
        start_weights::store_client_copy(&dirp, task.start_weights.as_deref()).map_err(io)?;
        // Served from these files (`Agent::segment`); the copy in memory goes now.
        drop(task.segments);
        self.submit_local(tx).map_err(SubmitTaskError::Rejected)?;
        tracing::info!(target: "client", task = %id.short(), "task submitted");
        Ok(id)
    }

    /// A model answer: for our evaluation (`deliver` false) or, as the client, the best model
    /// of a completed task.
    pub(crate) fn agent_on_model(
        &mut self,
        task: TaskId,
        miner: Address,
        hash: Hash,
        bytes: Option<Vec<u8>>,
        deliver: bool,
    ) {
        // No answer: asked again later. An answer from the miner that is not its model, or a
        // model that does not fit the task: refused, logged, and the model counts as missing
        // (unranked; never delivered). The client asks another holder for the best model
        // when one sends other bytes than the submitted model (`routing`).
        let Some(bytes) = bytes else { return };
        let record = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            task_record(chain.state(), &task)
        };
        let Some(record) = record else { return };
        if deliver {
            return self.deliver_model(task, hash, &bytes, &record);
        }
        let checked = delivery::submitted_model(&bytes, &hash)
            .and_then(|m| check_model_fits(&record, &m).map(|()| m));
        match checked {
            Ok(model) => {
                self.agent.keep_model(&hash, &model);
                if let Some(eval) = self.agent.evaluations.get_mut(&task) {
                    eval.on_model(miner, Some(model));
                }
            }
            Err(e) => {
                tracing::warn!(target: "evaluator", task = %task.short(), miner = %miner.short(), model = %hash, error = %e, "model refused: counted as missing");
                if let Some(eval) = self.agent.evaluations.get_mut(&task) {
                    eval.on_model(miner, None);
                }
            }
        }
    }

    /// Client: an answer to our request for the best model `hash` of `task`.
    fn deliver_model(&mut self, task: TaskId, hash: Hash, bytes: &[u8], record: &TaskRecord) {
        let model = match self.agent.delivery.on_model(task, &hash, bytes, record) {
            delivery::Received::Store(model) => model,
            delivery::Received::Refused(e) => {
                tracing::warn!(target: "client", task = %task.short(), model = %hash, error = %e, "best model refused: asked of the next holder");
                return;
            }
            delivery::Received::Unfit(e) => {
                tracing::warn!(target: "client", task = %task.short(), model = %hash, error = %e, "best model does not fit the task: not delivered");
                return;
            }
        };
        let path = task_model_path(&self.agent.datadir, &task);
        let dir = self.agent.models_dir();
        let saved = std::fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| pouw_ml::save_safetensors(&model, &path).map_err(|e| e.to_string()))
            .and_then(|()| {
                pouw_ml::save_safetensors(&model, &dir.join(format!("{hash}.safetensors")))
                    .map_err(|e| e.to_string())
            });
        match saved {
            Ok(()) => {
                self.agent.delivery.stored(task);
                tracing::info!(target: "client", task = %task.short(), path = %path.display(), "best model received");
            }
            Err(e) => {
                tracing::error!(target: "client", task = %task.short(), path = %path.display(), error = %e, "cannot store the best model")
            }
        }
    }
}
