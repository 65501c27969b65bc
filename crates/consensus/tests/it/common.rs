//! Shared fixtures: a small chain spec, signed transactions, blocks for `apply_block`.

use pouw_consensus::{apply_block, genesis_state, ConsensusError, State, StateDiff};
use pouw_primitives::{
    Amount, Attestation, AttestationBody, Block, ChainSpec, CompactTarget, Hash, Header, Keypair,
    PublicKey, Signature, Timestamp, Transaction, TxBody, TxKind, COIN, HEADER_VERSION,
};

/// Devnet with short ticket lifetimes, so expiry happens within a test, and no minimum task
/// cost: the lifecycle tests pay for the tiny `valid_task` (4-8-3, batch 8, which earns 0
/// nonces); `lifecycle::a_task_below_the_minimum_task_cost_is_refused` tests the minimum.
/// No client bond, so the client's balances in the fee tests are the fee alone;
/// `lifecycle::bond` and `props::total_supply_is_conserved` set the devnet's bond.
pub(crate) fn spec() -> ChainSpec {
    let mut s = ChainSpec::devnet();
    s.min_task_nonces = 0;
    s.min_flops_per_nonce = 0;
    s.min_order_units = 0;
    s.client_bond_bps = 0;
    s.max_ticket_blocks = 8;
    s.min_ticket_stake = Amount(10 * COIN);
    s
}

pub(crate) fn key(i: usize) -> Keypair {
    ChainSpec::devnet_key(i)
}

pub(crate) fn addr(i: usize) -> PublicKey {
    key(i).public()
}

/// The miner of the test blocks (devnet account 15).
pub(crate) fn miner() -> PublicKey {
    addr(15)
}

pub(crate) fn tx(spec: &ChainSpec, k: &Keypair, nonce: u64, fee: u64, kind: TxKind) -> Transaction {
    TxBody { chain_id: spec.chain_id, sender: k.public(), nonce, fee: Amount(fee), kind }.sign(k)
}

/// A block at `height` for `apply_block` (header fields other than height/miner are fillers).
pub(crate) fn block(height: u64, txs: Vec<Transaction>) -> Block {
    let header = Header {
        version: HEADER_VERSION,
        height,
        prev_hash: Hash::ZERO,
        tx_root: Block::compute_tx_root(&txs),
        attestation_root: Block::compute_attestation_root(&[]),
        state_root: Hash::ZERO,
        timestamp: Timestamp(height * 5_000),
        target: CompactTarget(0x2000_ffff),
        miner: miner(),
        task_id: Hash::ZERO,
        msg_hash: Hash::ZERO,
        msg_history_root: Hash::ZERO,
        nonce: Hash::ZERO,
    };
    Block {
        header,
        signature: Signature::default(),
        proof: None,
        transactions: txs,
        attestations: vec![],
    }
}

/// [`block`] carrying `attestations` (of its parent, whose hash is [`Hash::ZERO`] here).
pub(crate) fn block_with(
    height: u64,
    txs: Vec<Transaction>,
    attestations: Vec<Attestation>,
) -> Block {
    let mut b = block(height, txs);
    b.header.attestation_root = Block::compute_attestation_root(&attestations);
    b.attestations = attestations;
    b
}

/// The devnet account index of `a`, if it is one.
pub(crate) fn index_of(a: &PublicKey) -> Option<usize> {
    (0..pouw_primitives::DEVNET_ACCOUNTS).find(|i| addr(*i) == *a)
}

/// The verifier committee of the last block applied to `state` (design/006), as the next
/// block draws it: seeded by that block's hash, which the test blocks' children name as
/// [`Hash::ZERO`] (their `prev_hash`).
pub(crate) fn committee(state: &State) -> Vec<PublicKey> {
    pouw_consensus::committee_of(state, &Hash::ZERO)
}

/// An attestation of the test blocks' parent (hash [`Hash::ZERO`]) at `height` by `verifier`.
pub(crate) fn attestation(
    spec: &ChainSpec,
    height: u64,
    verifier: &PublicKey,
    valid: bool,
) -> Attestation {
    let k = key(index_of(verifier).expect("a devnet account"));
    AttestationBody {
        chain_id: spec.chain_id,
        block: Hash::ZERO,
        height,
        verifier: *verifier,
        valid,
    }
    .sign(&k)
}

/// A ledger that applies one block per call.
pub(crate) struct Ledger {
    pub(crate) spec: ChainSpec,
    pub(crate) state: State,
    pub(crate) height: u64,
}

impl Ledger {
    pub(crate) fn new() -> Self {
        Self::with_spec(spec())
    }

    pub(crate) fn with_spec(spec: ChainSpec) -> Self {
        let state = genesis_state(&spec).unwrap();
        Self { spec, state, height: 0 }
    }

    pub(crate) fn nonce(&self, i: usize) -> u64 {
        self.state.account(&addr(i)).nonce
    }

    pub(crate) fn balance(&self, a: &PublicKey) -> Amount {
        self.state.account(a).balance
    }

    /// A transaction from devnet account `i` with its next nonce and fee 1.
    pub(crate) fn tx(&self, i: usize, kind: TxKind) -> Transaction {
        tx(&self.spec, &key(i), self.nonce(i), 1, kind)
    }

    /// Applies a block with `txs` at the next height; on error nothing changes.
    pub(crate) fn apply(&mut self, txs: Vec<Transaction>) -> Result<StateDiff, ConsensusError> {
        let b = block(self.height + 1, txs);
        let diff = apply_block(&self.state, &b, &self.spec)?;
        self.state.apply_diff(&diff);
        self.height += 1;
        Ok(diff)
    }

    /// Applies a one-transaction block, returning the transaction's own error.
    pub(crate) fn apply_one(&mut self, t: Transaction) -> Result<StateDiff, ConsensusError> {
        self.apply(vec![t]).map_err(unwrap_tx_error)
    }
}

/// The rule a transaction broke inside a block.
pub(crate) fn unwrap_tx_error(e: ConsensusError) -> ConsensusError {
    match e {
        ConsensusError::TxInBlock { source, .. } => *source,
        other => other,
    }
}
