//! The node loop: one thread owns the mempool, the miner and the sync state and handles every
//! network event; the chain sits behind a lock so readers (RPC, CLI, tests) can query it.

use crate::{
    stats::{ImportRecord, NodeStats},
    sync::Sync,
    NodeConfig,
};
use pouw_chain::{
    check_proof_data, precheck, Chain, ChainConfig, ChainError, ImportOutcome, Mempool,
    MempoolConfig, MempoolError, PouwValidator, ProofChecked,
};
use pouw_consensus::ConsensusError;
use pouw_consensus::{
    check_tx_stateless,
    pouw::{proof_of, ProofData},
};
use pouw_ml::Exec;
use pouw_net::{
    Acceptance, BlockWithProof, ChainStatus, GossipId, GossipMessage, InboundId, Multiaddr,
    NetConfig, NetEvent, NetworkHandle, PeerId, PeerVerdict, Request, RequestFailure, RequestId,
    Response,
};
use pouw_primitives::{Address, Block, Hash, TaskId, Timestamp, Transaction, TxKind};
use pouw_rpc::{NodeInfo, TrainingPoint};
use pouw_storage::{Durability, ProofStore, StorageError};
use pouw_work::{Miner, MinerError};
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Responses carrying blocks stop growing at this many bytes.
const BLOCKS_RESPONSE_BUDGET: usize = pouw_net::messages::MAX_RESPONSE_BYTES / 2;
/// Events handled per turn before the miner gets its iteration.
const EVENTS_PER_TURN: usize = 256;
/// The refusal a request over the peer's rate limit gets (`NodeConfig::requests`).
pub(crate) const RATE_LIMITED: &str = "refused: request rate limit exceeded, slow down";

/// A sync that made no progress for this long is abandoned (the peer is penalised).
const SYNC_STALL_SECS: u64 = 60;
mod blocks;
mod handle;
mod mining;
mod server;
mod serving;
mod verify;

pub use handle::NodeHandle;

/// Where `--attack tiny-task` stands: paying at the given time, or paid (the task's id).
#[derive(Clone, Copy, Debug)]
enum TinyTask {
    PayAt(Instant),
    Paid(TaskId),
}

/// Filler-task iterations one mining turn runs back to back.
const FILLER_STEPS_PER_TURN: usize = 4;
/// A miner waiting for its peers' messages (bounded staleness, design/012) tries its step again
/// after this long, or at the next event.
const STALENESS_POLL: Duration = Duration::from_millis(2);

/// Why the node failed (its own data or configuration; never a peer's fault).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Opening or using the chain failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The proof store failed (the error names the file).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The network could not start.
    #[error("network: {0}")]
    Net(#[from] pouw_net::NetError),
    /// The miner failed.
    #[error("miner: {0}")]
    Miner(#[from] MinerError),
    /// The network task stopped unexpectedly.
    #[error("the network task stopped")]
    NetworkStopped,
    /// The RPC server could not start.
    #[error("RPC server: {0}")]
    Rpc(String),
    /// The node thread panicked.
    #[error("the node thread stopped abnormally")]
    Panicked,
}

/// What other threads ask the node loop to do.
#[derive(Debug)]
pub enum NodeCommand {
    /// Admit a transaction to the mempool and gossip it; the reply carries its hash or why it
    /// was refused.
    SubmitTransaction(Box<Transaction>, flume::Sender<Result<Hash, String>>),
    /// Turn mining on or off.
    SetMining(bool),
    /// Client: submit the task file at this path (its dataset is read and served by this
    /// node); the reply carries the task id or why it was refused.
    SubmitTask(PathBuf, flume::Sender<Result<TaskId, String>>),
}

fn read(chain: &RwLock<Chain>) -> RwLockReadGuard<'_, Chain> {
    chain.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(chain: &RwLock<Chain>) -> RwLockWriteGuard<'_, Chain> {
    chain.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy)]
enum PendingKind {
    Status,
    Data,
}

#[derive(Debug)]
pub(crate) enum Pending {
    Status,
    Headers,
    Blocks,
    Proof { block: Box<Block>, gossip: Option<GossipId> },
    Segment { task: TaskId, index: u8, use_: crate::agent::SegmentUse },
    Model { task: TaskId, miner: Address, hash: Hash, deliver: bool },
    Screening { task: TaskId, supervisor: Address },
    History { task: TaskId, slot: u32 },
    Transaction { hash: Hash, gossip: GossipId },
    StartState { task: TaskId, miner: Address, iteration: u64 },
}

