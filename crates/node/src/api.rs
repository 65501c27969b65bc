//! The node's answers to JSON-RPC ([`pouw_rpc::NodeApi`]): reads of the shared chain and of
//! the node's counters; transactions go through the node loop like gossiped ones.

use crate::{stats::NodeStats, NodeCommand};
use pouw_chain::Chain;
use pouw_consensus::{Overlay, StateKey, StateValue};
use pouw_net::NetworkHandle;
use pouw_primitives::{Address, Amount, Role, TaskId, Transaction};
use pouw_rpc::{
    AccountTxView, AccountView, ApiError, BlockRef, BlockView, NodeApi, NodeInfo, NodeStatus,
    SupplyView, TicketView, TipView, TrainingPoint,
};
use std::{
    sync::{atomic::Ordering, Arc, RwLock},
    time::{Duration, Instant},
};

/// What the RPC server reads.
#[derive(Debug)]
pub(crate) struct Api {
    pub(crate) chain: Arc<RwLock<Chain>>,
    pub(crate) net: NetworkHandle,
    pub(crate) stats: Arc<NodeStats>,
    pub(crate) commands: flume::Sender<NodeCommand>,
    pub(crate) started: Instant,
    pub(crate) info: NodeInfo,
    /// Peers are expected (bootstrap peers configured): no peers then means degraded health.
    pub(crate) expects_peers: bool,
    /// The data directory (where fetched models are).
    pub(crate) datadir: std::path::PathBuf,
    /// Security handlers, convictions and screening figures.
    pub(crate) security: Arc<crate::security::SecurityState>,
    /// Our own transactions waiting for a block.
    pub(crate) own_txs: crate::own_txs::SharedOwnTxs,
}

impl Api {
    fn chain(&self) -> std::sync::RwLockReadGuard<'_, Chain> {
        self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl NodeApi for Api {
    fn security(&self) -> serde_json::Value {
        self.security.report()
    }

    fn tip(&self) -> TipView {
        let chain = self.chain();
        TipView::new(chain.tip_header(), chain.tip_work())
    }

    fn block(&self, at: BlockRef) -> Result<Option<BlockView>, ApiError> {
        let chain = self.chain();
        let block = match at {
            BlockRef::Height(h) => chain.block_at(h),
            BlockRef::Hash(h) => chain.block(&h),
        }
        .map_err(internal)?;
        Ok(block.as_ref().map(BlockView::new))
    }

    fn account(&self, address: Address) -> AccountView {
        account_view(self.chain().state(), address)
    }

    fn task(&self, id: TaskId) -> Result<Option<serde_json::Value>, ApiError> {
        let chain = self.chain();
        Ok(crate::tasks::task_json(chain.state(), &id))
    }

    fn submit_transaction(&self, tx: Transaction) -> Result<pouw_primitives::Hash, ApiError> {
        let (reply, answer) = flume::bounded(1);
        self.commands
            .try_send(NodeCommand::SubmitTransaction(Box::new(tx), reply))
            .map_err(|_| ApiError::Unavailable("the node is busy or stopping".into()))?;
        answer
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| ApiError::Unavailable("the node did not answer in time".into()))?
            .map_err(ApiError::Rejected)
    }

    fn peers(&self) -> Vec<serde_json::Value> {
        self.net.peers().iter().filter_map(|p| serde_json::to_value(p).ok()).collect()
    }

    fn pending_own_transactions(&self) -> Vec<pouw_rpc::OwnTxView> {
        self.own_txs.views()
    }

    fn status(&self) -> NodeStatus {
        let own = self.own_txs.views();
        let s = self.stats.snapshot();
        let n = self.net.stats();
        let uptime = self.started.elapsed();
        let tasks_completed = self.stats.tasks_completed.load(Ordering::Relaxed);
        NodeStatus {
            blocks_mined: s.blocks_mined,
            blocks_verified: s.blocks_verified,
            blocks_attested: s.blocks_attested,
            attestations_sent: s.attestations_sent,
            blocks_rejected: s.blocks_rejected,
            tasks_completed,
            tasks_completed_per_hour: if uptime.as_secs() == 0 {
                0.0
            } else {
                tasks_completed as f64 * 3600.0 / uptime.as_secs_f64()
            },
            node_id: self.info.peer_id.clone().unwrap_or_default(),
            rewards_earned: Amount(self.stats.rewards_earned.load(Ordering::Relaxed)),
            security_alerts: s.alerts,
            messages_in: n.messages_in,
            messages_out: n.messages_out,
            bytes_in: n.bytes_in,
            bytes_out: n.bytes_out,
            peer_count: n.connected,
            bans: s.bans.max(n.bans),
            mempool_size: s.mempool,
            iterations_per_second: self.stats.iteration_rate(),
            last_block_verification_ms: (s.last_verify_us > 0)
                .then(|| s.last_verify_us as f64 / 1000.0),
            uptime_secs: uptime.as_secs(),
            syncing: s.syncing,
            no_peers: self.expects_peers && n.connected == 0,
            pending_own_txs: own.len() as u64,
            oldest_own_tx_secs: own.iter().map(|t| t.age_secs).max(),
        }
    }

