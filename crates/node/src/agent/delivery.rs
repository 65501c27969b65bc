//! The client's last step in a task: the best model of a completed task, asked of its holders
//! in turn (its miner, then the evaluators, `routing::model_sources`) until one sends the bytes
//! the miner submitted, then stored (design/015, data routing).
//!
//! Pure role logic: the node reads the chain into a [`Best`], carries out the
//! [`DeliveryAction`] that [`Delivery::tick`] returns, hands every answer to
//! [`Delivery::on_model`] and stores the model it gets back. Time comes in as an argument, so
//! the rotation and its backoff are tested with a hand-made clock.

use super::routing::{model_sources, Rotation, MODEL_RETRY};
use pouw_consensus::TaskRecord;
use pouw_primitives::{Address, Hash, TaskId};
use std::{
    collections::{HashMap, HashSet},
    time::Instant,
};

/// The best model of a completed task, as the chain shows it to its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Best {
    /// The verdict paid no miner: nothing to deliver.
    Nothing,
    /// The verdict names a best miner whose model hash this node cannot read yet.
    Waiting,
    /// The model `hash` submitted by `miner`, held by `holders` (in the order to ask them).
    Model { miner: Address, hash: Hash, holders: Vec<Address> },
}

impl Best {
    /// The best model of `record` (the miner the verdict paid most), its hash among the
    /// submitted `models` (miner, model hash), and who holds it, for the client `me`.
    pub(crate) fn of(record: &TaskRecord, models: &[(Address, Hash)], me: &Address) -> Self {
        let miners: Vec<Address> = record.participants.miners.iter().map(|s| s.worker).collect();
        let best = record.settlement.as_ref().and_then(|s| {
            s.payouts
                .iter()
                .filter(|p| miners.contains(&p.to))
                .max_by_key(|p| p.amount)
                .map(|p| p.to)
        });
        let Some(miner) = best else { return Self::Nothing };
        match models.iter().find(|(m, _)| *m == miner) {
            Some((_, hash)) => {
                Self::Model { miner, hash: *hash, holders: model_sources(record, &miner, me) }
            }
            None => Self::Waiting,
        }
    }
}

/// What the delivery asks the node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeliveryAction {
    /// Ask `holder` for the model `hash` submitted by `miner`; hand the answer to
    /// [`Delivery::on_model`].
    Ask { holder: Address, miner: Address, hash: Hash },
}

/// What an answer to the client's model request gave.
#[derive(Debug)]
pub(crate) enum Received {
    /// Not the submitted model (other bytes, or not a model): the next holder is asked.
    Refused(String),
    /// The submitted model, but it does not fit the task: never delivered, nothing more asked.
    Unfit(String),
    /// The model to store; report it with [`Delivery::stored`].
    Store(Box<pouw_ml::Model>),
}

/// The client's deliveries: the tasks done (stored, or nothing to deliver) and the holders
/// asked so far per task.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    done: HashSet<TaskId>,
    asked: HashMap<TaskId, Rotation>,
}

impl Delivery {
    /// Whether the best model of `task` is still to be delivered.
    pub(crate) fn pending(&self, task: &TaskId) -> bool {
        !self.done.contains(task)
    }

    /// The request due now for `task`, whose best model is `best`: none once done or while the
    /// last holder asked has its time to answer (`MODEL_RETRY`, doubled every full round).
    pub(crate) fn tick(
        &mut self,
        task: TaskId,
        best: Best,
        now: Instant,
    ) -> Option<DeliveryAction> {
        if self.done.contains(&task) {
            return None;
        }
        let (miner, hash, holders) = match best {
            Best::Nothing => {
                self.done.insert(task);
                return None;
            }
            Best::Waiting => return None,
            Best::Model { miner, hash, holders } => (miner, hash, holders),
        };
        let rotation = self.asked.entry(task).or_default();
        let holder = *rotation.next(&holders, MODEL_RETRY, now)?;
        Some(DeliveryAction::Ask { holder, miner, hash })
    }

    /// An answer with `bytes` to our request for the model `hash` of `task`.
    pub(crate) fn on_model(
        &mut self,
        task: TaskId,
        hash: &Hash,
        bytes: &[u8],
        record: &TaskRecord,
    ) -> Received {
        let model = match submitted_model(bytes, hash) {
            Ok(m) => m,
            Err(e) => return Received::Refused(e),
        };
        if let Err(e) = super::client::check_model_fits(record, &model) {
            self.done.insert(task);
            return Received::Unfit(e);
        }
        Received::Store(Box::new(model))
    }

    /// The best model of `task` is stored: nothing more is asked.
    pub(crate) fn stored(&mut self, task: TaskId) {
        self.done.insert(task);
        self.asked.remove(&task);
    }
}

