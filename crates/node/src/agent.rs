//! The node's part in client tasks (SPEC section 3), for the roles it runs:
//! - every node with worker roles keeps a live staking ticket per role (BUY_TICKET, `tickets`);
//! - client: stores the segments of the tasks it submitted and serves them (training segments
//!   from selection on, test segments only once the task is finalising), then fetches the
//!   best model once the verdict is executed;
//! - miner: fetches the training segments from the client, checks each against its hash,
//!   trains its share of the batches with the other miners' iteration messages (gossip on
//!   the task's topic), mines with every iteration, and submits its final model;
//! - supervisor: records every iteration message of the task's miners by history slot (a
//!   fixed range of iterations, design/007), fills gaps from the other supervisors' copies,
//!   and commits the Merkle root of each slot once every miner is past it (MessageHistory),
//!   serving the slot's messages on request;
//!   it fetches the training segments too and screens every miner's stream (replay, direction
//!   and magnitude: `screening`), raising a SECURITY_ALERT for every flagged message;
//! - every node: checks the alerts it receives and hands them to the security handlers
//!   (`security`); a miner convicted by a majority of its task's supervisors has its messages
//!   ignored by the other miners and its stake confiscated by the evaluators;
//! - evaluator: once the task is finalising, fetches the test segments and every submitted
//!   model, tests each with the deterministic kernels and submits its verdict
//!   (ChargeForTask) with the payouts the rules give for its ranking.
//!
//! Every step is driven by the chain state at the tip, so a restarted node picks up where
//! the chain is.

use crate::{
    node::{Node, NodeError, Pending},
    screening::{worker::Screening, Finding},
    security::{SecurityState, VerifiedAlert},
    Attack,
};
use pouw_consensus::{
    expected_payouts, history_root, history_slot, pouw::Handover, task_record, task_split_of,
    StateKey, StateValue, TaskRecord, TaskStatus,
};
use pouw_ml::{Batch, Dataset, Exec};
use pouw_net::{peer_id_of, Request, Topic};
use pouw_primitives::{
    Address, Amount, Hash, IterationMessage, MinerEvidence, Role, SecurityAlert, SecurityAlertBody,
    TaskId, Transaction, TxBody, TxKind, DATASET_SEGMENTS,
};
use pouw_work::{Assignment, FinishedModel};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

mod client;
use client::bad_model;
#[cfg(test)]
use client::check_model_fits;
pub use client::SubmitTaskError;
mod dataset;
mod delivery;
mod evaluation;
mod evaluator;
mod history;
mod memory;
mod miner;
mod supervisor;
use evaluation::Evaluation;
use history::{History, Merge, SlotStep};
mod routing;
mod sampling;
mod segments;
mod start_weights;
mod tickets;
use segments::SegmentStore;

