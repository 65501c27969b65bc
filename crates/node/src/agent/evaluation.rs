//! An evaluator's work on one task as pure role logic (design/005, design/013): wait until the
//! supervisors' screening is over, fetch the test segments and every submitted model of a
//! miner not convicted, have the models tested, and vote the ranking once.
//!
//! The node builds an [`EvalView`] from the chain and its alerts, carries out the
//! [`EvalAction`]s [`Evaluation::tick`] returns (requests, the models' test on a thread of its
//! own, the vote) and hands back what came of them (`on_screening`, `on_model`, `on_scored`).
//! Time comes in as an argument, so the waits are tested with a hand-made clock and no network.

use super::RETRY;
use pouw_consensus::TaskStatus;
use pouw_primitives::{Address, Hash};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Instant,
};

/// Each tested model's correct count on the test set, and the test set's size.
pub(super) type Scored = (Vec<(u32, Address)>, usize);

/// The most times an evaluator casts its vote on one task again after it was dropped.
pub(super) const MAX_REVOTES: u8 = 3;

/// What an evaluator sees of a finalising task.
pub(super) struct EvalView<'a> {
    /// The tip's height.
    pub(super) height: u64,
    /// The task's phase.
    pub(super) status: &'a TaskStatus,
    /// The task's selected supervisors.
    pub(super) supervisors: &'a [Address],
    /// Blocks after finalising starts that the screening is waited for (half the evaluation
    /// window: a stalled or lying committee cannot hold the verdict back).
    pub(super) patience: u64,
    /// Miners convicted (on chain, or by a majority of the alerts seen here): not ranked.
    pub(super) unranked: &'a [Address],
    /// The submitted models on chain: (miner, model hash).
    pub(super) models: &'a [(Address, Hash)],
    /// Whether this node holds every test segment.
    pub(super) have_test: bool,
}

/// What the evaluation asks the node to do.
#[derive(Debug)]
pub(super) enum EvalAction {
    /// Ask this supervisor whether its screening of the task is done.
    AskScreening(Address),
    /// Fetch the task's test segments (the screening is over).
    FetchTest,
    /// Ask for the model `hash` submitted by `miner`.
    AskModel { miner: Address, hash: Hash },
    /// Test these models on the test segments, off the event loop, and report with
    /// [`Evaluation::on_scored`].
    Score(Vec<(Address, pouw_ml::Model)>),
    /// Vote this ranking (best first), from these scores on a test set of `tested` samples.
    Vote { ranking: Vec<Address>, scores: Vec<(u32, Address)>, tested: usize },
}

/// Where the models' test stands.
#[derive(Debug, Default)]
enum Scoring {
    #[default]
    NotStarted,
    Running,
    Done(Scored),
}

/// An evaluator's work on one task.
#[derive(Debug, Default)]
pub(super) struct Evaluation {
    /// The fetched models (`None`: refused, counted as missing).
    models: BTreeMap<Address, Option<pouw_ml::Model>>,
    asked: HashMap<Address, Instant>,
    voted: bool,
    /// Votes dropped as invalid and cast again (a conviction that reached the chain after
    /// the vote was made, design/009 "Late accusations"); at most [`MAX_REVOTES`].
    revotes: u8,
    /// Supervisors that reported their screening of the task done.
    screened_by: HashSet<Address>,
    screening_asked: HashMap<Address, Instant>,
    /// The screening did not end in time: evaluating without waiting further.
    screening_given_up: bool,
    scoring: Scoring,
    /// When the lying evaluator first saw the task finalising (its delay counts from it).
    pub(super) since: Option<Instant>,
}

impl Evaluation {
    /// Whether our vote is made (sent, or decided).
    pub(super) fn voted(&self) -> bool {
        self.voted
    }

    /// The vote is made (the lying evaluator's, which tests nothing).
    pub(super) fn mark_voted(&mut self) {
        self.voted = true;
    }

    /// The vote could not be made after all (its payouts could not be computed): made again
    /// at a later tick, from the same scores.
    pub(super) fn vote_failed(&mut self) {
        self.voted = false;
    }

    /// Our vote was dropped before it landed: it is made again (at most [`MAX_REVOTES`]
    /// times). Returns whether it will be.
    pub(super) fn vote_dropped(&mut self) -> bool {
        if self.voted && self.revotes < MAX_REVOTES {
            self.revotes += 1;
            self.voted = false;
            return true;
        }
        false
    }

    /// A supervisor's screening status answer.
    pub(super) fn on_screening(&mut self, supervisor: Address, done: bool) {
        if done {
            self.screened_by.insert(supervisor);
        }
    }

    /// A model answer for `miner`: the checked model, or `None` if it was refused.
    pub(super) fn on_model(&mut self, miner: Address, model: Option<pouw_ml::Model>) {
        self.models.insert(miner, model);
    }

    /// The models' test ended: its scores, or `None` if it must run again (a test segment was
    /// found damaged and is fetched again; or the test faulted and the node drops the task).
    pub(super) fn on_scored(&mut self, scored: Option<Scored>) {
        self.scoring = match scored {
            Some(s) => Scoring::Done(s),
            None => Scoring::NotStarted,
        };
    }

