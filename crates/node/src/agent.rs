//! The node's part in client tasks (SPEC section 3), for the roles it runs:
//! - every node with worker roles keeps a live staking ticket per role (BUY_TICKET);
//! - client: stores the segments of the tasks it submitted and serves them (training segments
//!   from selection on, test segments only once the task is finalising), then fetches the
//!   best model once the verdict is executed;
//! - miner: fetches the training segments from the client, checks each against its hash,
//!   trains its share of the batches with the other miners' iteration messages (gossip on
//!   the task's topic), mines with every iteration, and submits its final model;
//! - supervisor: records every iteration message of the task's miners and commits the
//!   Merkle root of each slot (MessageHistory), serving the slot's messages on request;
//! - evaluator: once the task is finalising, fetches the test segments and every submitted
//!   model, tests each with the deterministic kernels and submits its verdict
//!   (ChargeForTask) with the payouts the rules give for its ranking.
//!
//! Every step is driven by the chain state at the tip, so a restarted node picks up where
//! the chain is.

use crate::node::{Node, NodeError, Pending};
use pouw_consensus::{
    expected_payouts, task_record, task_split_of, Overlay, StateKey, StateValue, TaskRecord,
    TaskStatus,
};
use pouw_ml::{Batch, Dataset, Exec};
use pouw_net::{peer_id_of, Request, Topic};
use pouw_primitives::{
    merkle_root, Address, Amount, Hash, IterationMessage, Role, TaskId, TicketPreferences,
    Transaction, TxBody, TxKind, DATASET_SEGMENTS,
};
use pouw_work::{Assignment, FinishedModel};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

/// Transaction fee the node pays for its own task transactions, base units.
const TX_FEE: Amount = Amount(1_000);
/// A supervisor commits a slot at most this often (blocks), and at finalisation.
const HISTORY_EVERY_BLOCKS: u64 = 3;
/// Most peer messages applied in one iteration (bounds the proof data).
const MAX_PEERS_PER_ITERATION: usize = 8;
/// Tickets are bought to last this many blocks (capped by the spec).
const TICKET_BLOCKS: u64 = 500_000;
/// A request that got no useful answer is retried after this long.
const RETRY: Duration = Duration::from_secs(2);

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

#[derive(Debug, Default)]
struct Fetch {
    /// Segment bytes by index, checked against the task's hashes.
    segments: BTreeMap<u8, Vec<u8>>,
    /// Last time each missing piece was asked for.
    asked: HashMap<u8, Instant>,
}

#[derive(Debug, Default)]
struct Evaluation {
    test: Fetch,
    models: BTreeMap<Address, Option<pouw_ml::Model>>,
    asked: HashMap<Address, Instant>,
    voted: bool,
}

#[derive(Debug, Default)]
struct History {
    pending: Vec<IterationMessage>,
    slots: Vec<Vec<IterationMessage>>,
    last_commit: u64,
}

/// What the agent remembers between ticks (everything else comes from the chain state).
#[derive(Debug, Default)]
pub(crate) struct Agent {
    roles: Vec<Role>,
    datadir: PathBuf,
    /// Ticket purchases sent (role -> transaction), until seen on chain.
    ticket_sent: HashMap<Role, Hash>,
    /// Client: segments of our tasks.
    client_segments: HashMap<TaskId, Vec<Vec<u8>>>,
    client_done: HashSet<TaskId>,
    /// Client: when the best model of a completed task was last asked for.
    client_asked: HashMap<TaskId, Instant>,
    /// Miner: training segments being fetched.
    train_fetch: HashMap<TaskId, Fetch>,
    /// Miner: tasks whose training we finished (model submitted).
    trained: HashSet<TaskId>,
    /// Miner: peer messages received, per task, not applied yet.
    inbox: HashMap<TaskId, Vec<IterationMessage>>,
    /// Supervisor: message logs.
    history: HashMap<TaskId, History>,
    /// Evaluator: evaluations in progress.
    evaluations: HashMap<TaskId, Evaluation>,
    subscribed: HashSet<TaskId>,
    /// Roles whose ticket we could not afford (warned once).
    unfunded_warned: HashSet<Role>,
    /// Tasks seen completed with us in them.
    completed: HashSet<TaskId>,
}

