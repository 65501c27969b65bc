//! The transaction pool.
//!
//! Per sender, transactions form a nonce sequence starting at the account nonce of the tip
//! state: the contiguous run from that nonce is *pending* (selectable for a block), and those
//! after a gap are *queued* (at most `max_queued_per_sender`); a queued transaction becomes
//! pending as soon as the gap is filled (nothing to move: the split is computed from the
//! nonces). Every sender's transactions up to each nonce must be covered by the balance
//! (fee + amount, escrow or stake of each), so a selected body always executes.
//!
//! Bounds: per sender (count), total (count and bytes). When full, the transaction with the
//! lowest fee rate (fee per encoded byte) from another sender is evicted, together with that
//! sender's later nonces; a new transaction whose fee rate is not above everything it would
//! evict is refused ([`MempoolError::PoolFull`]). A transaction with the same sender and nonce
//! replaces the old one only with a strictly higher fee.

use crate::Chain;
use pouw_consensus::{
    apply_tx, check_tx_stateless, Account, BlockContext, ConsensusError, Overlay, State,
};
use pouw_primitives::{
    Address, Amount, Block, ChainSpec, Hash, PublicKey, Transaction, TxKind, MAX_TX_BYTES,
};
use std::{
    cmp::Ordering,
    collections::{BTreeMap, BinaryHeap, HashMap, HashSet},
};

/// Mempool bounds.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    /// Most transactions in the pool.
    pub max_txs: usize,
    /// Most encoded bytes in the pool.
    pub max_bytes: usize,
    /// Most transactions (pending + queued) per sender.
    pub max_per_sender: usize,
    /// Most queued (after a nonce gap) transactions per sender.
    pub max_queued_per_sender: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self { max_txs: 10_000, max_bytes: 32 << 20, max_per_sender: 64, max_queued_per_sender: 16 }
    }
}

/// Where an accepted transaction went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddOutcome {
    /// Selectable now.
    Pending,
    /// Waiting for a lower nonce.
    Queued,
    /// Replaced the transaction with the same sender and nonce.
    Replaced {
        /// The replaced transaction.
        old: Hash,
    },
}

/// Why a transaction was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MempoolError {
    /// Fails a consensus rule (signature, chain id, kind rules).
    #[error("invalid transaction: {0}")]
    Invalid(#[from] ConsensusError),
    /// Already in the pool.
    #[error("transaction {0} is already in the pool")]
    AlreadyKnown(Hash),
    /// Encoded size over [`MAX_TX_BYTES`].
    #[error("transaction is {0} bytes, over the limit")]
    TooLarge(usize),
    /// The nonce was already used.
    #[error("nonce {got} is below the account nonce {expected}")]
    NonceTooLow {
        /// Account nonce.
        expected: u64,
        /// Transaction nonce.
        got: u64,
    },
    /// The nonce is too far ahead of the account nonce.
    #[error("nonce {got} is too far ahead of the account nonce {expected}")]
    NonceTooHigh {
        /// Account nonce.
        expected: u64,
        /// Transaction nonce.
        got: u64,
    },
    /// Same sender and nonce as a pooled transaction, without a higher fee.
    #[error("replacement needs a fee above {old_fee:?}")]
    ReplacementUnderpriced {
        /// Fee of the pooled transaction.
        old_fee: Amount,
    },
    /// The sender has too many pooled transactions.
    #[error("sender {0} has too many pooled transactions")]
    SenderFull(Address),
    /// The sender has too many queued (gapped) transactions.
    #[error("sender {0} has too many queued transactions")]
    TooManyQueued(Address),
    /// The balance does not cover this and the sender's earlier pooled transactions.
    #[error("balance {balance:?} does not cover {needed:?}")]
    InsufficientBalance {
        /// Sender balance.
        balance: Amount,
        /// Cost of the pooled transactions up to this one.
        needed: Amount,
    },
    /// The pool is full and this transaction's fee rate is not above what it would evict.
    #[error("pool is full and the fee rate is too low")]
    PoolFull,
}

