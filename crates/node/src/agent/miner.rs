//! The miner's part in a task (design/005, design/009): its walk follows the chain's view of
//! the selection, is held while a conviction seen here is not on chain yet, and ends with the
//! final model submitted (SubmitModel), or the task dropped when it cannot be mined any more.

use super::*;

impl Node {
    /// Miner: holds the end of our walk on `record` while a miner of the task stands convicted
    /// by the alerts seen here but not yet on chain (at most [`HANDOVER_HOLD`]): the
    /// conviction will hand its batches to the miners still training (design/009).
    pub(super) fn hold_for_convictions(&mut self, id: TaskId, record: &TaskRecord) {
        let me = self.me();
        let supervisors = record.participants.supervisors.len();
        let pending = self
            .agent
            .security
            .accusations
            .convicted(&id, supervisors)
            .into_iter()
            .any(|m| m != me && !record.is_convicted(&m));
        let hold = pending && {
            let since = *self.agent.hold_since.entry(id).or_insert_with(Instant::now);
            since.elapsed() < HANDOVER_HOLD
        };
        if !pending {
            self.agent.hold_since.remove(&id);
        }
        if let Some(miner) = self.miner.as_mut() {
            miner.hold_finish(hold);
        }
    }

    /// A miner finished its client task: store the model, submit it.
    pub(crate) fn agent_on_finished(&mut self, mut f: FinishedModel) {
        if self.config.attack == Some(Attack::BadModel) {
            self.agent.bad_models = self.agent.bad_models.saturating_add(1);
            f = bad_model(f, self.agent.bad_models % 2 == 1);
        }
        let dir = self.agent.models_dir();
        let path = dir.join(format!("{}.safetensors", f.model_hash));
        let saved = std::fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| pouw_ml::save_safetensors(&f.model, &path).map_err(|e| e.to_string()));
        if let Err(e) = saved {
            tracing::error!(target: "miner", error = %e, "cannot store the final model");
            return;
        }
        self.agent.trained.insert(f.task_id);
        match self.submit_own(TxKind::SubmitModel { task_id: f.task_id, model_hash: f.model_hash })
        {
            Ok(_) => {
                tracing::info!(target: "miner", task = %f.task_id.short(), model = %f.model_hash.short(), "final model submitted")
            }
            Err(e) => tracing::warn!(target: "miner", error = %e, "SubmitModel refused"),
        }
    }

    /// Miner: a client task that cannot be mined any more (`error`: its template or its
    /// training step failed, e.g. we were convicted on it or it left Training): logged and
    /// dropped; the miner goes on with the filler task and the node's other work.
    pub(crate) fn agent_drop_task(&mut self, id: TaskId, error: &pouw_work::MinerError) {
        tracing::warn!(target: "miner", task = %id.short(), %error, "cannot mine this task any more: dropping it");
        self.agent.trained.insert(id);
        if let Some(m) = self.miner.as_mut() {
            if m.assignment().is_some_and(|a| a.task_id == id) {
                m.unassign();
            }
        }
    }

    /// Miner: drops our assignment on task `id` when it no longer matches the chain's view of
    /// the task's selection (a reorganisation changed the seed, hence the split, or the
    /// miners' order, or we are no longer selected): the next ticks assign it again from the
    /// record, and the miner starts over at its next iteration index (`Miner::assign`). An
    /// honest miner follows the chain; the supervisors wait for it (`screening`).
    pub(super) fn follow_selection(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
        split: &pouw_consensus::TaskSplit,
    ) {
        let me = self.me();
        let Some(a) = self.miner.as_ref().and_then(|m| m.assignment()).filter(|a| a.task_id == id)
        else {
            return;
        };
        let seat = seat_of(record, Role::Miner, &me);
        let follows = seat == Some(a.miner_index)
            && a.miners == record.participants.miners.len()
            && a.split == split.to_ml();
        if follows {
            return;
        }
        tracing::warn!(target: "miner", task = %id.short(), seat = ?seat, "the task's selection changed with a reorganisation of the chain: training starts over under the new view");
        if let Some(m) = self.miner.as_mut() {
            m.unassign();
        }
    }
}