impl Agent {
    pub(crate) fn new(roles: Vec<Role>, datadir: PathBuf) -> Self {
        Self { roles, datadir, ..Self::default() }
    }

    fn models_dir(&self) -> PathBuf {
        self.datadir.join("models")
    }

    fn client_dir(&self, task: &TaskId) -> PathBuf {
        self.datadir.join("client").join(task.to_string())
    }

    /// Peer messages for the miner's next iteration on `task`.
    pub(crate) fn take_inbox(&mut self, task: &TaskId) -> Vec<IterationMessage> {
        let Some(inbox) = self.inbox.get_mut(task) else { return Vec::new() };
        let n = inbox.len().min(MAX_PEERS_PER_ITERATION);
        inbox.drain(..n).collect()
    }

    /// The bytes of a model this node stores (its own final models, fetched best models).
    pub(crate) fn model_bytes(&self, hash: &Hash) -> Option<Vec<u8>> {
        std::fs::read(self.models_dir().join(format!("{hash}.safetensors"))).ok()
    }

    /// A client's segment, if this node is the client of `task` and may reveal it now.
    fn segment(&mut self, record: &TaskRecord, task: &TaskId, index: u8) -> Option<Vec<u8>> {
        if !self.client_segments.contains_key(task) {
            let dir = self.client_dir(task);
            let segs: Option<Vec<Vec<u8>>> =
                (0..DATASET_SEGMENTS).map(|i| std::fs::read(segment_path(&dir, i)).ok()).collect();
            self.client_segments.insert(*task, segs?);
        }
        let split = task_split_of(&record.definition, &record.seed);
        let is_test = split.test.contains(&usize::from(index));
        let revealed = match record.status {
            TaskStatus::Training => !is_test,
            TaskStatus::Finalising { .. } | TaskStatus::Completed { .. } => true,
            _ => false,
        };
        if !revealed {
            return None;
        }
        self.client_segments.get(task)?.get(usize::from(index)).cloned()
    }

