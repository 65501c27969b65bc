//! What the server asks of the node ([`NodeApi`]) and the plain views it answers with.
//!
//! Every view is serde data owned by this crate, so the node's internal types can change
//! without changing the RPC. Hashes, keys and targets serialise as hex strings, amounts as
//! decimal coin strings (`"12.5"`), timestamps as Unix milliseconds.

use pouw_primitives::{
    Address, Amount, Block, CompactTarget, Hash, Header, PublicKey, TaskId, Timestamp, Transaction,
    Uint256,
};
use serde::{Deserialize, Serialize};

/// The node as the RPC server sees it. Implemented by the node; every method may block
/// briefly (the server calls them off its async runtime, on blocking threads).
pub trait NodeApi: Send + Sync + 'static {
    /// The canonical tip.
    fn tip(&self) -> TipView;

    /// A block by canonical height or by hash; `Ok(None)` when unknown.
    fn block(&self, at: BlockRef) -> Result<Option<BlockView>, ApiError>;

    /// An account at the tip (an unknown account is all zeros).
    fn account(&self, address: Address) -> AccountView;

    /// A task's record as JSON; `Ok(None)` when unknown.
    fn task(&self, id: TaskId) -> Result<Option<serde_json::Value>, ApiError>;

    /// Offers a transaction to the mempool (and, when accepted, to the network). Returns its
    /// id; [`ApiError::Rejected`] with the mempool's reason when refused.
    fn submit_transaction(&self, tx: Transaction) -> Result<Hash, ApiError>;

    /// Known peers (the node serialises its network's peer records).
    fn peers(&self) -> Vec<serde_json::Value>;

    /// The node's counters.
    fn status(&self) -> NodeStatus;

    /// Up to `count` canonical blocks, newest first.
    fn recent_blocks(&self, count: u32) -> Vec<BlockView>;

    /// Training curve points with a sequence number above `since`, oldest first, at most
    /// `limit` of them.
    fn training(&self, since: u64, limit: u32) -> Vec<TrainingPoint>;

    /// Operator information (admin only: it reveals paths and addresses).
    fn node_info(&self) -> NodeInfo;

    /// Admin: the discovery state (peer limits, connection counts by direction, static peers,
    /// routing table) and the peer records of [`NodeApi::peers`].
    fn admin_peers(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Admin: adds a static peer (`address`: a multiaddr, usually ending in `/p2p/<peer id>`),
    /// dialled now and redialled whenever unreachable.
    fn add_peer(&self, address: &str) -> Result<(), ApiError> {
        let _ = address;
        Err(ApiError::Unavailable("this node has no network".into()))
    }

    /// Admin: disconnects and forgets a peer (no redial, out of the routing and peer tables).
    fn remove_peer(&self, peer_id: &str) -> Result<(), ApiError> {
        let _ = peer_id;
        Err(ApiError::Unavailable("this node has no network".into()))
    }

    /// Client (admin only: reads a local file): pays for the task in the task file at `path`
    /// (its dataset is read and served by this node); returns the task id.
    fn submit_task(&self, path: &str) -> Result<TaskId, ApiError> {
        let _ = path;
        Err(ApiError::Unavailable("this node does not take client tasks".into()))
    }

    /// Money check: all money held in the state (balances + escrows + locked stakes), what
    /// genesis allocated and what block rewards created up to the tip.
    fn supply(&self) -> SupplyView {
        SupplyView::default()
    }

    /// Client: the best model of a completed task this node submitted (safetensors bytes),
    /// once fetched from its miner.
    fn task_model(&self, id: TaskId) -> Result<Option<Vec<u8>>, ApiError> {
        let _ = id;
        Ok(None)
    }

    /// Security: the alert handlers by kind, the accusations this node knows of (who accused
    /// which miner, convicted or not), its own screening figures as a supervisor, and the
    /// alerts it raised.
    fn security(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The node's own transactions (signed by it, or sent to this RPC) still waiting for a
    /// canonical block, oldest first.
    fn pending_own_transactions(&self) -> Vec<OwnTxView> {
        Vec::new()
    }

    /// The transactions in the last `blocks` canonical blocks (the tip included) that
    /// `address` sent or that pay it (a transfer to it, a payout of a verdict), newest first,
    /// at most `limit` of them.
    fn account_transactions(
        &self,
        address: Address,
        blocks: u64,
        limit: u32,
    ) -> Result<Vec<AccountTxView>, ApiError> {
        let _ = (address, blocks, limit);
        Err(ApiError::Unavailable("this node does not index account transactions".into()))
    }
}

/// A transaction of an account (`pouw_accountTransactions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountTxView {
    /// Height of the canonical block holding it.
    pub height: u64,
    /// That block's hash.
    pub block_hash: Hash,
    /// Transaction id.
    pub hash: Hash,
    /// Kind (`transfer`, `buy_ticket`, ...).
    pub kind: String,
    /// Sender.
    pub sender: Address,
    /// Sender nonce.
    pub nonce: u64,
    /// Transaction fee.
    pub fee: Amount,
    /// Recipient of a transfer (`null` for other kinds).
    pub to: Option<Address>,
    /// What moved: a transfer's amount, a ticket's stake, a task's fee, the account's payouts
    /// in a verdict (`null` for other kinds).
    pub amount: Option<Amount>,
}

