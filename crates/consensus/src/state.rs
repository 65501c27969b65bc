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

/// An account.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Account {
    /// Spendable balance.
    pub balance: Amount,
    /// Number of transactions sent (the next valid nonce).
    pub nonce: u64,
}

/// A staking ticket (BUY_TICKET): the stake is locked until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Ticket {
    /// Owner (paid back at expiry).
    pub owner: Address,
    /// Role offered.
    pub role: Role,
    /// Stake locked.
    pub stake: Amount,
    /// What the worker offers.
    pub preferences: TicketPreferences,
    /// Height of the block that bought it.
    pub created_at: u64,
    /// Height at which the stake is returned.
    pub expires_at: u64,
}

/// One seat of a task's committee: the selected worker and the ticket that won the seat.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Seat {
    /// The worker (the ticket's owner; the address its transactions come from).
    pub worker: Address,
    /// The ticket selected (bound to this task until it ends).
    pub ticket: Hash,
}

/// The workers selected for a task, per role, in draw order.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Participants {
    /// Selected miners.
    pub miners: Vec<Seat>,
    /// Selected supervisors.
    pub supervisors: Vec<Seat>,
    /// Selected evaluators.
    pub evaluators: Vec<Seat>,
    /// Selected verifiers (attest the task's blocks; design/006).
    pub verifiers: Vec<Seat>,
}

impl Participants {
    /// The seats of one role.
    pub fn of(&self, role: Role) -> &[Seat] {
        match role {
            Role::Miner => &self.miners,
            Role::Supervisor => &self.supervisors,
            Role::Evaluator => &self.evaluators,
            Role::Verifier => &self.verifiers,
        }
    }

    /// Every seat with its role.
    pub fn all(&self) -> impl Iterator<Item = (Role, &Seat)> {
        self.miners
            .iter()
            .map(|s| (Role::Miner, s))
            .chain(self.supervisors.iter().map(|s| (Role::Supervisor, s)))
            .chain(self.evaluators.iter().map(|s| (Role::Evaluator, s)))
            .chain(self.verifiers.iter().map(|s| (Role::Verifier, s)))
    }

    /// The seat `worker` holds in this task, if any (a worker holds at most one).
    pub fn seat_of(&self, worker: &Address) -> Option<(Role, &Seat)> {
        self.all().find(|(_, s)| s.worker == *worker)
    }
}

/// Why a task was refused at selection.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub enum Refusal {
    /// Fewer live matching tickets (of distinct owners) than the task wants for a role.
    NotEnoughWorkers {
        /// The role that could not be filled.
        role: Role,
        /// Workers wanted.
        wanted: u16,
        /// Distinct eligible workers found.
        available: u32,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotEnoughWorkers { role, wanted, available } => write!(
                f,
                "wanted {wanted} {role:?} workers, only {available} eligible tickets were live"
            ),
        }
    }
}

/// What a completed (or expired) task paid, for queries.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Settlement {
    /// Every credit made from the pot (miners by rank, supervisors, evaluators; then each
    /// late evaluator paid its held share), in order.
    pub payouts: Vec<Payout>,
    /// The seats whose stakes were confiscated into the miners' pot.
    pub confiscated: Vec<Seat>,
    /// Total confiscated stake.
    pub confiscated_stake: Amount,
    /// What went back to the client (unpaid quotas, rounding, the whole fee on expiry, the
    /// stakes of the penalised committee seats; later, the held evaluators' shares that a
    /// late vote for another verdict forfeited or that were unclaimed at the finalisation
    /// deadline).
    pub refund: Amount,
    /// Committee members outvoted by their own committee (design/007): not paid, stake
    /// confiscated into the client's refund.
    pub penalties: Vec<Penalty>,
    /// Each evaluator's part of the evaluators' quota: the quota divided equally among the
    /// selected evaluators that the executed verdict neither confiscated nor penalised
    /// (design/005). Zero for a task that did not complete.
    pub evaluator_share: Amount,
    /// The evaluators among those whose vote had not reached the chain when the verdict
    /// executed and whose share is still held in the task's escrow: a late vote before the
    /// finalisation deadline takes its share (paid if it is the executed verdict, refunded to
    /// the client otherwise); the shares still held at the deadline go back to the client.
    pub held: Vec<Address>,
    /// The client's bond returned to it (with the verdict, the refusal or at expiry).
    pub bond_returned: Amount,
    /// The client's bond confiscated because the test set was withheld (design/014): paid
    /// in equal parts to the miners that submitted a model, with the miners' share of the fee.
    pub bond_confiscated: Amount,
}

/// A committee seat penalised when a verdict executed: the worker is not paid and the stake of
/// its seat is confiscated (design/007).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Penalty {
    /// The seat (worker and the ticket whose stake was confiscated).
    pub seat: Seat,
    /// Its role in the task.
    pub role: Role,
    /// The stake confiscated.
    pub stake: Amount,
    /// Why.
    pub reason: PenaltyReason,
}

