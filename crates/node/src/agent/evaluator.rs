//! The evaluator's part in a task (design/005, design/013): once the supervisors' screening
//! is over, every submitted model is fetched, tested on the test segments (on a thread of its
//! own, off the event loop) and ranked, and the verdict is voted (ChargeForTask).

use super::*;
use evaluation::{EvalAction, EvalView, Scored};

/// What a models' test thread sends back: the scores, or the test segment it found damaged;
/// `Err` if the test faulted.
pub(super) type ScoringResult = flume::Receiver<Result<Result<Scored, segments::Damaged>, String>>;

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

impl Node {
    /// Evaluator: our vote on `task` was dropped as invalid before it landed (a conviction
    /// recorded after it was made, so it no longer confiscates every convict): it is made
    /// again from the chain as it is now, so an honest evaluator is not left without its
    /// share.
    pub(crate) fn vote_dropped(&mut self, task: TaskId) {
        let Some(eval) = self.agent.evaluations.get_mut(&task) else { return };
        if eval.vote_dropped() {
            tracing::info!(target: "evaluator", task = %task.short(), "our vote was dropped before it landed: voting again on the chain as it is now");
        }
    }

    /// Evaluator: tests every submitted model on the test segments and votes (ChargeForTask),
    /// once: while the task finalises, and after the verdict executed without our vote while
    /// our share of the quota is held (a late vote, design/005; the `Completed` branch of
    /// `agent_task` decides when). The decisions are the evaluation's (`evaluation.rs`); this
    /// builds its view and carries out its actions.
    pub(super) fn evaluate(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
        test: &[usize],
        height: u64,
    ) -> Result<(), NodeError> {
        if self.agent.evaluations.get(&id).is_some_and(|e| e.voted()) {
            return Ok(());
        }
        if self.config.attack == Some(Attack::LyingEvaluator) {
            self.vote_wrong_verdict(id, record);
            return Ok(());
        }
        self.poll_scoring(id);
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
        let models: Vec<(Address, Hash)> = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            pouw_consensus::task_view(chain.state(), &id)
                .map(|v| v.models.iter().map(|m| (m.miner, m.model_hash)).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let supervisors: Vec<Address> =
            record.participants.supervisors.iter().map(|s| s.worker).collect();
        let view = EvalView {
            height,
            status: &record.status,
            supervisors: &supervisors,
            patience: record.definition.deadlines.evaluation_blocks / 2,
            unranked: &unranked,
            models: &models,
            have_test: self.agent.segments.has_all(&id, test),
        };
        let actions = self.agent.evaluations.entry(id).or_default().tick(&view, Instant::now());
        for action in actions {
            match action {
                EvalAction::AskScreening(s) => {
                    if let Some(peer) = peer_id_of(&s) {
                        self.request(
                            peer,
                            Request::Screening { task: id },
                            Pending::Screening { task: id, supervisor: s },
                        );
                    }
                }
                EvalAction::FetchTest => self.ask_segments(id, record, test, SegmentUse::Test),
                EvalAction::AskModel { miner, hash } => {
                    if let Some(peer) = peer_id_of(&miner) {
                        self.request(
                            peer,
                            Request::Model(hash),
                            Pending::Model { task: id, miner, hash, deliver: false },
                        );
                    }
                }
                EvalAction::Score(models) => self.start_scoring(id, record, test, models),
                EvalAction::Vote { ranking, scores, tested } => {
                    self.vote(id, record, ranking, &scores, tested)
                }
            }
        }
        Ok(())
    }

    /// Evaluator: votes `ranking` on task `id` (ChargeForTask with the payouts the rules give
    /// for it, every miner convicted on chain confiscated); `scores` and `tested` for the log.
    fn vote(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
        ranking: Vec<Address>,
        scores: &[(u32, Address)],
        tested: usize,
    ) {
        let confiscations: Vec<Address> = record.convictions.iter().map(|c| c.miner).collect();
        let payouts = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            expected_payouts(chain.state(), &id, &ranking, &confiscations)
        };
        let payouts = match payouts {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(target: "evaluator", error = %e, "cannot compute the payouts");
                if let Some(eval) = self.agent.evaluations.get_mut(&id) {
                    eval.vote_failed();
                }
                return;
            }
        };
        for (correct, miner) in scores {
            let acc = f64::from(*correct) / tested.max(1) as f64;
            tracing::info!(target: "evaluator", task = %id.short(), miner = %miner.short(), accuracy = format!("{:.2}%", acc * 100.0), "model tested");
        }
        for miner in &confiscations {
            tracing::warn!(target: "evaluator", task = %id.short(), miner = %miner.short(), "stake confiscated: convicted by the supervisors' alerts");
        }
        if self.config.attack == Some(Attack::EvaluatorTheft)
            && self.vote_theft(id, &ranking, &confiscations)
        {
            return;
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
    }

