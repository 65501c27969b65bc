//! The genesis block and state, derived from the chain spec alone.

use crate::{state::Overlay, ConsensusError, State};
use pouw_primitives::{Block, ChainSpec, Hash, Header, PublicKey, Signature, HEADER_VERSION};

/// The genesis state: the spec's allocations.
pub fn genesis_state(spec: &ChainSpec) -> Result<State, ConsensusError> {
    let base = State::new();
    let mut overlay = Overlay::new(&base);
    for a in &spec.genesis.allocations {
        overlay.credit(&a.address, a.balance)?;
    }
    let diff = overlay.into_diff();
    let mut state = State::new();
    state.apply_diff(&diff);
    Ok(state)
}

/// The genesis block (height 0, no parent, no transactions, no proof).
pub fn genesis_block(spec: &ChainSpec) -> Result<Block, ConsensusError> {
    let state = genesis_state(spec)?;
    let header = Header {
        version: HEADER_VERSION,
        height: 0,
        prev_hash: Hash::ZERO,
        tx_root: Block::compute_tx_root(&[]),
        attestation_root: Block::compute_attestation_root(&[]),
        state_root: state.root(),
        timestamp: spec.genesis.timestamp,
        target: spec.initial_target,
        miner: PublicKey::default(),
        task_id: Hash::ZERO,
        msg_hash: Hash::ZERO,
        msg_history_root: Hash::ZERO,
        nonce: Hash::tagged("pouw/genesis", spec.name.as_bytes()),
    };
    Ok(Block {
        header,
        signature: Signature::default(),
        proof: None,
        transactions: vec![],
        attestations: vec![],
    })
}