/// A batch of blocks from the sync peer, verified one after the other (`Node::next_sync_block`).
pub(crate) struct SyncBatch {
    peer: PeerId,
    /// The blocks not sent to verification yet, in order.
    blocks: std::collections::VecDeque<BlockWithProof>,
    /// Blocks imported so far.
    imported: usize,
}

impl Pending {
    /// The request's name, for logs.
    fn name(&self) -> &'static str {
        match self {
            Self::Status => "Status",
            Self::Headers => "Headers",
            Self::Blocks => "Blocks",
            Self::Proof { .. } => "Proof",
            Self::Segment { .. } => "Segment",
            Self::Model { .. } => "Model",
            Self::Screening { .. } => "Screening",
            Self::History { .. } => "History",
            Self::Transaction { .. } => "Transaction",
            Self::StartState { .. } => "StartState",
        }
    }
}

pub(crate) struct Node {
    /// The chain's validator (told about client tasks after every tip change).
    pub(crate) validator: Arc<PouwValidator>,
    /// Stopped when the node stops.
    pub(crate) rpc: Option<pouw_rpc::RpcServer>,
    pub(crate) config: NodeConfig,
    pub(crate) chain: Arc<RwLock<Chain>>,
    pub(crate) proofs: Arc<ProofStore>,
    /// Peers' requests for headers, blocks and proof data, answered on a thread of their own.
    chain_server: server::ChainServer,
    pub(crate) mempool: Mempool,
    pub(crate) miner: Option<Miner>,
    pub(crate) net: NetworkHandle,
    pub(crate) events: flume::Receiver<NetEvent>,
    pub(crate) commands: flume::Receiver<NodeCommand>,
    pub(crate) stats: Arc<NodeStats>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) sync: Sync,
    pub(crate) pending: HashMap<RequestId, (PeerId, Pending)>,
    /// Blocks whose proof data is being fetched.
    pub(crate) fetching: HashSet<Hash>,
    /// Peers banned for a fault, each for the network's hour ([`crate::bans::BAN_DURATION`]).
    pub(crate) banned: crate::bans::Bans,
    /// Per-peer request rate limit (`NodeConfig::requests`).
    pub(crate) limiter: crate::ratelimit::RequestLimiter,
    pub(crate) peers: HashSet<PeerId>,
    pub(crate) last_status_round: Instant,
    pub(crate) mining: bool,
    pub(crate) mined: u64,
    /// After a failed filler step: no mining before this instant (the loop keeps serving).
    pub(crate) mining_retry_at: Option<Instant>,
    /// `--attack tiny-task`: the self-dealt task file, and when to try paying for it next
    /// (`None` once paid).
    tiny_task: Option<(std::path::PathBuf, TinyTask, Instant)>,
    /// `--attack grind`: the forged blocks sent (their own node refused them, so the chain
    /// does not hold them), kept to serve their proof data to the peers that fetch it.
    forged: Vec<Block>,
    pub(crate) agent: crate::agent::Agent,
    /// Our own transactions, announced again until a canonical block holds them.
    pub(crate) own_txs: crate::own_txs::OwnTxs,
    /// What the RPC shows of them.
    pub(crate) shared_own_txs: crate::own_txs::SharedOwnTxs,
    pub(crate) last_own_check: Instant,
    /// The tip changed or one was submitted: check them on this turn.
    pub(crate) own_check_now: bool,
    /// Transactions announced by hash being fetched.
    pub(crate) fetching_txs: HashSet<Hash>,
    pub(crate) last_agent_tick: Instant,
    /// Verifier role and light mode: committees, requests, attestations, held blocks.
    pub(crate) verification: crate::verifier::Verification,
    /// Gossiped blocks' verification, on a thread of its own (`verify.rs`).
    block_verifier: verify::BlockVerifier,
    /// The sync batch whose blocks are being verified, one after the other.
    sync_batch: Option<SyncBatch>,
}

/// What wakes the loop.
#[allow(clippy::large_enum_variant)] // one a turn, moved once: not worth a box
enum Wake {
    Event(Result<NetEvent, flume::RecvError>),
    Verified(verify::Verified),
    VerifierGone,
    Timeout,
}

