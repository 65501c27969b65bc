//! One test per transaction rule.

use crate::common::*;
use pouw_consensus::{
    apply_tx, genesis_state, BlockContext, ConsensusError as E, Overlay, StateKey, TaskStatus,
};
use pouw_primitives::{
    test_utils::valid_task, Allocation, Amount, Role, TicketPreferences, TxKind, COIN,
};

fn transfer(to: usize, amount: u64) -> TxKind {
    TxKind::Transfer { to: addr(to), amount: Amount(amount) }
}

fn ticket(role: Role, stake: u64, expires_at: u64) -> TxKind {
    TxKind::BuyTicket {
        role,
        stake: Amount(stake),
        preferences: TicketPreferences::default(),
        expires_at,
    }
}

#[test]
fn valid_transfer_moves_money_and_pays_fee() {
    let mut l = Ledger::new();
    let (b0, b1, bm) = (l.balance(&addr(0)), l.balance(&addr(1)), l.balance(&miner()));
    l.apply_one(l.tx(0, transfer(1, 500))).unwrap();
    assert_eq!(l.balance(&addr(0)), Amount(b0.0 - 501));
    assert_eq!(l.balance(&addr(1)), Amount(b1.0 + 500));
    assert_eq!(l.balance(&miner()), Amount(bm.0 + l.spec.block_reward.0 + 1));
    assert_eq!(l.nonce(0), 1);
}

#[test]
fn bad_signature() {
    let mut l = Ledger::new();
    let mut t = l.tx(0, transfer(1, 5));
    t.signature.0[3] ^= 1;
    assert!(matches!(l.apply_one(t), Err(E::BadSignature(_))));
    // Signed by someone else than the sender.
    let mut t = l.tx(0, transfer(1, 5));
    t.signature = t.body.clone().sign(&key(1)).signature;
    assert!(matches!(l.apply_one(t), Err(E::BadSignature(_))));
}

#[test]
fn wrong_chain_id() {
    let mut l = Ledger::new();
    let mut spec = l.spec.clone();
    spec.chain_id += 1;
    let t = tx(&spec, &key(0), 0, 1, transfer(1, 5));
    assert!(matches!(l.apply_one(t), Err(E::WrongChain { .. })));
}

#[test]
fn wrong_nonce() {
    let mut l = Ledger::new();
    let t = tx(&l.spec, &key(0), 1, 1, transfer(1, 5));
    assert!(matches!(l.apply_one(t), Err(E::WrongNonce { expected: 0, got: 1, .. })));
    l.apply_one(l.tx(0, transfer(1, 5))).unwrap();
    let replay = tx(&l.spec, &key(0), 0, 1, transfer(1, 5));
    assert!(matches!(l.apply_one(replay), Err(E::WrongNonce { expected: 1, got: 0, .. })));
}

#[test]
fn insufficient_balance_including_fee() {
    let mut l = Ledger::new();
    let poor = pouw_primitives::Keypair::from_label("poor");
    l.apply_one(l.tx(0, TxKind::Transfer { to: poor.public(), amount: Amount(100) })).unwrap();
    // 100 covers the amount but not amount + fee.
    let t = tx(&l.spec, &poor, 0, 1, transfer(1, 100));
    assert!(matches!(l.apply_one(t), Err(E::InsufficientBalance { .. })));
    // The fee alone is too much.
    let t = tx(&l.spec, &poor, 0, 101, transfer(1, 1));
    assert!(matches!(l.apply_one(t), Err(E::InsufficientBalance { .. })));
    let t = tx(&l.spec, &poor, 0, 1, transfer(1, 99));
    l.apply_one(t).unwrap();
    assert_eq!(l.balance(&poor.public()), Amount::ZERO);
}

#[test]
fn balance_overflow() {
    let mut spec = spec();
    spec.genesis.allocations = vec![
        Allocation { address: addr(0), balance: Amount(1_000 * COIN) },
        Allocation { address: addr(1), balance: Amount(u64::MAX - 10) },
    ];
    let mut l = Ledger::with_spec(spec);
    let t = l.tx(0, transfer(1, 20));
    assert_eq!(l.apply_one(t), Err(E::BalanceOverflow(addr(1))));
}

#[test]
fn zero_and_self_transfer() {
    let mut l = Ledger::new();
    assert_eq!(l.apply_one(l.tx(0, transfer(1, 0))), Err(E::ZeroAmount("transfer amount")));
    assert_eq!(l.apply_one(l.tx(0, transfer(0, 5))), Err(E::SelfTransfer));
}

#[test]
fn duplicate_tx_in_block() {
    let mut l = Ledger::new();
    let t = l.tx(0, transfer(1, 5));
    assert_eq!(l.apply(vec![t.clone(), t.clone()]), Err(E::DuplicateTx(t.hash())));
}