/// Why a committee seat was penalised.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub enum PenaltyReason {
    /// A supervisor committed a message-history root for a slot where a strict majority of
    /// the selected supervisors committed another root.
    OutvotedHistory {
        /// The first such slot.
        slot: u32,
        /// The root it committed.
        committed: Hash,
        /// The majority's root.
        majority: Hash,
    },
    /// An evaluator voted for another verdict than the one executed.
    DissentingVote {
        /// The [`crate::verdict_hash`] it voted for.
        voted: Hash,
        /// The executed verdict.
        executed: Hash,
    },
}

impl std::fmt::Display for PenaltyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutvotedHistory { slot, committed, majority } => write!(
                f,
                "committed root {} for history slot {slot}, the supervisors' majority committed {}",
                committed.short(),
                majority.short()
            ),
            Self::DissentingVote { voted, executed } => write!(
                f,
                "voted for verdict {}, the evaluators' majority executed {}",
                voted.short(),
                executed.short()
            ),
        }
    }
}

/// A supervisor's accusation of a miner on chain (an AccuseMiner transaction).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct MinerAccusation {
    /// The accusing supervisor.
    pub supervisor: Address,
    /// The accused miner.
    pub miner: Address,
    /// Id of the iteration message its screening flagged.
    pub evidence: Hash,
    /// Height of the block that recorded it.
    pub at: u64,
}

/// A miner convicted on chain by a strict majority of the task's supervisors (design/009).
/// Its batches, every one its walk held, are handed over to `heirs`, which train them after
/// their own walks (`pouw::TaskSchedule`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Conviction {
    /// The convicted miner.
    pub miner: Address,
    /// Height of the block that convicted it.
    pub at: u64,
    /// The miners that take over its batches, in selection order: the selected miners then
    /// neither convicted nor done (a miner that submitted its model is done).
    pub heirs: Vec<Address>,
    /// The iteration at which it signed two different messages, when that evidence convicted
    /// it (design/013): supervisors outvoted on that iteration's history slot are not
    /// penalised.
    pub equivocation: Option<u64>,
}

/// A registered task, its escrowed fee, its committee and its phase.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TaskRecord {
    /// The client who paid.
    pub client: Address,
    /// The definition.
    pub definition: TaskDefinition,
    /// The fee the client paid (for queries; the money is in `escrow`).
    pub fee: Amount,
    /// Fee still held in escrow for the task's workers (after completion: the evaluators'
    /// shares held until their late votes or the finalisation deadline).
    pub escrow: Amount,
    /// The client's bond still locked (design/014): `client_bond_bps` of the fee, taken at
    /// the PayForTask, returned with the verdict, the refusal or at expiry, and confiscated
    /// to the miners that submitted a model if the test set was withheld; zero once settled.
    pub bond: Amount,
    /// Height `h` of the block holding the PayForTask transaction.
    pub created_at: u64,
    /// Hash of the *parent* of block `h` ([`crate::BlockContext::seed`] of block `h`).
    pub created_in: Hash,
    /// The selection and split seed: the hash of block `h`, known when block `h + 1` is
    /// applied (its `prev_hash`); [`Hash::ZERO`] until then.
    pub seed: Hash,
    /// Height at which training ends: `h + 1 + deadlines.training_blocks`.
    pub training_deadline: u64,
    /// Height at which an undecided task expires: `training_deadline +
    /// deadlines.evaluation_blocks`.
    pub finalisation_deadline: u64,
    /// The selected workers (empty until selection, and for refused tasks).
    pub participants: Participants,
    /// Miners that sent SubmitModel, in submission order.
    pub models: Vec<Address>,
    /// Supervisors that committed at least one message-history root.
    pub history_committers: Vec<Address>,
    /// Accusations of miners by supervisors, in the order recorded.
    pub accusations: Vec<MinerAccusation>,
    /// Miners convicted, in the order convicted.
    pub convictions: Vec<Conviction>,
    /// Phase.
    pub status: TaskStatus,
    /// What was paid, once the task completed or expired.
    pub settlement: Option<Settlement>,
}

impl TaskRecord {
    /// Whether `miner` was convicted on chain for this task (design/009).
    pub fn is_convicted(&self, miner: &Address) -> bool {
        self.convictions.iter().any(|c| c.miner == *miner)
    }
}