/// A loop turn (or one event in it) that takes this long or more is logged (debug) with where
/// its time went.
const SLOW_TURN: Duration = Duration::from_millis(50);

impl Node {
    fn run(mut self) -> Result<(), NodeError> {
        let result = self.run_loop();
        if let Err(e) = &result {
            tracing::error!(target: "node", error = %e, "node stopped on an error");
        }
        tracing::info!(target: "node", height = read(&self.chain).height(), mined = self.mined, "node stopped");
        if let Some(rpc) = self.rpc.take() {
            rpc.shutdown();
        }
        self.net.shutdown();
        result
    }

    fn run_loop(&mut self) -> Result<(), NodeError> {
        while !self.stop.load(Ordering::SeqCst) {
            let mining = self.should_mine();
            let wait = if mining { Duration::ZERO } else { Duration::from_millis(50) };
            // A network event or a block's verdict, whichever comes first: a verified block
            // is committed at once, not at the next event or after the wait.
            let wake = match self.block_verifier.results() {
                Some(results) => flume::Selector::new()
                    .recv(&self.events, Wake::Event)
                    .recv(results, |r| r.map_or(Wake::VerifierGone, Wake::Verified))
                    .wait_timeout(wait)
                    .unwrap_or(Wake::Timeout),
                None => match self.events.recv_timeout(wait) {
                    Ok(ev) => Wake::Event(Ok(ev)),
                    Err(flume::RecvTimeoutError::Timeout) => Wake::Timeout,
                    Err(flume::RecvTimeoutError::Disconnected) => {
                        Wake::Event(Err(flume::RecvError::Disconnected))
                    }
                },
            };
            let turn = Instant::now();
            match wake {
                Wake::Event(Ok(ev)) => {
                    self.timed_event(ev)?;
                    for ev in self.events.try_iter().take(EVENTS_PER_TURN).collect::<Vec<_>>() {
                        self.timed_event(ev)?;
                    }
                }
                Wake::Event(Err(flume::RecvError::Disconnected)) => {
                    if self.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    return Err(NodeError::NetworkStopped);
                }
                Wake::Verified(verified) => self.on_verified(verified)?,
                // Seen (and handled) by the drain below.
                Wake::VerifierGone | Wake::Timeout => {}
            }
            let woke = turn.elapsed();
            self.drain_verified()?;
            while let Ok(cmd) = self.commands.try_recv() {
                self.on_command(cmd);
            }
            let drained = turn.elapsed();
            self.tick();
            let ticked = turn.elapsed();
            if mining {
                // Up to FILLER_STEPS_PER_TURN filler iterations back to back (a client task's
                // step stays one per turn: its peers' messages arrive between turns). Training
                // state and batch stay in cache across them, and the loop's other work is
                // amortised; a block found ends the turn.
                let mined = self.mined;
                for _ in 0..FILLER_STEPS_PER_TURN {
                    self.mine_step()?;
                    let on_filler = self.miner.as_ref().is_some_and(|m| m.assignment().is_none());
                    if !on_filler || self.mined != mined || !self.should_mine() {
                        break;
                    }
                }
                if !self.config.mining_pause.is_zero() {
                    std::thread::sleep(self.config.mining_pause);
                }
            }
            let total = turn.elapsed();
            if total >= SLOW_TURN {
                tracing::debug!(
                    target: "node",
                    total_ms = total.as_millis() as u64,
                    woke_ms = woke.as_millis() as u64,
                    drained_ms = (drained - woke).as_millis() as u64,
                    tick_ms = (ticked - drained).as_millis() as u64,
                    mine_ms = (total - ticked).as_millis() as u64,
                    "slow loop turn"
                );
            }
        }
        Ok(())
    }

    fn should_mine(&self) -> bool {
        let behind = self.sync.is_active()
            && self
                .sync
                .best_peer_height()
                .is_some_and(|h| h > self.stats.height.load(Ordering::Relaxed).saturating_add(2));
        self.mining
            && self.miner.is_some()
            && !behind
            && self.mining_retry_at.is_none_or(|at| Instant::now() >= at)
            && self.config.max_blocks.is_none_or(|n| self.mined < n)
    }

    // ---- periodic work ----

