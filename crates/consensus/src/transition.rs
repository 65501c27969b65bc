//! The state transition: a pure function of (state, block, chain spec).

use crate::{
    state::{CommitteeDraw, Overlay, StateDiff, StateKey, StateValue, Ticket},
    tasks, tickets, ConsensusError, State,
};
use pouw_primitives::{
    Address, Amount, Attestation, Block, ChainSpec, Hash, Header, Transaction, TxKind,
};
use std::collections::BTreeSet;

/// Context of the block being applied.
#[derive(Debug, Clone, Copy)]
pub struct BlockContext<'a> {
    /// The chain spec.
    pub spec: &'a ChainSpec,
    /// Height of the block.
    pub height: u64,
    /// Hash of the block.
    pub block_hash: Hash,
    /// The randomness this block may write into state: its parent's hash (`prev_hash`).
    ///
    /// Not the block's own hash: that commits to `state_root`, so state cannot contain it, and
    /// the miner commits to the zero-nonce header (state root included) k iterations before the
    /// nonce is known, so the state may not depend on the nonce or `msg_hash` either. The
    /// parent hash is fixed before this block is built and cost proof-of-work to produce.
    pub seed: Hash,
    /// The miner (paid reward and fees).
    pub miner: pouw_primitives::PublicKey,
}

impl<'a> BlockContext<'a> {
    /// The context of the block with this header.
    pub fn new(spec: &'a ChainSpec, header: &Header) -> Self {
        Self {
            spec,
            height: header.height,
            block_hash: header.hash(),
            seed: header.prev_hash,
            miner: header.miner,
        }
    }
}

/// Applies a block's transactions, the coinbase (reward + fees, less the verifier share, see
/// [`pay_verifiers`]), the payable attestations of the parent it carries (design/011) and the
/// per-height bookkeeping to `state`, returning the diff. `state` itself is never modified: on
/// error nothing changed. Header-level checks (PoW, target, timestamps, roots) are the
/// caller's; the returned diff carries the state root the header must commit to.
pub fn apply_block(
    state: &State,
    block: &Block,
    spec: &ChainSpec,
) -> Result<StateDiff, ConsensusError> {
    let ctx = BlockContext::new(spec, &block.header);
    tasks::check_block_task(state, block)?;
    // The parent's committee: drawn on this state (the one after the parent) with the parent's
    // hash, which its miner could not know before it was mined (design/006).
    let parent_committee = tasks::committee_of(state, &block.header.prev_hash);
    let attested = check_attestations(&parent_committee, block, spec)?;
    let mut overlay = Overlay::new(state);
    // This block's committee cannot be drawn yet (its hash covers the state root this
    // execution yields): record the draw's other inputs for whoever holds the hash.
    overlay.set(
        StateKey::BlockCommittee,
        Some(StateValue::CommitteeDraw(CommitteeDraw {
            task: block.header.task_id,
            miner: block.header.miner,
            height: block.header.height,
        })),
    );
    tickets::expire_tickets(&mut overlay, ctx.height)?;
    tasks::process_deadlines(&mut overlay, &ctx)?;
    crate::claims::process_claims(&mut overlay, &ctx)?;
    crate::pouw::mark_iteration_used(&mut overlay, block)?;
    let mut fees = Amount::ZERO;
    let mut burnt = Amount::ZERO;
    let mut seen = std::collections::BTreeSet::new();
    for (index, tx) in block.transactions.iter().enumerate() {
        let id = tx.hash();
        if !seen.insert(id) {
            return Err(ConsensusError::DuplicateTx(id));
        }
        let burns = apply_tx_burning(&mut overlay, tx, &ctx)
            .map_err(|e| ConsensusError::TxInBlock { index, id, source: Box::new(e) })?;
        burnt = burnt.checked_add(burns).ok_or(ConsensusError::AmountOverflow("burnt"))?;
        fees = fees.checked_add(tx.body.fee).ok_or(ConsensusError::AmountOverflow("fees"))?;
    }
    let minted = pay_verifiers(&mut overlay, &ctx, parent_committee.len(), &attested, fees)?;
    // Stakes burnt by attestation convictions (design/017) leave the supply.
    let total = state
        .minted()
        .checked_add(minted)
        .and_then(|t| t.checked_sub(burnt))
        .ok_or(ConsensusError::AmountOverflow("minted total"))?;
    overlay.set(StateKey::Minted, Some(StateValue::Count(total.units())));
    Ok(overlay.into_diff())
}

/// Why `att` is not a payable attestation of the block `parent_hash` at `parent_height` by a
/// member of `committee` (design/011), or `None` if it is: this chain, that block, `valid`,
/// a committee member, a signature that verifies.
fn attestation_fault(
    att: &Attestation,
    committee: &[Address],
    parent_hash: &Hash,
    parent_height: u64,
    spec: &ChainSpec,
) -> Option<&'static str> {
    let b = &att.body;
    if b.chain_id != spec.chain_id {
        return Some("another chain");
    }
    if b.block != *parent_hash || b.height != parent_height {
        return Some("not of the parent block");
    }
    if !b.valid {
        return Some("not valid: true");
    }
    if !committee.contains(&b.verifier) {
        return Some("verifier not in the parent's committee");
    }
    if att.verify_signature().is_err() {
        return Some("bad signature");
    }
    None
}

