//! Block verifier committees: who attests a block (design/006) and the quorum.

use super::*;

/// The verifier committee of the block with `header` (design/006), drawn on `state`, the
/// state **after** that block: the selected verifiers of the client task it trains, if that
/// task selected any; otherwise (filler tasks, tasks with `workers.verifiers = 0`) a draw of
/// up to [`BLOCK_VERIFIERS`] owners of free verifier tickets bought before the block and live
/// after it, stake-weighted like the
/// task selection ([`select_weighted`]) with the block's own hash as the seed and its task as
/// the task, never the block's own miner. Empty when no verifier ticket is live.
///
/// The seed is the block's hash, which covers its nonce: its miner learns its committee only
/// once the block is mined, and can only choose another by mining another block (design/017,
/// "The residual grinding bound"). The state after the block cannot hold its committee (the
/// block's hash covers its state root), so the state records the draw's other inputs
/// ([`StateKey::BlockCommittee`]) and [`committee_of`] draws it from there.
pub fn block_verifiers(state: &State, header: &Header) -> Vec<Address> {
    let draw = CommitteeDraw { task: header.task_id, miner: header.miner, height: header.height };
    verifiers_in(&Overlay::new(state), &draw, &header.hash())
}

/// The committee of the block `block_hash`, on `state`, the state after it (its own state, or
/// its child's parent state): drawn from the inputs that block recorded
/// ([`StateKey::BlockCommittee`]) with `block_hash` as the seed. Empty if `state` records no
/// draw. What a node computes once it imported a block, and what the next block pays.
pub fn committee_of(state: &State, block_hash: &Hash) -> Vec<Address> {
    let overlay = Overlay::new(state);
    match overlay.get(&StateKey::BlockCommittee) {
        Some(StateValue::CommitteeDraw(draw)) => verifiers_in(&overlay, &draw, block_hash),
        _ => Vec::new(),
    }
}

/// [`committee_of`] on the state after a block not yet stored: its `parent` state and the
/// `diff` its execution gave. What a light node computes before it imports the block.
pub fn committee_after(parent: &State, diff: &crate::StateDiff, block_hash: &Hash) -> Vec<Address> {
    let mut overlay = Overlay::new(parent);
    for (key, value) in &diff.changes {
        overlay.set(key.clone(), value.clone());
    }
    match overlay.get(&StateKey::BlockCommittee) {
        Some(StateValue::CommitteeDraw(draw)) => verifiers_in(&overlay, &draw, block_hash),
        _ => Vec::new(),
    }
}

/// The committee draw itself (see [`block_verifiers`]).
pub(crate) fn verifiers_in(
    overlay: &Overlay<'_>,
    draw: &CommitteeDraw,
    seed: &Hash,
) -> Vec<Address> {
    if let Some(rec) = overlay.task(&draw.task) {
        if !rec.participants.verifiers.is_empty() {
            return rec.participants.verifiers.iter().map(|s| s.worker).collect();
        }
    }
    let pool: Vec<Candidate> = tickets::free_tickets(overlay, Role::Verifier)
        .into_iter()
        .filter_map(|id| {
            let t = overlay.ticket(&id)?;
            // Bought before the block (not by its own transactions) and outliving it.
            (t.created_at < draw.height && t.expires_at > draw.height).then_some(Candidate {
                ticket: id,
                owner: t.owner,
                stake: t.stake,
            })
        })
        .collect();
    let excluded = BTreeSet::from([draw.miner]);
    let owners: BTreeSet<Address> = pool
        .iter()
        .filter(|c| !c.stake.is_zero() && !excluded.contains(&c.owner))
        .map(|c| c.owner)
        .collect();
    let want = u16::try_from(owners.len()).unwrap_or(u16::MAX).min(BLOCK_VERIFIERS);
    select_weighted(seed, &draw.task, Role::Verifier, &pool, want, &excluded)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.owner)
        .collect()
}

/// Attestations a block needs from its `verifiers` (of [`block_verifiers`]) to be accepted
/// without replay by a light node: a strict majority, `n / 2 + 1`. `None` when there are no
/// verifiers (the block must be replayed).
pub fn attestation_quorum(verifiers: usize) -> Option<usize> {
    (verifiers > 0).then(|| (verifiers / 2).saturating_add(1))
}