    /// `--attack tiny-task` (hostile, design/010): pays for the self-dealt task as soon as the
    /// chain can staff it (an accomplice's GPU miner ticket is live, and committees free),
    /// trying every 3 s, and again if the chain refused it for want of workers.
    fn tiny_task_tick(&mut self) {
        if self.config.attack != Some(crate::Attack::TinyTask) {
            return;
        }
        let now = Instant::now();
        let (path, state, since) = match self.tiny_task.take() {
            Some(t) => t,
            None => match crate::tiny_task::write(&self.config.datadir) {
                Ok(path) => (path, TinyTask::PayAt(now), now),
                Err(e) => {
                    tracing::warn!(target: "node", error = %e, "attack: cannot write the tiny task");
                    return;
                }
            },
        };
        // It waits for the other clients' tasks to be staffed first (or a minute): a task
        // refused for want of free committees is refunded, but the honest one that lost the
        // race would be too.
        let others_staffed = {
            use pouw_consensus::{StateKey, StateValue, TaskStatus};
            let chain = read(&self.chain);
            let me = self.config.key.public();
            let tasks: Vec<TaskStatus> = chain
                .state()
                .range(StateKey::Task(Hash([0; 32]))..=StateKey::Task(Hash([0xff; 32])))
                .filter_map(|(_, v)| match v {
                    StateValue::Task(r) if r.client != me => Some(r.status.clone()),
                    _ => None,
                })
                .collect();
            !tasks.is_empty() && !tasks.iter().any(|t| matches!(t, TaskStatus::Registered))
        };
        let patient = others_staffed || since.elapsed() >= Duration::from_secs(60);
        let state = match state {
            TinyTask::PayAt(at) if now >= at && patient => match self.submit_task(&path) {
                Ok(id) => {
                    tracing::warn!(target: "node", task = %id.short(), "attack: paid for a self-dealt tiny task");
                    TinyTask::Paid(id)
                }
                Err(e) => {
                    tracing::debug!(target: "node", error = %e, "attack: the tiny task cannot be paid yet");
                    TinyTask::PayAt(now + Duration::from_secs(3))
                }
            },
            TinyTask::Paid(id) => {
                let refused = {
                    let chain = read(&self.chain);
                    pouw_consensus::task_record(chain.state(), &id).is_some_and(|r| {
                        matches!(r.status, pouw_consensus::TaskStatus::Refused { .. })
                    })
                };
                if refused {
                    tracing::warn!(target: "node", task = %id.short(), "attack: the tiny task was refused; paying again");
                    TinyTask::PayAt(now + Duration::from_secs(3))
                } else {
                    TinyTask::Paid(id)
                }
            }
            other => other,
        };
        self.tiny_task = Some((path, state, since));
    }

    fn tick(&mut self) {
        self.tiny_task_tick();
        self.agent_poll_screening();
        if self.last_status_round.elapsed() >= self.config.status_interval {
            self.last_status_round = Instant::now();
            // One status request in flight per peer at most.
            let waiting: HashSet<PeerId> = self
                .pending
                .values()
                .filter(|(_, p)| matches!(p, Pending::Status))
                .map(|(peer, _)| *peer)
                .collect();
            let peers: Vec<PeerId> =
                self.peers.iter().copied().filter(|p| !waiting.contains(p)).collect();
            for p in peers {
                self.request(p, Request::Status, Pending::Status);
            }
            self.stats.mempool.store(self.mempool.len() as u64, Ordering::Relaxed);
            if self.sync.stalled_secs() > SYNC_STALL_SECS {
                if let Some(p) = self.sync.peer() {
                    self.penalise(p, "sync stalled", 20);
                    self.sync.abort(p);
                }
            }
        }
        self.stats.syncing.store(self.sync.is_active(), Ordering::Relaxed);
        self.light_tick();
        if self.own_check_now || self.last_own_check.elapsed() >= Duration::from_secs(1) {
            self.own_txs_tick(Instant::now());
        }
        if self.last_agent_tick.elapsed() >= Duration::from_millis(300) {
            self.last_agent_tick = Instant::now();
            if let Err(e) = self.agent_tick() {
                tracing::warn!(target: "node", error = %e, "task agent");
            }
        }
    }

    fn on_command(&mut self, cmd: NodeCommand) {
        match cmd {
            NodeCommand::SubmitTransaction(tx, reply) => {
                let _ = reply.send(self.submit_local(*tx));
            }
            NodeCommand::SetMining(on) => self.mining = on,
            NodeCommand::SubmitTask(path, reply) => {
                let _ = reply.send(self.submit_task(&path).map_err(|e| e.to_string()));
            }
        }
    }