    /// Whether the supervisors' screening is over (so every miner they will convict is known
    /// before we vote): a strict majority of them report it done, or `patience` blocks of
    /// finalising passed. Otherwise the supervisors not heard from are asked (again after
    /// [`RETRY`]).
    fn screening_settled(
        &mut self,
        view: &EvalView<'_>,
        now: Instant,
        actions: &mut Vec<EvalAction>,
    ) -> bool {
        let TaskStatus::Finalising { since } = *view.status else { return true };
        if view.supervisors.is_empty()
            || self.screened_by.len().saturating_mul(2) > view.supervisors.len()
        {
            return true;
        }
        if view.height >= since.saturating_add(view.patience) {
            if !std::mem::replace(&mut self.screening_given_up, true) {
                tracing::warn!(target: "evaluator", done = self.screened_by.len(), supervisors = view.supervisors.len(), "the supervisors' screening did not finish in time: evaluating without it");
            }
            return true;
        }
        for s in view.supervisors {
            let due = !self.screened_by.contains(s) && !recent(self.screening_asked.get(s), now);
            if due {
                self.screening_asked.insert(*s, now);
                actions.push(EvalAction::AskScreening(*s));
            }
        }
        false
    }

    /// What is due now: the screening's end waited for, the test segments and the models
    /// fetched, the models tested, then the vote (once; marked made here).
    pub(super) fn tick(&mut self, view: &EvalView<'_>, now: Instant) -> Vec<EvalAction> {
        let mut actions = Vec::new();
        if self.voted {
            return actions;
        }
        if !self.screening_settled(view, now, &mut actions) {
            return actions;
        }
        actions.push(EvalAction::FetchTest);
        let ranked: Vec<&(Address, Hash)> =
            view.models.iter().filter(|(m, _)| !view.unranked.contains(m)).collect();
        for (miner, hash) in &ranked {
            if self.models.contains_key(miner) || recent(self.asked.get(miner), now) {
                continue;
            }
            self.asked.insert(*miner, now);
            actions.push(EvalAction::AskModel { miner: *miner, hash: *hash });
        }
        let have_models = ranked.iter().all(|(m, _)| self.models.contains_key(m));
        if !view.have_test || !have_models {
            return actions;
        }
        match &self.scoring {
            Scoring::Running => {}
            Scoring::NotStarted => {
                let models = self
                    .models
                    .iter()
                    .filter(|(miner, _)| !view.unranked.contains(miner))
                    .filter_map(|(miner, m)| Some((*miner, m.clone()?)))
                    .collect();
                self.scoring = Scoring::Running;
                actions.push(EvalAction::Score(models));
            }
            Scoring::Done((scores, tested)) => {
                // A conviction seen while the models were under test unranks its miner too.
                let mut scores: Vec<(u32, Address)> =
                    scores.iter().filter(|(_, m)| !view.unranked.contains(m)).copied().collect();
                scores.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                let ranking = scores.iter().map(|(_, m)| *m).collect();
                self.voted = true;
                actions.push(EvalAction::Vote { ranking, scores, tested: *tested });
            }
        }
        actions
    }
}

