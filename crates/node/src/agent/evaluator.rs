//! The evaluator's part in a task (design/005, design/013): once the supervisors' screening
//! is over, every submitted model is fetched, tested on the test segments (on a thread of its
//! own, off the event loop) and ranked, and the verdict is voted (ChargeForTask).

use super::*;

/// An evaluator's work on one task.
#[derive(Debug, Default)]
pub(super) struct Evaluation {
    pub(super) models: BTreeMap<Address, Option<pouw_ml::Model>>,
    pub(super) asked: HashMap<Address, Instant>,
    pub(super) voted: bool,
    /// Votes dropped as invalid and cast again (a conviction that reached the chain after
    /// the vote was made, design/009 "Late accusations"); at most [`MAX_REVOTES`].
    pub(super) revotes: u8,
    /// Supervisors that reported their screening of the task done.
    pub(super) screened_by: HashSet<Address>,
    pub(super) screening_asked: HashMap<Address, Instant>,
    /// The screening did not end in time: evaluating without waiting further.
    pub(super) screening_given_up: bool,
    /// When this node first saw the task finalising.
    pub(super) since: Option<Instant>,
    /// The models under test on their own thread (off the event loop, the test segments read
    /// there too): the correct counts per miner and the test set's size when done, or the test
    /// segment found damaged.
    pub(super) scoring: Option<flume::Receiver<Result<Result<Scored, segments::Damaged>, String>>>,
}

/// Each tested model's correct count on the test set, and the test set's size.
type Scored = (Vec<(u32, Address)>, usize);

/// Tests every model of `models` on the test segments `test_segments` (those that do not fit
/// the task, `width` features and `classes` classes, left out), with the deterministic
/// kernels: honest evaluators get the same correct counts, hence the same ranking.
fn score_models(
    task: TaskId,
    models: Vec<(Address, pouw_ml::Model)>,
    test_segments: BTreeMap<u8, Vec<u8>>,
    (width, classes): (usize, u32),
) -> Scored {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, bytes) in &test_segments {
        match Batch::from_canonical_bytes(bytes)
            .and_then(|b| b.validate(width, classes).map(|()| b))
        {
            Ok(b) => {
                x.extend_from_slice(b.features());
                y.extend_from_slice(b.labels());
            }
            Err(e) => {
                tracing::error!(target: "evaluator", task = %task.short(), segment = i, error = %e, "a test segment does not fit the task: left out")
            }
        }
    }
    let scores = models
        .iter()
        .filter_map(|(miner, m)| match m.evaluate(Exec::new(1), &x, &y, 256) {
            Ok(metrics) => Some((metrics.correct, *miner)),
            Err(e) => {
                tracing::warn!(target: "evaluator", task = %task.short(), miner = %miner.short(), error = %e, "model not tested: unranked");
                None
            }
        })
        .collect();
    (scores, y.len())
}

/// The most times an evaluator casts its vote on one task again after it was dropped.
const MAX_REVOTES: u8 = 3;

impl Node {
    /// Evaluator: our vote on `task` was dropped as invalid before it landed (a conviction
    /// recorded after it was made, so it no longer confiscates every convict): it is made
    /// again from the chain as it is now, so an honest evaluator is not left without its
    /// share.
    pub(crate) fn vote_dropped(&mut self, task: TaskId) {
        let Some(eval) = self.agent.evaluations.get_mut(&task) else { return };
        if eval.voted && eval.revotes < MAX_REVOTES {
            eval.revotes += 1;
            eval.voted = false;
            tracing::info!(target: "evaluator", task = %task.short(), "our vote was dropped before it landed: voting again on the chain as it is now");
        }
    }