    pub(crate) fn submit_local(&mut self, tx: Transaction) -> Result<Hash, String> {
        check_tx_stateless(&tx, &self.config.spec).map_err(|e| e.to_string())?;
        let hash = tx.hash();
        {
            let chain = read(&self.chain);
            self.mempool.add(tx.clone(), chain.state()).map_err(|e| e.to_string())?;
        }
        NodeStats::add(&self.stats.txs_accepted, 1);
        let me = self.config.key.public();
        if !self.own_txs.track(tx.clone(), &me, Instant::now()) {
            tracing::debug!(target: "node", tx = %hash.short(), "too many client transactions tracked: this one is not announced again");
        }
        self.own_check_now = true;
        let msg = if matches!(tx.body.kind, TxKind::PayForTask { .. }) {
            GossipMessage::TaskSubmission(tx)
        } else {
            GossipMessage::NewTransaction(tx)
        };
        if let Err(e) = self.net.publish(msg) {
            tracing::warn!(target: "node", error = %e, "could not gossip a transaction");
        }
        Ok(hash)
    }

    // ---- network events ----

    /// One network event, timed: one that holds the loop [`SLOW_TURN`] or more is logged
    /// (debug) with what it was, so an operator can see what keeps the node from answering.
    fn timed_event(&mut self, ev: NetEvent) -> Result<(), NodeError> {
        let started = Instant::now();
        let what = match &ev {
            NetEvent::Gossip { message, .. } => ("gossip", message.kind().name()),
            NetEvent::Request { request, .. } => ("request", request.name()),
            NetEvent::Response { id, .. } => {
                ("answer", self.pending.get(id).map_or("unknown", |(_, p)| p.name()))
            }
            NetEvent::PeerConnected(_) | NetEvent::PeerDisconnected(_) => ("peer", "connection"),
            NetEvent::ResponseDone(_) => ("answer sent", "Segment"),
        };
        let result = self.on_event(ev);
        let took = started.elapsed();
        if took >= SLOW_TURN {
            tracing::debug!(target: "node", ms = took.as_millis() as u64, event = what.0, kind = what.1, "slow event");
        }
        result
    }

    fn on_event(&mut self, ev: NetEvent) -> Result<(), NodeError> {
        match ev {
            NetEvent::Gossip { from, id, message } => {
                if self.banned.contains(&from) {
                    self.validate(id, from, Acceptance::Ignore);
                    return Ok(());
                }
                self.on_gossip(from, id, message)
            }
            NetEvent::Request { from, id, request } => {
                if self.banned.contains(&from) {
                    return Ok(());
                }
                match self.limiter.admit(from) {
                    crate::ratelimit::Admission::Serve => self.serve(from, id, request)?,
                    crate::ratelimit::Admission::Refuse => {
                        NodeStats::add(&self.stats.requests_refused, 1);
                        let _ = self.net.respond(id, Response::Error(RATE_LIMITED.into()));
                        self.penalise(from, "request rate limit exceeded", 1);
                    }
                    crate::ratelimit::Admission::Ban => {
                        NodeStats::add(&self.stats.requests_refused, 1);
                        let _ = self.net.respond(id, Response::Error(RATE_LIMITED.into()));
                        self.ban(from, "kept exceeding the request rate limit".into());
                    }
                }
                Ok(())
            }
            NetEvent::Response { peer, id, result } => {
                let Some((_, pending)) = self.pending.remove(&id) else { return Ok(()) };
                if self.banned.contains(&peer) {
                    return Ok(());
                }
                self.on_response(peer, pending, result)
            }
            NetEvent::ResponseDone(id) => {
                self.on_response_done(id);
                Ok(())
            }
            NetEvent::PeerConnected(peer) => {
                if self.peers.insert(peer) && self.peers.len() == 1 {
                    tracing::info!(target: "node", %peer, "connected to the network");
                }
                self.request(peer, Request::Status, Pending::Status);
                self.own_txs.peer_joined(Instant::now());
                Ok(())
            }
            NetEvent::PeerDisconnected(peer) => {
                self.peers.remove(&peer);
                self.sync.peer_gone(peer);
                if self.peers.is_empty() {
                    tracing::warn!(target: "node", "no peers connected: mining alone until a peer is back");
                }
                Ok(())
            }
        }
    }