impl MempoolError {
    /// The transaction cannot enter the pool on this state nor later on this chain: it fails
    /// a rule, its nonce is used, another transaction took its nonce, the balance does not
    /// cover it. The other refusals pass (pool or sender full, nonce gap, already pooled).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Invalid(_)
                | Self::TooLarge(_)
                | Self::NonceTooLow { .. }
                | Self::ReplacementUnderpriced { .. }
                | Self::InsufficientBalance { .. }
        )
    }
}

#[derive(Clone, Debug)]
struct Entry {
    tx: Transaction,
    size: u64,
    seq: u64,
}

impl Entry {
    fn fee(&self) -> u64 {
        self.tx.body.fee.units()
    }

    /// Compares fee rates (fee / size) exactly.
    fn rate_cmp(&self, other: &Self) -> Ordering {
        (u128::from(self.fee()) * u128::from(other.size))
            .cmp(&(u128::from(other.fee()) * u128::from(self.size)))
    }
}

/// What a transaction can take from its sender's balance at most: fee plus the amount moved,
/// escrowed or staked.
fn tx_cost(tx: &Transaction) -> Option<Amount> {
    let extra = match &tx.body.kind {
        TxKind::Transfer { amount, .. } => *amount,
        TxKind::PayForTask { fee, .. } => *fee,
        TxKind::BuyTicket { stake, .. } => *stake,
        _ => Amount::ZERO,
    };
    tx.body.fee.checked_add(extra)
}

/// The transaction pool; see the module docs.
#[derive(Debug)]
pub struct Mempool {
    spec: ChainSpec,
    config: MempoolConfig,
    txs: HashMap<Hash, Entry>,
    by_sender: HashMap<Address, BTreeMap<u64, Hash>>,
    /// Sender accounts at the tip last seen.
    accounts: HashMap<Address, Account>,
    /// Height of the next block (for kind rules that depend on it).
    next_height: u64,
    bytes: usize,
    seq: u64,
}

impl Mempool {
    /// An empty pool.
    pub fn new(spec: ChainSpec, config: MempoolConfig) -> Self {
        Self {
            spec,
            config,
            txs: HashMap::new(),
            by_sender: HashMap::new(),
            accounts: HashMap::new(),
            next_height: 1,
            bytes: 0,
            seq: 0,
        }
    }