/// Transaction fee the node pays for its own task transactions, base units.
const TX_FEE: Amount = Amount(1_000);
/// A supervisor commits history slot `s` once every selected miner has sent an iteration this
/// far past the slot's end (or submitted its model), so the slot's last gossip has arrived.
const SLOT_SETTLE_ITERATIONS: u64 = 2;
/// Once a slot is closed, a supervisor lets this much time pass (gossip still in flight)
/// before asking the other supervisors for their copies of it.
const SLOT_SETTLE: Duration = Duration::from_millis(500);
/// A supervisor waits at most this long for the other supervisors' copies of a slot.
const MERGE_WAIT: Duration = Duration::from_secs(8);
/// Rounds of asking for copies while the slot still has a gap in a miner's iterations and the
/// last round filled some of it.
const MERGE_ROUNDS: u32 = 3;
/// A lying evaluator bids this many times the normal fee, so its vote is ordered before the
/// honest ones.
const LIAR_FEE_FACTOR: u64 = 10;
/// A lying evaluator votes this long after it saw the task finalising (peers whose tip is still
/// in training would refuse the vote, and gossip does not carry a refused transaction twice).
const LIAR_DELAY: Duration = Duration::from_secs(1);
/// A peer miner's iteration messages are applied no sooner than this after its first one
/// arrived: time for the supervisors' alerts against a poisoning miner to arrive first
/// (design/009).
const PEER_PROBATION: Duration = Duration::from_secs(1);
/// Most peer messages applied in one iteration (bounds the proof data).
const MAX_PEERS_PER_ITERATION: usize = 8;
/// Bounded staleness (design/012): a miner runs its iteration `i` of a client task only once it
/// holds every training peer's messages up to iteration `i - PEER_STALENESS`.
const PEER_STALENESS: u64 = 1;
/// The longest a miner waits for a peer's messages before an iteration; a peer that kept it
/// waiting this long is left out of the wait until it catches up (design/012).
const STALENESS_WAIT: Duration = Duration::from_millis(300);
/// At the start of a task, the longest a miner waits to hear from every other miner of it (they
/// fetch their data at different times; one that starts alone trains its walk alone).
const START_WAIT: Duration = Duration::from_secs(5);
/// A request that got no useful answer is retried after this long.
const RETRY: Duration = Duration::from_secs(2);
/// A segment request is not repeated while in flight: it is answered or fails within the
/// network's request timeout (20 s by default).
const SEGMENT_IN_FLIGHT: Duration = Duration::from_secs(30);
/// A miner holds the end of its walk at most this long for a conviction to reach the chain.
const HANDOVER_HOLD: Duration = Duration::from_secs(30);
/// The largest evidence an AccuseMiner carries: what a transaction holds with room for its
/// other fields.
const EVIDENCE_MAX_BYTES: usize = pouw_primitives::MAX_TX_BYTES - 1024;

/// A supervisor's AccuseMiner not recorded on chain after this long is sent again.
const ACCUSE_RETRY: Duration = Duration::from_secs(10);

/// What a segment is fetched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentUse {
    /// A miner's training data.
    Train,
    /// An evaluator's test data.
    Test,
    /// A supervisor's replays.
    Screen,
}

