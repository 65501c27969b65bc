//! The node loop: one thread owns the mempool, the miner and the sync state and handles every
//! network event; the chain sits behind a lock so readers (RPC, CLI, tests) can query it.

use crate::{
    stats::{ImportRecord, NodeStats},
    sync::Sync,
    NodeConfig,
};
use pouw_chain::{
    check_proof_data, precheck, Chain, ChainConfig, ChainError, ImportOutcome, Mempool,
    MempoolConfig, MempoolError, PouwValidator,
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
/// A miner waiting for its peers' messages (bounded staleness, design/012) tries its step again
/// after this long, or at the next event.
/// Where `--attack tiny-task` stands: paying at the given time, or paid (the task's id).
#[derive(Clone, Copy, Debug)]
enum TinyTask {
    PayAt(Instant),
    Paid(TaskId),
}

/// Filler-task iterations one mining turn runs back to back.
const FILLER_STEPS_PER_TURN: usize = 4;
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

/// A running node: its thread, its network and what others may read.
#[derive(Debug)]
pub struct NodeHandle {
    chain: Arc<RwLock<Chain>>,
    net: NetworkHandle,
    stats: Arc<NodeStats>,
    commands: flume::Sender<NodeCommand>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), NodeError>>>,
    rpc_addr: Option<std::net::SocketAddr>,
    security: Arc<crate::security::SecurityState>,
    own_txs: crate::own_txs::SharedOwnTxs,
}

