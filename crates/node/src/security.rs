//! Security alerts (SPEC section 6): a registry of handlers per alert kind, and the built-in
//! handler that turns supervisors' alerts into convictions.
//!
//! A SECURITY_ALERT reaches the handlers only once the node checked it: signed by its reporter,
//! the reporter a selected supervisor of a live task, the accused a selected miner of that task
//! (see `Node::on_alert`). Handlers are registered in code, per [`AlertKind`]:
//!
//! ```
//! use pouw_node::{SecurityHandler, SecurityHandlers, VerifiedAlert};
//! use pouw_primitives::AlertKind;
//! use std::sync::{atomic::{AtomicU64, Ordering}, Arc};
//!
//! /// Counts stale-update alerts (e.g. to page an operator).
//! #[derive(Default)]
//! struct StaleCounter(AtomicU64);
//!
//! impl SecurityHandler for StaleCounter {
//!     fn name(&self) -> &str {
//!         "stale-counter"
//!     }
//!     fn handle(&self, _alert: &VerifiedAlert) {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!     }
//! }
//!
//! let mut handlers = SecurityHandlers::default();
//! handlers.register(AlertKind::StaleUpdate, Arc::new(StaleCounter::default()));
//! assert_eq!(handlers.names()["stale_update"], vec!["stale-counter".to_string()]);
//! // NodeConfig { security: handlers, .. }: the node adds its built-in handler beside it.
//! ```
//!
//! The built-in handler, [`Accusations`], is registered for the three kinds supervisors raise
//! against miners. It convicts a miner once a strict majority of its task's selected
//! supervisors accused it: the task's miners stop applying its messages, and the evaluators
//! leave it out of their ranking. Only a conviction on chain (AccuseMiner, whose evidence is
//! the miner's own signed messages, design/013) costs the miner its stake: the evaluators
//! confiscate exactly the miners convicted on chain, and the chain refuses a verdict that
//! confiscates anyone else. A single lying supervisor convicts nobody.

use pouw_primitives::{Address, AlertKind, Hash, SecurityAlert, TaskId};
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, PoisonError},
};

/// An alert that passed the node's checks, with what its handlers need to weigh it.
#[derive(Debug, Clone)]
pub struct VerifiedAlert {
    /// The alert.
    pub alert: SecurityAlert,
    /// How many supervisors the task selected (the committee the reporter belongs to).
    pub supervisors: usize,
}

/// A handler of verified security alerts of the kinds it is registered for.
pub trait SecurityHandler: Send + Sync {
    /// Name, for logs and `pouw_security`.
    fn name(&self) -> &str;
    /// Called once per verified alert, on the node's thread: keep it short.
    fn handle(&self, alert: &VerifiedAlert);
}

/// Handlers by alert kind.
#[derive(Clone, Default)]
pub struct SecurityHandlers {
    by_kind: BTreeMap<AlertKind, Vec<Arc<dyn SecurityHandler>>>,
}

impl std::fmt::Debug for SecurityHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.names()).finish()
    }
}

fn kind_name(kind: AlertKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"))
}

impl SecurityHandlers {
    /// Adds `handler` for alerts of `kind` (after those already registered).
    pub fn register(&mut self, kind: AlertKind, handler: Arc<dyn SecurityHandler>) {
        self.by_kind.entry(kind).or_default().push(handler);
    }

    /// Hands `alert` to every handler of its kind; returns how many there were.
    pub fn dispatch(&self, alert: &VerifiedAlert) -> usize {
        let handlers = self.by_kind.get(&alert.alert.body.kind).map_or(&[][..], Vec::as_slice);
        for h in handlers {
            h.handle(alert);
        }
        handlers.len()
    }

    /// Handler names by alert kind (snake_case kind names).
    pub fn names(&self) -> BTreeMap<String, Vec<String>> {
        self.by_kind
            .iter()
            .map(|(k, hs)| (kind_name(*k), hs.iter().map(|h| h.name().to_string()).collect()))
            .collect()
    }
}

#[derive(Debug, Default, Clone)]
struct Accused {
    reporters: BTreeSet<Address>,
    /// Flagged iteration messages (by id) and who flagged each.
    messages: BTreeMap<Hash, BTreeSet<Address>>,
    kinds: BTreeMap<AlertKind, u64>,
    supervisors: usize,
}

fn majority(votes: usize, committee: usize) -> bool {
    committee > 0 && votes.saturating_mul(2) > committee
}

/// What the node knows about the accusations against one miner of one task.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccusationView {
    /// The task.
    pub task_id: TaskId,
    /// The accused miner.
    pub accused: Address,
    /// The supervisors that accused it.
    pub reporters: Vec<Address>,
    /// Alerts by kind.
    pub kinds: BTreeMap<String, u64>,
    /// Its iteration messages flagged by at least one supervisor.
    pub messages_flagged: usize,
    /// Its iteration messages flagged by a strict majority of the supervisors.
    pub messages_confirmed: usize,
    /// Accused by a strict majority of the task's supervisors.
    pub convicted: bool,
}

