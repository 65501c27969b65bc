//! The values the state holds besides the map's own keys: accounts, staking tickets, task
//! records with their selection, settlement and penalties, attestation claims and verifier
//! committee draws.

use super::*;

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