impl AccountTxView {
    /// The view of `tx` in block `height` / `block_hash` for `address`, or `None` when the
    /// transaction neither comes from nor pays `address`.
    pub fn of(tx: &Transaction, height: u64, block_hash: Hash, address: &Address) -> Option<Self> {
        use pouw_primitives::TxKind;
        let sent = tx.body.sender == *address;
        let (to, amount) = match &tx.body.kind {
            TxKind::Transfer { to, amount } => (Some(*to), Some(*amount)),
            TxKind::BuyTicket { stake, .. } => (None, Some(*stake)),
            TxKind::PayForTask { fee, .. } => (None, Some(*fee)),
            TxKind::ChargeForTask { payouts, .. } => {
                let mine = payouts
                    .iter()
                    .filter(|p| p.to == *address)
                    .try_fold(Amount::ZERO, |sum, p| sum.checked_add(p.amount));
                (None, mine.filter(|m| !m.is_zero()))
            }
            _ => (None, None),
        };
        let paid = to == Some(*address)
            || (matches!(tx.body.kind, TxKind::ChargeForTask { .. }) && amount.is_some());
        (sent || paid).then(|| Self {
            height,
            block_hash,
            hash: tx.hash(),
            kind: tx.body.kind.name().to_owned(),
            sender: tx.body.sender,
            nonce: tx.body.nonce,
            fee: tx.body.fee,
            to,
            amount,
        })
    }
}

/// Which block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockRef {
    /// The canonical block at this height.
    Height(u64),
    /// The block with this hash (canonical or not).
    Hash(Hash),
}

/// An error the node reports to a caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The transaction was refused (invalid, nonce, balance, pool full, ...): the reason.
    #[error("transaction rejected: {0}")]
    Rejected(String),
    /// The node cannot answer now (shutting down, chain thread busy).
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// A failure inside the node (storage error, ...).
    #[error("internal error: {0}")]
    Internal(String),
    /// A parameter the node could not use (an address or peer id that does not parse).
    #[error("invalid params: {0}")]
    InvalidParams(String),
}

/// All money at the tip against what created it (`ok` when they are equal to the unit).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplyView {
    /// Height the numbers are for.
    pub height: u64,
    /// Balances + escrows + locked stakes, base units (decimal string).
    pub total: String,
    /// Genesis allocations, base units.
    pub genesis: String,
    /// Coins minted by the blocks up to the tip (block rewards less the verifier shares left
    /// unpaid, design/011), base units.
    pub rewards: String,
    /// `total == genesis + rewards`.
    pub ok: bool,
}

/// The canonical tip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TipView {
    /// Height.
    pub height: u64,
    /// Block hash.
    pub hash: Hash,
    /// Block time (Unix ms).
    pub timestamp: Timestamp,
    /// Compact proof-of-work target of the tip block.
    pub target: CompactTarget,
    /// State root after the tip.
    pub state_root: Hash,
    /// Cumulative work of the chain up to the tip, decimal.
    pub total_work: String,
}

impl TipView {
    /// The view of a tip header with its cumulative work.
    pub fn new(header: &Header, total_work: Uint256) -> Self {
        Self {
            height: header.height,
            hash: header.hash(),
            timestamp: header.timestamp,
            target: header.target,
            state_root: header.state_root,
            total_work: total_work.to_string(),
        }
    }
}

/// One transaction inside a [`BlockView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxSummary {
    /// Transaction id.
    pub hash: Hash,
    /// Kind (`transfer`, `pay_for_task`, `buy_ticket`, ...).
    pub kind: String,
    /// Sender.
    pub sender: Address,
    /// Sender nonce.
    pub nonce: u64,
    /// Fee.
    pub fee: Amount,
}

impl TxSummary {
    /// The summary of a transaction.
    pub fn new(tx: &Transaction) -> Self {
        Self {
            hash: tx.hash(),
            kind: tx.body.kind.name().to_owned(),
            sender: tx.body.sender,
            nonce: tx.body.nonce,
            fee: tx.body.fee,
        }
    }
}