/// What the agent remembers between ticks (everything else comes from the chain state).
#[derive(Default)]
pub(crate) struct Agent {
    /// The tickets role: a live staking ticket per worker role.
    tickets: tickets::Tickets,
    datadir: PathBuf,
    /// Client: the best models of its completed tasks, asked of their holders and stored.
    delivery: delivery::Delivery,
    /// Worker: the segments of our tasks (one copy on disk whatever the roles that need
    /// them), and each task's training dataset assembled from them once (shared by the
    /// miner, the validator and the screening).
    segments: SegmentStore,
    /// By task: the selection seed the dataset was assembled for (the seed fixes the split).
    datasets: HashMap<TaskId, (Hash, Arc<Dataset>)>,
    /// Tasks whose segments checked but do not assemble into a dataset (logged once).
    bad_datasets: HashSet<TaskId>,
    /// Datasets being assembled on their own thread, by task: the seed they are for, and the
    /// result once done.
    assembling: HashMap<TaskId, (Hash, flume::Receiver<Result<Dataset, dataset::Assembly>>)>,
    /// Miner: tasks whose training we finished (model submitted) or dropped (it could not be
    /// mined any more).
    trained: HashSet<TaskId>,
    /// Miner: peer messages received, per task, not applied yet.
    inbox: HashMap<TaskId, std::collections::VecDeque<IterationMessage>>,
    /// Miner: when the first message of each (task, peer miner) arrived.
    first_seen: HashMap<(TaskId, Address), Instant>,
    /// Miner: how many iterations of each (task, peer miner) arrived (its highest + 1).
    peer_progress: HashMap<(TaskId, Address), u64>,
    /// Miner: the next iteration of its own on each task (its highest sent + 1).
    own_progress: HashMap<TaskId, u64>,
    /// Miner: when the node first saw itself selected to train each task (the start of its
    /// wait for its peers).
    start_wait: HashMap<TaskId, Instant>,
    /// Miner: the iteration waited for on each task (bounded staleness) and since when.
    staleness_wait: HashMap<TaskId, (u64, Instant)>,
    /// Miner: peers left out of the wait (they kept it waiting [`STALENESS_WAIT`]) until they
    /// catch up.
    excused: HashSet<(TaskId, Address)>,
    /// Supervisor: message logs.
    history: HashMap<TaskId, History>,
    /// Evaluator: evaluations in progress.
    evaluations: HashMap<TaskId, Evaluation>,
    /// Evaluator: the models' tests running on their own threads, by task.
    scoring: HashMap<TaskId, evaluator::ScoringResult>,
    subscribed: HashSet<TaskId>,
    /// Tasks seen completed with us in them.
    completed: HashSet<TaskId>,
    /// Tasks whose state was dropped once they ended (`memory::Agent::forget_task`).
    forgotten: HashSet<TaskId>,
    /// Supervisor: screening per task.
    screening: Screening,
    /// Miner: its own recent start states per task, served to the task's supervisors
    /// (design/020).
    own_states: crate::screening::own_thread::OwnStatesThread,
    /// Security handlers, convictions and figures (shared with the RPC server).
    pub(crate) security: Arc<SecurityState>,
    /// Selected supervisors per task we take part in (the committee alerts are weighed by).
    supervisors: HashMap<TaskId, usize>,
    /// Supervisor: (task, miner) pairs flagged at least once (the first flag is logged loud),
    /// with the evidence an AccuseMiner carries: the flagged message with the smallest map.
    flagged_miners: HashMap<(TaskId, Address), Option<IterationMessage>>,
    /// Supervisor: the first equivocation seen per (task, miner): two variants of one
    /// iteration, evidence that convicts on its own (design/013).
    equivocations: HashMap<(TaskId, Address), (IterationMessage, IterationMessage)>,
    /// Supervisor: when we last sent an AccuseMiner for a (task, miner) not yet recorded.
    accused: HashMap<(TaskId, Address), Instant>,
    /// Supervisor: (task, miner) pairs whose evidence is too large for an AccuseMiner
    /// (logged once).
    too_large_evidence: HashSet<(TaskId, Address)>,
    /// Miner: since when a conviction seen here has been waiting to reach the chain.
    hold_since: HashMap<TaskId, Instant>,
    /// Miner: the other miners of the task not convicted on chain.
    peer_miners: HashMap<TaskId, usize>,
    /// Miner under attack `bad-model`: final models replaced so far (odd: another shape;
    /// even: full of NaN).
    bad_models: u32,
    /// Tasks whose work faulted (panicked) here: skipped from then on.
    faulted: HashSet<TaskId>,
    /// Segments being sent to peers, and the requests waiting their turn.
    segment_sends: routing::SegmentSends,
}

impl Agent {
    pub(crate) fn new(
        roles: Vec<Role>,
        datadir: PathBuf,
        security: Arc<SecurityState>,
        threads: usize,
    ) -> Self {
        memory::give_large_buffers_back();
        let segments = SegmentStore::new(datadir.join("segments"));
        let screening = Screening::new(threads, security.clone());
        let own_states =
            crate::screening::own_thread::OwnStatesThread::new(threads, security.clone());
        let tickets = tickets::Tickets::new(roles);
        Self { tickets, datadir, security, segments, screening, own_states, ..Self::default() }
    }

    /// Whether `miner` of `task` stands convicted by a majority of the task's supervisors.
    fn convicted(&self, task: &TaskId, miner: &Address) -> bool {
        let n = self.supervisors.get(task).copied().unwrap_or(0);
        self.security.accusations.is_convicted(task, miner, n)
    }

    /// Supervisor: the screening of task `id` follows `record`'s view of its selection (the
    /// seed and the miners' order): made at the first need, and made anew when a
    /// reorganisation of the chain changed that view (the messages held are screened again).
    fn screen_for(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
        sampling: crate::screening::sample::Sampling,
    ) {
        let miners: Vec<Address> = record.participants.miners.iter().map(|s| s.worker).collect();
        self.screening.follow(id, &record.definition, (record.seed, miners), sampling);
    }

    fn models_dir(&self) -> PathBuf {
        self.datadir.join("models")
    }