    /// Evaluator: tests every submitted model on the test segments and votes (ChargeForTask),
    /// once: while the task finalises, and after the verdict executed without our vote while
    /// our share of the quota is held (a late vote, design/005; the `Completed` branch of
    /// `agent_task` decides when).
    pub(super) fn evaluate(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
        test: &[usize],
        height: u64,
    ) -> Result<(), NodeError> {
        if self.agent.evaluations.get(&id).is_some_and(|e| e.voted) {
            return Ok(());
        }
        if self.config.attack == Some(Attack::LyingEvaluator) {
            self.vote_wrong_verdict(id, record);
            return Ok(());
        }
        if !self.screening_settled(id, record, height) {
            return Ok(());
        }
        self.ask_segments(id, record, test, SegmentUse::Test);
        // Miners convicted by a majority of the supervisors (on chain, or by the alerts seen
        // here) are not ranked; only those convicted on chain are confiscated (design/013).
        let unranked: Vec<Address> = self
            .agent
            .security
            .accusations
            .convicted(&id, record.participants.supervisors.len())
            .into_iter()
            .chain(record.convictions.iter().map(|c| c.miner))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let confiscations: Vec<Address> = record.convictions.iter().map(|c| c.miner).collect();
        let models: Vec<(Address, Hash)> = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            pouw_consensus::task_view(chain.state(), &id)
                .map(|v| v.models.iter().map(|m| (m.miner, m.model_hash)).collect::<Vec<_>>())
                .unwrap_or_default()
        }
        .into_iter()
        .filter(|(m, _)| !unranked.contains(m))
        .collect();
        for (miner, hash) in &models {
            let eval = self.agent.evaluations.entry(id).or_default();
            if eval.models.contains_key(miner)
                || eval.asked.get(miner).is_some_and(|t| t.elapsed() < RETRY)
            {
                continue;
            }
            eval.asked.insert(*miner, Instant::now());
            if let Some(peer) = peer_id_of(miner) {
                self.request(
                    peer,
                    Request::Model(*hash),
                    Pending::Model { task: id, miner: *miner, hash: *hash, deliver: false },
                );
            }
        }
        let have_test = self.agent.segments.has_all(&id, test);
        let eval = self.agent.evaluations.entry(id).or_default();
        let have_models = models.iter().all(|(m, _)| eval.models.contains_key(m));
        if !have_test || !have_models {
            return Ok(());
        }
        let Some((mut scores, tested)) = self.scored(id, record, test, &unranked) else {
            return Ok(());
        };
        // A conviction seen while the models were under test unranks its miner too.
        scores.retain(|(_, miner)| !unranked.contains(miner));
        scores.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let ranking: Vec<Address> = scores.iter().map(|(_, m)| *m).collect();
        let payouts = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            match expected_payouts(chain.state(), &id, &ranking, &confiscations) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(target: "evaluator", error = %e, "cannot compute the payouts");
                    return Ok(());
                }
            }
        };
        for (correct, miner) in &scores {
            let acc = f64::from(*correct) / tested.max(1) as f64;
            tracing::info!(target: "evaluator", task = %id.short(), miner = %miner.short(), accuracy = format!("{:.2}%", acc * 100.0), "model tested");
        }
        for miner in &confiscations {
            tracing::warn!(target: "evaluator", task = %id.short(), miner = %miner.short(), "stake confiscated: convicted by the supervisors' alerts");
        }
        let eval = self.agent.evaluations.entry(id).or_default();
        eval.voted = true;
        if self.config.attack == Some(Attack::EvaluatorTheft)
            && self.vote_theft(id, &ranking, &confiscations)
        {
            return Ok(());
        }
        match self.submit_own(TxKind::ChargeForTask {
            task_id: id,
            ranking,
            payouts,
            confiscations,
        }) {
            Ok(_) => tracing::info!(target: "evaluator", task = %id.short(), "verdict submitted"),
            Err(e) => tracing::warn!(target: "evaluator", error = %e, "ChargeForTask refused"),
        }
        Ok(())
    }

    /// Evaluator: the models of task `id` tested on the test segments `test`, on a thread of
    /// their own (a large model's test takes seconds, which the event loop must not wait):
    /// started at the first call, `None` until done.
    fn scored(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
        test: &[usize],
        unranked: &[Address],
    ) -> Option<Scored> {
        let eval = self.agent.evaluations.entry(id).or_default();
        if let Some(rx) = &eval.scoring {
            let result = rx.try_recv();
            let fault = match result {
                Ok(Ok(Ok(scored))) => {
                    eval.scoring = None;
                    return Some(scored);
                }
                Ok(Ok(Err(damaged))) => {
                    // Read on the thread: deleted here and fetched again, then tested.
                    eval.scoring = None;
                    tracing::warn!(target: "evaluator", task = %id.short(), error = %damaged, "a test segment is damaged");
                    self.agent.segments.damaged(&id, damaged.index);
                    return None;
                }
                Err(flume::TryRecvError::Empty) => return None,
                Ok(Err(fault)) => fault,
                Err(flume::TryRecvError::Disconnected) => {
                    "the test stopped without a result".into()
                }
            };
            // A fault in the test is the task's, as one on the event loop was (`agent_tick`):
            // the task is dropped on this node, never tested again in a loop.
            tracing::error!(target: "node", task = %id.short(), %fault, "testing the models faulted: dropping the task on this node");
            eval.scoring = None;
            self.agent.faulted.insert(id);
            return None;
        }
        let models: Vec<(Address, pouw_ml::Model)> = eval
            .models
            .iter()
            .filter(|(miner, _)| !unranked.contains(miner))
            .filter_map(|(miner, m)| Some((*miner, m.clone()?)))
            .collect();
        // Read and checked against their hashes on the thread (megabytes).
        let hashes = record.definition.dataset.segment_hashes.clone();
        let files = match self.agent.segments.files(&id, test) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(target: "evaluator", task = %id.short(), error = %e, "cannot read the test segments");
                return None;
            }
        };
        let width = record
            .definition
            .model
            .input_shape
            .iter()
            .try_fold(1usize, |w, &d| w.checked_mul(d as usize))
            .unwrap_or(0);
        let classes = record.definition.model.classes;
        let (tx, rx) = flume::bounded(1);
        let spawned = std::thread::Builder::new().name("pouw-evaluate".into()).spawn(move || {
            crate::priority::background();
            let _ = tx.send(guarded(|| {
                let test_segments = segments::read_checked(files, &hashes)?;
                Ok(score_models(id, models, test_segments, (width, classes)))
            }));
        });
        match spawned {
            Ok(_) => {
                if let Some(eval) = self.agent.evaluations.get_mut(&id) {
                    eval.scoring = Some(rx);
                }
            }
            Err(e) => {
                tracing::error!(target: "evaluator", task = %id.short(), error = %e, "cannot start testing the models")
            }
        }
        None
    }

    /// Evaluator: whether the supervisors' screening of `id` is over, so that every miner they
    /// will convict is known before we vote: a strict majority of the selected supervisors
    /// report it done, or half the evaluation window has passed (a stalled or lying
    /// committee cannot hold the verdict back).
    fn screening_settled(&mut self, id: TaskId, record: &TaskRecord, height: u64) -> bool {
        let supervisors: Vec<Address> =
            record.participants.supervisors.iter().map(|s| s.worker).collect();
        let TaskStatus::Finalising { since } = record.status else { return true };
        if supervisors.is_empty() {
            return true;
        }
        let patience = record.definition.deadlines.evaluation_blocks / 2;
        let eval = self.agent.evaluations.entry(id).or_default();
        if eval.screened_by.len().saturating_mul(2) > supervisors.len() {
            return true;
        }
        if height >= since.saturating_add(patience) {
            if !std::mem::replace(&mut eval.screening_given_up, true) {
                tracing::warn!(target: "evaluator", task = %id.short(), done = eval.screened_by.len(), supervisors = supervisors.len(), "the supervisors' screening did not finish in time: evaluating without it");
            }
            return true;
        }
        let ask: Vec<Address> = supervisors
            .into_iter()
            .filter(|s| {
                !eval.screened_by.contains(s)
                    && eval.screening_asked.get(s).is_none_or(|t| t.elapsed() >= RETRY)
            })
            .collect();
        for s in &ask {
            eval.screening_asked.insert(*s, Instant::now());
        }
        for s in ask {
            if let Some(peer) = peer_id_of(&s) {
                self.request(
                    peer,
                    Request::Screening { task: id },
                    Pending::Screening { task: id, supervisor: s },
                );
            }
        }
        false
    }

    /// Evaluator under attack `lying-evaluator`: votes at once, without testing anything, a
    /// verdict that gives the whole miners' pot to one miner (the last to submit: its
    /// accomplice), with the payouts the rules give for that ranking so the vote is valid,
    /// [`LIAR_DELAY`] after it saw the task finalising, and bids [`LIAR_FEE_FACTOR`] times the
    /// fee to get it in before the honest votes. Honest
    /// evaluators rank every submitted model, so with two or more models this verdict is
    /// always wrong (with one, it ranks nobody: wrong too).
    fn vote_wrong_verdict(&mut self, id: TaskId, record: &TaskRecord) {
        let since =
            *self.agent.evaluations.entry(id).or_default().since.get_or_insert_with(Instant::now);
        if since.elapsed() < LIAR_DELAY {
            return;
        }
        let ranking: Vec<Address> = match record.models.as_slice() {
            [] | [_] => vec![],
            [.., last] => vec![*last],
        };
        let payouts = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            expected_payouts(chain.state(), &id, &ranking, &[])
        };
        let payouts = match payouts {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(target: "evaluator", error = %e, "cannot compute the payouts");
                return;
            }
        };
        tracing::warn!(target: "evaluator", task = %id.short(), ranked = ranking.len(), models = record.models.len(), "deliberately voting a wrong verdict without testing (attack lying-evaluator)");
        self.agent.evaluations.entry(id).or_default().voted = true;
        let kind = TxKind::ChargeForTask { task_id: id, ranking, payouts, confiscations: vec![] };
        let fee = Amount(TX_FEE.units().saturating_mul(LIAR_FEE_FACTOR));
        match self.submit_own_paying(kind, fee) {
            Ok(_) => tracing::info!(target: "evaluator", task = %id.short(), "verdict submitted"),
            Err(e) => tracing::warn!(target: "evaluator", error = %e, "ChargeForTask refused"),
        }
    }

    /// Evaluator under attack `evaluator-theft`: after testing the models honestly, votes a
    /// verdict that confiscates the best honest miner's stake (it is left out of the ranking,
    /// its stake goes to the others' pot). Returns whether the vote was accepted here; the
    /// chain refuses it (only miners convicted on chain may be confiscated, design/013), and
    /// the thief then votes the honest verdict to be paid its share.
    fn vote_theft(&mut self, id: TaskId, ranking: &[Address], convicted: &[Address]) -> bool {
        let Some((victim, rest)) = ranking.split_first() else { return false };
        let confiscations: Vec<Address> =
            convicted.iter().copied().chain(std::iter::once(*victim)).collect();
        let payouts = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            expected_payouts(chain.state(), &id, rest, &confiscations)
        };
        let Ok(payouts) = payouts else { return false };
        tracing::warn!(target: "evaluator", task = %id.short(), victim = %victim.short(), "deliberately voting to confiscate an honest miner's stake (attack evaluator-theft)");
        let kind =
            TxKind::ChargeForTask { task_id: id, ranking: rest.to_vec(), payouts, confiscations };
        match self.submit_own(kind) {
            Ok(_) => {
                tracing::warn!(target: "evaluator", task = %id.short(), "theft verdict accepted");
                true
            }
            Err(e) => {
                tracing::warn!(target: "evaluator", task = %id.short(), error = %e, "theft verdict refused: voting the honest verdict");
                false
            }
        }
    }
}