/// The model in `bytes` if it is the one submitted as `hash`.
pub(super) fn submitted_model(bytes: &[u8], hash: &Hash) -> Result<pouw_ml::Model, String> {
    let model = pouw_ml::from_safetensors(bytes).map_err(|e| e.to_string())?;
    if Hash(model.hash().0) == *hash {
        Ok(model)
    } else {
        Err(format!("the model hashes to {}, not to the submitted hash", model.hash()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_consensus::{Settlement, TaskStatus};
    use pouw_primitives::{Amount, ChainSpec, Payout};

    fn key(i: usize) -> Address {
        ChainSpec::devnet_key(i).public()
    }

    /// A completed task of client 0 with miners 1-3 and evaluators 6-8, whose verdict paid
    /// miner 2 most.
    fn record() -> TaskRecord {
        let mut r = super::super::tests::seated_record();
        r.status = TaskStatus::Completed { at: 60, verdict: Hash::ZERO };
        r.settlement = Some(Settlement {
            payouts: vec![
                Payout { to: key(1), amount: Amount(5) },
                Payout { to: key(2), amount: Amount(9) },
                Payout { to: key(6), amount: Amount(20) },
            ],
            ..Settlement::default()
        });
        r
    }

    #[test]
    fn the_best_model_is_the_miner_paid_most_and_is_asked_of_it_then_of_the_evaluators() {
        let r = record();
        let models = [(key(1), Hash([1; 32])), (key(2), Hash([2; 32]))];
        let best = Best::of(&r, &models, &key(0));
        assert_eq!(
            best,
            Best::Model {
                miner: key(2),
                hash: Hash([2; 32]),
                holders: vec![key(2), key(6), key(7), key(8)]
            },
            "an evaluator's larger payout does not make it the best model"
        );
        assert_eq!(Best::of(&r, &models[..1], &key(0)), Best::Waiting);
        let mut none = r;
        none.settlement = None;
        assert_eq!(Best::of(&none, &models, &key(0)), Best::Nothing);
    }

    #[test]
    fn holders_are_asked_in_turn_after_the_retry_delay_and_never_after_the_model_is_stored() {
        let r = record();
        let models = [(key(2), Hash([2; 32]))];
        let best = || Best::of(&r, &models, &key(0));
        let task = Hash([9; 32]);
        let mut d = Delivery::default();
        let t0 = Instant::now();
        let ask = |holder: usize| DeliveryAction::Ask {
            holder: key(holder),
            miner: key(2),
            hash: Hash([2; 32]),
        };
        assert_eq!(d.tick(task, best(), t0), Some(ask(2)));
        assert_eq!(d.tick(task, best(), t0 + MODEL_RETRY / 2), None, "within the delay");
        assert_eq!(d.tick(task, best(), t0 + MODEL_RETRY), Some(ask(6)));
        assert!(d.pending(&task));
        d.stored(task);
        assert!(!d.pending(&task));
        assert_eq!(d.tick(task, best(), t0 + MODEL_RETRY * 100), None);
    }

    #[test]
    fn a_verdict_that_paid_no_miner_delivers_nothing() {
        let task = Hash([9; 32]);
        let mut d = Delivery::default();
        let t0 = Instant::now();
        assert_eq!(d.tick(task, Best::Waiting, t0), None);
        assert!(d.pending(&task), "still waiting for the model's hash");
        assert_eq!(d.tick(task, Best::Nothing, t0), None);
        assert!(!d.pending(&task));
    }

    #[test]
    fn an_answer_is_stored_only_if_it_is_the_submitted_model_and_fits_the_task() {
        let r = record();
        let task = Hash([9; 32]);
        let (spec, _) = pouw_consensus::pouw::ml_specs(&r.definition).unwrap();
        let good = pouw_ml::Model::new(spec.clone()).unwrap();
        let good_hash = Hash(good.hash().0);
        let bytes = pouw_ml::to_safetensors(&good).unwrap();
        let mut d = Delivery::default();
        // Not a model, or another model than the one submitted: refused, the next holder asked.
        assert!(matches!(d.on_model(task, &good_hash, b"not a model", &r), Received::Refused(_)));
        let other = Hash([2; 32]);
        assert!(matches!(d.on_model(task, &other, &bytes, &r), Received::Refused(_)));
        assert!(d.pending(&task));
        // The submitted model, of another shape than the task's: never delivered.
        let mut wide = spec;
        wide.input_shape = vec![7];
        let wide = pouw_ml::Model::new(wide).unwrap();
        let wide_bytes = pouw_ml::to_safetensors(&wide).unwrap();
        match d.on_model(task, &Hash(wide.hash().0), &wide_bytes, &r) {
            Received::Unfit(e) => assert!(e.contains("input width 7"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(!d.pending(&task));
        // The submitted model that fits: stored.
        let mut d = Delivery::default();
        match d.on_model(task, &good_hash, &bytes, &r) {
            Received::Store(m) => assert_eq!(Hash(m.hash().0), good_hash),
            other => panic!("{other:?}"),
        }
    }
}