/// The useful work behind a block: its winning iteration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProofSummary {
    /// Task trained.
    pub task_id: TaskId,
    /// Miner of the iteration.
    pub miner: PublicKey,
    /// Epoch.
    pub epoch: u32,
    /// The miner's iteration index.
    pub iteration: u64,
    /// Id of the winning iteration message (the header's `msg_hash`).
    pub msg_hash: Hash,
    /// Batch loss of the iteration.
    #[serde(serialize_with = "short_f32")]
    pub loss: f32,
    /// Batch accuracy of the iteration.
    #[serde(serialize_with = "short_f32")]
    pub accuracy: f32,
}

/// A block: header fields, transaction summaries and the proof summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockView {
    /// Block hash.
    pub hash: Hash,
    /// Height.
    pub height: u64,
    /// Parent hash.
    pub prev_hash: Hash,
    /// Merkle root of the transaction ids.
    pub tx_root: Hash,
    /// State root after the block.
    pub state_root: Hash,
    /// Block time (Unix ms).
    pub timestamp: Timestamp,
    /// Compact target.
    pub target: CompactTarget,
    /// Miner.
    pub miner: PublicKey,
    /// Task whose iteration produced the nonce (zero in genesis).
    pub task_id: TaskId,
    /// Winning iteration message id.
    pub msg_hash: Hash,
    /// The task's committed message-history root.
    pub msg_history_root: Hash,
    /// Nonce.
    pub nonce: Hash,
    /// Encoded size in bytes.
    pub size: u64,
    /// Transactions in execution order.
    pub transactions: Vec<TxSummary>,
    /// Merkle root of the attestation ids.
    #[serde(default)]
    pub attestation_root: Hash,
    /// The verifiers whose attestations of the parent the block carries (each paid its part
    /// of the verifier share, design/011).
    #[serde(default)]
    pub attested_by: Vec<PublicKey>,
    /// The winning iteration (absent in genesis and in blocks without a proof).
    pub proof: Option<ProofSummary>,
    /// How long this node took to verify and import the block (checks, replay, execution,
    /// commit), if it still remembers.
    pub verification_ms: Option<f64>,
    /// When this node imported the block (Unix ms; for the block's miner, when it mined it),
    /// if it still remembers.
    #[serde(default)]
    pub imported_at_ms: Option<u64>,
}

impl BlockView {
    /// The view of a block.
    pub fn new(block: &Block) -> Self {
        let h = &block.header;
        let proof = block.proof.as_ref().map(|p| {
            let w = &p.winning.body;
            ProofSummary {
                task_id: w.task_id,
                miner: w.miner,
                epoch: w.epoch,
                iteration: w.iteration,
                msg_hash: p.winning.id(),
                loss: f32::from_bits(w.loss),
                accuracy: f32::from_bits(w.accuracy),
            }
        });
        Self {
            hash: h.hash(),
            height: h.height,
            prev_hash: h.prev_hash,
            tx_root: h.tx_root,
            state_root: h.state_root,
            timestamp: h.timestamp,
            target: h.target,
            miner: h.miner,
            task_id: h.task_id,
            msg_hash: h.msg_hash,
            msg_history_root: h.msg_history_root,
            nonce: h.nonce,
            size: block.size() as u64,
            transactions: block.transactions.iter().map(TxSummary::new).collect(),
            attestation_root: h.attestation_root,
            attested_by: block.attestations.iter().map(|a| a.body.verifier).collect(),
            proof,
            verification_ms: None,
            imported_at_ms: None,
        }
    }
}

/// An `f32` as the JSON number with the fewest digits that reads back as the same `f32`
/// (`0.4`, not `0.4000000059604645`); NaN and infinities as `null`.
fn short_f32<S: serde::Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
    match v.to_string().parse::<f64>() {
        Ok(x) if x.is_finite() => s.serialize_f64(x),
        _ => s.serialize_none(),
    }
}

/// An account at the tip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// Address.
    pub address: Address,
    /// Spendable balance.
    pub balance: Amount,
    /// Next valid nonce.
    pub nonce: u64,
    /// Stake locked in the account's tickets.
    pub locked_stake: Amount,
    /// The account's live tickets.
    #[serde(default)]
    pub tickets: Vec<TicketView>,
}

