//! The state transition: a pure function of (state, block, chain spec).

use crate::{
    state::{Overlay, StateDiff},
    ConsensusError, State,
};
use pouw_primitives::{Amount, Block, ChainSpec, Hash, Transaction, TxKind};

/// Context of the block being applied.
#[derive(Debug, Clone, Copy)]
pub struct BlockContext<'a> {
    /// The chain spec.
    pub spec: &'a ChainSpec,
    /// Height of the block.
    pub height: u64,
    /// Hash of the block.
    pub block_hash: Hash,
    /// The miner (paid reward and fees).
    pub miner: pouw_primitives::PublicKey,
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
    let ctx = BlockContext {
        spec,
        height: block.header.height,
        block_hash: block.hash(),
        miner: block.header.miner,
    };
    let mut overlay = Overlay::new(state);
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

/// Checks a transaction's stateless rules: chain id and signature.
pub fn check_tx_stateless(tx: &Transaction, spec: &ChainSpec) -> Result<(), ConsensusError> {
    if tx.body.chain_id != spec.chain_id {
        return Err(ConsensusError::WrongChain { expected: spec.chain_id, got: tx.body.chain_id });
    }
    tx.verify_signature()?;
    Ok(())
}

/// Applies one transaction to the overlay: signature, nonce, fee, then the kind's effect.
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
        other => Err(ConsensusError::InvalidTx {
            kind: other.name(),
            reason: "not yet supported by this node".into(),
        }),
    }
}
