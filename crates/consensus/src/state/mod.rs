//! The ledger state: a map of typed keys to typed values, with an incremental state root.
//!
//! Everything consensus remembers between blocks is an entry here (accounts, tickets, tasks,
//! used iterations, ...), so storage persists it generically, undo data is just "the previous
//! value of every key a block touched", and a reorg restores it exactly.
//!
//! The state root is `BLAKE3(tag || lattice_hash)` where the lattice hash is the lane-wise
//! wrapping sum of a 2048-byte BLAKE3 XOF of every `(key, value)` entry (an LtHash: adding and
//! removing an entry are O(1), the order of insertion does not matter, and finding two states
//! with the same sum is as hard as a lattice problem).

use crate::ConsensusError;
use borsh::{BorshDeserialize, BorshSerialize};
use pouw_primitives::{
    codec, Address, Amount, Hash, Payout, PublicKey, Role, TaskDefinition, TaskId,
    TicketPreferences,
};
use serde::Serialize;
use std::{collections::BTreeMap, ops::Bound};

mod lthash;
mod records;

pub use lthash::*;
pub use records::*;

/// A key of the state map.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub enum StateKey {
    /// An account by address.
    Account(Address),
    /// A ticket by the id of the transaction that bought it.
    Ticket(Hash),
    /// Index of tickets by expiry height (value: [`StateValue::Marker`]).
    TicketExpiry {
        /// Expiry height.
        height: u64,
        /// Ticket id.
        ticket: Hash,
    },
    /// A task by id.
    Task(TaskId),
    /// A (task, miner, iteration) that already won a block (value: [`StateValue::Marker`]).
    UsedIteration {
        /// Task.
        task: TaskId,
        /// Miner.
        miner: PublicKey,
        /// Iteration index.
        iteration: u64,
    },
    /// Index of tickets by owner and role (value: [`StateValue::Marker`]); lets the
    /// authorisation check and confiscation find a worker's tickets.
    OwnerTicket {
        /// Ticket owner.
        owner: Address,
        /// Ticket role.
        role: Role,
        /// Ticket id.
        ticket: Hash,
    },
    /// A supervisor's committed message-history root for one slot of a task
    /// (value: [`StateValue::Hash`], the Merkle root).
    MessageHistory {
        /// Task.
        task: TaskId,
        /// Slot number.
        slot: u32,
        /// The committing supervisor.
        supervisor: PublicKey,
    },
    /// A miner's submitted final model (value: [`StateValue::Hash`], the model hash).
    SubmittedModel {
        /// Task.
        task: TaskId,
        /// Miner.
        miner: PublicKey,
    },
    /// An evaluator's vote (value: [`StateValue::Hash`], the [`crate::verdict_hash`]).
    Verdict {
        /// Task.
        task: TaskId,
        /// Evaluator.
        evaluator: PublicKey,
    },
    /// How many evaluators voted for one verdict of a task (value: [`StateValue::Count`]).
    VerdictVotes {
        /// Task.
        task: TaskId,
        /// The [`crate::verdict_hash`].
        verdict: Hash,
    },
    /// Index of the tickets free for selection, by role (value: [`StateValue::Marker`]): a
    /// ticket is here from purchase until it is selected for a task.
    FreeTicket {
        /// Ticket role.
        role: Role,
        /// Ticket id.
        ticket: Hash,
    },
    /// Index of task deadlines by height (value: [`StateValue::Marker`]): the block at
    /// `height` selects, moves or expires `task` (one entry per task at a time).
    TaskDeadline {
        /// Height of the block that acts.
        height: u64,
        /// Task.
        task: TaskId,
    },
    /// What draws the verifier committee of the last applied block besides its hash (value:
    /// [`StateValue::CommitteeDraw`]): the committee is drawn on the state after that block,
    /// seeded by its hash, which its miner only knows once the block is mined
    /// ([`crate::committee_of`], design/006); its successor pays the members whose
    /// attestations it carries (design/011).
    BlockCommittee,
    /// All coins minted by the blocks so far, base units (value: [`StateValue::Count`]):
    /// block rewards less the verifier shares left unpaid (design/011), less the stakes burnt
    /// by attestation convictions (design/017).
    Minted,
    /// An attestation claim by the id of the challenged attestation (value:
    /// [`StateValue::Claim`]; design/017). Kept once decided, so an attestation is judged once.
    AttestationClaim(Hash),
    /// Index of claim actions by height (value: [`StateValue::Marker`]): the block at `height`
    /// draws the judges of `claim` (the block after the one that opened it) or closes it
    /// undecided (the judging deadline).
    ClaimDeadline {
        /// Height of the block that acts.
        height: u64,
        /// The claim.
        claim: Hash,
    },
}