    /// Number of pooled transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Encoded bytes pooled.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True if `hash` is pooled.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.txs.contains_key(hash)
    }

    /// A pooled transaction.
    pub fn get(&self, hash: &Hash) -> Option<&Transaction> {
        self.txs.get(hash).map(|e| &e.tx)
    }

    /// The sender's pooled nonces split into (pending, queued).
    pub fn sender_nonces(&self, sender: &Address) -> (Vec<u64>, Vec<u64>) {
        let Some(map) = self.by_sender.get(sender) else { return (vec![], vec![]) };
        let mut next = self.accounts.get(sender).map_or(0, |a| a.nonce);
        let (mut pending, mut queued) = (vec![], vec![]);
        for &n in map.keys() {
            if n == next && queued.is_empty() {
                pending.push(n);
                next += 1;
            } else {
                queued.push(n);
            }
        }
        (pending, queued)
    }

    /// Number of pending transactions.
    pub fn pending_count(&self) -> usize {
        self.by_sender.keys().map(|s| self.sender_nonces(s).0.len()).sum()
    }

    /// Number of queued transactions.
    pub fn queued_count(&self) -> usize {
        self.len() - self.pending_count()
    }

    /// Validates `tx` against `state` (the tip state) and pools it.
    pub fn add(&mut self, tx: Transaction, state: &State) -> Result<AddOutcome, MempoolError> {
        let size = tx.size();
        if size > MAX_TX_BYTES {
            return Err(MempoolError::TooLarge(size));
        }
        let hash = tx.hash();
        if self.txs.contains_key(&hash) {
            return Err(MempoolError::AlreadyKnown(hash));
        }
        check_tx_stateless(&tx, &self.spec)?;
        let sender = tx.body.sender;
        let nonce = tx.body.nonce;
        let account = state.account(&sender);
        if nonce < account.nonce {
            return Err(MempoolError::NonceTooLow { expected: account.nonce, got: nonce });
        }
        if nonce - account.nonce >= self.config.max_per_sender as u64 {
            return Err(MempoolError::NonceTooHigh { expected: account.nonce, got: nonce });
        }
        self.check_kind_rules(&tx, state)?;
        let cost = tx_cost(&tx).ok_or(ConsensusError::AmountOverflow("transaction cost"))?;

        let existing = self.by_sender.get(&sender).cloned().unwrap_or_default();
        let replaced = existing.get(&nonce).copied();
        if let Some(old) = replaced {
            let old_fee = self.txs[&old].tx.body.fee;
            if tx.body.fee <= old_fee {
                return Err(MempoolError::ReplacementUnderpriced { old_fee });
            }
        } else if existing.len() >= self.config.max_per_sender {
            return Err(MempoolError::SenderFull(sender));
        }
        // Pending or queued?
        let mut next = account.nonce;
        for &n in existing.keys() {
            if n == next {
                next += 1;
            } else if n > next {
                break;
            }
        }
        let queued = nonce > next;
        if queued {
            let queued_now = existing.keys().filter(|&&n| n > next).count();
            if replaced.is_none() && queued_now >= self.config.max_queued_per_sender {
                return Err(MempoolError::TooManyQueued(sender));
            }
        }
        // Balance covers everything up to and including this nonce.
        let mut needed = cost;
        for h in existing.range(..nonce).map(|(_, h)| h) {
            let c = tx_cost(&self.txs[h].tx).unwrap_or(Amount::MAX);
            needed = needed.checked_add(c).unwrap_or(Amount::MAX);
        }
        if needed > account.balance {
            return Err(MempoolError::InsufficientBalance { balance: account.balance, needed });
        }

        let entry = Entry { tx, size: size as u64, seq: self.seq };
        // Make room.
        let freed = replaced.map_or(0, |h| self.txs[&h].size as usize);
        let count_after = |p: &Self| p.txs.len() + usize::from(replaced.is_none());
        while count_after(self) > self.config.max_txs
            || self.bytes - freed + size > self.config.max_bytes
        {
            let victim = self
                .txs
                .iter()
                .filter(|(_, e)| e.tx.body.sender != sender)
                .min_by(|a, b| a.1.rate_cmp(b.1).then(b.1.seq.cmp(&a.1.seq)))
                .map(|(h, e)| (*h, e.clone()));
            match victim {
                Some((vh, v)) if entry.rate_cmp(&v) == Ordering::Greater => {
                    tracing::debug!(target: "mempool", victim = %vh, "evicting the lowest fee rate");
                    self.remove_from(&v.tx.body.sender, v.tx.body.nonce);
                }
                _ => return Err(MempoolError::PoolFull),
            }
        }
        if let Some(old) = replaced {
            self.remove_one(&old);
        }
        self.accounts.insert(sender, account);
        self.seq += 1;
        self.bytes += size;
        self.by_sender.entry(sender).or_default().insert(nonce, hash);
        self.txs.insert(hash, entry);
        if replaced.is_some() {
            // A higher fee may make later nonces unaffordable.
            self.prune_sender(&sender);
        }
        Ok(match (replaced, queued) {
            (Some(old), _) => AddOutcome::Replaced { old },
            (None, true) => AddOutcome::Queued,
            (None, false) => AddOutcome::Pending,
        })
    }

    /// Kind-specific rules (zero amounts, self transfers, unsupported kinds, ...): the
    /// consensus `apply_tx` on a scratch overlay where the sender's nonce is this one's.
    fn check_kind_rules(&self, tx: &Transaction, state: &State) -> Result<(), MempoolError> {
        let mut overlay = Overlay::new(state);
        overlay.set_account(
            tx.body.sender,
            Account { balance: Amount(u64::MAX / 2), nonce: tx.body.nonce },
        );
        let ctx = BlockContext {
            spec: &self.spec,
            height: self.next_height,
            block_hash: Hash::ZERO,
            seed: Hash::ZERO,
            miner: PublicKey::default(),
        };
        match apply_tx(&mut overlay, tx, &ctx) {
            Ok(()) => Ok(()),
            // The scratch balance is huge, so only the recipient can overflow: not a rule.
            Err(ConsensusError::BalanceOverflow(_)) => Ok(()),
            Err(e) => Err(MempoolError::Invalid(e)),
        }
    }

    /// Drops a transaction that turned out invalid (e.g. a block template refused it): it
    /// leaves the pool; later transactions of its sender wait for the nonce again.
    pub fn remove(&mut self, hash: &Hash) -> Option<Transaction> {
        self.remove_one(hash)
    }

    fn remove_one(&mut self, hash: &Hash) -> Option<Transaction> {
        let e = self.txs.remove(hash)?;
        self.bytes -= e.size as usize;
        let sender = e.tx.body.sender;
        if let Some(m) = self.by_sender.get_mut(&sender) {
            m.remove(&e.tx.body.nonce);
            if m.is_empty() {
                self.by_sender.remove(&sender);
                self.accounts.remove(&sender);
            }
        }
        Some(e.tx)
    }

    /// Removes the sender's transactions from `nonce` on.
    fn remove_from(&mut self, sender: &Address, nonce: u64) {
        let hashes: Vec<Hash> = self
            .by_sender
            .get(sender)
            .map(|m| m.range(nonce..).map(|(_, h)| *h).collect())
            .unwrap_or_default();
        for h in hashes {
            self.remove_one(&h);
        }
    }

    /// Drops the sender's used nonces, and everything from the first unaffordable nonce on;
    /// trims queued transactions over the limit.
    fn prune_sender(&mut self, sender: &Address) {
        let Some(account) = self.accounts.get(sender).cloned() else { return };
        let Some(map) = self.by_sender.get(sender).cloned() else { return };
        let mut total = Amount::ZERO;
        let mut next = account.nonce;
        let mut queued = 0usize;
        for (n, h) in map {
            if n < account.nonce {
                self.remove_one(&h);
                continue;
            }
            let cost = tx_cost(&self.txs[&h].tx).unwrap_or(Amount::MAX);
            total = total.checked_add(cost).unwrap_or(Amount::MAX);
            if total > account.balance {
                self.remove_from(sender, n);
                return;
            }
            if n == next && queued == 0 {
                next += 1;
            } else {
                queued += 1;
                if queued > self.config.max_queued_per_sender {
                    self.remove_from(sender, n);
                    return;
                }
            }
        }
    }

    /// Updates the pool for a new tip: `state` is the tip state, `reverted` the blocks taken
    /// off the canonical chain and `applied` those added. Included transactions are removed,
    /// now-invalid ones dropped, and still-valid transactions of reverted blocks re-added.
    pub fn on_new_tip(
        &mut self,
        state: &State,
        tip_height: u64,
        reverted: &[Block],
        applied: &[Block],
    ) {
        self.next_height = tip_height.saturating_add(1);
        let included: HashSet<Hash> =
            applied.iter().flat_map(|b| b.transactions.iter().map(Transaction::hash)).collect();
        for h in &included {
            self.remove_one(h);
        }
        let senders: Vec<Address> = self.by_sender.keys().copied().collect();
        for s in senders {
            self.accounts.insert(s, state.account(&s));
            self.prune_sender(&s);
        }
        for tx in reverted.iter().flat_map(|b| b.transactions.iter()) {
            if !included.contains(&tx.hash()) {
                // Still valid ones come back; the rest are dropped (their error is expected).
                let _ = self.add(tx.clone(), state);
            }
        }
    }

    /// [`Mempool::on_new_tip`] with the chain's net tip change since the last sync
    /// ([`Chain::take_tip_changes`]). Returns the blocks of that change: (reverted, applied).
    pub fn sync_with(
        &mut self,
        chain: &mut Chain,
    ) -> Result<(Vec<Block>, Vec<Block>), crate::ChainError> {
        let change = chain.take_tip_changes();
        let load = |hs: &[Hash]| -> Result<Vec<Block>, crate::ChainError> {
            hs.iter().filter_map(|h| chain.block(h).transpose()).collect()
        };
        let reverted = load(&change.reverted)?;
        let applied = load(&change.applied)?;
        self.on_new_tip(chain.state(), chain.height(), &reverted, &applied);
        Ok((reverted, applied))
    }

    /// A block body: pending transactions in nonce order per sender, highest fee rate first
    /// across senders, within `max_txs` and `max_bytes` (encoded transaction bytes).
    pub fn select(&self, max_txs: usize, max_bytes: usize) -> Vec<Transaction> {
        #[derive(Debug)]
        struct Cand<'a>(&'a Entry);
        impl PartialEq for Cand<'_> {
            fn eq(&self, o: &Self) -> bool {
                self.cmp(o) == Ordering::Equal
            }
        }
        impl Eq for Cand<'_> {}
        impl PartialOrd for Cand<'_> {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Cand<'_> {
            fn cmp(&self, o: &Self) -> Ordering {
                self.0.rate_cmp(o.0).then(o.0.seq.cmp(&self.0.seq))
            }
        }
        let head = |sender: &Address, nonce: u64| -> Option<&Entry> {
            self.by_sender.get(sender)?.get(&nonce).and_then(|h| self.txs.get(h))
        };
        let mut heap = BinaryHeap::new();
        for s in self.by_sender.keys() {
            let n = self.accounts.get(s).map_or(0, |a| a.nonce);
            if let Some(e) = head(s, n) {
                heap.push(Cand(e));
            }
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(Cand(e)) = heap.pop() {
            if out.len() >= max_txs {
                break;
            }
            if bytes + e.size as usize > max_bytes {
                continue; // this sender's later nonces cannot follow
            }
            bytes += e.size as usize;
            out.push(e.tx.clone());
            if let Some(next) = head(&e.tx.body.sender, e.tx.body.nonce + 1) {
                heap.push(Cand(next));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{devnet_key, test_spec, transfer};

    #[test]
    fn cost_and_fee_rate() {
        let spec = test_spec();
        let t = transfer(&spec, &devnet_key(0), 0, devnet_key(1).public(), 100, 7);
        assert_eq!(tx_cost(&t), Some(Amount(107)));
        let max = transfer(&spec, &devnet_key(0), 0, devnet_key(1).public(), u64::MAX, 1);
        assert_eq!(tx_cost(&max), None);
        let e = |fee, size| Entry {
            tx: transfer(&spec, &devnet_key(0), 0, devnet_key(1).public(), 1, fee),
            size,
            seq: 0,
        };
        assert_eq!(e(10, 100).rate_cmp(&e(20, 200)), Ordering::Equal);
        assert_eq!(e(11, 100).rate_cmp(&e(20, 200)), Ordering::Greater);
        assert_eq!(e(u64::MAX, u64::MAX).rate_cmp(&e(u64::MAX, 1)), Ordering::Less);
    }

    #[test]
    fn final_refusals_are_those_no_later_state_of_the_chain_lifts() {
        let finals = [
            MempoolError::TooLarge(1),
            MempoolError::NonceTooLow { expected: 2, got: 1 },
            MempoolError::ReplacementUnderpriced { old_fee: Amount(1) },
            MempoolError::InsufficientBalance { balance: Amount(1), needed: Amount(2) },
        ];
        assert!(finals.iter().all(MempoolError::is_final));
        let sender = devnet_key(0).public();
        let passing = [
            MempoolError::AlreadyKnown(Hash::ZERO),
            MempoolError::NonceTooHigh { expected: 0, got: 100 },
            MempoolError::SenderFull(sender),
            MempoolError::TooManyQueued(sender),
            MempoolError::PoolFull,
        ];
        assert!(passing.iter().all(|e| !e.is_final()));
    }

    #[test]
    fn unknown_sender_has_empty_split() {
        let p = Mempool::new(test_spec(), MempoolConfig::default());
        assert_eq!(p.sender_nonces(&devnet_key(0).public()), (vec![], vec![]));
        assert!(p.select(10, 1000).is_empty());
    }
}