/// Checks the attestations `block` carries against its parent's `committee` (design/011,
/// rule 1): each a payable attestation of the parent (see [`attestation_fault`]), sorted by
/// strictly increasing verifier (so one per verifier, at most the committee's size). Returns
/// the attesting verifiers.
fn check_attestations(
    committee: &[Address],
    block: &Block,
    spec: &ChainSpec,
) -> Result<Vec<Address>, ConsensusError> {
    let parent_height = block.header.height.saturating_sub(1);
    let mut verifiers: Vec<Address> = Vec::with_capacity(block.attestations.len());
    for (index, att) in block.attestations.iter().enumerate() {
        if verifiers.last().is_some_and(|last| *last >= att.body.verifier) {
            return Err(ConsensusError::BadAttestation {
                index,
                reason: "not sorted by verifier, or a verifier twice",
            });
        }
        if let Some(reason) =
            attestation_fault(att, committee, &block.header.prev_hash, parent_height, spec)
        {
            return Err(ConsensusError::BadAttestation { index, reason });
        }
        verifiers.push(att.body.verifier);
    }
    Ok(verifiers)
}

/// The attestations of `parent` (the tip of `state`) among `candidates` that a block on it may
/// carry, in the order it must carry them: the payable ones (see [`attestation_fault`]), one
/// per verifier, sorted by verifier. What a miner puts in its template.
pub fn payable_attestations(
    state: &State,
    spec: &ChainSpec,
    parent: &Header,
    candidates: &[Attestation],
) -> Vec<Attestation> {
    let parent_hash = parent.hash();
    let committee = tasks::committee_of(state, &parent_hash);
    let mut seen = BTreeSet::new();
    let mut out: Vec<Attestation> = candidates
        .iter()
        .filter(|a| attestation_fault(a, &committee, &parent_hash, parent.height, spec).is_none())
        .filter(|a| seen.insert(a.body.verifier))
        .cloned()
        .collect();
    out.sort_by_key(|a| a.body.verifier);
    out
}

/// The coinbase (design/011, rule 2). `verifier_share_bps` of the block reward is split over
/// the parent's committee of `committee_size` (integer division, the remainder to the miner);
/// each of the `attested` verifiers is credited its part, the parts of the others are not
/// minted. The miner gets the reward less the share, the remainder and `fees`. Returns the
/// coins minted (the reward less the unpaid parts).
fn pay_verifiers(
    overlay: &mut Overlay<'_>,
    ctx: &BlockContext<'_>,
    committee_size: usize,
    attested: &[Address],
    fees: Amount,
) -> Result<Amount, ConsensusError> {
    let reward = ctx.spec.block_reward;
    let size =
        u64::try_from(committee_size).map_err(|_| ConsensusError::AmountOverflow("committee"))?;
    let share = if size == 0 {
        Amount::ZERO
    } else {
        reward
            .mul_div(u64::from(ctx.spec.verifier_share_bps), 10_000)
            .ok_or(ConsensusError::AmountOverflow("verifier share"))?
    };
    let part = share.checked_div(size).unwrap_or(Amount::ZERO);
    let paid_count = u64::try_from(attested.len())
        .map_err(|_| ConsensusError::AmountOverflow("attestations"))?;
    let parts = part.checked_mul(size).ok_or(ConsensusError::AmountOverflow("verifier share"))?;
    let remainder =
        share.checked_sub(parts).ok_or(ConsensusError::AmountOverflow("verifier share"))?;
    let paid =
        part.checked_mul(paid_count).ok_or(ConsensusError::AmountOverflow("verifier share"))?;
    for verifier in attested {
        overlay.credit(verifier, part)?;
    }
    let coinbase = reward
        .checked_sub(share)
        .and_then(|r| r.checked_add(remainder))
        .and_then(|r| r.checked_add(fees))
        .ok_or(ConsensusError::AmountOverflow("coinbase"))?;
    overlay.credit(&ctx.miner, coinbase)?;
    reward
        .checked_sub(share)
        .and_then(|r| r.checked_add(remainder))
        .and_then(|r| r.checked_add(paid))
        .ok_or(ConsensusError::AmountOverflow("minted"))
}