fn read(chain: &RwLock<Chain>) -> RwLockReadGuard<'_, Chain> {
    chain.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(chain: &RwLock<Chain>) -> RwLockWriteGuard<'_, Chain> {
    chain.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NodeHandle {
    /// Opens the data directory, starts the network and the node thread.
    pub fn start(config: NodeConfig) -> Result<Self, NodeError> {
        let proofs = Arc::new(ProofStore::open(&config.datadir)?);
        let exec = Exec::new(config.threads);
        let validator = Arc::new(PouwValidator::new(proofs.clone(), exec));
        let tasks_validator = validator.clone();
        let chain_config = ChainConfig {
            durability: if config.durable { Durability::Immediate } else { Durability::Eventual },
            ..ChainConfig::default()
        };
        let chain =
            Chain::open_with(&config.datadir, config.spec.clone(), chain_config, validator)?;
        let mut net_config = NetConfig::new(chain.genesis_hash(), config.listen.clone());
        net_config.bootstrap = config.bootstrap.clone();
        net_config.max_peers = config.peers.max_peers;
        net_config.max_inbound = config.peers.max_inbound;
        net_config.max_outbound = config.peers.max_outbound;
        net_config.target_peers = config.peers.target_peers;
        net_config.external_addrs = config.external_addrs.clone();
        net_config.discovery = config.discovery;
        net_config.peer_table = Some(config.datadir.join("peers"));
        let (net, events) = pouw_net::spawn(net_config, config.key.secret_bytes())?;
        tasks_validator.update_tasks(chain.tip(), chain.state());
        let stats = Arc::new(NodeStats::default());
        stats.height.store(chain.height(), Ordering::Relaxed);
        let chain = Arc::new(RwLock::new(chain));
        let stop = Arc::new(AtomicBool::new(false));
        let (cmd_tx, cmd_rx) = flume::bounded(256);
        let mut miner =
            config.mine.then(|| Miner::new(config.spec.clone(), config.key.clone(), exec));
        if let (Some(m), Some(attack)) = (miner.as_mut(), config.attack) {
            m.set_poison(match attack {
                crate::Attack::SignFlip => Some(pouw_work::Poison::SignFlip),
                crate::Attack::Noise => Some(pouw_work::Poison::Noise),
                crate::Attack::Stale => Some(pouw_work::Poison::Stale),
                _ => None,
            });
            if attack == crate::Attack::Grind {
                // Three more headers per mining iteration; one forged block after two found.
                m.set_grinder(Some(pouw_work::Grinder::new(3, Some(2))));
            }
        }
        let security = Arc::new(crate::security::SecurityState::new(config.security.clone()));
        let shared_own_txs = crate::own_txs::SharedOwnTxs::default();
        let mempool = Mempool::new(config.spec.clone(), MempoolConfig::default());
        tracing::info!(
            target: "node",
            peer_id = %net.local_peer_id(),
            height = read(&chain).height(),
            listen = ?net.listen_addrs(),
            mining = config.mine,
            "node started"
        );
        let rpc = match config.rpc {
            Some(addr) => {
                let api = crate::api::Api {
                    chain: chain.clone(),
                    net: net.clone(),
                    stats: stats.clone(),
                    commands: cmd_tx.clone(),
                    started: Instant::now(),
                    expects_peers: !config.bootstrap.is_empty(),
                    datadir: config.datadir.clone(),
                    security: security.clone(),
                    own_txs: shared_own_txs.clone(),
                    info: NodeInfo {
                        version: env!("CARGO_PKG_VERSION").into(),
                        chain: config.spec.name.clone(),
                        chain_id: config.spec.chain_id,
                        genesis: read(&chain).genesis_hash(),
                        datadir: config.datadir.display().to_string(),
                        peer_id: Some(net.local_peer_id().to_string()),
                        listen_addrs: Vec::new(),
                        rpc_addr: None,
                        roles: config
                            .roles
                            .iter()
                            .map(|r| format!("{r:?}").to_lowercase())
                            .chain(config.mine.then(|| "mining".to_string()))
                            .collect(),
                    },
                };
                let server = pouw_rpc::spawn(addr, Arc::new(api), config.rpc_config.clone())
                    .map_err(|e| NodeError::Rpc(e.to_string()))?;
                tracing::info!(target: "node", addr = %server.local_addr(), "JSON-RPC listening");
                Some(server)
            }
            None => None,
        };
        let rpc_addr = rpc.as_ref().map(pouw_rpc::RpcServer::local_addr);
        let agent = crate::agent::Agent::new(
            config.roles.clone(),
            config.datadir.clone(),
            security.clone(),
            config.threads,
        );
        let limiter = crate::ratelimit::RequestLimiter::new(config.requests);
        let node = Node {
            validator: tasks_validator,
            rpc,
            mining: config.mine,
            config,
            chain: chain.clone(),
            proofs,
            mempool,
            miner,
            net: net.clone(),
            events,
            commands: cmd_rx,
            stats: stats.clone(),
            stop: stop.clone(),
            sync: Sync::default(),
            pending: HashMap::new(),
            fetching: HashSet::new(),
            banned: crate::bans::Bans::default(),
            limiter,
            peers: HashSet::new(),
            last_status_round: Instant::now(),
            mined: 0,
            mining_retry_at: None,
            tiny_task: None,
            forged: Vec::new(),
            agent,
            last_agent_tick: Instant::now(),
            own_txs: crate::own_txs::OwnTxs::new(Timestamp::now().millis()),
            shared_own_txs: shared_own_txs.clone(),
            last_own_check: Instant::now(),
            own_check_now: false,
            fetching_txs: HashSet::new(),
            verification: crate::verifier::Verification::default(),
        };
        let thread = std::thread::Builder::new()
            .name("pouw-node".into())
            .spawn(move || node.run())
            .map_err(|e| {
                NodeError::Storage(StorageError::Io { path: "thread".into(), source: e })
            })?;
        Ok(Self {
            chain,
            net,
            stats,
            commands: cmd_tx,
            stop,
            thread: Some(thread),
            rpc_addr,
            security,
            own_txs: shared_own_txs,
        })
    }

    /// The chain, for reading (hold the guard briefly: the node waits for it to import).
    pub fn chain(&self) -> RwLockReadGuard<'_, Chain> {
        read(&self.chain)
    }

    /// The shared chain (for servers that read it from their own threads).
    pub fn chain_arc(&self) -> Arc<RwLock<Chain>> {
        self.chain.clone()
    }

    /// Tip height and hash.
    pub fn tip(&self) -> (u64, Hash) {
        let c = self.chain();
        (c.height(), c.tip())
    }

    /// The state root at the tip.
    pub fn state_root(&self) -> Hash {
        self.chain().tip_header().state_root
    }

    /// Where JSON-RPC is served, if it is.
    pub fn rpc_addr(&self) -> Option<std::net::SocketAddr> {
        self.rpc_addr
    }

    /// The network handle.
    pub fn net(&self) -> &NetworkHandle {
        &self.net
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.net.local_peer_id()
    }

    /// Our listen addresses, each ending in `/p2p/<peer id>` (what others bootstrap from).
    pub fn p2p_addrs(&self) -> Vec<Multiaddr> {
        let id = self.peer_id();
        self.net
            .listen_addrs()
            .into_iter()
            .filter_map(|a| format!("{a}/p2p/{id}").parse().ok())
            .collect()
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<NodeStats> {
        &self.stats
    }

    /// Security: alert handlers, convictions, screening figures (`pouw_security`).
    pub fn security(&self) -> &Arc<crate::security::SecurityState> {
        &self.security
    }

    /// Our own transactions still waiting for a canonical block, oldest first (as
    /// `pouw_pendingOwnTransactions` shows them).
    pub fn pending_own_transactions(&self) -> Vec<pouw_rpc::OwnTxView> {
        self.own_txs.views()
    }

    /// The flag that stops the node loop (for signal handlers).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Sends a command to the node loop.
    pub fn command(&self, cmd: NodeCommand) -> bool {
        self.commands.try_send(cmd).is_ok()
    }

    /// Turns mining on or off.
    pub fn set_mining(&self, on: bool) {
        self.command(NodeCommand::SetMining(on));
    }

    /// Submits a transaction (mempool, then gossip); waits up to 10 s for the node's answer.
    pub fn submit_transaction(&self, tx: Transaction) -> Result<Hash, String> {
        let (reply, answer) = flume::bounded(1);
        if !self.command(NodeCommand::SubmitTransaction(Box::new(tx), reply)) {
            return Err("the node is busy or stopped".into());
        }
        answer
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the node did not answer".to_string())?
    }

    /// Client: submits the task file at `path` (this node serves its dataset); waits up to
    /// 60 s for the node's answer: the task id, or why it was refused.
    pub fn submit_task(&self, path: &std::path::Path) -> Result<TaskId, String> {
        let (reply, answer) = flume::bounded(1);
        if !self.command(NodeCommand::SubmitTask(path.to_path_buf(), reply)) {
            return Err("the node is busy or stopped".into());
        }
        answer
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "the node did not answer".to_string())?
    }

    /// True while the node thread runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits for the node thread to end (after the stop flag is set or a fatal error).
    pub fn wait(&mut self) -> Result<(), NodeError> {
        let result = match self.thread.take() {
            Some(t) => t.join().map_err(|_| NodeError::Panicked)?,
            None => Ok(()),
        };
        self.net.shutdown();
        result
    }

    /// Stops the node (after the current iteration) and waits for it; every imported block is
    /// already durable.
    pub fn shutdown(mut self) -> Result<(), NodeError> {
        self.stop.store(true, Ordering::SeqCst);
        self.wait()
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wait();
    }
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