/// The built-in handler: who accused whom, and which miners stand convicted.
#[derive(Debug, Default)]
pub struct Accusations {
    inner: Mutex<BTreeMap<(TaskId, Address), Accused>>,
}

impl Accusations {
    /// The alert kinds this handler is registered for.
    pub const KINDS: [AlertKind; 3] =
        [AlertKind::GradientPoisoning, AlertKind::InvalidIteration, AlertKind::StaleUpdate];

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(TaskId, Address), Accused>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The miners of `task` accused by a strict majority of its `supervisors`, in address
    /// order (what an evaluator confiscates).
    pub fn convicted(&self, task: &TaskId, supervisors: usize) -> Vec<Address> {
        self.lock()
            .iter()
            .filter(|((t, _), a)| t == task && majority(a.reporters.len(), supervisors))
            .map(|((_, m), _)| *m)
            .collect()
    }

    /// Whether `miner` of `task` stands convicted.
    pub fn is_convicted(&self, task: &TaskId, miner: &Address, supervisors: usize) -> bool {
        self.lock().get(&(*task, *miner)).is_some_and(|a| majority(a.reporters.len(), supervisors))
    }

    /// Every accusation known, by task and accused.
    pub fn views(&self) -> Vec<AccusationView> {
        self.lock()
            .iter()
            .map(|((task, accused), a)| AccusationView {
                task_id: *task,
                accused: *accused,
                reporters: a.reporters.iter().copied().collect(),
                kinds: a.kinds.iter().map(|(k, n)| (kind_name(*k), *n)).collect(),
                messages_flagged: a.messages.len(),
                messages_confirmed: a
                    .messages
                    .values()
                    .filter(|r| majority(r.len(), a.supervisors))
                    .count(),
                convicted: majority(a.reporters.len(), a.supervisors),
            })
            .collect()
    }
}

impl SecurityHandler for Accusations {
    fn name(&self) -> &str {
        "stake-confiscation"
    }

    fn handle(&self, v: &VerifiedAlert) {
        let b = &v.alert.body;
        let mut all = self.lock();
        let a = all.entry((b.task_id, b.accused)).or_default();
        a.supervisors = v.supervisors;
        a.reporters.insert(b.reporter);
        *a.kinds.entry(b.kind).or_default() += 1;
        if let Some(msg) = b.evidence.first() {
            a.messages.entry(*msg).or_default().insert(b.reporter);
        }
    }
}

/// One supervisor's screening figures for one miner of one task.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ScreeningView {
    /// The task.
    pub task_id: TaskId,
    /// The miner.
    pub miner: Address,
    /// Iteration messages screened (each counted once).
    pub screened: u64,
    /// Of which replayed bit for bit.
    pub replayed: u64,
    /// Flagged (an alert was raised).
    pub flagged: u64,
    /// Could not be replayed (missing data or a broken stream).
    pub unverifiable: u64,
    /// Not drawn for replay (sampled screening, design/020): checkable later from the
    /// recorded history.
    pub skipped: u64,
    /// Replayed from a start state fetched from the miner (checked against its message).
    pub fetched: u64,
    /// Start states the miner did not serve in time (its whole stream is then replayed).
    pub unserved: u64,
    /// The fraction of the miner's messages this supervisor draws for replay.
    pub replay_fraction: f64,
    /// Every message of this miner is replayed (sampling off, or the miner was flagged,
    /// accused or did not serve a start state).
    pub replays_all: bool,
    /// Mean cosine between its maps and the robust aggregate of the other miners' recent maps
    /// (honest miners: positive; sign-flipped updates: negative; noise: near zero).
    pub mean_direction: Option<f64>,
    /// Mean ratio of its map size to the median of the other miners' (honest: about 1).
    pub mean_magnitude: Option<f64>,
}

/// Security state shared between the node's thread and its RPC server.
#[derive(Debug, Default)]
pub struct SecurityState {
    /// Handlers by kind (the configured ones and the built-in one).
    pub handlers: SecurityHandlers,
    /// The built-in handler.
    pub accusations: Arc<Accusations>,
    /// This node's screening (supervisor role).
    pub screening: Mutex<Vec<ScreeningView>>,
    /// Iteration messages this node sent poisoned (a hostile miner, defence tests only).
    pub poisoned_sent: std::sync::atomic::AtomicU64,
    /// Alerts this node raised.
    pub alerts_raised: std::sync::atomic::AtomicU64,
    /// CPU time this node (a supervisor) spent screening: replays, start states checked,
    /// figures (nanoseconds, the screening thread's clock, `screening::worker`).
    pub screening_cpu_ns: std::sync::atomic::AtomicU64,
    /// CPU time this node (a miner) spent following its own stream to serve its start states
    /// to its supervisors (design/020).
    pub own_states_cpu_ns: std::sync::atomic::AtomicU64,
    /// This node's miner: nonce attempts and the CPU time of its training steps (the measure
    /// of SPEC section 6, invariant 1; a grinding miner's gain shows here).
    pub mining: Mutex<pouw_work::MiningStats>,
    /// Blocks this node sent although its own import refused them (`--attack grind`).
    pub forged_blocks: Mutex<Vec<pouw_primitives::Hash>>,
}

