//! The state root of a block template at any iteration, for the miner.
//!
//! A miner builds the template of its next block once per iteration: the state root covers the
//! `(task, miner, iteration)` marker of the proof (`pouw::mark_iteration_used`), so it differs
//! from one iteration to the next even when nothing else does. Executing the whole block again
//! each time verifies every pooled transaction's and attestation's signature again, which costs
//! an honest miner more CPU than its training (design/010: a grinder that tries more headers per
//! template would then beat it on attempts per CPU-second). [`TemplateRoot`] executes the
//! template once and then gives the root at another iteration by swapping the marker's entry in
//! the lattice hash: two entry hashes instead of a block execution.

use crate::{
    apply_block,
    pouw::used_iteration_key,
    state::{LtHash, State, StateKey, StateValue},
    ConsensusError,
};
use pouw_primitives::{Block, ChainSpec, Hash};

/// A block template executed once; its state root at any iteration of the same miner and task.
#[derive(Clone, Debug)]
pub struct TemplateRoot {
    /// The lattice hash after the block, with the marker of `marker`.
    lthash: LtHash,
    marker: StateKey,
    root: Hash,
}

impl TemplateRoot {
    /// Executes `block` (a template whose proof carries the identity of one iteration) on
    /// `state`: the same checks and result as [`apply_block`].
    pub fn new(state: &State, block: &Block, spec: &ChainSpec) -> Result<Self, ConsensusError> {
        let diff = apply_block(state, block, spec)?;
        let marker = block
            .proof
            .as_ref()
            .map(used_iteration_key)
            .ok_or(ConsensusError::Pouw(crate::pouw::PouwError::MissingProof))?;
        let mut lthash = state.lthash().clone();
        for (key, new) in &diff.changes {
            if let Some(old) = state.get(key) {
                lthash.remove(key, old);
            }
            if let Some(new) = new {
                lthash.insert(key, new);
            }
        }
        debug_assert_eq!(lthash.root(), diff.state_root);
        Ok(Self { lthash, marker, root: diff.state_root })
    }

    /// The state root of the template executed with `marker` instead (another iteration of the
    /// same task and miner). `state` must be the state the template was executed on. `None` if
    /// that iteration has already won (its marker exists: the block would be refused).
    pub fn root_with(&self, state: &State, marker: &StateKey) -> Option<Hash> {
        if *marker == self.marker {
            return Some(self.root);
        }
        if state.get(marker).is_some() {
            return None;
        }
        let mut lthash = self.lthash.clone();
        lthash.remove(&self.marker, &StateValue::Marker);
        lthash.insert(marker, &StateValue::Marker);
        Some(lthash.root())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{genesis_block, genesis_state};
    use pouw_primitives::{
        Header, IterationBody, IterationMessage, PouwProof, Signature, Timestamp, HEADER_VERSION,
    };

    fn template(spec: &ChainSpec, parent: &Block, iteration: u64) -> Block {
        let key = ChainSpec::devnet_key(1);
        let task = Hash::digest(b"task");
        let id = IterationBody::identity(task, key.public(), iteration);
        let msg = IterationMessage { body: id, signature: Signature::default() };
        Block {
            header: Header {
                version: HEADER_VERSION,
                height: 1,
                prev_hash: parent.hash(),
                tx_root: Block::compute_tx_root(&[]),
                attestation_root: Block::compute_attestation_root(&[]),
                state_root: Hash::ZERO,
                timestamp: Timestamp(spec.genesis.timestamp.0 + 1),
                target: spec.initial_target,
                miner: key.public(),
                task_id: task,
                msg_hash: Hash::ZERO,
                msg_history_root: Hash::ZERO,
                nonce: Hash::ZERO,
            },
            signature: Signature::default(),
            proof: Some(PouwProof { winning: msg.clone(), committing: msg }),
            transactions: vec![],
            attestations: vec![],
        }
    }

    #[test]
    fn the_root_at_another_iteration_is_the_executed_root() {
        let spec = ChainSpec::devnet();
        let genesis = genesis_block(&spec).unwrap();
        let state = genesis_state(&spec).unwrap();
        let t = TemplateRoot::new(&state, &template(&spec, &genesis, 7), &spec).unwrap();
        for iteration in [7, 8, 1_000, 0] {
            let block = template(&spec, &genesis, iteration);
            let executed = apply_block(&state, &block, &spec).unwrap().state_root;
            let marker = used_iteration_key(block.proof.as_ref().unwrap());
            assert_eq!(t.root_with(&state, &marker), Some(executed), "iteration {iteration}");
        }
    }
}