pub(crate) struct Node {
    /// The chain's validator (told about client tasks after every tip change).
    pub(crate) validator: Arc<PouwValidator>,
    /// Stopped when the node stops.
    pub(crate) rpc: Option<pouw_rpc::RpcServer>,
    pub(crate) config: NodeConfig,
    pub(crate) chain: Arc<RwLock<Chain>>,
    pub(crate) proofs: Arc<ProofStore>,
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
}

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
            match self.events.recv_timeout(wait) {
                Ok(ev) => {
                    self.on_event(ev)?;
                    for ev in self.events.try_iter().take(EVENTS_PER_TURN).collect::<Vec<_>>() {
                        self.on_event(ev)?;
                    }
                }
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => {
                    if self.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    return Err(NodeError::NetworkStopped);
                }
            }
            while let Ok(cmd) = self.commands.try_recv() {
                self.on_command(cmd);
            }
            self.tick();
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

    // ---- mining ----

    fn mine_step(&mut self) -> Result<(), NodeError> {
        let Some(miner) = self.miner.as_mut() else { return Ok(()) };
        let max_txs = self.config.spec.max_block_txs as usize;
        let max_bytes = usize::try_from(self.config.spec.max_block_bytes / 2).unwrap_or(usize::MAX);
        let txs = self.mempool.select(max_txs, max_bytes);
        let assigned = miner.assignment().map(|a| a.task_id);
        let peers = match assigned {
            Some(task) if !miner.is_holding() => {
                let next = self.agent.own_next(&task);
                if !self.agent.peers_caught_up(&task, next, Instant::now()) {
                    // Bounded staleness (design/012): not this turn; the loop waits for events
                    // (the peers' messages) instead of mining, and never sleeps.
                    self.mining_retry_at = Some(Instant::now() + STALENESS_POLL);
                    return Ok(());
                }
                self.agent.take_inbox(&task)
            }
            _ => Vec::new(),
        };
        let out = {
            let chain = read(&self.chain);
            // The tip's attestations this node heard: the template pays them (design/011).
            miner.offer_attestations(self.verification.attestations_of(&chain.tip()));
            miner.step_with(&chain, &txs, Timestamp::now(), &peers)
        };
        let out = match out {
            Ok(out) => out,
            Err(MinerError::Template(ConsensusError::TxInBlock { id, source, .. })) => {
                // A pooled transaction no longer applies (e.g. a verdict on a task that closed
                // meanwhile): drop it, train on.
                tracing::debug!(target: "node", tx = %id.short(), error = %source, "dropping a transaction that no longer applies");
                self.mempool.remove(&id);
                // The iteration ran but its message is not sent: the miner's own start states
                // follow it all the same (design/020).
                if let Some(task) = assigned {
                    self.agent_own_lost_step(task, &peers);
                }
                let dropped = self.own_txs.invalid(&id, source.to_string(), Instant::now());
                if let Some(event) = dropped {
                    self.own_tx_event(event);
                }
                return Ok(());
            }
            Err(e) => {
                // One task that cannot be mined (its miner convicted, the task expired or
                // moved on, a template refused) never stops the node: a client task is
                // dropped and the filler task mined instead; a failed filler step is retried.
                match assigned {
                    Some(task) => self.agent_drop_task(task, &e),
                    None => {
                        tracing::warn!(target: "node", error = %e, "mining step failed: retrying");
                        self.mining_retry_at = Some(Instant::now() + Duration::from_millis(200));
                    }
                }
                return Ok(());
            }
        };
        // Transactions the template refused (they no longer apply): left out of it by the
        // miner, so the iteration's message went out all the same; dropped here.
        for (id, reason) in &out.refused_txs {
            tracing::debug!(target: "node", tx = %id.short(), error = %reason, "dropping a transaction that no longer applies");
            self.mempool.remove(id);
            if let Some(event) = self.own_txs.invalid(id, reason.clone(), Instant::now()) {
                self.own_tx_event(event);
            }
        }
        let (found, loss) = (out.block, out.loss);
        if let Some(finished) = out.finished {
            self.agent_on_finished(finished);
            return Ok(());
        }
        if let Some(m) = self.miner.as_ref() {
            self.agent.security.poisoned_sent.store(m.poisoned_messages(), Ordering::Relaxed);
            self.agent.security.set_mining(m.stats());
        }
        if let (Some(task), Some(msg)) = (assigned, out.message) {
            self.agent.note_own_iteration(task, msg.body.iteration);
            self.agent_own_message(task, &msg, &peers);
            if let Err(e) = self.net.publish(GossipMessage::MlIteration(msg)) {
                tracing::debug!(target: "node", error = %e, "iteration message not gossiped");
            }
        }
        let Some(miner) = self.miner.as_mut() else { return Ok(()) };
        let iterations = self.stats.iterations.fetch_add(1, Ordering::Relaxed);
        if iterations % crate::stats::TRAINING_EVERY == 0 {
            if let Some(m) = miner.last_step() {
                self.stats.record_training(TrainingPoint {
                    seq: 0,
                    miner: miner.address(),
                    task_id: m.task_id,
                    iteration: m.iteration,
                    loss: m.loss,
                    accuracy: m.accuracy,
                    time: Timestamp::now(),
                });
            }
        }
        let Some(mined) = found else { return Ok(()) };
        let block = mined.block;
        let Some(proof) = block.proof.as_ref() else { return Ok(()) };
        self.proofs.put_proof(&proof.winning.body, &mined.data)?;
        let hash = block.hash();
        let iteration = proof.winning.body.iteration;
        let started = Instant::now();
        let result = self.import_into_chain(block.clone())?;
        match result {
            Ok(outcome @ (ImportOutcome::Extended | ImportOutcome::Reorged { .. })) => {
                self.mined = self.mined.saturating_add(1);
                NodeStats::add(&self.stats.blocks_mined, 1);
                let fees =
                    block.transactions.iter().fold(0u64, |a, t| a.saturating_add(t.body.fee.0));
                NodeStats::add(
                    &self.stats.rewards_earned,
                    self.config.spec.block_reward.0.saturating_add(fees),
                );
                let height = block.header.height;
                self.after_import(hash, height, started, true);
                tracing::info!(
                    target: "node",
                    height,
                    hash = %hash.short(),
                    iteration,
                    loss,
                    ?outcome,
                    "block mined"
                );
                self.request_verification(&block);
                if let Err(e) = self.net.publish(GossipMessage::NewBlock(block)) {
                    tracing::warn!(target: "node", error = %e, "could not gossip our block");
                }
            }
            Ok(outcome) => {
                tracing::debug!(target: "node", hash = %hash.short(), ?outcome, "mined block not on the tip")
            }
            Err(e) if self.config.attack == Some(crate::Attack::Grind) => {
                // The grinding attacker sends its forged block although its own node refused
                // it: the honest nodes must refuse it too (design/010).
                tracing::warn!(target: "node", hash = %hash.short(), error = %e, "attack: sending a block our own node refused");
                self.agent.security.note_forged(hash);
                self.forged.push(block.clone());
                if let Err(e) = self.net.publish(GossipMessage::NewBlock(block)) {
                    tracing::warn!(target: "node", error = %e, "could not gossip the forged block");
                }
            }
            Err(e) => tracing::warn!(target: "node", error = %e, "our own block was refused"),
        }
        Ok(())
    }

    /// Imports a block into the chain; on success the mempool and the validator's view of the
    /// client tasks follow the new tip. The outer error is a local failure (a database failed,
    /// e.g. a full disk: fatal, the node stops with the stored chain intact; or the mempool
    /// could not read the chain), the inner one the import's verdict.
    fn import_into_chain(
        &mut self,
        block: Block,
    ) -> Result<Result<ImportOutcome, ChainError>, NodeError> {
        let hash = block.hash();
        let height = block.header.height;
        // Kept to remember it (and draw its committee) should the import refuse it as invalid.
        let refused = block.clone();
        // The header rules and the proof check (the replay) run under the shared lock, so the
        // RPC's readers are not held up by a replay; only the commit takes the write lock.
        // This thread is the chain's only writer, so nothing moves in between.
        let now = Timestamp::now();
        let staged = {
            let chain = read(&self.chain);
            chain.admit(block, now).and_then(|checked| chain.verify(checked))
        };
        let r = {
            let mut chain = write(&self.chain);
            let imported = match staged {
                Ok(proven) => chain.commit(proven),
                Err(ChainError::Known(_)) => Ok(ImportOutcome::AlreadyKnown),
                // Kept as an orphan by the import.
                Err(ChainError::UnknownParent { .. }) => chain.import_block(refused.clone(), now),
                Err(e) => Err(e),
            };
            let r = match imported {
                Err(e) => match e.into_storage_error() {
                    Ok(storage) => return Err(ChainError::Storage(storage).into()),
                    Err(e) => Err(e),
                },
                ok => ok,
            };
            if r.is_ok() {
                let (reverted, applied) = self.mempool.sync_with(&mut chain)?;
                for h in self.own_txs.on_blocks(&reverted, &applied, Instant::now()) {
                    tracing::info!(target: "node", tx = %h.short(), "own transaction pending again: its block left the canonical chain");
                }
                self.own_check_now = true;
                self.validator.update_tasks(chain.tip(), chain.state());
            }
            r
        };
        match &r {
            Ok(_) => {
                self.note_committee(hash);
                self.verifier_after_import(hash, height, true);
                self.judge_claims();
            }
            Err(e) if e.is_peer_fault() => {
                self.note_refused_block(&refused);
                self.verifier_after_import(hash, height, false);
            }
            Err(_) => {}
        }
        Ok(r)
    }

    fn after_import(&self, hash: Hash, height: u64, started: Instant, mined: bool) {
        let verify_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let tip_height = read(&self.chain).height();
        self.stats.height.store(tip_height, Ordering::Relaxed);
        let attested = !mined && self.validator.is_attested(&hash);
        self.stats.record_import(ImportRecord {
            hash,
            height,
            at: Instant::now(),
            verify_us,
            mined,
            attested,
        });
        if attested {
            NodeStats::add(&self.stats.blocks_attested, 1);
        } else if !mined {
            self.stats.last_verify_us.store(verify_us, Ordering::Relaxed);
            NodeStats::add(&self.stats.blocks_verified, 1);
        }
    }

    // ---- network events ----

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

    fn on_gossip_block(
        &mut self,
        from: PeerId,
        id: GossipId,
        block: Block,
    ) -> Result<(), NodeError> {
        let hash = block.hash();
        let (known, parent_known) = {
            let chain = read(&self.chain);
            (chain.header(&hash).is_some(), chain.header(&block.header.prev_hash).is_some())
        };
        if known || self.fetching.contains(&hash) {
            self.validate(id, from, Acceptance::Ignore);
            return Ok(());
        }
        if !parent_known {
            // A block on a chain we do not have: ask the sender where it is.
            self.validate(id, from, Acceptance::Ignore);
            self.request(from, Request::Status, Pending::Status);
            return Ok(());
        }
        let checked = precheck(&read(&self.chain), &block, Timestamp::now());
        if let Err(e) = checked {
            if e.is_peer_fault() {
                NodeStats::add(&self.stats.blocks_rejected, 1);
                self.validate(id, from, Acceptance::Reject);
                self.ban(from, format!("invalid block: {e}"));
            } else {
                self.validate(id, from, Acceptance::Ignore);
            }
            return Ok(());
        }
        let have_data = match proof_of(&block) {
            Ok(Some(proof)) => self.proofs.get_proof(&proof.winning.body)?.is_some(),
            _ => true,
        };
        if have_data {
            self.import(Some(from), block, None, Some(id))?;
        } else if self.light_hold(from, id.clone(), &block) {
            // Light mode: accepted on its verifiers' attestations, or replayed (verifier.rs).
        } else {
            self.fetching.insert(hash);
            // A filler-task block's start state stays home when this node holds the chain's
            // filler state at its parent (design/016).
            let lean = {
                let chain = read(&self.chain);
                chain.header(&block.header.prev_hash).is_some_and(|parent| {
                    chain.filler_states().and_then(|f| f.start_for(&chain, parent)).is_some()
                })
            };
            let request = if lean { Request::ProofLean(hash) } else { Request::Proof(hash) };
            self.request(
                from,
                request,
                Pending::Proof { block: Box::new(block), gossip: Some(id) },
            );
        }
        Ok(())
    }

    /// Imports a block, storing its proof data first if given (after checking it is exactly
    /// the data the block names). Returns whether the block is now stored and valid so far.
    pub(crate) fn import(
        &mut self,
        from: Option<PeerId>,
        block: Block,
        data: Option<ProofData>,
        gossip: Option<GossipId>,
    ) -> Result<bool, NodeError> {
        let hash = block.hash();
        let reject = |node: &mut Self, reason: String| {
            NodeStats::add(&node.stats.blocks_rejected, 1);
            if let (Some(peer), Some(id)) = (from, gossip.clone()) {
                node.validate(id, peer, Acceptance::Reject);
            }
            if let Some(peer) = from {
                node.ban(peer, reason);
            }
        };
        if let Some(mut data) = data {
            if data.batch.is_empty() {
                // A filler-task block's batch does not travel: rebuilt from chain data, then
                // checked against the batch hash like any batch (design/016).
                data.batch = filler_batch(&read(&self.chain), &block).unwrap_or_default();
            }
            // Nor, asked lean, its start state when it is the chain's filler state at the
            // parent: put back, then checked against the start hashes like any data. A filler
            // block whose state this node cannot rebuild now is not the sender's fault.
            if data.start_params.is_empty()
                && !complete_filler_start(&read(&self.chain), &block, &mut data)
            {
                if let (Some(peer), Some(id)) = (from, gossip) {
                    self.validate(id, peer, Acceptance::Ignore);
                }
                return Ok(false);
            }
            let checked = check_proof_data(&read(&self.chain), &block, &data);
            match checked {
                Ok(()) => {}
                // The tip moved on since the cheap checks: the block cannot be checked here
                // now (not the sender's fault); sync brings it back if it wins.
                Err(e) if !e.is_fault() => {
                    if let (Some(peer), Some(id)) = (from, gossip) {
                        self.validate(id, peer, Acceptance::Ignore);
                    }
                    return Ok(false);
                }
                Err(e) => {
                    reject(self, format!("bad proof data: {e}"));
                    return Ok(false);
                }
            }
            if let Ok(Some(proof)) = proof_of(&block) {
                self.proofs.put_proof(&proof.winning.body, &data)?;
            }
        }
        let started = Instant::now();
        let height = block.header.height;
        let result = self.import_into_chain(block)?;
        match result {
            Ok(ImportOutcome::AlreadyKnown) => {
                if let (Some(peer), Some(id)) = (from, gossip) {
                    self.validate(id, peer, Acceptance::Ignore);
                }
                Ok(true)
            }
            Ok(outcome) => {
                self.after_import(hash, height, started, false);
                if let (Some(peer), Some(id)) = (from, gossip) {
                    self.validate(id, peer, Acceptance::Accept);
                }
                match outcome {
                    ImportOutcome::Reorged { depth } => tracing::info!(
                        target: "node", height, hash = %hash.short(), depth, "reorganised to a heavier chain"
                    ),
                    ImportOutcome::Extended => tracing::debug!(
                        target: "node", height, hash = %hash.short(), "block verified and imported"
                    ),
                    _ => {}
                }
                Ok(true)
            }
            Err(e) if e.is_peer_fault() => {
                reject(self, format!("invalid block: {e}"));
                Ok(false)
            }
            Err(e) => {
                tracing::debug!(target: "node", hash = %hash.short(), error = %e, "block not imported");
                if let (Some(peer), Some(id)) = (from, gossip) {
                    self.validate(id, peer, Acceptance::Ignore);
                }
                Ok(false)
            }
        }
    }

    fn on_response(
        &mut self,
        peer: PeerId,
        pending: Pending,
        result: Result<Response, RequestFailure>,
    ) -> Result<(), NodeError> {
        let response = match result {
            Ok(r) => r,
            Err(failure) => {
                tracing::debug!(target: "node", %peer, %failure, ?pending, "request failed");
                let kind = if matches!(pending, Pending::Status) {
                    PendingKind::Status
                } else {
                    PendingKind::Data
                };
                match pending {
                    Pending::Proof { block, gossip } => {
                        self.fetching.remove(&block.hash());
                        if let Some(id) = gossip {
                            self.validate(id, peer, Acceptance::Ignore);
                        }
                    }
                    Pending::Headers | Pending::Blocks => self.sync.abort(peer),
                    Pending::Segment { task, index, .. } => self.agent_segment_failed(task, index),
                    Pending::Status | Pending::Model { .. } | Pending::Screening { .. } => {}
                    Pending::History { .. } => {}
                    Pending::StartState { task, miner, iteration } => {
                        self.agent_on_start_state(task, miner, iteration, None)
                    }
                    Pending::Transaction { hash, gossip } => {
                        self.fetching_txs.remove(&hash);
                        self.validate(gossip, peer, Acceptance::Ignore);
                    }
                }
                // A slow answer to a status poll is not held against a peer (it may just be
                // busy); slow sync and data answers cost a little score each.
                if failure == RequestFailure::Timeout && !matches!(kind, PendingKind::Status) {
                    self.penalise(peer, "request timed out", 5);
                }
                return Ok(());
            }
        };
        match (pending, response) {
            (Pending::Status, Response::Status(status)) => self.on_status(peer, status),
            (Pending::Headers, Response::Headers(headers)) => {
                let checked = {
                    let chain = read(&self.chain);
                    self.sync.on_headers(peer, &headers, |h| chain.header(h).is_some())
                };
                match checked {
                    Ok(Some((p, req))) => self.request(p, req, Pending::Blocks),
                    Ok(None) => {}
                    Err(fault) => self.ban(peer, format!("bad headers: {fault}")),
                }
            }
            (Pending::Blocks, Response::Blocks(blocks)) => self.on_sync_blocks(peer, blocks)?,
            (Pending::Proof { block, gossip }, Response::Proof(data)) => {
                self.fetching.remove(&block.hash());
                match data {
                    Some(data) => {
                        self.import(Some(peer), *block, Some(data), gossip)?;
                    }
                    None => {
                        if let Some(id) = gossip {
                            self.validate(id, peer, Acceptance::Ignore);
                        }
                        self.penalise(peer, "announced a block without its proof data", 20);
                    }
                }
            }
            (Pending::Screening { task, supervisor }, Response::Screening(status)) => {
                self.agent_on_screening(task, supervisor, status)
            }
            (Pending::Segment { task, index, use_ }, Response::Segment(bytes)) => {
                self.agent_on_segment(task, index, bytes, use_)
            }
            (Pending::Model { task, miner, hash, deliver }, Response::Model(bytes)) => {
                self.agent_on_model(task, miner, hash, bytes, deliver)
            }
            (Pending::History { task, slot }, Response::History(messages)) => {
                self.agent_on_history(peer, task, slot, messages)
            }
            (Pending::StartState { task, miner, iteration }, Response::StartState(data)) => {
                self.agent_on_start_state(task, miner, iteration, data)
            }
            (Pending::Transaction { hash, gossip }, Response::Transaction(tx)) => {
                self.on_tx_fetched(peer, hash, gossip, tx)
            }
            (pending, Response::Error(e)) => {
                tracing::debug!(target: "node", %peer, error = %e, ?pending, "peer could not answer");
                if let Pending::StartState { task, miner, iteration } = pending {
                    self.agent_on_start_state(task, miner, iteration, None);
                    return Ok(());
                }
                if let Pending::Transaction { hash, gossip } = pending {
                    self.fetching_txs.remove(&hash);
                    self.validate(gossip, peer, Acceptance::Ignore);
                    return Ok(());
                }
                if matches!(pending, Pending::Headers | Pending::Blocks) {
                    self.sync.abort(peer);
                }
            }
            (pending, other) => {
                self.ban(peer, format!("answered {pending:?} with {}", response_name(&other)));
            }
        }
        Ok(())
    }

    fn on_status(&mut self, peer: PeerId, status: ChainStatus) {
        let (genesis, work) = {
            let chain = read(&self.chain);
            (chain.genesis_hash(), chain.tip_work())
        };
        if status.genesis != genesis {
            self.ban(peer, format!("different genesis {}", status.genesis));
            return;
        }
        let chain = self.chain.clone();
        if let Some((p, req)) = self.sync.on_status(peer, status, work, || read(&chain).locator()) {
            tracing::info!(target: "node", %p, "syncing from a heavier peer");
            self.request(p, req, Pending::Headers);
        }
    }

    fn on_sync_blocks(
        &mut self,
        peer: PeerId,
        blocks: Vec<BlockWithProof>,
    ) -> Result<(), NodeError> {
        let mut imported = 0usize;
        for BlockWithProof { block, proof } in blocks {
            let needs_data = match proof_of(&block) {
                Ok(Some(p)) => self.proofs.get_proof(&p.winning.body)?.is_none(),
                _ => false,
            };
            if needs_data && proof.is_none() {
                self.penalise(peer, "sent a block without its proof data", 20);
                self.sync.abort(peer);
                return Ok(());
            }
            if !self.import(Some(peer), block, proof, None)? {
                self.sync.abort(peer);
                return Ok(());
            }
            imported += 1;
        }
        let chain = self.chain.clone();
        let next = self.sync.after_blocks(peer, imported, || read(&chain).locator());
        if let Some((p, req)) = next {
            let pending = if matches!(req, Request::HeadersAfter { .. }) {
                Pending::Headers
            } else {
                Pending::Blocks
            };
            self.request(p, req, pending);
        } else if !self.sync.is_active() {
            tracing::info!(target: "node", height = read(&self.chain).height(), synced = self.sync.synced, "sync finished");
        }
        Ok(())
    }

    // ---- serving peers ----

    fn serve(&mut self, from: PeerId, id: InboundId, request: Request) -> Result<(), NodeError> {
        if let Some(response) = self.agent_serve(&from, &request) {
            let _ = self.net.respond(id, response);
            return Ok(());
        }
        let chain = read(&self.chain);
        let lean = matches!(request, Request::ProofLean(_));
        let response = match request {
            Request::Status => Response::Status(ChainStatus {
                genesis: chain.genesis_hash(),
                tip: chain.tip(),
                height: chain.height(),
                total_work: chain.tip_work().to_be_bytes(),
            }),
            Request::HeadersAfter { locator, max } => {
                let max = max.min(pouw_net::messages::MAX_HEADERS_PER_RESPONSE) as usize;
                Response::Headers(chain.headers_after_locator(&locator, max))
            }
            Request::Blocks(hashes) => {
                let mut out = Vec::new();
                let mut bytes = 0usize;
                for h in hashes {
                    let Some(block) = chain.block(&h)? else { break };
                    let proof = self.proof_data_of(&chain, &block, false)?;
                    bytes = bytes.saturating_add(approx_size(&block, proof.as_ref()));
                    out.push(BlockWithProof { block, proof });
                    if bytes > BLOCKS_RESPONSE_BUDGET {
                        break;
                    }
                }
                Response::Blocks(out)
            }
            Request::Proof(hash) | Request::ProofLean(hash) => match chain.block(&hash)? {
                Some(block) => Response::Proof(self.proof_data_of(&chain, &block, lean)?),
                None => match self.forged.iter().find(|b| b.hash() == hash) {
                    Some(block) => Response::Proof(self.proof_data_of(&chain, block, lean)?),
                    None => Response::Proof(None),
                },
            },
            Request::Segment { .. } => Response::Segment(None),
            Request::Model(_) => Response::Model(None),
            Request::History { .. } => Response::History(Vec::new()),
            Request::Screening { .. } => Response::Screening(None),
            Request::StartState { .. } => Response::StartState(None),
            Request::Transaction(hash) => Response::Transaction(
                self.mempool.get(&hash).or_else(|| self.own_txs.get(&hash)).cloned().map(Box::new),
            ),
        };
        drop(chain);
        let _ = self.net.respond(id, response);
        Ok(())
    }

    /// The proof data of `block` as it goes to a peer: a filler-task block's without its batch,
    /// which every node rebuilds from chain data, and, `lean` (the peer holds the chain's filler
    /// state), without its start state when the iteration started from the chain's filler state
    /// at the block's parent (design/016).
    fn proof_data_of(
        &self,
        chain: &Chain,
        block: &Block,
        lean: bool,
    ) -> Result<Option<ProofData>, NodeError> {
        let proof = match proof_of(block) {
            Ok(Some(p)) => p,
            _ => return Ok(None),
        };
        let mut data = self.proofs.get_proof(&proof.winning.body)?;
        if let Some(d) = data.as_mut() {
            let Some(parent) = chain.header(&block.header.prev_hash) else { return Ok(data) };
            let ancestors = chain.branch_ancestors(parent);
            let filler = PouwValidator::filler_task_for(chain.spec(), parent, &ancestors);
            if filler.is_some_and(|(id, _)| id == block.header.task_id) {
                d.batch = Vec::new();
                let w = &proof.winning.body;
                let start = lean
                    .then(|| chain.filler_states().and_then(|f| f.start_for(chain, parent)))
                    .flatten();
                let at_chain_state = start.is_some_and(|s| {
                    s.model_hash == w.start_model_hash && s.residual_hash == w.start_residual_hash
                });
                if at_chain_state {
                    d.start_params = Vec::new();
                    d.start_residual = Vec::new();
                    d.start_velocity = Vec::new();
                }
            }
        }
        Ok(data)
    }
}

