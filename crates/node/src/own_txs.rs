//! Our own transactions (signed by this node, or sent to its RPC) from submission until a
//! canonical block holds them.
//!
//! Gossip delivers a message once: a transaction its peers refused, or published before any
//! peer listened, is never gossiped again by the same bytes (the message id is the hash of
//! the data). So while one of ours is pending it is announced again by hash with backoff
//! (5 s, 10 s, 20 s, 40 s, then every 60 s; `TX_ANNOUNCE`, answered with
//! `Request::Transaction`), put back into the pool if the pool lost it (evicted, pruned) while
//! it is still valid, and dropped (reported) once it is provably invalid (nonce used, balance,
//! signature, kind rules). Inclusion marks it included; a reorg that takes its block away
//! makes it pending again; it is forgotten [`CONFIRMATIONS`] blocks deep.
//!
//! A pure state machine, like `sync.rs`: the time comes in as an argument, the pool and the
//! chain are looked at through a closure, and the node performs what it returns.

use crate::node::{Node, Pending};
use pouw_chain::MempoolError;
use pouw_consensus::check_tx_stateless;
use pouw_net::{Acceptance, GossipId, GossipMessage, PeerId, Request, TxAnnouncement};
use pouw_primitives::{Address, Block, Hash, Transaction, TxKind};
use pouw_rpc::OwnTxView;
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Delay from the first gossip of a transaction to its first announcement.
pub(crate) const FIRST_DELAY: Duration = Duration::from_secs(5);
/// Longest delay between announcements.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(60);
/// A pending transaction is announced this soon after a peer connects.
pub(crate) const ON_NEW_PEER: Duration = Duration::from_secs(2);
/// Included transactions are forgotten this many blocks deep (a deeper reorg is not watched).
pub(crate) const CONFIRMATIONS: u64 = 6;
/// Most transactions tracked for RPC clients (those of the node's own key always are).
pub(crate) const MAX_FOREIGN: usize = 256;
/// Most announced transactions fetched from peers at once.
const MAX_TX_FETCHES: usize = 64;

/// What the pool and the chain say about a pending transaction (the node's lookup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// In the pool.
    Pooled,
    /// Was missing from the pool and was put back.
    Reinserted,
    /// Missing from the pool and cannot be put back now (pool or sender full, nonce gap).
    Waiting,
    /// Provably invalid on the current state: the reason.
    Invalid(String),
}

/// What a check found, for the node to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Put back into the pool.
    Reinserted(Hash),
    /// Dropped as invalid: it will never land.
    Dropped {
        /// The transaction.
        tx: Box<Transaction>,
        /// How long it was tracked.
        age: Duration,
        /// Why it is invalid.
        reason: String,
    },
    /// Pending for [`MAX_DELAY`] without a block (said once per transaction).
    Late {
        /// The transaction.
        tx: Box<Transaction>,
        /// How long it has been pending.
        age: Duration,
        /// Announcements so far.
        announces: u32,
    },
}

#[derive(Clone, Debug)]
enum Status {
    Pending,
    /// In the canonical block at this height.
    Included(u64),
}

#[derive(Clone, Debug)]
struct Entry {
    tx: Transaction,
    since: Instant,
    status: Status,
    announces: u32,
    next_announce: Instant,
    late_said: bool,
}

/// The delay after the `n`th announcement (0: the first gossip).
pub(crate) fn delay_after(n: u32) -> Duration {
    let factor = 1u32.checked_shl(n).unwrap_or(u32::MAX);
    FIRST_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

/// The tracked transactions; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct OwnTxs {
    entries: BTreeMap<Hash, Entry>,
    /// The next announcement's `seq`.
    seq: u64,
}

impl OwnTxs {
    /// Announcement numbers start at `seed` (e.g. the start time in ms, so that a restarted
    /// node's announcements are not duplicates of its earlier ones).
    pub(crate) fn new(seed: u64) -> Self {
        Self { entries: BTreeMap::new(), seq: seed }
    }