impl SecurityState {
    /// The configured handlers plus the built-in [`Accusations`].
    pub fn new(mut handlers: SecurityHandlers) -> Self {
        let accusations = Arc::new(Accusations::default());
        for kind in Accusations::KINDS {
            handlers.register(kind, accusations.clone());
        }
        Self { handlers, accusations, ..Self::default() }
    }

    /// The `pouw_security` report.
    pub fn report(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering;
        let m = *self.mining.lock().unwrap_or_else(PoisonError::into_inner);
        let mining = serde_json::json!({
            "attempts": m.attempts,
            "cpu_seconds": m.cpu_ns as f64 / 1e9,
            "attempts_per_cpu_second": m.attempts_per_cpu_second(),
            "filler_attempts": m.filler_attempts,
            "filler_cpu_seconds": m.filler_cpu_ns as f64 / 1e9,
            "filler_attempts_per_cpu_second": m.filler_attempts_per_cpu_second(),
            "blocks_found": m.blocks_found,
            "forged_blocks_sent": m.forged_sent,
            "forge_cpu_seconds": m.forge_cpu_ns as f64 / 1e9,
        });
        serde_json::json!({
            "handlers": self.handlers.names(),
            "accusations": self.accusations.views(),
            "screening": *self.screening.lock().unwrap_or_else(PoisonError::into_inner),
            "alerts_raised": self.alerts_raised.load(Ordering::Relaxed),
            "supervisor_cpu_seconds": self.screening_cpu_ns.load(Ordering::Relaxed) as f64 / 1e9,
            "own_states_cpu_seconds": self.own_states_cpu_ns.load(Ordering::Relaxed) as f64 / 1e9,
            "poisoned_sent": self.poisoned_sent.load(Ordering::Relaxed),
            "mining": mining,
            "forged_blocks": *self.forged_blocks.lock().unwrap_or_else(PoisonError::into_inner),
        })
    }

    /// Records a block sent although this node refused it (a hostile miner).
    pub fn note_forged(&self, hash: pouw_primitives::Hash) {
        self.forged_blocks.lock().unwrap_or_else(PoisonError::into_inner).push(hash);
    }

    /// Records the miner's counters (after each of its steps).
    pub fn set_mining(&self, stats: pouw_work::MiningStats) {
        *self.mining.lock().unwrap_or_else(PoisonError::into_inner) = stats;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_primitives::{Keypair, SecurityAlertBody};

    fn alert(reporter: &Keypair, accused: Address, msg: u8) -> VerifiedAlert {
        let body = SecurityAlertBody {
            chain_id: 1,
            task_id: Hash([7; 32]),
            reporter: reporter.public(),
            accused,
            kind: AlertKind::GradientPoisoning,
            evidence: vec![Hash([msg; 32])],
            detail: String::new(),
        };
        VerifiedAlert { alert: body.sign(reporter), supervisors: 3 }
    }

    #[test]
    fn a_strict_majority_of_supervisors_convicts() {
        let state = SecurityState::new(SecurityHandlers::default());
        let miner = Keypair::from_label("miner").public();
        let (s1, s2) = (Keypair::from_label("s1"), Keypair::from_label("s2"));
        let task = Hash([7; 32]);
        assert_eq!(state.handlers.dispatch(&alert(&s1, miner, 1)), 1);
        state.handlers.dispatch(&alert(&s1, miner, 2));
        assert!(!state.accusations.is_convicted(&task, &miner, 3), "one liar convicts nobody");
        assert!(state.accusations.convicted(&task, 3).is_empty());
        state.handlers.dispatch(&alert(&s2, miner, 1));
        assert!(state.accusations.is_convicted(&task, &miner, 3));
        assert_eq!(state.accusations.convicted(&task, 3), vec![miner]);
        let v = &state.accusations.views()[0];
        assert_eq!((v.messages_flagged, v.messages_confirmed), (2, 1));
        assert_eq!(v.kinds["gradient_poisoning"], 3);
        // Other kinds have no handler unless one is registered.
        let mut other = alert(&s1, miner, 3);
        other.alert.body.kind = AlertKind::WrongVerdict;
        assert_eq!(state.handlers.dispatch(&other), 0);
    }
}