    /// Supervisor: the messages of one committed slot.
    fn history_slot(&self, task: &TaskId, slot: u64) -> Vec<IterationMessage> {
        self.history
            .get(task)
            .and_then(|h| h.slots.get(usize::try_from(slot).ok()?))
            .cloned()
            .unwrap_or_default()
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

fn seat_of(record: &TaskRecord, role: Role, me: &Address) -> Option<usize> {
    record.participants.of(role).iter().position(|s| s.worker == *me)
}

fn segment_ok(record: &TaskRecord, index: u8, bytes: &[u8]) -> bool {
    let Some(want) = record.definition.dataset.segment_hashes.get(usize::from(index)) else {
        return false;
    };
    pouw_ml::segment_hash_of_bytes(bytes).is_some_and(|h| h.0 == want.0)
}

/// A dataset with the given segments filled in (the others zero; they are never read).
fn dataset_from_segments(
    record: &TaskRecord,
    segments: &BTreeMap<u8, Vec<u8>>,
) -> Result<Dataset, String> {
    let shape = record.definition.model.input_shape.clone();
    let width: usize = shape.iter().map(|&d| d as usize).product();
    let seg_len =
        usize::try_from(record.definition.dataset.samples).unwrap_or(0) / DATASET_SEGMENTS;
    let total = seg_len * DATASET_SEGMENTS;
    let mut features = vec![0.0f32; total * width];
    let mut labels = vec![0u32; total];
    for (&i, bytes) in segments {
        let batch = Batch::from_canonical_bytes(bytes).map_err(|e| e.to_string())?;
        if batch.len() != seg_len || batch.width() != width {
            return Err(format!(
                "segment {i} has {} samples of width {}",
                batch.len(),
                batch.width()
            ));
        }
        let start = usize::from(i) * seg_len;
        features[start * width..(start + seg_len) * width].copy_from_slice(batch.features());
        labels[start..start + seg_len].copy_from_slice(batch.labels());
    }
    Dataset::from_parts(
        PathBuf::from("network segments"),
        features,
        labels,
        shape,
        record.definition.model.classes,
    )
    .map_err(|e| e.to_string())
}

impl Node {
    fn me(&self) -> Address {
        self.config.key.public()
    }

    /// A transaction of ours, signed, with the nonce after the chain's and after our
    /// transactions waiting in the pool.
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
        self.agent.client_segments.insert(id, task.segments);
        self.submit_local(tx).map_err(SubmitTaskError::Rejected)?;
        tracing::info!(target: "client", task = %id.short(), "task submitted");
        Ok(id)
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
        let me = self.me();
        if msg.body.miner != me && seat_of(&record, Role::Miner, &me).is_some() {
            self.agent.inbox.entry(task).or_default().push(msg.clone());
        }
        if seat_of(&record, Role::Supervisor, &me).is_some() {
            self.agent.history.entry(task).or_default().pending.push(msg.clone());
        }
        true
    }

    /// Serves task requests (segments, models, histories).
    pub(crate) fn agent_serve(&mut self, request: &Request) -> Option<pouw_net::Response> {
        use pouw_net::Response;
        match request {
            Request::Segment { task, index } => {
                let record = {
                    let chain =
                        self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                    task_record(chain.state(), task)
                };
                let seg = record.and_then(|r| {
                    (r.client == self.me()).then(|| self.agent.segment(&r, task, *index)).flatten()
                });
                Some(Response::Segment(seg))
            }
            Request::Model(hash) => Some(Response::Model(self.agent.model_bytes(hash))),
            Request::History { task, slot } => {
                Some(Response::History(self.agent.history_slot(task, *slot)))
            }
            _ => None,
        }
    }

    /// A miner finished its client task: store the model, submit it.
    pub(crate) fn agent_on_finished(&mut self, f: FinishedModel) {
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

    /// Answers to the agent's requests.
    pub(crate) fn agent_on_segment(
        &mut self,
        task: TaskId,
        index: u8,
        bytes: Option<Vec<u8>>,
        test: bool,
    ) {
        let Some(bytes) = bytes else { return };
        let record = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            task_record(chain.state(), &task)
        };
        let Some(record) = record else { return };
        if !segment_ok(&record, index, &bytes) {
            tracing::warn!(target: "node", task = %task.short(), index, "segment does not match its hash: dropped");
            return;
        }
        let fetch = if test {
            &mut self.agent.evaluations.entry(task).or_default().test
        } else {
            self.agent.train_fetch.entry(task).or_default()
        };
        fetch.segments.insert(index, bytes);
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
        let Some(model) = bytes
            .and_then(|b| pouw_ml::from_safetensors(&b).ok())
            .filter(|m| Hash(m.hash().0) == hash)
        else {
            return;
        };
        if !deliver {
            if let Some(eval) = self.agent.evaluations.get_mut(&task) {
                eval.models.insert(miner, Some(model));
            }
            return;
        }
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
                self.agent.client_done.insert(task);
                tracing::info!(target: "client", task = %task.short(), path = %path.display(), "best model received");
            }
            Err(e) => {
                tracing::error!(target: "client", task = %task.short(), path = %path.display(), error = %e, "cannot store the best model")
            }
        }
    }

    /// One pass over the tasks at the tip: tickets, then each task this node is part of.
    pub(crate) fn agent_tick(&mut self) -> Result<(), NodeError> {
        let me = self.me();
        let (height, records, live_roles, balance) = {
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
            let overlay = Overlay::new(state);
            let live: HashSet<Role> = self
                .agent
                .roles
                .iter()
                .copied()
                .filter(|r| !pouw_consensus::tickets_of(&overlay, &me, *r).is_empty())
                .collect();
            (chain.height(), records, live, state.account(&me).balance)
        };
        // Tickets (once connected: a transaction gossiped to nobody would sit in our pool).
        let roles = self.agent.roles.clone();
        for role in roles {
            let sent = self.agent.ticket_sent.get(&role).is_some_and(|h| self.mempool.contains(h));
            if live_roles.contains(&role) || sent || self.peers.is_empty() {
                continue;
            }
            let needed =
                self.config.spec.min_ticket_stake.checked_add(TX_FEE).unwrap_or(Amount::MAX);
            if balance < needed {
                if self.agent.unfunded_warned.insert(role) {
                    tracing::warn!(target: "node", ?role, balance = %balance, needed = %needed, "cannot stake a ticket: balance too low (the role stays idle)");
                }
                continue;
            }
            let expires_at =
                height.saturating_add(TICKET_BLOCKS.min(self.config.spec.max_ticket_blocks));
            let kind = TxKind::BuyTicket {
                role,
                stake: self.config.spec.min_ticket_stake,
                preferences: TicketPreferences::default(),
                expires_at,
            };
            match self.submit_own(kind) {
                Ok(hash) => {
                    tracing::info!(target: "node", ?role, "staking ticket bought");
                    self.agent.ticket_sent.insert(role, hash);
                }
                Err(e) => tracing::warn!(target: "node", ?role, error = %e, "cannot buy a ticket"),
            }
        }
        for (id, record) in records {
            self.agent_task(height, id, &record)?;
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

    fn ask_segments(&mut self, id: TaskId, record: &TaskRecord, indices: &[usize], test: bool) {
        let Some(client) = peer_id_of(&record.client) else { return };
        for &i in indices {
            let Ok(index) = u8::try_from(i) else { continue };
            let fetch = if test {
                &mut self.agent.evaluations.entry(id).or_default().test
            } else {
                self.agent.train_fetch.entry(id).or_default()
            };
            if fetch.segments.contains_key(&index)
                || fetch.asked.get(&index).is_some_and(|t| t.elapsed() < RETRY)
            {
                continue;
            }
            fetch.asked.insert(index, Instant::now());
            self.request(
                client,
                Request::Segment { task: id, index },
                Pending::Segment { task: id, index, test },
            );
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
        match &record.status {
            TaskStatus::Training => {
                if let Some(index) = seat_of(record, Role::Miner, &me) {
                    self.subscribe(id);
                    let assigned = self.miner.as_ref().and_then(|m| m.assignment()).is_some();
                    if !assigned && !self.agent.trained.contains(&id) && self.miner.is_some() {
                        self.ask_segments(id, record, &split.train, false);
                        let complete = self.agent.train_fetch.get(&id).is_some_and(|f| {
                            split.train.iter().all(|&i| {
                                u8::try_from(i).is_ok_and(|i| f.segments.contains_key(&i))
                            })
                        });
                        if complete {
                            let fetch = self.agent.train_fetch.remove(&id).unwrap_or_default();
                            match dataset_from_segments(record, &fetch.segments) {
                                Ok(dataset) => {
                                    let dataset = Arc::new(dataset);
                                    // Our validator can now check the task's batch schedule.
                                    self.validator.add_task_dataset(id, dataset.clone());
                                    if let Some(miner) = self.miner.as_mut() {
                                        miner.assign(Assignment {
                                            task_id: id,
                                            definition: record.definition.clone(),
                                            dataset,
                                            split: split.to_ml(),
                                            miner_index: index,
                                            miners: record.participants.miners.len(),
                                        });
                                    }
                                }
                                Err(e) => {
                                    tracing::error!(target: "miner", error = %e, "cannot assemble the task dataset")
                                }
                            }
                        }
                    }
                }
                if seat_of(record, Role::Supervisor, &me).is_some() {
                    self.subscribe(id);
                    self.commit_history(height, id, false);
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
                    self.commit_history(height, id, true);
                }
                if seat_of(record, Role::Evaluator, &me).is_some() {
                    self.evaluate(id, record, &split.test)?;
                }
            }
            TaskStatus::Completed { .. } => {
                self.unsubscribe(id);
                if self.agent.completed.insert(id) {
                    crate::stats::NodeStats::add(&self.stats.tasks_completed, 1);
                }
                if record.client == me && !self.agent.client_done.contains(&id) {
                    self.fetch_best_model(id, record);
                }
            }
            TaskStatus::Expired { .. } | TaskStatus::Refused { .. } => self.unsubscribe(id),
            TaskStatus::Registered => {}
        }
        Ok(())
    }

    fn commit_history(&mut self, height: u64, id: TaskId, closing: bool) {
        let Some(h) = self.agent.history.get_mut(&id) else { return };
        if h.pending.is_empty()
            || (!closing && height < h.last_commit.saturating_add(HISTORY_EVERY_BLOCKS))
        {
            return;
        }
        let messages = std::mem::take(&mut h.pending);
        let ids: Vec<Hash> = messages.iter().map(IterationMessage::id).collect();
        let slot = u32::try_from(h.slots.len()).unwrap_or(u32::MAX);
        h.slots.push(messages);
        h.last_commit = height;
        let root = merkle_root(&ids);
        match self.submit_own(TxKind::MessageHistory { task_id: id, slot, root }) {
            Ok(_) => {
                tracing::info!(target: "supervisor", task = %id.short(), slot, messages = ids.len(), "message history committed")
            }
            Err(e) => tracing::warn!(target: "supervisor", error = %e, "MessageHistory refused"),
        }
    }

    fn evaluate(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
        test: &[usize],
    ) -> Result<(), NodeError> {
        if self.agent.evaluations.get(&id).is_some_and(|e| e.voted) {
            return Ok(());
        }
        self.ask_segments(id, record, test, true);
        let models: Vec<(Address, Hash)> = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            pouw_consensus::task_view(chain.state(), &id)
                .map(|v| v.models.iter().map(|m| (m.miner, m.model_hash)).collect())
                .unwrap_or_default()
        };
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
        let eval = self.agent.evaluations.entry(id).or_default();
        let have_test = test
            .iter()
            .all(|&i| u8::try_from(i).is_ok_and(|i| eval.test.segments.contains_key(&i)));
        let have_models = models.iter().all(|(m, _)| eval.models.contains_key(m));
        if !have_test || !have_models {
            return Ok(());
        }
        // Test every model on the test segments, with the deterministic kernels: honest
        // evaluators get the same correct counts, hence the same ranking and verdict.
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for bytes in eval.test.segments.values() {
            if let Ok(b) = Batch::from_canonical_bytes(bytes) {
                x.extend_from_slice(b.features());
                y.extend_from_slice(b.labels());
            }
        }
        let mut scores: Vec<(u32, Address)> = eval
            .models
            .iter()
            .filter_map(|(miner, m)| {
                m.as_ref().map(|m| (m.evaluate(Exec::new(1), &x, &y, 256).correct, *miner))
            })
            .collect();
        scores.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let ranking: Vec<Address> = scores.iter().map(|(_, m)| *m).collect();
        let payouts = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            match expected_payouts(chain.state(), &id, &ranking, &[]) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(target: "evaluator", error = %e, "cannot compute the payouts");
                    return Ok(());
                }
            }
        };
        for (correct, miner) in &scores {
            let acc = f64::from(*correct) / y.len().max(1) as f64;
            tracing::info!(target: "evaluator", task = %id.short(), miner = %miner.short(), accuracy = format!("{:.2}%", acc * 100.0), "model tested");
        }
        eval.voted = true;
        match self.submit_own(TxKind::ChargeForTask {
            task_id: id,
            ranking,
            payouts,
            confiscations: vec![],
        }) {
            Ok(_) => tracing::info!(target: "evaluator", task = %id.short(), "verdict submitted"),
            Err(e) => tracing::warn!(target: "evaluator", error = %e, "ChargeForTask refused"),
        }
        Ok(())
    }

    fn fetch_best_model(&mut self, id: TaskId, record: &TaskRecord) {
        // The best miner is the one the verdict ranked first: the largest miner payout.
        let miners: Vec<Address> = record.participants.miners.iter().map(|s| s.worker).collect();
        let best = record.settlement.as_ref().and_then(|s| {
            s.payouts
                .iter()
                .filter(|p| miners.contains(&p.to))
                .max_by_key(|p| p.amount)
                .map(|p| p.to)
        });
        let Some(best) = best else {
            self.agent.client_done.insert(id);
            return;
        };
        let hash = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            pouw_consensus::task_view(chain.state(), &id)
                .and_then(|v| v.models.iter().find(|m| m.miner == best).map(|m| m.model_hash))
        };
        let Some(hash) = hash else { return };
        if self.agent.client_asked.get(&id).is_some_and(|t| t.elapsed() < RETRY) {
            return;
        }
        self.agent.client_asked.insert(id, Instant::now());
        if let Some(peer) = peer_id_of(&best) {
            self.request(
                peer,
                Request::Model(hash),
                Pending::Model { task: id, miner: best, hash, deliver: true },
            );
        }
    }
}