/// A value of the state map.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum StateValue {
    /// An account.
    Account(Account),
    /// A ticket.
    Ticket(Ticket),
    /// A task (boxed: a task definition is far larger than the other values).
    Task(Box<TaskRecord>),
    /// Presence marker for index keys.
    Marker,
    /// A hash (message-history root, model hash, verdict hash).
    Hash(Hash),
    /// A counter.
    Count(u64),
    /// A list of addresses (a verifier committee).
    Addresses(Vec<Address>),
    /// The inputs of a block's committee draw besides its hash.
    CommitteeDraw(CommitteeDraw),
    /// An attestation claim (design/017).
    Claim(Box<AttestationClaim>),
}

/// The previous value of every key a block changed (`None` = the key did not exist).
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockUndo {
    /// Key and previous value, in key order.
    pub entries: Vec<(StateKey, Option<StateValue>)>,
}

/// The effect of a block: new values of the changed keys and the undo data to revert them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDiff {
    /// New value of every changed key (`None` = deleted).
    pub changes: BTreeMap<StateKey, Option<StateValue>>,
    /// Previous values of the same keys.
    pub undo: BlockUndo,
    /// State root after the block.
    pub state_root: Hash,
}

/// The whole ledger state, in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    entries: BTreeMap<StateKey, StateValue>,
    lthash: LtHash,
}

impl State {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a state from stored entries.
    pub fn from_entries(entries: impl IntoIterator<Item = (StateKey, StateValue)>) -> Self {
        let mut s = Self::new();
        for (k, v) in entries {
            s.set(k, Some(v));
        }
        s
    }

    /// The value at `key`.
    pub fn get(&self, key: &StateKey) -> Option<&StateValue> {
        self.entries.get(key)
    }

    /// The account at `addr` (default if absent).
    pub fn account(&self, addr: &Address) -> Account {
        match self.entries.get(&StateKey::Account(*addr)) {
            Some(StateValue::Account(a)) => a.clone(),
            _ => Account::default(),
        }
    }

    /// All entries in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&StateKey, &StateValue)> {
        self.entries.iter()
    }

    /// Entries whose key is in `range`.
    pub fn range<R: std::ops::RangeBounds<StateKey>>(
        &self,
        range: R,
    ) -> impl Iterator<Item = (&StateKey, &StateValue)> {
        self.entries.range(range)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The state root.
    pub fn root(&self) -> Hash {
        self.lthash.root()
    }

    /// The lattice hash behind [`State::root`].
    pub(crate) fn lthash(&self) -> &LtHash {
        &self.lthash
    }

    /// All money held in the state: balances + open tasks' escrows and client bonds + tickets'
    /// locked stakes.
    /// Only the block reward changes it (fees move from senders to the miner); `None` if the
    /// sum does not fit in `u128`, which no reachable state can do.
    pub fn total_value(&self) -> Option<u128> {
        self.entries.values().try_fold(0u128, |acc, v| {
            let held = match v {
                StateValue::Account(a) => a.balance,
                StateValue::Ticket(t) => t.stake,
                StateValue::Task(t) => t.escrow.checked_add(t.bond)?,
                StateValue::Claim(c) => c.bond,
                StateValue::Marker
                | StateValue::Hash(_)
                | StateValue::Count(_)
                | StateValue::Addresses(_)
                | StateValue::CommitteeDraw(_) => Amount::ZERO,
            };
            acc.checked_add(u128::from(held.units()))
        })
    }

    /// All coins the blocks minted so far ([`StateKey::Minted`]): `total_value` minus the
    /// genesis allocations.
    pub fn minted(&self) -> Amount {
        match self.get(&StateKey::Minted) {
            Some(StateValue::Count(units)) => Amount(*units),
            _ => Amount::ZERO,
        }
    }

    /// Recomputes the state root from scratch (for audits and tests; [`State::root`] is
    /// maintained incrementally).
    pub fn recompute_root(&self) -> Hash {
        let mut h = LtHash::default();
        for (k, v) in &self.entries {
            h.insert(k, v);
        }
        h.root()
    }

    fn set(&mut self, key: StateKey, value: Option<StateValue>) -> Option<StateValue> {
        let old = match value {
            Some(v) => {
                self.lthash.insert(&key, &v);
                self.entries.insert(key.clone(), v)
            }
            None => self.entries.remove(&key),
        };
        if let Some(o) = &old {
            self.lthash.remove(&key, o);
        }
        old
    }

    /// Applies a diff produced against this state.
    pub fn apply_diff(&mut self, diff: &StateDiff) {
        for (k, v) in &diff.changes {
            self.set(k.clone(), v.clone());
        }
    }

    /// Reverts a block with its undo data.
    pub fn revert(&mut self, undo: &BlockUndo) {
        for (k, v) in &undo.entries {
            self.set(k.clone(), v.clone());
        }
    }
}

