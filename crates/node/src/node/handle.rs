//! The handle a program holds on a running node: start (the chain, the proof store, the network,
//! RPC and the node loop on its own thread), read the chain and the figures, send commands,
//! stop.

use super::*;

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
                crate::Attack::LateSignFlip => Some(pouw_work::Poison::LateSignFlip),
                crate::Attack::EndSignFlip => Some(pouw_work::Poison::EndSignFlip),
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
        // The grinder (`--attack grind`, design/010) mines the filler task only: it holds no
        // staking ticket, so no client task selects it.
        let ticket_roles = match config.attack {
            Some(crate::Attack::Grind) => Vec::new(),
            _ => config.roles.clone(),
        };
        let agent = crate::agent::Agent::new(
            ticket_roles,
            config.datadir.clone(),
            security.clone(),
            config.threads,
        );
        let limiter = crate::ratelimit::RequestLimiter::new(config.requests);
        let block_verifier = super::verify::BlockVerifier::start(chain.clone(), proofs.clone());
        let chain_server =
            super::server::ChainServer::start(chain.clone(), proofs.clone(), net.clone());
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
            block_verifier,
            sync_batch: None,
            chain_server,
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
