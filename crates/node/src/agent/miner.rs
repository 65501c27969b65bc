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

impl Agent {
    /// Peer messages for the miner's next iteration on `task`, oldest first:
    /// - none from a miner whose first message arrived less than [`PEER_PROBATION`] ago, so
    ///   the supervisors' alerts against a poisoning miner arrive before its first messages
    ///   would be applied (a few poisoned updates at the start of training can damage a model
    ///   for good);
    /// - at most one more than the other miners still training, so a backlog (after a late
    ///   start, the probation or a hold) is caught up a little faster than it grows, without
    ///   a burst of updates in one iteration (each message moves every coordinate it names by
    ///   `tau`; several at once, late in a walk, left measured models several points worse).
    pub(crate) fn take_inbox(&mut self, task: &TaskId) -> Vec<IterationMessage> {
        let n = self.supervisors.get(task).copied().unwrap_or(0);
        let others = self.peer_miners.get(task).copied().unwrap_or(MAX_PEERS_PER_ITERATION);
        let accusations = self.security.accusations.clone();
        let first_seen = &self.first_seen;
        let Some(inbox) = self.inbox.get_mut(task) else { return Vec::new() };
        let ripe = |m: &IterationMessage| {
            first_seen.get(&(*task, m.body.miner)).is_some_and(|at| at.elapsed() >= PEER_PROBATION)
        };
        let cap = others.saturating_add(1).clamp(1, MAX_PEERS_PER_ITERATION);
        let mut taken = Vec::new();
        let mut kept = std::collections::VecDeque::with_capacity(inbox.len());
        for m in inbox.drain(..) {
            if accusations.is_convicted(task, &m.body.miner, n) {
                continue; // dropped
            }
            if taken.len() < cap && ripe(&m) {
                taken.push(m);
            } else {
                kept.push_back(m);
            }
        }
        *inbox = kept;
        taken
    }

    /// Miner: this node saw itself selected to train `task` (at `now`). The wait at the start
    /// of a task ([`START_WAIT`]) counts from here, not from when its data arrived: a miner
    /// that got its segments late has already waited, and waiting again for a silent peer
    /// could leave it nothing trained by the deadline (design/012).
    pub(crate) fn note_selected(&mut self, task: TaskId, now: Instant) {
        self.start_wait.entry(task).or_insert(now);
    }

    /// Miner: its iteration `iteration` of `task` was run and sent.
    pub(crate) fn note_own_iteration(&mut self, task: TaskId, iteration: u64) {
        let next = self.own_progress.entry(task).or_default();
        *next = (*next).max(iteration.saturating_add(1));
    }

    /// Miner: the next iteration of its own on `task` (0 before the first).
    pub(crate) fn own_next(&self, task: &TaskId) -> u64 {
        self.own_progress.get(task).copied().unwrap_or(0)
    }

    /// Bounded staleness (design/012): whether the miner may run its iteration `next` of
    /// `task` now (at `now`): every peer miner of the task that has sent messages and is not
    /// convicted has sent them up to iteration `next - PEER_STALENESS` and is past its
    /// [`PEER_PROBATION`] (its messages can be applied), or the miner has waited
    /// [`STALENESS_WAIT`] for this iteration (counted from the end of the probations it waited
    /// out). The peers still behind then are left out of the wait until they catch up, so a
    /// silent or slow peer costs one wait, not one per iteration. At the start it also waits,
    /// at most [`START_WAIT`], to hear from every other miner.
    pub(crate) fn peers_caught_up(&mut self, task: &TaskId, next: u64, now: Instant) -> bool {
        let n = self.supervisors.get(task).copied().unwrap_or(0);
        let need = next.saturating_add(1).saturating_sub(PEER_STALENESS);
        if need == 0 {
            return true;
        }
        let accusations = &self.security.accusations;
        let expected = self.peer_miners.get(task).copied().unwrap_or(0);
        let heard = self
            .peer_progress
            .keys()
            .filter(|(t, m)| t == task && !accusations.is_convicted(task, m, n))
            .count();
        let started = *self.start_wait.entry(*task).or_insert(now);
        if heard < expected && now.saturating_duration_since(started) < START_WAIT {
            return false;
        }
        let first_seen = &self.first_seen;
        let probation_end = |m: &Address| {
            first_seen.get(&(*task, *m)).and_then(|at| at.checked_add(PEER_PROBATION))
        };
        let behind: Vec<Address> = self
            .peer_progress
            .iter()
            .filter(|((t, m), &count)| {
                t == task
                    && (count < need || probation_end(m).is_some_and(|end| now < end))
                    && !accusations.is_convicted(task, m, n)
            })
            .map(|((_, m), _)| *m)
            .collect();
        // A peer that caught up takes part in the wait again.
        self.excused.retain(|(t, m)| t != task || behind.contains(m));
        let waited_for: Vec<Address> =
            behind.into_iter().filter(|m| !self.excused.contains(&(*task, *m))).collect();
        if waited_for.is_empty() {
            self.staleness_wait.remove(task);
            return true;
        }
        let since = match self.staleness_wait.get(task) {
            Some(&(i, at)) if i == next => at,
            _ => {
                self.staleness_wait.insert(*task, (next, now));
                now
            }
        };
        let since = waited_for.iter().filter_map(probation_end).fold(since, Instant::max);
        if now.saturating_duration_since(since) < STALENESS_WAIT {
            return false;
        }
        for m in waited_for {
            tracing::debug!(target: "miner", task = %task.short(), peer = %m, iteration = next, "a peer's messages are late: not waiting for them until it catches up");
            self.excused.insert((*task, m));
        }
        self.staleness_wait.remove(task);
        true
    }
}
