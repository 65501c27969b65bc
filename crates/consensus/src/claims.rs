//! False attestations are slashable (design/017).
//!
//! A verifier that attests `valid: true` for a block whose replay fails can be convicted on
//! chain: anyone holding the signed attestation opens a claim (ChallengeAttestation, with the
//! attested block's header), which locks a bond and keeps the verifier's free verifier tickets
//! from expiring; the next block draws the claim's judges among the other verifiers (seeded
//! by the opening block's hash, which nobody knew when the claim was signed); each judge
//! replays the block and votes (JudgeAttestation); a strict majority decides:
//!
//! - **guilty**: the verifier's free verifier tickets are confiscated, half (rounded down) to
//!   the claimant and the rest burnt (taken off the minted total), and the bond returned;
//! - **not guilty**: the bond goes to the verifier;
//! - no judge, or no majority within [`JUDGE_BLOCKS`]: dismissed, the bond returned.

use crate::{
    state::{AttestationClaim, ClaimStatus, Overlay, StateKey, StateValue},
    tasks::{select_weighted, Candidate},
    tickets, BlockContext, ConsensusError, State,
};
use pouw_primitives::{Address, Amount, Attestation, ChainSpec, Hash, Header, Role};
use std::collections::BTreeSet;

/// Judges drawn for one claim at most.
pub const CLAIM_JUDGES: u16 = 5;
/// Blocks the judges have to vote, from the block that draws them.
pub const JUDGE_BLOCKS: u64 = 20;
/// An attestation can be challenged this many blocks after the height of the block it attests
/// at most.
pub const CLAIM_WINDOW: u64 = 1_000;

type Result<T> = std::result::Result<T, ConsensusError>;

const LOWEST: Hash = Hash([0; 32]);
const HIGHEST: Hash = Hash([0xff; 32]);

/// The id of the claim on `att`: the attestation's id (one claim per attestation).
pub fn claim_id(att: &Attestation) -> Hash {
    att.body.id()
}

/// The claim `id` in `state`.
pub fn claim(state: &State, id: &Hash) -> Option<AttestationClaim> {
    match state.get(&StateKey::AttestationClaim(*id)) {
        Some(StateValue::Claim(c)) => Some((**c).clone()),
        _ => None,
    }
}

/// The stateless rules of a ChallengeAttestation from `sender`: this chain, `valid: true`, the
/// header is the attested block's (hash and height), a signature that verifies, and not the
/// verifier's own claim.
pub fn check_challenge(
    sender: &Address,
    att: &Attestation,
    header: &Header,
    spec: &ChainSpec,
) -> Result<()> {
    let b = &att.body;
    if b.chain_id != spec.chain_id {
        return Err(ConsensusError::BadClaim("attestation of another chain"));
    }
    if !b.valid {
        return Err(ConsensusError::BadClaim("attestation is not valid: true"));
    }
    if header.hash() != b.block || header.height != b.height {
        return Err(ConsensusError::BadClaim("header is not the attested block's"));
    }
    if b.verifier == *sender {
        return Err(ConsensusError::BadClaim("a verifier cannot challenge itself"));
    }
    if att.verify_signature().is_err() {
        return Err(ConsensusError::BadClaim("bad attestation signature"));
    }
    Ok(())
}

/// The verifier tickets of `owner` that are free (not bound to a task).
fn free_verifier_tickets(overlay: &Overlay<'_>, owner: &Address) -> Vec<Hash> {
    tickets::tickets_of(overlay, owner, Role::Verifier)
        .into_iter()
        .filter(|id| {
            overlay.get(&StateKey::FreeTicket { role: Role::Verifier, ticket: *id }).is_some()
        })
        .collect()
}

/// Moves a ticket's expiry to `height` if it expires earlier (ticket and index together).
fn keep_until(overlay: &mut Overlay<'_>, id: &Hash, height: u64) -> Result<()> {
    let mut t = overlay.ticket(id).ok_or(ConsensusError::UnknownTicket(*id))?;
    if t.expires_at >= height {
        return Ok(());
    }
    overlay.set(StateKey::TicketExpiry { height: t.expires_at, ticket: *id }, None);
    overlay.set(StateKey::TicketExpiry { height, ticket: *id }, Some(StateValue::Marker));
    t.expires_at = height;
    overlay.set(StateKey::Ticket(*id), Some(StateValue::Ticket(t)));
    Ok(())
}