/// Lifecycle of a task in state (design/005).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub enum TaskStatus {
    /// Paid, waiting for the selection at block `created_at + 1`.
    Registered,
    /// Workers selected; miners train and submit models, supervisors commit histories.
    Training,
    /// Training over (deadline passed or every miner submitted); evaluators vote.
    Finalising {
        /// Height of the block that ended training.
        since: u64,
    },
    /// A verdict reached a majority of the evaluators and was paid out (the shares of the
    /// evaluators that had not voted are held until the finalisation deadline).
    Completed {
        /// Height of the block that executed the verdict.
        at: u64,
        /// Hash of the executed verdict ([`crate::verdict_hash`]).
        verdict: Hash,
    },
    /// The finalisation deadline passed without a majority: fee refunded, stakes returned.
    Expired {
        /// Height of the expiry.
        at: u64,
    },
    /// Selection failed: the fee was refunded in full.
    Refused {
        /// Height of the selection attempt.
        at: u64,
        /// Why.
        reason: Refusal,
    },
}

impl TaskStatus {
    /// Short name of the phase.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Training => "training",
            Self::Finalising { .. } => "finalising",
            Self::Completed { .. } => "completed",
            Self::Expired { .. } => "expired",
            Self::Refused { .. } => "refused",
        }
    }

    /// True once the task's outcome is decided: nothing more can happen to it, except the
    /// late votes a Completed task takes until its finalisation deadline (design/005).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed { .. } | Self::Expired { .. } | Self::Refused { .. })
    }
}

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

/// Where an attestation claim stands (design/017).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// Opened; the judges are drawn at the next block.
    Opened,
    /// Judges drawn; votes until the deadline.
    Judging,
    /// A strict majority of the judges found the attestation false: stakes confiscated.
    Convicted,
    /// A strict majority of the judges found the attested block valid: the bond went to the
    /// verifier.
    Acquitted,
    /// No judge, or no majority by the deadline: the bond returned to the claimant.
    Dismissed,
}

/// A claim that a verifier's `valid: true` attestation is false (design/017).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct AttestationClaim {
    /// The challenged verifier.
    pub verifier: Address,
    /// The attested block and its height.
    pub block: Hash,
    /// Height of the attested block.
    pub block_height: u64,
    /// Who opened the claim (paid half the confiscated stakes on a conviction).
    pub claimant: Address,
    /// The claimant's bond, held here.
    pub bond: Amount,
    /// The verifier's free verifier tickets when the claim opened, kept live (their expiry
    /// moved past the judging deadline); a conviction confiscates every free verifier ticket
    /// the verifier holds then.
    pub tickets: Vec<Hash>,
    /// Height of the block that opened the claim.
    pub opened_at: u64,
    /// The judges (drawn at `opened_at + 1`).
    pub judges: Vec<Address>,
    /// Votes so far: judge, guilty.
    pub votes: Vec<(Address, bool)>,
    /// Where the claim stands.
    pub status: ClaimStatus,
}

/// What draws a block's verifier committee besides the block's own hash (design/006).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommitteeDraw {
    /// The block's task (a client task's selected verifiers are its committee).
    pub task: TaskId,
    /// The block's miner (never on its own committee).
    pub miner: Address,
    /// The block's height (the tickets drawn must outlive it).
    pub height: u64,
}

/// Number of 16-bit lanes in the lattice hash.
const LANES: usize = 1024;

/// The incremental lattice hash behind the state root.
#[derive(Clone, PartialEq, Eq)]
pub struct LtHash(Box<[u16; LANES]>);

impl std::fmt::Debug for LtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LtHash({})", self.root().short())
    }
}

impl Default for LtHash {
    fn default() -> Self {
        Self(Box::new([0; LANES]))
    }
}

impl LtHash {
    fn entry_lanes(key: &StateKey, value: &StateValue) -> [u16; LANES] {
        let mut h = blake3::Hasher::new();
        h.update(b"pouw/state-entry\0");
        let k = codec::encode(key);
        let len = u32::try_from(k.len()).unwrap_or(u32::MAX);
        h.update(&len.to_le_bytes());
        h.update(&k);
        h.update(&codec::encode(value));
        let mut bytes = [0u8; LANES * 2];
        h.finalize_xof().fill(&mut bytes);
        let mut lanes = [0u16; LANES];
        for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            if let [a, b] = pair {
                *lane = u16::from_le_bytes([*a, *b]);
            }
        }
        lanes
    }

    /// Adds an entry.
    pub fn insert(&mut self, key: &StateKey, value: &StateValue) {
        let e = Self::entry_lanes(key, value);
        for (l, x) in self.0.iter_mut().zip(e.iter()) {
            *l = l.wrapping_add(*x);
        }
    }

    /// Removes an entry previously added.
    pub fn remove(&mut self, key: &StateKey, value: &StateValue) {
        let e = Self::entry_lanes(key, value);
        for (l, x) in self.0.iter_mut().zip(e.iter()) {
            *l = l.wrapping_sub(*x);
        }
    }

    /// The 32-byte state root.
    pub fn root(&self) -> Hash {
        let mut bytes = Vec::with_capacity(LANES * 2);
        for l in self.0.iter() {
            bytes.extend_from_slice(&l.to_le_bytes());
        }
        Hash::tagged("pouw/state-root", &bytes)
    }
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