    /// Starts tracking `tx`, just gossiped. Those of `me` are always tracked, others while
    /// fewer than [`MAX_FOREIGN`] are. Returns whether it is tracked.
    pub(crate) fn track(&mut self, tx: Transaction, me: &Address, now: Instant) -> bool {
        let hash = tx.hash();
        if self.entries.contains_key(&hash) {
            return true;
        }
        if tx.body.sender != *me
            && self.entries.values().filter(|e| e.tx.body.sender != *me).count() >= MAX_FOREIGN
        {
            return false;
        }
        let next_announce = now.checked_add(delay_after(0)).unwrap_or(now);
        self.entries.insert(
            hash,
            Entry {
                tx,
                since: now,
                status: Status::Pending,
                announces: 0,
                next_announce,
                late_said: false,
            },
        );
        true
    }

    /// Tracked (pending, or included less than [`CONFIRMATIONS`] deep).
    pub(crate) fn contains(&self, hash: &Hash) -> bool {
        self.entries.contains_key(hash)
    }

    /// A tracked transaction.
    pub(crate) fn get(&self, hash: &Hash) -> Option<&Transaction> {
        self.entries.get(hash).map(|e| &e.tx)
    }

    /// The nonce after the highest pending one of `sender` (a new transaction of ours must not
    /// reuse a nonce a pending one holds, even while the pool has lost it).
    pub(crate) fn next_nonce(&self, sender: &Address) -> Option<u64> {
        self.entries
            .values()
            .filter(|e| matches!(e.status, Status::Pending) && e.tx.body.sender == *sender)
            .map(|e| e.tx.body.nonce.saturating_add(1))
            .max()
    }

    /// A tip change: `reverted` blocks (taken off the canonical chain) then `applied` ones.
    /// Returns the transactions a reorg made pending again; they are announced at once.
    pub(crate) fn on_blocks(
        &mut self,
        reverted: &[Block],
        applied: &[Block],
        now: Instant,
    ) -> Vec<Hash> {
        let mut repended = Vec::new();
        for tx in reverted.iter().flat_map(|b| &b.transactions) {
            let hash = tx.hash();
            if let Some(e) = self.entries.get_mut(&hash) {
                if matches!(e.status, Status::Included(_)) {
                    e.status = Status::Pending;
                    e.announces = 0;
                    e.next_announce = now;
                    repended.push(hash);
                }
            }
        }
        for block in applied {
            for tx in &block.transactions {
                if let Some(e) = self.entries.get_mut(&tx.hash()) {
                    e.status = Status::Included(block.header.height);
                    repended.retain(|h| *h != tx.hash());
                }
            }
        }
        repended
    }

    /// Checks every pending transaction with `look` (the pool and the tip state), drops the
    /// invalid ones, forgets those [`CONFIRMATIONS`] deep below `tip_height`.
    pub(crate) fn check(
        &mut self,
        tip_height: u64,
        now: Instant,
        mut look: impl FnMut(&Transaction) -> Lookup,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let mut gone = Vec::new();
        for (hash, e) in &mut self.entries {
            match e.status {
                Status::Included(height) => {
                    if tip_height.saturating_sub(height).saturating_add(1) >= CONFIRMATIONS {
                        gone.push(*hash);
                    }
                }
                Status::Pending => {
                    let age = now.saturating_duration_since(e.since);
                    match look(&e.tx) {
                        Lookup::Pooled | Lookup::Waiting => {}
                        Lookup::Reinserted => {
                            events.push(Event::Reinserted(*hash));
                            e.next_announce = e.next_announce.min(now);
                        }
                        Lookup::Invalid(reason) => {
                            gone.push(*hash);
                            events.push(Event::Dropped { tx: Box::new(e.tx.clone()), age, reason });
                            continue;
                        }
                    }
                    if age >= MAX_DELAY && !e.late_said {
                        e.late_said = true;
                        events.push(Event::Late {
                            tx: Box::new(e.tx.clone()),
                            age,
                            announces: e.announces,
                        });
                    }
                }
            }
        }
        for h in gone {
            self.entries.remove(&h);
        }
        events
    }