    fn client_dir(&self, task: &TaskId) -> PathBuf {
        self.datadir.join("client").join(task.to_string())
    }

    /// The bytes of a model this node stores (its own final models, fetched best models).
    pub(crate) fn model_bytes(&self, hash: &Hash) -> Option<Vec<u8>> {
        std::fs::read(self.models_dir().join(format!("{hash}.safetensors"))).ok()
    }

    /// A client's segment, if this node is the client of `task` and may reveal it now (at
    /// chain height `height`): training segments while the task trains, every segment while
    /// it finalises and, for late evaluators' votes, until its finalisation deadline.
    fn segment(
        &mut self,
        record: &TaskRecord,
        task: &TaskId,
        index: u8,
        height: u64,
    ) -> Option<Vec<u8>> {
        if !segments::revealed(record, index, height) || usize::from(index) >= DATASET_SEGMENTS {
            return None;
        }
        // Read from the client's copy on disk at each request (the page cache holds it): the
        // segments of a task are not kept in memory for the whole task.
        std::fs::read(segment_path(&self.client_dir(task), usize::from(index))).ok()
    }
}

/// Where a client node keeps segment `index` of a task it submitted.
fn segment_path(task_dir: &std::path::Path, index: usize) -> PathBuf {
    task_dir.join(format!("segment-{index}.bin"))
}

/// Where a client node keeps the best model of its task `task`.
pub(crate) fn task_model_path(datadir: &std::path::Path, task: &TaskId) -> PathBuf {
    datadir.join("models").join(format!("task-{task}.safetensors"))
}

/// Blocks on top of a task's selection block after which a supervisor takes its view of the
/// selection (seed, miners' order) as settled: only then may a miner whose stream left that
/// view's schedule be flagged (`screening`'s module docs).
const VIEW_SETTLE_BLOCKS: u64 = 3;

/// Whether the selection of `record` (made in the block after its PayForTask block) is buried
/// under [`VIEW_SETTLE_BLOCKS`] blocks at chain height `height`.
fn view_settled(record: &TaskRecord, height: u64) -> bool {
    record.created_at.saturating_add(1).saturating_add(VIEW_SETTLE_BLOCKS) <= height
}

fn seat_of(record: &TaskRecord, role: Role, me: &Address) -> Option<usize> {
    record.participants.of(role).iter().position(|s| s.worker == *me)
}

/// Runs `f`, catching a panic: `Err` with the panic's message instead of unwinding further.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

impl Node {
    fn me(&self) -> Address {
        self.config.key.public()
    }