/// Checks a transaction's stateless rules: chain id, the kind's own rules (PayForTask:
/// positive fee, a valid definition and the minimum task cost, see
/// [`tasks::check_pay_for_task`]; BuyTicket: stake
/// at least `spec.min_ticket_stake`; Transfer: positive amount), then the signature.
pub fn check_tx_stateless(tx: &Transaction, spec: &ChainSpec) -> Result<(), ConsensusError> {
    if tx.body.chain_id != spec.chain_id {
        return Err(ConsensusError::WrongChain { expected: spec.chain_id, got: tx.body.chain_id });
    }
    match &tx.body.kind {
        TxKind::PayForTask { task, fee } => tasks::check_pay_for_task(task, *fee, spec)?,
        TxKind::BuyTicket { stake, .. } => check_ticket_stake(*stake, spec)?,
        TxKind::Transfer { amount, .. } if amount.is_zero() => {
            return Err(ConsensusError::ZeroAmount("transfer amount"))
        }
        TxKind::ChallengeAttestation { attestation, header } => {
            crate::claims::check_challenge(&tx.body.sender, attestation, header, spec)?
        }
        _ => {}
    }
    tx.verify_signature()?;
    Ok(())
}

fn check_ticket_stake(stake: Amount, spec: &ChainSpec) -> Result<(), ConsensusError> {
    if stake.is_zero() || stake < spec.min_ticket_stake {
        return Err(ConsensusError::StakeTooLow { stake, min: spec.min_ticket_stake });
    }
    Ok(())
}

/// Applies one transaction to the overlay: signature, nonce, fee, then the kind's effect.
///
/// On error the overlay may hold part of the transaction's writes: discard it (as
/// [`apply_block`] does) or apply each transaction to a fresh overlay. Coins a conviction
/// burns (design/017) are not counted here: see [`apply_block`].
pub fn apply_tx(
    overlay: &mut Overlay<'_>,
    tx: &Transaction,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
    apply_tx_burning(overlay, tx, ctx).map(|_| ())
}

/// [`apply_tx`], returning the coins it burnt (an attestation conviction's unpaid half).
fn apply_tx_burning(
    overlay: &mut Overlay<'_>,
    tx: &Transaction,
    ctx: &BlockContext<'_>,
) -> Result<Amount, ConsensusError> {
    check_tx_stateless(tx, ctx.spec)?;
    let sender = tx.body.sender;
    let mut account = overlay.account(&sender);
    if tx.body.nonce != account.nonce {
        return Err(ConsensusError::WrongNonce {
            account: sender,
            expected: account.nonce,
            got: tx.body.nonce,
        });
    }
    account.nonce = account.nonce.checked_add(1).ok_or(ConsensusError::NonceOverflow(sender))?;
    overlay.set_account(sender, account);
    overlay.debit(&sender, tx.body.fee)?;
    let applied: Result<(), ConsensusError> = match &tx.body.kind {
        TxKind::Transfer { to, amount } => {
            if amount.is_zero() {
                return Err(ConsensusError::ZeroAmount("transfer amount"));
            }
            if *to == sender {
                return Err(ConsensusError::SelfTransfer);
            }
            overlay.debit(&sender, *amount)?;
            overlay.credit(to, *amount)?;
            Ok(())
        }
        TxKind::PayForTask { task, fee } => {
            tasks::pay_for_task(overlay, tx.hash(), sender, task, *fee, ctx)
        }
        TxKind::BuyTicket { role, stake, preferences, expires_at } => {
            check_ticket_stake(*stake, ctx.spec)?;
            let max = ctx.height.saturating_add(ctx.spec.max_ticket_blocks);
            if *expires_at <= ctx.height || *expires_at > max {
                return Err(ConsensusError::BadTicketExpiry {
                    expires_at: *expires_at,
                    height: ctx.height,
                    max,
                });
            }
            overlay.debit(&sender, *stake)?;
            let ticket = Ticket {
                owner: sender,
                role: *role,
                stake: *stake,
                preferences: preferences.clone(),
                created_at: ctx.height,
                expires_at: *expires_at,
            };
            tickets::insert_ticket(overlay, tx.hash(), ticket);
            Ok(())
        }
        TxKind::MessageHistory { task_id, slot, root } => {
            tasks::message_history(overlay, sender, *task_id, *slot, *root)
        }
        TxKind::SubmitModel { task_id, model_hash } => {
            tasks::submit_model(overlay, sender, *task_id, *model_hash, ctx)
        }
        TxKind::ChargeForTask { task_id, ranking, payouts, confiscations } => {
            let verdict = tasks::Verdict { task_id: *task_id, ranking, payouts, confiscations };
            tasks::charge_for_task(overlay, sender, verdict, ctx)
        }
        TxKind::AccuseMiner { task_id, miner, evidence } => {
            tasks::accuse_miner(overlay, sender, *task_id, *miner, evidence, ctx)
        }
        TxKind::ChallengeAttestation { attestation, header } => {
            crate::claims::open_claim(overlay, sender, attestation, header, ctx)
        }
        TxKind::JudgeAttestation { claim, guilty } => {
            return crate::claims::judge(overlay, sender, *claim, *guilty);
        }
    };
    applied.map(|()| Amount::ZERO)
}