/// A live staking ticket (`pouw_account`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketView {
    /// Ticket id (the BuyTicket transaction's id).
    pub id: Hash,
    /// Role offered (`miner`, `supervisor`, `evaluator`, `verifier`).
    pub role: pouw_primitives::Role,
    /// Stake locked.
    pub stake: Amount,
    /// Height of the block that bought it.
    pub created_at: u64,
    /// Height at which it expires and the stake returns.
    pub expires_at: u64,
    /// The worker offers a GPU.
    pub gpu: bool,
    /// The smallest task fee it accepts.
    pub min_fee: Amount,
    /// The largest model it accepts, in parameters (0 = any).
    pub max_params: u64,
}

/// The node's counters (the original design's health metrics, measured).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Blocks this node mined (and imported) since start.
    pub blocks_mined: u64,
    /// Blocks verified and imported since start (own and received).
    pub blocks_verified: u64,
    /// Blocks accepted without replay on their verifiers' attestations since start (light
    /// mode, design/006).
    #[serde(default)]
    pub blocks_attested: u64,
    /// Attestations this node gossiped as a verifier since start.
    #[serde(default)]
    pub attestations_sent: u64,
    /// Blocks rejected as invalid since start.
    pub blocks_rejected: u64,
    /// Tasks this node worked on that completed since start.
    pub tasks_completed: u64,
    /// `tasks_completed` per hour of uptime (0 in the first second).
    #[serde(default)]
    pub tasks_completed_per_hour: f64,
    /// The node's id on the network (its libp2p peer id; empty when unknown).
    #[serde(default)]
    pub node_id: String,
    /// Block rewards and fees earned by this node's miner key since start.
    pub rewards_earned: Amount,
    /// Security alerts raised or received since start.
    pub security_alerts: u64,
    /// Network messages received.
    pub messages_in: u64,
    /// Network messages sent.
    pub messages_out: u64,
    /// Network payload bytes received.
    pub bytes_in: u64,
    /// Network payload bytes sent.
    pub bytes_out: u64,
    /// Connected peers.
    pub peer_count: u64,
    /// Peers banned since start.
    pub bans: u64,
    /// Transactions in the mempool.
    pub mempool_size: u64,
    /// Training iterations per second of the local miner (0 when not mining).
    pub iterations_per_second: f64,
    /// How long the last imported block took to verify (checks, proof replay, execution), ms.
    pub last_block_verification_ms: Option<f64>,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// The node is catching up with its peers.
    pub syncing: bool,
    /// The node has no peers although it expects some (a solo dev node sets this false).
    pub no_peers: bool,
    /// The node's own transactions waiting for a canonical block (re-announced meanwhile).
    #[serde(default)]
    pub pending_own_txs: u64,
    /// Age of the oldest of them, seconds (`None` when there is none).
    #[serde(default)]
    pub oldest_own_tx_secs: Option<u64>,
}

/// One of the node's own transactions still waiting for a canonical block
/// (`pouw_pendingOwnTransactions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnTxView {
    /// Transaction id.
    pub hash: Hash,
    /// Kind (`transfer`, `buy_ticket`, ...).
    pub kind: String,
    /// Sender.
    pub sender: Address,
    /// Sender nonce.
    pub nonce: u64,
    /// Seconds since it was submitted.
    pub age_secs: u64,
    /// Times it was announced again since its first gossip.
    pub announces: u32,
}

/// One point of a live training curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingPoint {
    /// Sequence number (increasing; poll with `since` = the last one seen).
    pub seq: u64,
    /// The miner that ran the iteration.
    pub miner: PublicKey,
    /// Task.
    pub task_id: TaskId,
    /// The miner's iteration index.
    pub iteration: u64,
    /// Batch loss.
    #[serde(serialize_with = "short_f32")]
    pub loss: f32,
    /// Batch accuracy.
    #[serde(serialize_with = "short_f32")]
    pub accuracy: f32,
    /// When the iteration message was seen (Unix ms).
    pub time: Timestamp,
}

/// Operator information for `admin_nodeInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node software version.
    pub version: String,
    /// Chain spec name.
    pub chain: String,
    /// Chain id.
    pub chain_id: u64,
    /// Genesis block hash.
    pub genesis: Hash,
    /// The data directory.
    pub datadir: String,
    /// The network's libp2p peer id, if the network runs.
    pub peer_id: Option<String>,
    /// Network listen addresses.
    pub listen_addrs: Vec<String>,
    /// The RPC listen address.
    pub rpc_addr: Option<String>,
    /// Roles this node runs (`miner`, `verifier`, ...).
    pub roles: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_serialise_short() {
        let p = TrainingPoint {
            seq: 1,
            miner: PublicKey::default(),
            task_id: Hash::ZERO,
            iteration: 0,
            loss: 0.4,
            accuracy: f32::NAN,
            time: Timestamp(0),
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["loss"].to_string(), "0.4");
        assert!(v["accuracy"].is_null());
    }
}