    /// The node found `hash` invalid (e.g. a block template refused it): drop it.
    pub(crate) fn invalid(&mut self, hash: &Hash, reason: String, now: Instant) -> Option<Event> {
        let e = self.entries.remove(hash)?;
        let age = now.saturating_duration_since(e.since);
        Some(Event::Dropped { tx: Box::new(e.tx), age, reason })
    }

    /// The pending transactions whose announcement is due: `(hash, seq)` each; the next one of
    /// each is scheduled with the backoff.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(Hash, u64)> {
        let mut out = Vec::new();
        for (hash, e) in &mut self.entries {
            if matches!(e.status, Status::Pending) && e.next_announce <= now {
                e.announces = e.announces.saturating_add(1);
                e.next_announce = now.checked_add(delay_after(e.announces)).unwrap_or(now);
                self.seq = self.seq.wrapping_add(1);
                out.push((*hash, self.seq));
            }
        }
        out
    }

    /// A peer connected: it has not seen our pending transactions; announce them soon.
    pub(crate) fn peer_joined(&mut self, now: Instant) {
        let soon = now.checked_add(ON_NEW_PEER).unwrap_or(now);
        for e in self.entries.values_mut() {
            if matches!(e.status, Status::Pending) {
                e.next_announce = e.next_announce.min(soon);
            }
        }
    }

    /// The pending transactions, oldest first, for the RPC.
    pub(crate) fn pending(&self) -> Vec<PendingOwnTx> {
        let mut v: Vec<PendingOwnTx> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.status, Status::Pending))
            .map(|(hash, e)| PendingOwnTx {
                hash: *hash,
                kind: e.tx.body.kind.name(),
                sender: e.tx.body.sender,
                nonce: e.tx.body.nonce,
                since: e.since,
                announces: e.announces,
            })
            .collect();
        v.sort_by_key(|p| p.since);
        v
    }
}

/// A pending transaction as the RPC shows it.
#[derive(Clone, Debug)]
pub(crate) struct PendingOwnTx {
    hash: Hash,
    kind: &'static str,
    sender: Address,
    nonce: u64,
    since: Instant,
    announces: u32,
}

impl PendingOwnTx {
    fn view(&self, now: Instant) -> OwnTxView {
        OwnTxView {
            hash: self.hash,
            kind: self.kind.to_owned(),
            sender: self.sender,
            nonce: self.nonce,
            age_secs: now.saturating_duration_since(self.since).as_secs(),
            announces: self.announces,
        }
    }
}

/// The pending list, written by the node loop and read by the RPC.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedOwnTxs(Arc<Mutex<Vec<PendingOwnTx>>>);

impl SharedOwnTxs {
    pub(crate) fn set(&self, pending: Vec<PendingOwnTx>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = pending;
    }

    /// The pending transactions, oldest first, with their ages now.
    pub(crate) fn views(&self) -> Vec<OwnTxView> {
        let now = Instant::now();
        let g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.iter().map(|p| p.view(now)).collect()
    }
}