/// Opens a claim (ChallengeAttestation applied by `sender`): checks the attestation (see
/// [`check_challenge`]), that it is not claimed yet, that the attested height is below this
/// block's and at most [`CLAIM_WINDOW`] blocks old, and that the verifier holds a free verifier
/// ticket; locks the bond (`min_ticket_stake`) and keeps the verifier's free verifier tickets
/// live until the judging ends. The judges are drawn at the next block.
pub(crate) fn open_claim(
    overlay: &mut Overlay<'_>,
    sender: Address,
    att: &Attestation,
    header: &Header,
    ctx: &BlockContext<'_>,
) -> Result<()> {
    check_challenge(&sender, att, header, ctx.spec)?;
    let id = claim_id(att);
    if overlay.get(&StateKey::AttestationClaim(id)).is_some() {
        return Err(ConsensusError::BadClaim("attestation already challenged"));
    }
    let height = att.body.height;
    if height >= ctx.height || ctx.height.saturating_sub(height) > CLAIM_WINDOW {
        return Err(ConsensusError::BadClaim("attested height outside the claim window"));
    }
    let verifier = att.body.verifier;
    let frozen = free_verifier_tickets(overlay, &verifier);
    if frozen.is_empty() {
        return Err(ConsensusError::BadClaim("the verifier holds no free verifier ticket"));
    }
    let draw_at = ctx.height.checked_add(1).ok_or(ConsensusError::BadClaim("height"))?;
    let deadline = draw_at.checked_add(JUDGE_BLOCKS).ok_or(ConsensusError::BadClaim("height"))?;
    for t in &frozen {
        keep_until(overlay, t, deadline.saturating_add(1))?;
    }
    let bond = ctx.spec.min_ticket_stake;
    overlay.debit(&sender, bond)?;
    let record = AttestationClaim {
        verifier,
        block: att.body.block,
        block_height: height,
        claimant: sender,
        bond,
        tickets: frozen,
        opened_at: ctx.height,
        judges: Vec::new(),
        votes: Vec::new(),
        status: ClaimStatus::Opened,
    };
    overlay.set(StateKey::AttestationClaim(id), Some(StateValue::Claim(Box::new(record))));
    overlay.set(StateKey::ClaimDeadline { height: draw_at, claim: id }, Some(StateValue::Marker));
    Ok(())
}

fn record(overlay: &Overlay<'_>, id: &Hash) -> Result<AttestationClaim> {
    match overlay.get(&StateKey::AttestationClaim(*id)) {
        Some(StateValue::Claim(c)) => Ok(*c),
        _ => Err(ConsensusError::BadJudgement("no such claim")),
    }
}

fn store(overlay: &mut Overlay<'_>, id: Hash, c: AttestationClaim) {
    overlay.set(StateKey::AttestationClaim(id), Some(StateValue::Claim(Box::new(c))));
}

/// The judges of `claim`: up to [`CLAIM_JUDGES`] owners of free verifier tickets live at
/// `height`, stake-weighted ([`select_weighted`], the claim id as the task) with `seed`, never
/// the verifier or the claimant.
fn draw_judges(
    overlay: &Overlay<'_>,
    id: &Hash,
    c: &AttestationClaim,
    seed: &Hash,
    height: u64,
) -> Vec<Address> {
    let pool: Vec<Candidate> = tickets::free_tickets(overlay, Role::Verifier)
        .into_iter()
        .filter_map(|t| {
            let ticket = overlay.ticket(&t)?;
            (ticket.expires_at > height).then_some(Candidate {
                ticket: t,
                owner: ticket.owner,
                stake: ticket.stake,
            })
        })
        .collect();
    let excluded = BTreeSet::from([c.verifier, c.claimant]);
    let owners: BTreeSet<Address> = pool
        .iter()
        .filter(|x| !x.stake.is_zero() && !excluded.contains(&x.owner))
        .map(|x| x.owner)
        .collect();
    let want = u16::try_from(owners.len()).unwrap_or(u16::MAX).min(CLAIM_JUDGES);
    select_weighted(seed, id, Role::Verifier, &pool, want, &excluded)
        .unwrap_or_default()
        .into_iter()
        .map(|x| x.owner)
        .collect()
}