#[test]
fn invalid_task_and_zero_fee() {
    let mut l = Ledger::new();
    let mut task = valid_task(1);
    task.model.classes = 7;
    let t = l.tx(0, TxKind::PayForTask { task, fee: Amount(COIN) });
    assert!(matches!(l.apply_one(t), Err(E::InvalidTask(_))));
    let t = l.tx(0, TxKind::PayForTask { task: valid_task(1), fee: Amount::ZERO });
    assert_eq!(l.apply_one(t), Err(E::ZeroAmount("task fee")));
    let t = l.tx(0, TxKind::PayForTask { task: valid_task(1), fee: Amount(u64::MAX / 2) });
    assert!(matches!(l.apply_one(t), Err(E::InsufficientBalance { .. })));
}

#[test]
fn pay_for_task_escrows_the_fee() {
    let mut l = Ledger::new();
    let before = l.balance(&addr(0));
    let t = l.tx(0, TxKind::PayForTask { task: valid_task(1), fee: Amount(7 * COIN) });
    let id = t.hash();
    let parent_seed = pouw_primitives::Hash::ZERO; // test blocks have a zero prev_hash
    l.apply_one(t).unwrap();
    let rec = match l.state.get(&StateKey::Task(id)) {
        Some(pouw_consensus::StateValue::Task(r)) => r.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(rec.escrow, Amount(7 * COIN));
    assert_eq!(rec.client, addr(0));
    assert_eq!(rec.created_at, 1);
    assert_eq!(rec.created_in, parent_seed);
    assert_eq!(rec.status, TaskStatus::Registered);
    assert_eq!(rec.fee, Amount(7 * COIN));
    assert_eq!(l.balance(&addr(0)), Amount(before.0 - 7 * COIN - 1));
}

#[test]
fn duplicate_task_rejected() {
    // A task id is its transaction's hash, so a duplicate needs the same transaction twice,
    // which the nonce rule already stops; the task rule is checked on its own here.
    let l = Ledger::new();
    let spec = l.spec.clone();
    let state = genesis_state(&spec).unwrap();
    let b = block(1, vec![]);
    let ctx = BlockContext::new(&spec, &b.header);
    let t = l.tx(0, TxKind::PayForTask { task: valid_task(1), fee: Amount(COIN) });
    let mut o = Overlay::new(&state);
    apply_tx(&mut o, &t, &ctx).unwrap();
    let mut acct = o.account(&addr(0));
    acct.nonce = 0;
    o.set_account(addr(0), acct);
    assert_eq!(apply_tx(&mut o, &t, &ctx), Err(E::DuplicateTask(t.hash())));
}

#[test]
fn stake_too_low_and_bad_expiry() {
    let mut l = Ledger::new();
    let min = l.spec.min_ticket_stake.0;
    let t = l.tx(0, ticket(Role::Miner, min - 1, 3));
    assert!(matches!(l.apply_one(t), Err(E::StakeTooLow { .. })));
    // The block is at height 1: expiry must be in (1, 1 + 8].
    for bad in [0, 1, 10, u64::MAX] {
        let t = l.tx(0, ticket(Role::Miner, min, bad));
        assert!(matches!(l.apply_one(t), Err(E::BadTicketExpiry { .. })), "{bad}");
    }
    for good in [2, 9] {
        let t = l.tx(0, ticket(Role::Miner, min, good));
        l.apply_one(t).unwrap();
    }
}

#[test]
fn ticket_returned_exactly_at_expiry() {
    let mut l = Ledger::new();
    l.apply(vec![]).unwrap(); // block 1
    let stake = 20 * COIN;
    let before = l.balance(&addr(1));
    let t = l.tx(1, ticket(Role::Supervisor, stake, 4));
    let id = t.hash();
    l.apply_one(t).unwrap(); // block 2
    assert_eq!(l.balance(&addr(1)), Amount(before.0 - stake - 1));
    let free = StateKey::FreeTicket { role: Role::Supervisor, ticket: id };
    assert!(l.state.get(&free).is_some());
    l.apply(vec![]).unwrap(); // block 3: still locked
    assert!(l.state.get(&StateKey::Ticket(id)).is_some());
    l.apply(vec![]).unwrap(); // block 4 = expiry: released at the start of the block
    assert!(l.state.get(&StateKey::Ticket(id)).is_none());
    assert!(l.state.get(&StateKey::TicketExpiry { height: 4, ticket: id }).is_none());
    assert!(l.state.get(&free).is_none());
    assert_eq!(l.balance(&addr(1)), Amount(before.0 - 1)); // fee paid, stake back
}

#[test]
fn release_ticket_early_returns_the_stake() {
    let mut l = Ledger::new();
    let t = l.tx(1, ticket(Role::Miner, 20 * COIN, 5));
    let id = t.hash();
    l.apply_one(t).unwrap();
    let before = l.balance(&addr(1));
    let mut o = Overlay::new(&l.state);
    let released = pouw_consensus::release_ticket(&mut o, &id).unwrap();
    assert_eq!(released.stake, Amount(20 * COIN));
    assert_eq!(o.account(&addr(1)).balance, Amount(before.0 + 20 * COIN));
    assert!(pouw_consensus::tickets_of(&o, &addr(1), Role::Miner).is_empty());
    assert_eq!(pouw_consensus::release_ticket(&mut o, &id), Err(E::UnknownTicket(id)));
}