    /// Evaluator: the models' test of task `id`, if it ended, handed to its evaluation. A test
    /// segment found damaged is deleted and fetched again, then the test runs again; a fault
    /// in the test drops the task on this node.
    fn poll_scoring(&mut self, id: TaskId) {
        let Some(rx) = self.agent.scoring.get(&id) else { return };
        let result = rx.try_recv();
        let fault = match result {
            Err(flume::TryRecvError::Empty) => return,
            Ok(Ok(Ok(scored))) => {
                self.agent.scoring.remove(&id);
                self.agent.evaluations.entry(id).or_default().on_scored(Some(scored));
                return;
            }
            Ok(Ok(Err(damaged))) => {
                self.agent.scoring.remove(&id);
                tracing::warn!(target: "evaluator", task = %id.short(), error = %damaged, "a test segment is damaged");
                self.agent.segments.damaged(&id, damaged.index);
                self.agent.evaluations.entry(id).or_default().on_scored(None);
                return;
            }
            Ok(Err(fault)) => fault,
            Err(flume::TryRecvError::Disconnected) => "the test stopped without a result".into(),
        };
        // A fault in the test is the task's, as one on the event loop was (`agent_tick`): the
        // task is dropped on this node, never tested again in a loop.
        tracing::error!(target: "node", task = %id.short(), %fault, "testing the models faulted: dropping the task on this node");
        self.agent.scoring.remove(&id);
        self.agent.evaluations.entry(id).or_default().on_scored(None);
        self.agent.faulted.insert(id);
    }

    /// Evaluator: tests `models` of task `id` on the test segments `test` on a thread of its
    /// own (a large model's test takes seconds, which the event loop must not wait; the
    /// segments are read and checked against their hashes there too).
    fn start_scoring(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
        test: &[usize],
        models: Vec<(Address, pouw_ml::Model)>,
    ) {
        let hashes = record.definition.dataset.segment_hashes.clone();
        let files = match self.agent.segments.files(&id, test) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(target: "evaluator", task = %id.short(), error = %e, "cannot read the test segments");
                self.agent.evaluations.entry(id).or_default().on_scored(None);
                return;
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
                self.agent.scoring.insert(id, rx);
            }
            Err(e) => {
                tracing::error!(target: "evaluator", task = %id.short(), error = %e, "cannot start testing the models");
                self.agent.evaluations.entry(id).or_default().on_scored(None);
            }
        }
    }

    /// Evaluator under attack `lying-evaluator`: votes at once, without testing anything, a
    /// verdict that gives the whole miners' pot to one miner (the last to submit: its
    /// accomplice), with the payouts the rules give for that ranking so the vote is valid,
    /// [`LIAR_DELAY`] after it saw the task finalising, and bids [`LIAR_FEE_FACTOR`] times the
    /// fee to get it in before the honest votes. Honest
    /// evaluators rank every submitted model, so with two or more models this verdict is
    /// always wrong (with one, it ranks nobody: wrong too).
    fn vote_wrong_verdict(&mut self, id: TaskId, record: &TaskRecord) {
        let now = Instant::now();
        let since = *self.agent.evaluations.entry(id).or_default().since.get_or_insert(now);
        if now.saturating_duration_since(since) < LIAR_DELAY {
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
        self.agent.evaluations.entry(id).or_default().mark_voted();
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
