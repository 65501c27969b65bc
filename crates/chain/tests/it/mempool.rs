//! Mempool rules: gaps, bounds, eviction, replacement, new tips and reorgs.

use pouw_chain::{
    test_utils::{devnet_key, test_spec, transfer, ChainHarness},
    AddOutcome, ImportOutcome, Mempool, MempoolConfig, MempoolError,
};
use pouw_consensus::{genesis_state, ConsensusError, State};
use pouw_primitives::{Keypair, Transaction};

fn tx(from: usize, nonce: u64, amount: u64, fee: u64) -> Transaction {
    transfer(&test_spec(), &devnet_key(from), nonce, devnet_key(15).public(), amount, fee)
}

fn pool(config: MempoolConfig) -> (Mempool, State) {
    (Mempool::new(test_spec(), config), genesis_state(&test_spec()).unwrap())
}

#[test]
fn gaps_are_queued_and_promoted() {
    let (mut p, s) = pool(MempoolConfig::default());
    assert_eq!(p.add(tx(0, 0, 1, 10), &s).unwrap(), AddOutcome::Pending);
    assert_eq!(p.add(tx(0, 2, 1, 10), &s).unwrap(), AddOutcome::Queued);
    assert_eq!(p.add(tx(0, 3, 1, 10), &s).unwrap(), AddOutcome::Queued);
    assert_eq!(p.sender_nonces(&devnet_key(0).public()), (vec![0], vec![2, 3]));
    assert_eq!(p.select(100, 1 << 20).len(), 1);
    assert_eq!(p.add(tx(0, 1, 1, 10), &s).unwrap(), AddOutcome::Pending);
    assert_eq!(p.sender_nonces(&devnet_key(0).public()), (vec![0, 1, 2, 3], vec![]));
    let body = p.select(100, 1 << 20);
    assert_eq!(body.iter().map(|t| t.body.nonce).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(p.pending_count(), 4);
    assert_eq!(p.queued_count(), 0);
}

#[test]
fn stateful_checks() {
    let (mut p, s) =
        pool(MempoolConfig { max_per_sender: 8, max_queued_per_sender: 2, ..Default::default() });
    // Wrong chain, bad signature, zero amount, self transfer.
    let mut spec = test_spec();
    spec.chain_id += 1;
    let other_chain = transfer(&spec, &devnet_key(0), 0, devnet_key(1).public(), 1, 1);
    assert!(matches!(
        p.add(other_chain, &s),
        Err(MempoolError::Invalid(ConsensusError::WrongChain { .. }))
    ));
    let mut forged = tx(0, 0, 1, 1);
    forged.body.fee.0 += 1;
    assert!(matches!(
        p.add(forged, &s),
        Err(MempoolError::Invalid(ConsensusError::BadSignature(_)))
    ));
    assert!(matches!(
        p.add(tx(0, 0, 0, 1), &s),
        Err(MempoolError::Invalid(ConsensusError::ZeroAmount(_)))
    ));
    let selfie = transfer(&test_spec(), &devnet_key(0), 0, devnet_key(0).public(), 1, 1);
    assert!(matches!(p.add(selfie, &s), Err(MempoolError::Invalid(ConsensusError::SelfTransfer))));
    // Balance: an unfunded sender, and a funded one overspending across nonces.
    let poor = Keypair::from_label("poor");
    let t = transfer(&test_spec(), &poor, 0, devnet_key(1).public(), 1, 1);
    assert!(matches!(p.add(t, &s), Err(MempoolError::InsufficientBalance { .. })));
    let balance = s.account(&devnet_key(1).public()).balance.0;
    p.add(tx(1, 0, balance / 2, 10), &s).unwrap();
    assert!(matches!(
        p.add(tx(1, 1, balance / 2, 10), &s),
        Err(MempoolError::InsufficientBalance { .. })
    ));
    p.add(tx(1, 1, balance / 4, 10), &s).unwrap();
    // Duplicates, queued limit, far nonces.
    assert!(matches!(p.add(tx(1, 1, balance / 4, 10), &s), Err(MempoolError::AlreadyKnown(_))));
    p.add(tx(2, 5, 1, 1), &s).unwrap();
    p.add(tx(2, 6, 1, 1), &s).unwrap();
    assert!(matches!(p.add(tx(2, 7, 1, 1), &s), Err(MempoolError::TooManyQueued(_))));
    assert!(matches!(p.add(tx(2, 8, 1, 1), &s), Err(MempoolError::NonceTooHigh { .. })));
}

#[test]
fn per_sender_bound() {
    let (mut p, s) = pool(MempoolConfig { max_per_sender: 3, ..Default::default() });
    for n in 0..3 {
        p.add(tx(0, n, 1, 1), &s).unwrap();
    }
    assert!(matches!(
        p.add(tx(0, 3, 1, 1), &s),
        Err(MempoolError::SenderFull(_)) | Err(MempoolError::NonceTooHigh { .. })
    ));
}

#[test]
fn replacement_needs_a_higher_fee() {
    let (mut p, s) = pool(MempoolConfig::default());
    let first = tx(0, 0, 1, 10);
    p.add(first.clone(), &s).unwrap();
    assert!(matches!(p.add(tx(0, 0, 2, 10), &s), Err(MempoolError::ReplacementUnderpriced { .. })));
    assert!(matches!(p.add(tx(0, 0, 2, 9), &s), Err(MempoolError::ReplacementUnderpriced { .. })));
    let better = tx(0, 0, 2, 11);
    assert_eq!(p.add(better.clone(), &s).unwrap(), AddOutcome::Replaced { old: first.hash() });
    assert!(!p.contains(&first.hash()));
    assert!(p.contains(&better.hash()));
    assert_eq!(p.len(), 1);
}

#[test]
fn full_pool_evicts_the_lowest_fee_rate_and_refuses_lower() {
    let (mut p, s) = pool(MempoolConfig { max_txs: 4, ..Default::default() });
    for (i, fee) in [(0, 50), (1, 20), (2, 30), (3, 40)] {
        p.add(tx(i, 0, 1, fee), &s).unwrap();
    }
    // Lower than everything: refused.
    assert_eq!(p.add(tx(4, 0, 1, 10), &s).unwrap_err(), MempoolError::PoolFull);
    // Higher than the lowest (20): evicts it.
    let low = tx(1, 0, 1, 20);
    p.add(tx(5, 0, 1, 25), &s).unwrap();
    assert!(!p.contains(&low.hash()));
    assert_eq!(p.len(), 4);
    // Selection is by fee rate.
    let fees: Vec<u64> = p.select(10, 1 << 20).iter().map(|t| t.body.fee.0).collect();
    assert_eq!(fees, vec![50, 40, 30, 25]);
    // Byte bound.
    let size = tx(0, 0, 1, 1).size();
    let (mut p, s) = pool(MempoolConfig { max_bytes: size * 2, ..Default::default() });
    p.add(tx(0, 0, 1, 5), &s).unwrap();
    p.add(tx(1, 0, 1, 6), &s).unwrap();
    p.add(tx(2, 0, 1, 7), &s).unwrap();
    assert_eq!(p.len(), 2);
    assert!(p.bytes() <= size * 2);
    assert_eq!(p.select(1, 1 << 20)[0].body.fee.0, 7);
}

#[test]
fn selection_respects_limits_and_nonce_order() {
    let (mut p, s) = pool(MempoolConfig::default());
    // Sender 0: low fee at nonce 0, high at nonce 1: nonce order wins within the sender.
    p.add(tx(0, 0, 1, 1), &s).unwrap();
    p.add(tx(0, 1, 1, 100), &s).unwrap();
    p.add(tx(1, 0, 1, 50), &s).unwrap();
    let body = p.select(10, 1 << 20);
    let order: Vec<(u64, u64)> = body.iter().map(|t| (t.body.fee.0, t.body.nonce)).collect();
    assert_eq!(order, vec![(50, 0), (1, 0), (100, 1)]);
    assert_eq!(p.select(2, 1 << 20).len(), 2);
    let one = tx(0, 0, 1, 1).size();
    assert_eq!(p.select(10, one).len(), 1);
}

#[test]
fn new_tip_and_reorg_update_the_pool() {
    let mut h = ChainHarness::new();
    let mut p = Mempool::new(test_spec(), MempoolConfig::default());
    let g = h.chain.tip();
    let (a0, a1, b0) = (tx(0, 0, 5, 10), tx(0, 1, 5, 10), tx(1, 0, 5, 10));
    for t in [&a0, &a1, &b0] {
        p.add(t.clone(), h.chain.state()).unwrap();
    }
    h.chain.take_tip_changes();
    // Block A1 includes a0 and b0, selected from the pool.
    let body = p.select(2, 1 << 20);
    assert_eq!(body.len(), 2);
    let blk_a = h.factory.build(&g, body);
    assert_eq!(h.import(blk_a).unwrap(), ImportOutcome::Extended);
    p.sync_with(&mut h.chain).unwrap();
    assert_eq!(p.len(), 1);
    let remaining: Vec<_> = p.select(10, 1 << 20);
    assert_eq!(remaining.len(), 1);
    // A competing branch from genesis that spends sender 0's nonce 0 differently.
    let other = tx(0, 0, 7, 3);
    let blk_b1 = h.factory.build(&g, vec![other]);
    let blk_b2 = h.factory.build(&blk_b1.hash(), vec![]);
    assert_eq!(h.import(blk_b1).unwrap(), ImportOutcome::SideChain);
    assert_eq!(h.import(blk_b2).unwrap(), ImportOutcome::Reorged { depth: 1 });
    p.sync_with(&mut h.chain).unwrap();
    // b0 came back from the reverted block; a0 is dead (nonce 0 used by `other`), and a1 is
    // now pending for sender 0 (nonce 1).
    assert!(p.contains(&b0.hash()));
    assert!(!p.contains(&a0.hash()));
    assert!(p.contains(&a1.hash()));
    assert_eq!(p.pending_count(), 2);
    // The selected body is a valid block on the new tip.
    let tip = h.chain.tip();
    let body = p.select(100, 1 << 20);
    let blk = h.factory.build(&tip, body);
    assert_eq!(h.import(blk).unwrap(), ImportOutcome::Extended);
    p.sync_with(&mut h.chain).unwrap();
    assert!(p.is_empty());
}

#[test]
fn new_tip_drops_unaffordable() {
    let mut h = ChainHarness::new();
    let mut p = Mempool::new(test_spec(), MempoolConfig::default());
    let g = h.chain.tip();
    let balance = h.chain.account(&devnet_key(2).public()).balance.0;
    let pooled = tx(2, 1, balance / 2, 10);
    p.add(tx(2, 0, 1, 10), h.chain.state()).unwrap();
    p.add(pooled, h.chain.state()).unwrap();
    // A block spends most of sender 2's balance with nonce 0 (a different tx).
    let big = tx(2, 0, balance - balance / 4, 10);
    let blk = h.factory.build(&g, vec![big]);
    h.import(blk).unwrap();
    p.sync_with(&mut h.chain).unwrap();
    assert!(p.is_empty(), "nonce 0 is used and nonce 1 is unaffordable now");
}

#[test]
fn changes_accumulate_between_syncs() {
    let mut h = ChainHarness::new();
    let mut p = Mempool::new(test_spec(), MempoolConfig::default());
    let g = h.chain.tip();
    let t = tx(0, 0, 5, 10);
    p.add(t.clone(), h.chain.state()).unwrap();
    // Included in A1, which a longer branch then replaces, all before the pool syncs.
    let a1 = h.factory.build(&g, vec![t.clone()]);
    h.import(a1).unwrap();
    let b = h.fork(&g, 2);
    h.import(b[0].clone()).unwrap();
    assert_eq!(h.import(b[1].clone()).unwrap(), ImportOutcome::Reorged { depth: 1 });
    p.sync_with(&mut h.chain).unwrap();
    assert!(p.contains(&t.hash()), "applied then reverted: the transaction is still pending");
    assert!(h.chain.take_tip_changes().is_empty());
}