/// At the start of each block: draws the judges of the claims opened by the parent (seeded by
/// the parent's hash, `ctx.seed`) and dismisses the claims whose judging deadline is this
/// block.
pub(crate) fn process_claims(overlay: &mut Overlay<'_>, ctx: &BlockContext<'_>) -> Result<()> {
    let keys = overlay.range_keys_inclusive(
        &StateKey::ClaimDeadline { height: ctx.height, claim: LOWEST },
        &StateKey::ClaimDeadline { height: ctx.height, claim: HIGHEST },
    );
    for key in keys {
        let StateKey::ClaimDeadline { claim: id, .. } = key else { continue };
        overlay.set(key, None);
        let mut c = record(overlay, &id)?;
        match c.status {
            ClaimStatus::Opened => {
                c.judges = draw_judges(overlay, &id, &c, &ctx.seed, ctx.height);
                if c.judges.is_empty() {
                    dismiss(overlay, id, c)?;
                } else {
                    c.status = ClaimStatus::Judging;
                    let deadline = ctx.height.saturating_add(JUDGE_BLOCKS);
                    overlay.set(
                        StateKey::ClaimDeadline { height: deadline, claim: id },
                        Some(StateValue::Marker),
                    );
                    store(overlay, id, c);
                }
            }
            ClaimStatus::Judging => dismiss(overlay, id, c)?,
            _ => {}
        }
    }
    Ok(())
}

/// Closes `c` undecided: the bond back to the claimant.
fn dismiss(overlay: &mut Overlay<'_>, id: Hash, mut c: AttestationClaim) -> Result<()> {
    overlay.credit(&c.claimant, c.bond)?;
    c.bond = Amount::ZERO;
    c.status = ClaimStatus::Dismissed;
    store(overlay, id, c);
    Ok(())
}

/// A judge's vote (JudgeAttestation applied by `sender`): the claim is being judged, the sender
/// is one of its judges and votes once. A strict majority of the judges decides at once.
/// Returns the coins burnt (a conviction's unpaid half), which the caller takes off the minted
/// total.
pub(crate) fn judge(
    overlay: &mut Overlay<'_>,
    sender: Address,
    id: Hash,
    guilty: bool,
) -> Result<Amount> {
    let mut c = record(overlay, &id)?;
    if c.status != ClaimStatus::Judging {
        return Err(ConsensusError::BadJudgement("the claim is not being judged"));
    }
    if !c.judges.contains(&sender) {
        return Err(ConsensusError::BadJudgement("not a judge of the claim"));
    }
    if c.votes.iter().any(|(j, _)| *j == sender) {
        return Err(ConsensusError::BadJudgement("voted already"));
    }
    c.votes.push((sender, guilty));
    let majority = crate::attestation_quorum(c.judges.len()).unwrap_or(usize::MAX);
    let for_guilty = c.votes.iter().filter(|(_, g)| *g).count();
    let against = c.votes.len().saturating_sub(for_guilty);
    // The judging deadline indexed when the judges were drawn (at `opened_at + 1`).
    let deadline = StateKey::ClaimDeadline {
        height: c.opened_at.saturating_add(1).saturating_add(JUDGE_BLOCKS),
        claim: id,
    };
    if for_guilty >= majority {
        overlay.set(deadline, None);
        return convict(overlay, id, c);
    }
    if against >= majority {
        overlay.set(deadline, None);
        overlay.credit(&c.verifier, c.bond)?;
        c.bond = Amount::ZERO;
        c.status = ClaimStatus::Acquitted;
    }
    store(overlay, id, c);
    Ok(Amount::ZERO)
}

/// Confiscates the verifier's free verifier tickets: half (rounded down) to the claimant, the
/// rest burnt (returned); the bond back to the claimant.
fn convict(overlay: &mut Overlay<'_>, id: Hash, mut c: AttestationClaim) -> Result<Amount> {
    let mut taken = Amount::ZERO;
    for t in free_verifier_tickets(overlay, &c.verifier) {
        let ticket = tickets::confiscate_ticket(overlay, &t)?;
        taken = taken
            .checked_add(ticket.stake)
            .ok_or(ConsensusError::AmountOverflow("confiscated stake"))?;
    }
    let reward = taken.checked_div(2).unwrap_or(Amount::ZERO);
    let burnt = taken.checked_sub(reward).ok_or(ConsensusError::AmountOverflow("burnt"))?;
    let to_claimant =
        reward.checked_add(c.bond).ok_or(ConsensusError::AmountOverflow("claim payout"))?;
    overlay.credit(&c.claimant, to_claimant)?;
    c.bond = Amount::ZERO;
    c.status = ClaimStatus::Convicted;
    store(overlay, id, c);
    Ok(burnt)
}