    /// A transaction of ours, signed, with the nonce after the chain's and after our
    /// transactions waiting in the pool or pending in `own_txs`.
    fn own_tx(&self, kind: TxKind) -> Transaction {
        let me = self.me();
        let nonce = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let base = chain.state().account(&me).nonce;
            let (pending, queued) = self.mempool.sender_nonces(&me);
            pending
                .iter()
                .chain(&queued)
                .map(|n| n.saturating_add(1))
                .chain(self.own_txs.next_nonce(&me))
                .max()
                .unwrap_or(base)
                .max(base)
        };
        TxBody { chain_id: self.config.spec.chain_id, sender: me, nonce, fee: TX_FEE, kind }
            .sign(&self.config.key)
    }

    /// Signs and submits a transaction of ours.
    pub(crate) fn submit_own(&mut self, kind: TxKind) -> Result<Hash, String> {
        let tx = self.own_tx(kind);
        self.submit_local(tx)
    }

    /// [`Node::submit_own`] paying `fee` instead of the usual fee.
    fn submit_own_paying(&mut self, kind: TxKind, fee: Amount) -> Result<Hash, String> {
        let mut body = self.own_tx(kind).body;
        body.fee = fee;
        let tx = body.sign(&self.config.key);
        self.submit_local(tx)
    }

    /// A gossiped iteration message on a task topic (signature already checked): from a
    /// selected miner of that task, or the sender is penalised.
    pub(crate) fn agent_on_iteration(&mut self, msg: &IterationMessage) -> bool {
        let task = msg.body.task_id;
        let record = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            task_record(chain.state(), &task)
        };
        let Some(record) = record else { return false };
        if !record.participants.miners.iter().any(|s| s.worker == msg.body.miner) {
            return false;
        }
        if !matches!(record.status, TaskStatus::Training | TaskStatus::Finalising { .. }) {
            // A late copy of a message of a task that is over: nothing keeps it.
            return true;
        }
        let me = self.me();
        if msg.body.miner != me
            && seat_of(&record, Role::Miner, &me).is_some()
            && !self.agent.convicted(&task, &msg.body.miner)
        {
            self.agent.first_seen.entry((task, msg.body.miner)).or_insert_with(Instant::now);
            let seen = self.agent.peer_progress.entry((task, msg.body.miner)).or_default();
            *seen = (*seen).max(msg.body.iteration.saturating_add(1));
            self.agent.inbox.entry(task).or_default().push_back(msg.clone());
        }
        if seat_of(&record, Role::Supervisor, &me).is_some() {
            // One copy, shared by the history and the screening.
            let shared = Arc::new(msg.clone());
            let history = self.agent.history.entry(task).or_default();
            let equivocation = history.record(Arc::clone(&shared));
            self.note_equivocation(task, equivocation);
            self.screen_of(task, &record);
            self.agent.screening.receive(task, shared);
        }
        true
    }

    /// A SECURITY_ALERT whose signature checked: handed to the security handlers if its
    /// reporter is a selected supervisor of the task and the accused one of its selected
    /// miners (else it is not relayed).
    pub(crate) fn agent_on_alert(&mut self, alert: &SecurityAlert) -> bool {
        let b = &alert.body;
        if b.chain_id != self.config.spec.chain_id {
            return false;
        }
        let record = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            task_record(chain.state(), &b.task_id)
        };
        let Some(record) = record else { return false };
        let p = &record.participants;
        if !p.supervisors.iter().any(|s| s.worker == b.reporter)
            || !p.miners.iter().any(|s| s.worker == b.accused)
        {
            return false;
        }
        let verified = VerifiedAlert { alert: alert.clone(), supervisors: p.supervisors.len() };
        let was = self.agent.convicted(&b.task_id, &b.accused);
        self.agent.supervisors.insert(b.task_id, p.supervisors.len());
        self.agent.security.handlers.dispatch(&verified);
        if crate::security::Accusations::KINDS.contains(&b.kind) {
            self.replay_accused(&b.task_id, &b.accused);
        }
        if !was && self.agent.convicted(&b.task_id, &b.accused) {
            tracing::warn!(target: "node", task = %b.task_id.short(), miner = %b.accused.short(), "miner convicted by a majority of the task's supervisors: its updates are ignored and its stake will be confiscated");
        }
        true
    }

    /// Serves task requests (segments, models, histories) from the peer `from`. Segments and
    /// models go only to the workers whose seats need them (`segments::may_serve_segment`,
    /// `segments::may_serve_model`, design/014), from the client or any seat holding a copy
    /// (`routing`); anyone else gets an empty answer (never a ban: an honest node may ask a
    /// moment before its own view of the chain allows it).
    pub(crate) fn agent_serve(
        &mut self,
        from: &pouw_net::PeerId,
        request: &Request,
    ) -> Option<pouw_net::Response> {
        use pouw_net::Response;
        match request {
            Request::Model(hash) => Some(self.serve_model(from, hash)),
            Request::History { task, slot } => {
                Some(Response::History(self.agent.history_slot(task, *slot)))
            }
            Request::Screening { task } => {
                let finalising = {
                    let chain =
                        self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                    task_record(chain.state(), task).is_some_and(|r| {
                        matches!(
                            r.status,
                            TaskStatus::Finalising { .. } | TaskStatus::Completed { .. }
                        )
                    })
                };
                let mut status = self.agent.screening.status(task, finalising, Instant::now());
                if let Some(s) = status.as_mut() {
                    // Not done while it owes an accusation the chain can still take.
                    s.done = s.done && !self.owes_accusation(*task);
                }
                Some(Response::Screening(status))
            }
            _ => None,
        }
    }

    /// A supervisor's screening status, for our evaluation of `task`.
    pub(crate) fn agent_on_screening(
        &mut self,
        task: TaskId,
        supervisor: Address,
        status: Option<pouw_net::ScreeningStatus>,
    ) {
        if status.is_some_and(|s| s.done) {
            if let Some(eval) = self.agent.evaluations.get_mut(&task) {
                eval.on_screening(supervisor, true);
            }
        }
    }

    /// One pass over the tasks at the tip: tickets, then each task this node is part of.
    pub(crate) fn agent_tick(&mut self) -> Result<(), NodeError> {
        let me = self.me();
        let rules = tickets::TicketRules::new(&self.config, TX_FEE);
        let (height, records, live, balance) = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let state = chain.state();
            let records: Vec<(TaskId, TaskRecord)> = state
                .range(StateKey::Task(Hash([0; 32]))..=StateKey::Task(Hash([0xff; 32])))
                .filter_map(|(k, v)| match (k, v) {
                    (StateKey::Task(id), StateValue::Task(r))
                        if r.client == me
                            || r.participants
                                .miners
                                .iter()
                                .chain(&r.participants.supervisors)
                                .chain(&r.participants.evaluators)
                                .any(|s| s.worker == me) =>
                    {
                        Some((*id, (**r).clone()))
                    }
                    _ => None,
                })
                .collect();
            let live = self.agent.tickets.live(&rules, state, &me, chain.height());
            (chain.height(), records, live, state.account(&me).balance)
        };
        // Tickets (once connected, or at once on a mining node: its own blocks take them). A
        // purchase is tracked until a block holds it (announced again meanwhile, own_txs.rs);
        // one that became invalid is dropped there, and another is bought here with a fresh
        // nonce.
        let own_txs = &self.own_txs;
        let pending = |h: &Hash| own_txs.contains(h);
        let view = tickets::TicketView {
            rules,
            height,
            balance,
            live,
            reach: !self.peers.is_empty() || self.miner.is_some(),
            pending: &pending,
        };
        for action in self.agent.tickets.tick(&view) {
            match action {
                tickets::TicketAction::Buy { role, kind } => match self.submit_own(kind) {
                    Ok(hash) => {
                        tracing::info!(target: "node", ?role, "staking ticket bought");
                        self.agent.tickets.sent(role, hash);
                    }
                    Err(e) => {
                        tracing::warn!(target: "node", ?role, error = %e, "cannot buy a ticket")
                    }
                },
            }
        }
        // A fault in the work on one task (a panic) drops that task for this node, logged
        // with its id; the node and its other tasks go on.
        for (id, record) in records {
            if self.agent.faulted.contains(&id) {
                continue;
            }
            match guarded(|| self.agent_task(height, id, &record)) {
                Ok(result) => result?,
                Err(fault) => {
                    tracing::error!(target: "node", task = %id.short(), %fault, "the work on this task faulted: dropping the task on this node");
                    self.agent.faulted.insert(id);
                }
            }
        }
        Ok(())
    }

    fn subscribe(&mut self, id: TaskId) {
        if self.agent.subscribed.insert(id) {
            let _ = self.net.subscribe(Topic::Task(id));
        }
    }

    fn unsubscribe(&mut self, id: TaskId) {
        if self.agent.subscribed.remove(&id) {
            let _ = self.net.unsubscribe(Topic::Task(id));
        }
    }

    fn agent_task(
        &mut self,
        height: u64,
        id: TaskId,
        record: &TaskRecord,
    ) -> Result<(), NodeError> {
        let me = self.me();
        let split = task_split_of(&record.definition, &record.seed);
        self.agent.supervisors.insert(id, record.participants.supervisors.len());
        match &record.status {
            TaskStatus::Training => {
                self.follow_selection(id, record, &split);
                if let Some(index) = seat_of(record, Role::Miner, &me) {
                    self.subscribe(id);
                    let others = record
                        .participants
                        .miners
                        .len()
                        .saturating_sub(record.convictions.len() + 1);
                    self.agent.peer_miners.insert(id, others);
                    self.agent.note_selected(id, Instant::now());
                    self.hold_for_convictions(id, record);
                    self.follow_own_states(id, record);
                    // The miner's step ends a walk near the deadline; a walk parked at its end
                    // (held for a conviction's handover) ends here.
                    let deadline_near = height.saturating_add(pouw_work::SUBMIT_BEFORE_DEADLINE)
                        >= record.training_deadline;
                    if deadline_near && !self.agent.trained.contains(&id) {
                        if let Some(f) = self.miner.as_mut().and_then(|m| m.finish_early(id)) {
                            self.agent_on_finished(f);
                        }
                    }
                    let assigned = self.miner.as_ref().and_then(|m| m.assignment()).is_some();
                    if !assigned && !self.agent.trained.contains(&id) && self.miner.is_some() {
                        let dataset = self.task_dataset(id, record, SegmentUse::Train);
                        let start = if dataset.is_some() {
                            self.task_start_model(id, record, SegmentUse::Train)
                        } else {
                            None
                        };
                        if let (Some(dataset), Some(start_model)) = (dataset, start) {
                            if let Some(miner) = self.miner.as_mut() {
                                miner.assign(Assignment {
                                    task_id: id,
                                    definition: record.definition.clone(),
                                    dataset,
                                    split: split.to_ml(),
                                    miner_index: index,
                                    miners: record.participants.miners.len(),
                                    start_model,
                                    training_deadline: record.training_deadline,
                                });
                            }
                        }
                    }
                }
                if seat_of(record, Role::Supervisor, &me).is_some() {
                    self.subscribe(id);
                    self.screen_task(id, record, height);
                    self.commit_history(id, record, false);
                }
            }
            TaskStatus::Finalising { .. } => {
                if self.miner.as_ref().and_then(|m| m.assignment()).is_some_and(|a| a.task_id == id)
                {
                    if let Some(m) = self.miner.as_mut() {
                        m.unassign();
                    }
                }
                if seat_of(record, Role::Supervisor, &me).is_some() {
                    self.screen_task(id, record, height);
                    self.commit_history(id, record, true);
                }
                if seat_of(record, Role::Evaluator, &me).is_some() {
                    self.evaluate(id, record, &split.test, height)?;
                }
            }
            TaskStatus::Completed { .. } => {
                self.unsubscribe(id);
                // An evaluator whose vote had not reached the chain when the verdict executed
                // still votes while its share of the quota is held for it and the next block
                // is before the finalisation deadline (design/005, late votes); it keeps the
                // task's test segments until its vote is on chain or the deadline passed.
                let held = record.settlement.as_ref().is_some_and(|s| s.held.contains(&me));
                let late_vote = held && height.saturating_add(1) < record.finalisation_deadline;
                if late_vote {
                    self.evaluate(id, record, &split.test, height)?;
                }
                // A supervisor finishes screening what it received (alerts still count for
                // the record), then drops the data.
                // The task's segments go now (a screening still draining keeps its dataset
                // until then); nothing of the task is fetched again.
                if !late_vote {
                    self.end_task_data(&id);
                }
                let screening = &self.agent.screening;
                let drained = !screening.has_dataset(&id)
                    || screening.status(&id, true, Instant::now()).is_none_or(|s| s.done);
                if seat_of(record, Role::Supervisor, &me).is_some() && !drained {
                    self.screen_task(id, record, height);
                } else {
                    self.release_screen(&id);
                    if !late_vote {
                        self.agent.forget_task(&id);
                    }
                }
                if self.agent.completed.insert(id) {
                    crate::stats::NodeStats::add(&self.stats.tasks_completed, 1);
                }
                if record.client == me && self.agent.delivery.pending(&id) {
                    self.fetch_best_model(id, record);
                }
            }
            TaskStatus::Expired { .. } | TaskStatus::Refused { .. } => {
                self.unsubscribe(id);
                self.end_task_data(&id);
                self.release_screen(&id);
                self.agent.forget_task(&id);
            }
            TaskStatus::Registered => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