/// A copy-on-write view over a [`State`]: the state transition writes here, and nothing
/// reaches the base state unless the whole block is valid.
#[derive(Debug)]
pub struct Overlay<'a> {
    base: &'a State,
    changes: BTreeMap<StateKey, Option<StateValue>>,
}

impl<'a> Overlay<'a> {
    /// A view with no changes.
    pub fn new(base: &'a State) -> Self {
        Self { base, changes: BTreeMap::new() }
    }

    /// The current value at `key`.
    pub fn get(&self, key: &StateKey) -> Option<StateValue> {
        match self.changes.get(key) {
            Some(v) => v.clone(),
            None => self.base.get(key).cloned(),
        }
    }

    /// Sets (or with `None` deletes) `key`.
    pub fn set(&mut self, key: StateKey, value: Option<StateValue>) {
        self.changes.insert(key, value);
    }

    /// The account at `addr` (default if absent).
    pub fn account(&self, addr: &Address) -> Account {
        match self.get(&StateKey::Account(*addr)) {
            Some(StateValue::Account(a)) => a,
            _ => Account::default(),
        }
    }

    /// Stores an account (an all-default account is deleted, so empty accounts cost nothing).
    pub fn set_account(&mut self, addr: Address, account: Account) {
        let value = (account != Account::default()).then_some(StateValue::Account(account));
        self.set(StateKey::Account(addr), value);
    }

    /// Adds to a balance.
    pub fn credit(&mut self, addr: &Address, amount: Amount) -> Result<(), ConsensusError> {
        let mut a = self.account(addr);
        a.balance = a.balance.checked_add(amount).ok_or(ConsensusError::BalanceOverflow(*addr))?;
        self.set_account(*addr, a);
        Ok(())
    }

    /// The ticket with this id.
    pub fn ticket(&self, id: &Hash) -> Option<Ticket> {
        match self.get(&StateKey::Ticket(*id)) {
            Some(StateValue::Ticket(t)) => Some(t),
            _ => None,
        }
    }

    /// The task with this id.
    pub fn task(&self, id: &TaskId) -> Option<TaskRecord> {
        match self.get(&StateKey::Task(*id)) {
            Some(StateValue::Task(t)) => Some(*t),
            _ => None,
        }
    }

    /// The hash stored at `key` (for [`StateValue::Hash`] entries).
    pub fn hash_at(&self, key: &StateKey) -> Option<Hash> {
        match self.get(key) {
            Some(StateValue::Hash(h)) => Some(h),
            _ => None,
        }
    }

    /// Takes from a balance.
    pub fn debit(&mut self, addr: &Address, amount: Amount) -> Result<(), ConsensusError> {
        let mut a = self.account(addr);
        a.balance = a.balance.checked_sub(amount).ok_or(ConsensusError::InsufficientBalance {
            account: *addr,
            balance: a.balance,
            needed: amount,
        })?;
        self.set_account(*addr, a);
        Ok(())
    }

    /// Keys in `from..to` present in the base state, with this overlay's changes applied.
    pub fn range_keys(&self, from: &StateKey, to: &StateKey) -> Vec<StateKey> {
        self.keys_in((Bound::Included(from.clone()), Bound::Excluded(to.clone())))
    }

    /// Keys in `from..=to`, with this overlay's changes applied.
    pub fn range_keys_inclusive(&self, from: &StateKey, to: &StateKey) -> Vec<StateKey> {
        self.keys_in((Bound::Included(from.clone()), Bound::Included(to.clone())))
    }

    fn keys_in(&self, range: (Bound<StateKey>, Bound<StateKey>)) -> Vec<StateKey> {
        let mut keys: std::collections::BTreeSet<StateKey> =
            self.base.range(range.clone()).map(|(k, _)| k.clone()).collect();
        for (k, v) in self.changes.range(range) {
            if v.is_some() {
                keys.insert(k.clone());
            } else {
                keys.remove(k);
            }
        }
        keys.into_iter().collect()
    }

    /// Finishes: the diff (with undo data and the new root), leaving the base untouched.
    pub fn into_diff(self) -> StateDiff {
        let mut lthash = self.base.lthash.clone();
        let mut undo = Vec::with_capacity(self.changes.len());
        let mut changes = BTreeMap::new();
        for (k, new) in self.changes {
            let old = self.base.get(&k).cloned();
            if old == new {
                continue;
            }
            if let Some(o) = &old {
                lthash.remove(&k, o);
            }
            if let Some(n) = &new {
                lthash.insert(&k, n);
            }
            undo.push((k.clone(), old));
            changes.insert(k, new);
        }
        StateDiff { changes, undo: BlockUndo { entries: undo }, state_root: lthash.root() }
    }
}
