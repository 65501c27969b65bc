//! A `NodeApi` over a real chain (`ChainHarness`) and a real mempool, as the node wires it.

use pouw_chain::{test_utils::ChainHarness, Mempool, MempoolConfig};
use pouw_primitives::{Amount, Hash, Keypair, TaskId, Timestamp, Transaction};
use pouw_rpc::{
    AccountView, ApiError, BlockRef, BlockView, NodeApi, NodeInfo, NodeStatus, RpcConfig,
    RpcServer, TipView, TrainingPoint,
};
use serde_json::{json, Value};
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// The task id the test node knows.
pub(crate) fn known_task() -> TaskId {
    Hash::digest(b"known task")
}

/// A task id whose lookup panics (a bug in the node must not stop the server).
pub(crate) fn panicking_task() -> TaskId {
    Hash::digest(b"panic")
}

/// A task id whose lookup hangs longer than the test call timeout.
pub(crate) fn slow_task() -> TaskId {
    Hash::digest(b"slow")
}

pub(crate) struct Inner {
    pub(crate) harness: ChainHarness,
    pub(crate) mempool: Mempool,
}

pub(crate) struct TestNode {
    pub(crate) inner: Mutex<Inner>,
    pub(crate) syncing: AtomicBool,
    pub(crate) no_peers: AtomicBool,
    pub(crate) bytes_in: AtomicU64,
}

impl TestNode {
    /// A chain of `blocks` blocks (each with two transfers) and an empty mempool.
    pub(crate) fn new(blocks: usize) -> Arc<Self> {
        let mut harness = ChainHarness::new();
        harness.extend_chain(blocks);
        let mempool = Mempool::new(harness.chain.spec().clone(), MempoolConfig::default());
        Arc::new(Self {
            inner: Mutex::new(Inner { harness, mempool }),
            syncing: AtomicBool::new(false),
            no_peers: AtomicBool::new(false),
            bytes_in: AtomicU64::new(0),
        })
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl NodeApi for TestNode {
    fn tip(&self) -> TipView {
        let g = self.lock();
        TipView::new(g.harness.chain.tip_header(), g.harness.chain.tip_work())
    }

    fn block(&self, at: BlockRef) -> Result<Option<BlockView>, ApiError> {
        let g = self.lock();
        let block = match at {
            BlockRef::Height(h) => g.harness.chain.block_at(h),
            BlockRef::Hash(h) => g.harness.chain.block(&h),
        }
        .map_err(internal)?;
        Ok(block.as_ref().map(BlockView::new))
    }

    fn account(&self, address: pouw_primitives::Address) -> AccountView {
        let a = self.lock().harness.chain.account(&address);
        AccountView {
            address,
            balance: a.balance,
            nonce: a.nonce,
            locked_stake: Amount::ZERO,
            tickets: Vec::new(),
        }
    }

    fn task(&self, id: TaskId) -> Result<Option<Value>, ApiError> {
        if id == panicking_task() {
            panic!("task lookup bug");
        }
        if id == slow_task() {
            std::thread::sleep(Duration::from_millis(1500));
        }
        Ok((id == known_task()).then(|| json!({ "id": id, "state": "training", "fee": "5" })))
    }

    fn submit_transaction(&self, tx: Transaction) -> Result<Hash, ApiError> {
        let mut g = self.lock();
        let Inner { harness, mempool } = &mut *g;
        let hash = tx.hash();
        mempool.add(tx, harness.chain.state()).map_err(|e| ApiError::Rejected(e.to_string()))?;
        Ok(hash)
    }

    fn peers(&self) -> Vec<Value> {
        vec![json!({
            "peer_id": "12D3KooWTestPeer",
            "address": "/ip4/127.0.0.1/tcp/30333",
            "connected": true,
            "score": 1.5,
            "banned_for_secs": 0,
            "rtt_ms": 0.4,
            "agent": "pouw/0.1.0"
        })]
    }

    fn status(&self) -> NodeStatus {
        let g = self.lock();
        let no_peers = self.no_peers.load(Ordering::Relaxed);
        NodeStatus {
            blocks_mined: 1,
            blocks_verified: g.harness.chain.height(),
            blocks_attested: 0,
            attestations_sent: 0,
            blocks_rejected: 2,
            tasks_completed: 3,
            tasks_completed_per_hour: 108.0,
            node_id: "12D3KooWtest".into(),
            rewards_earned: Amount(1_250_000_000),
            security_alerts: 4,
            messages_in: 50,
            messages_out: 60,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: 7000,
            peer_count: if no_peers { 0 } else { 1 },
            bans: 5,
            mempool_size: g.mempool.len() as u64,
            iterations_per_second: 12.5,
            last_block_verification_ms: Some(42.0),
            uptime_secs: 99,
            syncing: self.syncing.load(Ordering::Relaxed),
            no_peers,
            pending_own_txs: g.mempool.len() as u64,
            oldest_own_tx_secs: (!g.mempool.is_empty()).then_some(0),
        }
    }

    /// Every pooled transaction counts as one of the node's own here.
    fn pending_own_transactions(&self) -> Vec<pouw_rpc::OwnTxView> {
        let g = self.lock();
        g.mempool
            .select(usize::MAX, usize::MAX)
            .iter()
            .map(|tx| pouw_rpc::OwnTxView {
                hash: tx.hash(),
                kind: tx.body.kind.name().to_owned(),
                sender: tx.body.sender,
                nonce: tx.body.nonce,
                age_secs: 0,
                announces: 0,
            })
            .collect()
    }

    fn recent_blocks(&self, count: u32) -> Vec<BlockView> {
        let g = self.lock();
        let tip = g.harness.chain.height();
        (0..u64::from(count))
            .map_while(|i| tip.checked_sub(i))
            .filter_map(|h| g.harness.chain.block_at(h).ok().flatten())
            .map(|b| BlockView::new(&b))
            .collect()
    }

    fn training(&self, since: u64, limit: u32) -> Vec<TrainingPoint> {
        let miner = Keypair::from_label("miner").public();
        (1..=5u64)
            .filter(|seq| *seq > since)
            .take(limit as usize)
            .map(|seq| TrainingPoint {
                seq,
                miner,
                task_id: known_task(),
                iteration: seq * 10,
                loss: 2.0 / seq as f32,
                accuracy: 0.1 * seq as f32,
                time: Timestamp(1_700_000_000_000 + seq),
            })
            .collect()
    }

    fn node_info(&self) -> NodeInfo {
        let g = self.lock();
        NodeInfo {
            version: "0.1.0".into(),
            chain: g.harness.chain.spec().name.clone(),
            chain_id: g.harness.chain.spec().chain_id,
            genesis: g.harness.chain.genesis_hash(),
            datadir: g.harness.datadir().display().to_string(),
            peer_id: Some("12D3KooWSelf".into()),
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/30333".into()],
            rpc_addr: None,
            roles: vec!["miner".into()],
        }
    }
}

/// A server over a test node.
pub(crate) struct Fixture {
    pub(crate) node: Arc<TestNode>,
    pub(crate) server: RpcServer,
}

impl Fixture {
    pub(crate) fn new(blocks: usize) -> Self {
        Self::with_config(blocks, RpcConfig::test())
    }

    pub(crate) fn with_config(blocks: usize, config: RpcConfig) -> Self {
        let node = TestNode::new(blocks);
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = pouw_rpc::spawn(addr, node.clone(), config).expect("spawn");
        Self { node, server }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}