impl Node {
    /// Checks our pending transactions against the pool and the tip, reports what changed,
    /// announces those due (when there is a peer to hear it) and refreshes the RPC's list.
    pub(crate) fn own_txs_tick(&mut self, now: Instant) {
        self.own_check_now = false;
        self.last_own_check = now;
        let events = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let state = chain.state();
            let mempool = &mut self.mempool;
            self.own_txs.check(chain.height(), now, |tx| {
                if mempool.contains(&tx.hash()) {
                    return Lookup::Pooled;
                }
                match mempool.add(tx.clone(), state) {
                    Ok(_) | Err(MempoolError::AlreadyKnown(_)) => Lookup::Reinserted,
                    Err(e) if e.is_final() => Lookup::Invalid(e.to_string()),
                    Err(_) => Lookup::Waiting,
                }
            })
        };
        for event in events {
            self.own_tx_event(event);
        }
        let due = if self.peers.is_empty() { Vec::new() } else { self.own_txs.due(now) };
        // The RPC's list counts an announcement before it goes out: a peer that heard it and
        // asks finds it counted.
        self.shared_own_txs.set(self.own_txs.pending());
        for (hash, seq) in due {
            tracing::debug!(target: "node", tx = %hash.short(), seq, "announcing a pending transaction of ours");
            let announce = GossipMessage::TxAnnounce(TxAnnouncement { hash, seq });
            if let Err(e) = self.net.publish(announce) {
                tracing::warn!(target: "node", error = %e, "could not announce a transaction");
            }
        }
    }

    /// Says what happened to one of our transactions (a staking ticket by its role: the agent
    /// buys another once the dropped one is no longer tracked).
    pub(crate) fn own_tx_event(&mut self, event: Event) {
        let role = |tx: &Transaction| match &tx.body.kind {
            TxKind::BuyTicket { role, .. } => Some(*role),
            _ => None,
        };
        if let Event::Dropped { tx, .. } = &event {
            if let TxKind::ChargeForTask { task_id, .. } = &tx.body.kind {
                self.vote_dropped(*task_id);
            }
        }
        match event {
            Event::Reinserted(hash) => {
                tracing::info!(target: "node", tx = %hash.short(), "own transaction put back into the pool");
            }
            Event::Dropped { tx, age, reason } => match role(&tx) {
                Some(role) => tracing::warn!(
                    target: "node", ?role, age_secs = age.as_secs(), nonce = tx.body.nonce, %reason,
                    "staking ticket did not land: buying another"
                ),
                None => tracing::warn!(
                    target: "node", tx = %tx.hash().short(), kind = tx.body.kind.name(), nonce = tx.body.nonce,
                    age_secs = age.as_secs(), %reason, "own transaction dropped: it cannot land"
                ),
            },
            Event::Late { tx, age, announces } => match role(&tx) {
                Some(role) => tracing::warn!(
                    target: "node", ?role, age_secs = age.as_secs(), announces,
                    "staking ticket not in a block yet: announcing it again"
                ),
                None => tracing::warn!(
                    target: "node", tx = %tx.hash().short(), kind = tx.body.kind.name(),
                    age_secs = age.as_secs(), announces, "own transaction not in a block yet: announcing it again"
                ),
            },
        }
    }

    /// A peer announced a transaction by hash: fetch it from that peer unless we have it.
    pub(crate) fn on_tx_announce(&mut self, from: PeerId, id: GossipId, hash: Hash) {
        let known = self.mempool.contains(&hash)
            || self.own_txs.contains(&hash)
            || self.fetching_txs.contains(&hash);
        if known || self.fetching_txs.len() >= MAX_TX_FETCHES {
            self.validate(id, from, Acceptance::Ignore);
            return;
        }
        match self.net.request(from, Request::Transaction(hash)) {
            Ok(rid) => {
                self.fetching_txs.insert(hash);
                self.pending.insert(rid, (from, Pending::Transaction { hash, gossip: id }));
            }
            Err(e) => {
                tracing::debug!(target: "node", %from, error = %e, "transaction request not sent");
                self.validate(id, from, Acceptance::Ignore);
            }
        }
    }

    /// The answer to a [`Request::Transaction`]: pooled, the announcement is forwarded.
    pub(crate) fn on_tx_fetched(
        &mut self,
        peer: PeerId,
        hash: Hash,
        gossip: GossipId,
        tx: Option<Box<Transaction>>,
    ) {
        self.fetching_txs.remove(&hash);
        let Some(tx) = tx else {
            // Included or evicted since it announced it: not a fault.
            self.validate(gossip, peer, Acceptance::Ignore);
            return;
        };
        if tx.hash() != hash {
            self.validate(gossip, peer, Acceptance::Reject);
            self.ban(peer, format!("asked for transaction {hash}, sent {}", tx.hash()));
            return;
        }
        if let Err(e) = check_tx_stateless(&tx, &self.config.spec) {
            self.validate(gossip, peer, Acceptance::Reject);
            self.ban(peer, format!("invalid transaction: {e}"));
            return;
        }
        let added = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.mempool.add(*tx, chain.state())
        };
        let acceptance = if added.is_ok() {
            crate::stats::NodeStats::add(&self.stats.txs_accepted, 1);
            Acceptance::Accept
        } else {
            Acceptance::Ignore
        };
        self.validate(gossip, peer, acceptance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_primitives::{
        Amount, ChainSpec, CompactTarget, Header, PublicKey, Signature, Timestamp, TxBody,
    };

    fn tx(nonce: u64) -> Transaction {
        let key = ChainSpec::devnet_key(0);
        TxBody {
            chain_id: 1,
            sender: key.public(),
            nonce,
            fee: Amount(1),
            kind: TxKind::Transfer { to: ChainSpec::devnet_key(1).public(), amount: Amount(5) },
        }
        .sign(&key)
    }

    fn me() -> Address {
        ChainSpec::devnet_key(0).public()
    }

    fn block(height: u64, transactions: Vec<Transaction>) -> Block {
        let header = Header {
            version: 1,
            height,
            prev_hash: Hash::ZERO,
            tx_root: Hash::ZERO,
            attestation_root: Hash::ZERO,
            state_root: Hash::ZERO,
            timestamp: Timestamp(0),
            target: CompactTarget(0),
            miner: PublicKey::default(),
            task_id: Hash::ZERO,
            msg_hash: Hash::ZERO,
            msg_history_root: Hash::ZERO,
            nonce: Hash::ZERO,
        };
        Block {
            header,
            signature: Signature::default(),
            proof: None,
            transactions,
            attestations: vec![],
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn announcements_back_off_to_a_minute() {
        let delays: Vec<u64> = (0..7).map(|n| delay_after(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60, 60]);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
        let t0 = Instant::now();
        let mut o = OwnTxs::new(100);
        assert!(o.track(tx(0), &me(), t0));
        let mut at = Vec::new();
        let mut seqs = Vec::new();
        for s in 0..=200 {
            for (_, seq) in o.due(secs(t0, s)) {
                at.push(s);
                seqs.push(seq);
            }
        }
        assert_eq!(at, [5, 15, 35, 75, 135, 195]);
        assert_eq!(seqs, [101, 102, 103, 104, 105, 106], "every announcement has its own seq");
        assert_eq!(o.pending()[0].announces, 6);
    }

    #[test]
    fn inclusion_stops_the_announcements_and_depth_forgets_it() {
        let t0 = Instant::now();
        let mut o = OwnTxs::new(0);
        let t = tx(0);
        o.track(t.clone(), &me(), t0);
        assert_eq!(o.next_nonce(&me()), Some(1));
        assert!(o.on_blocks(&[], &[block(10, vec![t.clone()])], secs(t0, 1)).is_empty());
        assert!(o.pending().is_empty());
        assert_eq!(o.next_nonce(&me()), None);
        assert!(o.due(secs(t0, 100)).is_empty(), "an included transaction is not announced");
        let never = |_: &Transaction| -> Lookup { panic!("included ones are not looked up") };
        assert!(o.check(14, secs(t0, 2), never).is_empty());
        assert!(o.contains(&t.hash()), "kept while a reorg could take it away");
        assert!(o.check(15, secs(t0, 3), never).is_empty());
        assert!(!o.contains(&t.hash()), "forgotten 6 blocks deep");
    }

    #[test]
    fn a_reorg_that_takes_its_block_away_makes_it_pending_and_announced_at_once() {
        let t0 = Instant::now();
        let mut o = OwnTxs::new(0);
        let (t, other) = (tx(0), tx(1));
        o.track(t.clone(), &me(), t0);
        let b = block(3, vec![t.clone()]);
        o.on_blocks(&[], std::slice::from_ref(&b), secs(t0, 1));
        for _ in 0..3 {
            assert!(o.due(secs(t0, 1_000)).is_empty());
        }
        // The branch that replaces it does not hold it.
        let repended =
            o.on_blocks(std::slice::from_ref(&b), &[block(3, vec![other])], secs(t0, 20));
        assert_eq!(repended, [t.hash()]);
        assert_eq!(o.pending().len(), 1);
        assert_eq!(o.due(secs(t0, 20)).len(), 1, "announced at once");
        assert!(o.due(secs(t0, 24)).is_empty());
        assert_eq!(o.due(secs(t0, 30)).len(), 1, "then with the backoff");
        // A reorg whose new branch holds it again: included, nothing to announce.
        o.on_blocks(&[], std::slice::from_ref(&b), secs(t0, 31));
        let repended = o.on_blocks(std::slice::from_ref(&b), &[block(4, vec![t])], secs(t0, 40));
        assert!(repended.is_empty());
        assert!(o.pending().is_empty());
    }

    #[test]
    fn an_invalid_transaction_is_dropped_and_a_lost_one_put_back() {
        let t0 = Instant::now();
        let mut o = OwnTxs::new(0);
        let (a, b, c) = (tx(0), tx(1), tx(2));
        for t in [&a, &b, &c] {
            o.track(t.clone(), &me(), t0);
        }
        o.due(secs(t0, 5));
        let events = o.check(1, secs(t0, 8), |t| match t.body.nonce {
            0 => Lookup::Invalid("nonce 0 is below the account nonce 1".into()),
            1 => Lookup::Reinserted,
            _ => Lookup::Waiting,
        });
        assert_eq!(events.len(), 2, "{events:?}");
        match &events[..] {
            [Event::Dropped { tx, age, reason }, Event::Reinserted(h)]
            | [Event::Reinserted(h), Event::Dropped { tx, age, reason }] => {
                assert_eq!(tx.hash(), a.hash());
                assert_eq!(*age, Duration::from_secs(8));
                assert!(reason.contains("nonce"));
                assert_eq!(*h, b.hash());
            }
            other => panic!("{other:?}"),
        }
        assert!(!o.contains(&a.hash()));
        let due: Vec<Hash> = o.due(secs(t0, 8)).into_iter().map(|(h, _)| h).collect();
        assert_eq!(due, [b.hash()], "the re-inserted one is announced at once");
        assert_eq!(o.next_nonce(&me()), Some(3), "the waiting one keeps its nonce");
        assert!(matches!(
            o.invalid(&c.hash(), "refused by the block template".into(), secs(t0, 9)),
            Some(Event::Dropped { .. })
        ));
        assert_eq!(o.pending().len(), 1);
    }

    #[test]
    fn a_late_transaction_is_said_once_and_a_new_peer_hears_of_it_soon() {
        let t0 = Instant::now();
        let mut o = OwnTxs::new(0);
        o.track(tx(0), &me(), t0);
        for s in 0..100 {
            o.due(secs(t0, s));
        }
        let pooled = |_: &Transaction| Lookup::Pooled;
        assert!(o.check(1, secs(t0, 59), pooled).is_empty());
        let events = o.check(1, secs(t0, 60), pooled);
        assert!(
            matches!(&events[..], [Event::Late { age, announces: 4, .. }] if age.as_secs() == 60),
            "{events:?}"
        );
        assert!(o.check(1, secs(t0, 61), pooled).is_empty(), "said once");
        // The next announcement is far off; a new peer brings it forward.
        assert!(o.due(secs(t0, 100)).is_empty());
        o.peer_joined(secs(t0, 100));
        assert!(o.due(secs(t0, 101)).is_empty());
        assert_eq!(o.due(secs(t0, 102)).len(), 1);
    }

    #[test]
    fn foreign_transactions_are_tracked_within_a_bound() {
        let t0 = Instant::now();
        let mut o = OwnTxs::new(0);
        let someone = ChainSpec::devnet_key(5).public();
        for n in 0..MAX_FOREIGN as u64 {
            assert!(o.track(tx(n), &someone, t0));
        }
        assert!(!o.track(tx(MAX_FOREIGN as u64), &someone, t0), "over the bound");
        assert!(o.track(tx(MAX_FOREIGN as u64), &me(), t0), "the node's own key always");
    }
}