    pub(crate) fn validate(&self, id: GossipId, from: PeerId, acceptance: Acceptance) {
        let _ = self.net.validate(id, from, acceptance);
    }

    pub(crate) fn ban(&mut self, peer: PeerId, reason: String) {
        tracing::warn!(target: "node", %peer, %reason, "banning peer");
        if self.banned.insert(peer) {
            NodeStats::add(&self.stats.bans, 1);
        }
        self.peers.remove(&peer);
        self.sync.peer_gone(peer);
        let _ = self.net.report(peer, PeerVerdict::Ban { reason });
    }

    pub(crate) fn penalise(&self, peer: PeerId, reason: &str, points: u32) {
        tracing::debug!(target: "node", %peer, reason, points, "penalising peer");
        let _ = self.net.report(peer, PeerVerdict::Penalty { reason: reason.into(), points });
    }

    pub(crate) fn request(&mut self, peer: PeerId, request: Request, pending: Pending) {
        match self.net.request(peer, request) {
            Ok(id) => {
                self.pending.insert(id, (peer, pending));
            }
            Err(e) => tracing::debug!(target: "node", %peer, error = %e, "request not sent"),
        }
    }

    fn on_gossip(
        &mut self,
        from: PeerId,
        id: GossipId,
        message: GossipMessage,
    ) -> Result<(), NodeError> {
        match message {
            GossipMessage::NewBlock(block) => self.on_gossip_block(from, id, block)?,
            GossipMessage::NewTransaction(tx) | GossipMessage::TaskSubmission(tx) => {
                if let Err(e) = check_tx_stateless(&tx, &self.config.spec) {
                    self.validate(id, from, Acceptance::Reject);
                    self.ban(from, format!("invalid transaction: {e}"));
                    return Ok(());
                }
                let added = {
                    let chain = read(&self.chain);
                    self.mempool.add(tx, chain.state())
                };
                match added {
                    Ok(_) => {
                        NodeStats::add(&self.stats.txs_accepted, 1);
                        self.validate(id, from, Acceptance::Accept);
                    }
                    Err(MempoolError::AlreadyKnown(_)) | Err(_) => {
                        self.validate(id, from, Acceptance::Ignore)
                    }
                }
            }
            GossipMessage::TxAnnounce(announced) => self.on_tx_announce(from, id, announced.hash),
            GossipMessage::MlIteration(msg) => match msg.verify_signature() {
                Ok(()) => {
                    let acceptance = if self.agent_on_iteration(&msg) {
                        Acceptance::Accept
                    } else {
                        Acceptance::Ignore
                    };
                    self.validate(id, from, acceptance);
                }
                Err(e) => {
                    self.validate(id, from, Acceptance::Reject);
                    self.ban(from, format!("iteration message: {e}"));
                }
            },
            GossipMessage::Attestation(att) => match att.verify_signature() {
                Ok(()) => {
                    // Relayed only from a member of the block's committee (design/006).
                    let member = self.on_attestation(&att)?;
                    let acceptance = if member { Acceptance::Accept } else { Acceptance::Ignore };
                    self.validate(id, from, acceptance);
                }
                Err(e) => {
                    self.validate(id, from, Acceptance::Reject);
                    self.ban(from, format!("attestation: {e}"));
                }
            },
            GossipMessage::SecurityAlert(alert) => match alert.check() {
                Ok(()) => {
                    NodeStats::add(&self.stats.alerts, 1);
                    tracing::debug!(
                        target: "node",
                        kind = ?alert.body.kind,
                        accused = %alert.body.accused.short(),
                        reporter = %alert.body.reporter.short(),
                        "security alert"
                    );
                    let acceptance = if self.agent_on_alert(&alert) {
                        Acceptance::Accept
                    } else {
                        Acceptance::Ignore
                    };
                    self.validate(id, from, acceptance);
                }
                Err(e) => {
                    self.validate(id, from, Acceptance::Reject);
                    self.ban(from, format!("security alert: {e}"));
                }
            },
            GossipMessage::VerificationRequest(req) => {
                // Relayed only for a block this node imported (checked) at that height.
                let acceptance = if self.on_verification_request(req) {
                    Acceptance::Accept
                } else {
                    Acceptance::Ignore
                };
                self.validate(id, from, acceptance);
            }
        }
        Ok(())
    }

    // ---- serving peers ----
}