    fn recent_blocks(&self, count: u32) -> Vec<BlockView> {
        let chain = self.chain();
        let tip = chain.height();
        (0..u64::from(count))
            .map_while(|i| tip.checked_sub(i))
            .filter_map(|h| match chain.block_at(h) {
                Ok(b) => b,
                Err(e) => {
                    // Left out of the answer, never shown with bad data; said in the log.
                    tracing::error!(target: "node", height = h, error = %e, "a stored block cannot be read");
                    None
                }
            })
            .map(|b| {
                let mut v = BlockView::new(&b);
                if let Some(r) = self.stats.imported_at(&v.hash) {
                    v.verification_ms = Some(r.verify_us as f64 / 1000.0);
                    let at = std::time::SystemTime::now().checked_sub(r.at.elapsed());
                    v.imported_at_ms = at
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .and_then(|d| u64::try_from(d.as_millis()).ok());
                }
                v
            })
            .collect()
    }

    fn account_transactions(
        &self,
        address: Address,
        blocks: u64,
        limit: u32,
    ) -> Result<Vec<AccountTxView>, ApiError> {
        let chain = self.chain();
        let tip = chain.height();
        let mut out = Vec::new();
        for h in (0..blocks).map_while(|i| tip.checked_sub(i)) {
            let Some(block) = chain.block_at(h).map_err(internal)? else { continue };
            let hash = block.hash();
            for tx in block.transactions.iter().rev() {
                if out.len() >= limit as usize {
                    return Ok(out);
                }
                out.extend(AccountTxView::of(tx, h, hash, &address));
            }
        }
        Ok(out)
    }

    fn training(&self, since: u64, limit: u32) -> Vec<TrainingPoint> {
        self.stats.training_since(since, limit as usize)
    }

    fn supply(&self) -> SupplyView {
        let chain = self.chain();
        let spec = chain.spec();
        let genesis: u128 =
            spec.genesis.allocations.iter().map(|a| u128::from(a.balance.units())).sum();
        // Block rewards less the verifier shares left unpaid (design/011), as recorded.
        let rewards = u128::from(chain.state().minted().units());
        let total = chain.state().total_value();
        SupplyView {
            height: chain.height(),
            total: total.map_or_else(|| "overflow".into(), |t| t.to_string()),
            genesis: genesis.to_string(),
            rewards: rewards.to_string(),
            ok: total == genesis.checked_add(rewards),
        }
    }

    fn submit_task(&self, path: &str) -> Result<TaskId, ApiError> {
        let (reply, answer) = flume::bounded(1);
        self.commands
            .try_send(NodeCommand::SubmitTask(path.into(), reply))
            .map_err(|_| ApiError::Unavailable("the node is busy or stopping".into()))?;
        answer
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| ApiError::Unavailable("the node did not answer in time".into()))?
            .map_err(ApiError::Rejected)
    }

    fn task_model(&self, id: TaskId) -> Result<Option<Vec<u8>>, ApiError> {
        let path = crate::agent::task_model_path(&self.datadir, &id);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(internal(format!("{}: {e}", path.display()))),
        }
    }

    fn admin_peers(&self) -> serde_json::Value {
        serde_json::json!({ "discovery": self.net.discovery(), "peers": self.net.peers() })
    }

    fn add_peer(&self, address: &str) -> Result<(), ApiError> {
        let addr: pouw_net::Multiaddr = address
            .parse()
            .map_err(|e| ApiError::InvalidParams(format!("not a multiaddr ({e}): {address}")))?;
        self.net.add_peer(addr).map_err(|e| ApiError::Unavailable(e.to_string()))
    }

    fn remove_peer(&self, peer_id: &str) -> Result<(), ApiError> {
        let peer: pouw_net::PeerId = peer_id
            .parse()
            .map_err(|e| ApiError::InvalidParams(format!("not a peer id ({e}): {peer_id}")))?;
        self.net.remove_peer(peer).map_err(|e| ApiError::Unavailable(e.to_string()))
    }

    fn node_info(&self) -> NodeInfo {
        let mut info = self.info.clone();
        info.listen_addrs = self.net.listen_addrs().iter().map(ToString::to_string).collect();
        info
    }
}

/// What `pouw_account` (and `pouw chain account --datadir`) shows of `address` in `state`: its
/// balance, nonce, and its live tickets with the stake they lock.
pub fn account_view(state: &pouw_consensus::State, address: Address) -> AccountView {
    let account = state.account(&address);
    let overlay = Overlay::new(state);
    let mut locked = Amount::ZERO;
    let mut tickets = Vec::new();
    for role in [Role::Miner, Role::Supervisor, Role::Evaluator, Role::Verifier] {
        for id in pouw_consensus::tickets_of(&overlay, &address, role) {
            if let Some(StateValue::Ticket(t)) = state.get(&StateKey::Ticket(id)) {
                locked = locked.checked_add(t.stake).unwrap_or(Amount::MAX);
                tickets.push(TicketView {
                    id,
                    role: t.role,
                    stake: t.stake,
                    created_at: t.created_at,
                    expires_at: t.expires_at,
                    gpu: t.preferences.has_gpu,
                    min_fee: t.preferences.min_fee,
                    max_params: t.preferences.max_params,
                });
            }
        }
    }
    AccountView {
        address,
        balance: account.balance,
        nonce: account.nonce,
        locked_stake: locked,
        tickets,
    }
}