/// Whether `asked` is within [`RETRY`] of `now`.
fn recent(asked: Option<&Instant>, now: Instant) -> bool {
    asked.is_some_and(|t| now.saturating_duration_since(*t) < RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_primitives::ChainSpec;

    fn key(i: usize) -> Address {
        ChainSpec::devnet_key(i).public()
    }

    fn model() -> pouw_ml::Model {
        let def = pouw_consensus::pouw::filler_task(&ChainSpec::devnet(), &Hash::ZERO).1;
        pouw_ml::Model::new(pouw_consensus::pouw::ml_specs(&def).unwrap().0).unwrap()
    }

    struct Fixture {
        status: TaskStatus,
        supervisors: Vec<Address>,
        unranked: Vec<Address>,
        models: Vec<(Address, Hash)>,
    }

    impl Fixture {
        /// Finalising since height 100; supervisors 4, 5, 6; models of miners 1, 2, 3.
        fn new() -> Self {
            Self {
                status: TaskStatus::Finalising { since: 100 },
                supervisors: vec![key(4), key(5), key(6)],
                unranked: vec![],
                models: (1..4).map(|i| (key(i), Hash([i as u8; 32]))).collect(),
            }
        }

        fn view(&self, height: u64, have_test: bool) -> EvalView<'_> {
            EvalView {
                height,
                status: &self.status,
                supervisors: &self.supervisors,
                patience: 10,
                unranked: &self.unranked,
                models: &self.models,
                have_test,
            }
        }
    }

    fn screening_asks(actions: &[EvalAction]) -> Vec<Address> {
        actions
            .iter()
            .filter_map(|a| match a {
                EvalAction::AskScreening(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn nothing_is_fetched_before_a_majority_of_supervisors_screened_or_half_the_window_passed() {
        let f = Fixture::new();
        let mut e = Evaluation::default();
        let t0 = Instant::now();
        let first = e.tick(&f.view(101, true), t0);
        assert_eq!(screening_asks(&first), f.supervisors, "every supervisor asked");
        assert_eq!(first.len(), 3, "nothing else before the screening is over");
        assert!(e.tick(&f.view(101, true), t0 + RETRY / 2).is_empty(), "not asked again yet");
        assert_eq!(screening_asks(&e.tick(&f.view(101, true), t0 + RETRY)).len(), 3);
        // One of three done: not a majority.
        e.on_screening(key(4), true);
        e.on_screening(key(5), false);
        let asks = screening_asks(&e.tick(&f.view(102, true), t0 + RETRY * 2));
        assert_eq!(asks, [key(5), key(6)]);
        // Two of three: settled, the data is fetched.
        e.on_screening(key(6), true);
        let actions = e.tick(&f.view(102, true), t0 + RETRY * 2);
        assert!(matches!(actions[0], EvalAction::FetchTest));
        assert_eq!(actions.iter().filter(|a| matches!(a, EvalAction::AskModel { .. })).count(), 3);
        // A committee that never answers holds the vote back only half the window.
        let mut late = Evaluation::default();
        let actions = late.tick(&f.view(110, true), t0);
        assert!(matches!(actions[0], EvalAction::FetchTest));
    }

    #[test]
    fn models_of_convicted_miners_are_neither_fetched_nor_tested_nor_ranked() {
        let mut f = Fixture::new();
        f.status = TaskStatus::Training;
        f.unranked = vec![key(2)];
        let mut e = Evaluation::default();
        let t0 = Instant::now();
        let asked: Vec<Address> = e
            .tick(&f.view(100, false), t0)
            .iter()
            .filter_map(|a| match a {
                EvalAction::AskModel { miner, .. } => Some(*miner),
                _ => None,
            })
            .collect();
        assert_eq!(asked, [key(1), key(3)]);
        e.on_model(key(1), Some(model()));
        e.on_model(key(3), None); // refused: counted as missing
        assert!(
            !e.tick(&f.view(100, false), t0).iter().any(|a| matches!(a, EvalAction::Score(_))),
            "the test segments are missing"
        );
        let actions = e.tick(&f.view(100, true), t0);
        let tested: Vec<Address> = actions
            .iter()
            .find_map(|a| match a {
                EvalAction::Score(models) => Some(models.iter().map(|(m, _)| *m).collect()),
                _ => None,
            })
            .unwrap();
        assert_eq!(tested, [key(1)], "a refused model is not tested");
        assert!(!e.tick(&f.view(100, true), t0).iter().any(|a| matches!(a, EvalAction::Score(_))));
        // Miner 3 is convicted while the models are under test: left out of the ranking too.
        e.on_scored(Some((vec![(90, key(1)), (95, key(3))], 100)));
        f.unranked.push(key(3));
        let vote = e.tick(&f.view(100, true), t0).into_iter().find_map(|a| match a {
            EvalAction::Vote { ranking, tested, .. } => Some((ranking, tested)),
            _ => None,
        });
        assert_eq!(vote, Some((vec![key(1)], 100)));
        assert!(e.voted());
        assert!(e.tick(&f.view(100, true), t0).is_empty(), "one vote");
    }

    #[test]
    fn the_ranking_is_by_score_then_address_and_a_dropped_vote_is_cast_again_three_times() {
        let mut f = Fixture::new();
        f.status = TaskStatus::Training;
        let mut e = Evaluation::default();
        let t0 = Instant::now();
        for i in 1..4 {
            e.on_model(key(i), Some(model()));
        }
        let _ = e.tick(&f.view(100, true), t0);
        let (a, b) = if key(1) < key(3) { (key(1), key(3)) } else { (key(3), key(1)) };
        e.on_scored(Some((vec![(80, key(2)), (90, key(1)), (90, key(3))], 100)));
        let vote = |e: &mut Evaluation| {
            e.tick(&f.view(100, true), t0).into_iter().find_map(|a| match a {
                EvalAction::Vote { ranking, .. } => Some(ranking),
                _ => None,
            })
        };
        assert_eq!(vote(&mut e), Some(vec![a, b, key(2)]), "ties broken by address");
        for _ in 0..MAX_REVOTES {
            assert!(e.vote_dropped());
            assert!(vote(&mut e).is_some());
        }
        assert!(!e.vote_dropped(), "at most {MAX_REVOTES} votes again");
        assert!(vote(&mut e).is_none());
        // A test that must run again (a damaged segment) is started again.
        let mut e = Evaluation::default();
        let _ = e.tick(&f.view(100, true), t0);
        for i in 1..4 {
            e.on_model(key(i), Some(model()));
        }
        assert!(e.tick(&f.view(100, true), t0).iter().any(|a| matches!(a, EvalAction::Score(_))));
        e.on_scored(None);
        assert!(e.tick(&f.view(100, true), t0).iter().any(|a| matches!(a, EvalAction::Score(_))));
    }
}