/// Puts back the start state of proof data sent lean for `block` (design/016): the chain's
/// filler state at the block's parent, when the block trains the filler task that state
/// belongs to. The data is then checked against the winning message's hashes like any other.
/// False when `block` trains that filler task but the state cannot be rebuilt here now; true
/// otherwise (a client-task block's data is left as sent: its missing start state is a fault).
fn complete_filler_start(chain: &Chain, block: &Block, data: &mut ProofData) -> bool {
    let Some(parent) = chain.header(&block.header.prev_hash) else { return false };
    let ancestors = chain.branch_ancestors(parent);
    let filler = PouwValidator::filler_task_for(chain.spec(), parent, &ancestors);
    if filler.is_none_or(|(id, _)| id != block.header.task_id) {
        return true;
    }
    let Some(start) = chain.filler_states().and_then(|f| f.start_for(chain, parent)) else {
        return false;
    };
    data.start_params = start.state.model().params().to_vec();
    data.start_residual = start.state.residual().to_vec();
    data.start_velocity = start.state.velocity().to_vec();
    true
}

/// The batch bytes of `block`'s iteration rebuilt from chain data, when it trains the filler
/// task of its epoch and its parent is stored (`PouwValidator::filler_batch`).
fn filler_batch(chain: &Chain, block: &Block) -> Option<Vec<u8>> {
    let parent = chain.header(&block.header.prev_hash)?;
    let ancestors = chain.branch_ancestors(parent);
    PouwValidator::filler_batch(chain.spec(), parent, &ancestors, block).ok().flatten()
}

fn approx_size(block: &Block, proof: Option<&ProofData>) -> usize {
    let txs: usize = block.transactions.len().saturating_mul(256);
    let data = proof.map_or(0, |p| {
        (p.start_params.len() + p.start_residual.len() + p.start_velocity.len())
            .saturating_mul(4)
            .saturating_add(p.batch.len())
            .saturating_add(p.peers.len().saturating_mul(16 * 1024))
            .saturating_add(p.sample_proofs.len().saturating_mul(32))
    });
    txs.saturating_add(data).saturating_add(16 * 1024)
}

fn response_name(r: &Response) -> &'static str {
    match r {
        Response::Status(_) => "Status",
        Response::Headers(_) => "Headers",
        Response::Blocks(_) => "Blocks",
        Response::Proof(_) => "Proof",
        Response::Segment(_) => "Segment",
        Response::Model(_) => "Model",
        Response::History(_) => "History",
        Response::Screening(_) => "Screening",
        Response::Transaction(_) => "Transaction",
        Response::StartState(_) => "StartState",
        Response::Error(_) => "Error",
    }
}
