//! The state transition: a pure function of (state, block, chain spec).

use crate::{
    state::{Overlay, StateDiff, Ticket},
    tasks, tickets, ConsensusError, State,
};
use pouw_primitives::{Amount, Block, ChainSpec, Hash, Header, Transaction, TxKind};

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

/// Applies a block's transactions, the coinbase (reward + fees) and the per-height
/// bookkeeping to `state`, returning the diff. `state` itself is never modified: on error
/// nothing changed. Header-level checks (PoW, target, timestamps, roots) are the caller's;
/// the returned diff carries the state root the header must commit to.
pub fn apply_block(
    state: &State,
    block: &Block,
    spec: &ChainSpec,
) -> Result<StateDiff, ConsensusError> {
    let ctx = BlockContext::new(spec, &block.header);
    tasks::check_block_task(state, block)?;
    let mut overlay = Overlay::new(state);
    tickets::expire_tickets(&mut overlay, ctx.height)?;
    tasks::process_deadlines(&mut overlay, &ctx)?;
    crate::pouw::mark_iteration_used(&mut overlay, block)?;
    let mut fees = Amount::ZERO;
    let mut seen = std::collections::BTreeSet::new();
    for (index, tx) in block.transactions.iter().enumerate() {
        let id = tx.hash();
        if !seen.insert(id) {
            return Err(ConsensusError::DuplicateTx(id));
        }
        apply_tx(&mut overlay, tx, &ctx).map_err(|e| ConsensusError::TxInBlock {
            index,
            id,
            source: Box::new(e),
        })?;
        fees = fees.checked_add(tx.body.fee).ok_or(ConsensusError::AmountOverflow("fees"))?;
    }
    let coinbase =
        spec.block_reward.checked_add(fees).ok_or(ConsensusError::AmountOverflow("coinbase"))?;
    overlay.credit(&ctx.miner, coinbase)?;
    Ok(overlay.into_diff())
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
/// [`apply_block`] does) or apply each transaction to a fresh overlay.
pub fn apply_tx(
    overlay: &mut Overlay<'_>,
    tx: &Transaction,
    ctx: &BlockContext<'_>,
) -> Result<(), ConsensusError> {
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
    match &tx.body.kind {
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
    }
}
