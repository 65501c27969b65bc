//! The task lifecycle (design/005): selection, split, phases and deadlines, authorisation,
//! payouts, refunds and conservation of money, through `apply_block`.

use crate::common::{addr, key, miner, spec, tx, unwrap_tx_error};
use pouw_consensus::{
    apply_block, attestation_quorum, block_verifiers, check_block_task, check_tx_stateless,
    check_workers_available, evaluator_quota, expected_payouts, genesis_state, history_root,
    miners_share, rank_payouts, select_weighted, split_segments, supervisor_quota, task_record,
    task_split, task_split_of, task_view, verdict_hash, Candidate, ConsensusError as E,
    PenaltyReason, Refusal, State, StateDiff, StateKey, TaskRecord, TaskStatus, MAX_HISTORY_SLOTS,
};
use pouw_primitives::{
    codec, test_utils::valid_task, Activation, Address, Amount, Block, ChainSpec, CompactTarget,
    Hash, Header, IterationBody, IterationMessage, LayerDef, MinerEvidence, Payout, Role,
    TaskDefinition, TicketPreferences, Timestamp, Transaction, TxKind, COIN, HEADER_VERSION,
};
use std::collections::{BTreeMap, BTreeSet};

/// A chain of test blocks with real `prev_hash` links (so the selection seed is the hash of the
/// PayForTask block) and tickets that may live long enough for a task.
struct Chain {
    spec: ChainSpec,
    state: State,
    height: u64,
    tip: Hash,
    hashes: Vec<Hash>,
    genesis_total: u128,
}

impl Chain {
    fn new() -> Self {
        let mut spec = spec();
        spec.max_ticket_blocks = 1_000;
        let state = genesis_state(&spec).unwrap();
        let genesis_total = state.total_value().unwrap();
        Self {
            spec,
            state,
            height: 0,
            tip: Hash::digest(b"genesis"),
            hashes: vec![],
            genesis_total,
        }
    }

    fn block(&self, txs: Vec<Transaction>) -> Block {
        let header = Header {
            version: HEADER_VERSION,
            height: self.height + 1,
            prev_hash: self.tip,
            tx_root: Block::compute_tx_root(&txs),
            attestation_root: Block::compute_attestation_root(&[]),
            state_root: Hash::ZERO,
            timestamp: Timestamp((self.height + 1) * 5_000),
            target: CompactTarget(0x2000_ffff),
            miner: miner(),
            task_id: Hash::ZERO,
            msg_hash: Hash::ZERO,
            msg_history_root: Hash::ZERO,
            nonce: Hash::ZERO,
        };
        Block {
            header,
            signature: Default::default(),
            proof: None,
            transactions: txs,
            attestations: vec![],
        }
    }

    fn apply(&mut self, txs: Vec<Transaction>) -> Result<StateDiff, E> {
        let b = self.block(txs);
        let diff = apply_block(&self.state, &b, &self.spec).map_err(unwrap_tx_error)?;
        self.state.apply_diff(&diff);
        self.height += 1;
        self.tip = b.header.hash();
        self.hashes.push(self.tip);
        // Conservation after every block: only block rewards add money, less the verifier
        // shares no attestation claimed (design/011; these blocks carry none).
        let reward = u128::from(self.spec.block_reward.0) * u128::from(self.height as u32);
        let share = reward * u128::from(self.spec.verifier_share_bps) / 10_000;
        let minted = u128::from(self.state.minted().0);
        assert!(minted <= reward && minted + share >= reward, "minted {minted} of {reward}");
        assert_eq!(self.state.total_value().unwrap(), self.genesis_total + minted);
        assert_eq!(self.state.root(), self.state.recompute_root());
        Ok(diff)
    }

    fn tx(&self, i: usize, kind: TxKind) -> Transaction {
        tx(&self.spec, &key(i), self.state.account(&addr(i)).nonce, 1, kind)
    }

    fn one(&mut self, i: usize, kind: TxKind) -> Result<StateDiff, E> {
        let t = self.tx(i, kind);
        self.apply(vec![t])
    }

    fn empty(&mut self) {
        self.apply(vec![]).unwrap();
    }

    fn balance(&self, i: usize) -> u64 {
        self.state.account(&addr(i)).balance.0
    }

    fn task(&self, id: &Hash) -> TaskRecord {
        task_record(&self.state, id).unwrap()
    }

    /// Buys tickets (one block): `(account, role, stake in coins)`, returns their ids.
    fn tickets(&mut self, list: &[(usize, Role, u64)]) -> Vec<Hash> {
        self.tickets_until(list, self.height + 1 + 900)
    }

    /// [`Chain::tickets`] expiring at `expires_at`.
    fn tickets_until(&mut self, list: &[(usize, Role, u64)], expires_at: u64) -> Vec<Hash> {
        // Several tickets of one account need consecutive nonces.
        let mut nonces: BTreeMap<usize, u64> = BTreeMap::new();
        let txs: Vec<Transaction> = list
            .iter()
            .map(|&(i, role, stake)| {
                let n = nonces.entry(i).or_insert(self.state.account(&addr(i)).nonce);
                let t = tx(&self.spec, &key(i), *n, 1, ticket(role, stake, expires_at));
                *n += 1;
                t
            })
            .collect();
        let ids = txs.iter().map(Transaction::hash).collect();
        self.apply(txs).unwrap();
        ids
    }

    /// Account 0 pays for `def` with `fee_coins`; returns the task id (selection runs at the
    /// next block).
    fn pay(&mut self, def: TaskDefinition, fee_coins: u64) -> Hash {
        let t = self.tx(0, TxKind::PayForTask { task: def, fee: Amount(fee_coins * COIN) });
        let id = t.hash();
        self.apply(vec![t]).unwrap();
        id
    }
}

fn ticket(role: Role, stake_coins: u64, expires_at: u64) -> TxKind {
    TxKind::BuyTicket {
        role,
        stake: Amount(stake_coins * COIN),
        preferences: TicketPreferences::default(),
        expires_at,
    }
}

/// A valid small task wanting `m` miners, `s` supervisors, `e` evaluators, `f` faults.
fn def(m: u16, s: u16, e: u16, f: u16) -> TaskDefinition {
    let mut d = valid_task(e);
    d.workers.miners = m;
    d.workers.supervisors = s;
    d.workers.evaluators = e;
    d.workers.max_faulty = f;
    d.deadlines.training_blocks = 10;
    d.deadlines.evaluation_blocks = 5;
    d
}

fn workers(seats: &[pouw_consensus::Seat]) -> Vec<Address> {
    seats.iter().map(|s| s.worker).collect()
}

fn account_of(a: &Address) -> usize {
    (0..16).find(|i| addr(*i) == *a).unwrap()
}

fn submit(task: Hash, label: &[u8]) -> TxKind {
    TxKind::SubmitModel { task_id: task, model_hash: Hash::digest(label) }
}

fn history(task: Hash, slot: u32) -> TxKind {
    TxKind::MessageHistory { task_id: task, slot, root: Hash::digest(&slot.to_le_bytes()) }
}

fn verdict(c: &Chain, task: Hash, ranking: &[Address], confiscations: &[Address]) -> TxKind {
    let payouts = expected_payouts(&c.state, &task, ranking, confiscations).unwrap();
    TxKind::ChargeForTask {
        task_id: task,
        ranking: ranking.to_vec(),
        payouts,
        confiscations: confiscations.to_vec(),
    }
}

/// Miners 1-3, supervisors 4-7, evaluators 8-11 (20 coins each); a 3/4/4 task with f = 1
/// paid by account 0 with 1000 coins; selection applied. Returns (chain, task).
impl Chain {
    /// 20-coin tickets: `miners` miners from account 1 on, then `supervisors` supervisors,
    /// then `evaluators` evaluators, on consecutive accounts.
    fn staff(&mut self, miners: usize, supervisors: usize, evaluators: usize) {
        let roles = std::iter::repeat_n(Role::Miner, miners)
            .chain(std::iter::repeat_n(Role::Supervisor, supervisors))
            .chain(std::iter::repeat_n(Role::Evaluator, evaluators));
        let list: Vec<_> = roles.enumerate().map(|(i, role)| (i + 1, role, 20)).collect();
        self.tickets(&list);
    }
}

fn selected_task() -> (Chain, Hash) {
    let mut c = Chain::new();
    c.staff(3, 4, 4);
    let id = c.pay(def(3, 4, 4, 1), 1_000);
    assert_eq!(c.task(&id).status, TaskStatus::Registered);
    c.empty(); // selection
    assert_eq!(c.task(&id).status, TaskStatus::Training);
    (c, id)
}

// ---- selection -------------------------------------------------------------------------

#[test]
fn selection_happens_at_the_next_block_seeded_by_the_paying_block() {
    let (c, id) = selected_task();
    let rec = c.task(&id);
    // The PayForTask block is the second-to-last block; its hash is the next block's prev_hash.
    let paying_block = c.hashes[c.hashes.len() - 2];
    assert_eq!(rec.seed, paying_block);
    assert_eq!(rec.created_at, 2);
    assert_eq!(rec.training_deadline, 3 + 10);
    assert_eq!(rec.finalisation_deadline, 3 + 10 + 5);
    let p = &rec.participants;
    assert_eq!(workers(&p.miners).len(), 3);
    assert_eq!(workers(&p.supervisors).len(), 4);
    assert_eq!(workers(&p.evaluators).len(), 4);
    // Everyone available was selected, each in its own role, no one twice.
    let all: BTreeSet<Address> = p.all().map(|(_, s)| s.worker).collect();
    assert_eq!(all.len(), 11);
    assert!(!all.contains(&addr(0)));
    for (role, seat) in p.all() {
        let t = c.state.get(&StateKey::Ticket(seat.ticket));
        assert!(
            matches!(t, Some(pouw_consensus::StateValue::Ticket(t)) if t.role == role && t.owner == seat.worker)
        );
        // Bound: out of the free pool.
        assert!(c.state.get(&StateKey::FreeTicket { role, ticket: seat.ticket }).is_none());
    }
    // Deterministic: the same blocks give the same selection.
    let (c2, id2) = selected_task();
    assert_eq!(id, id2);
    assert_eq!(c2.task(&id2).participants, rec.participants);
}

#[test]
fn selection_is_stake_weighted_without_replacement_and_never_zero_stake() {
    let cand = |i: u8, owner: usize, stake: u64| Candidate {
        ticket: Hash::digest(&[i]),
        owner: addr(owner),
        stake: Amount(stake),
    };
    let pool = vec![cand(1, 1, COIN), cand(2, 2, 3 * COIN), cand(3, 3, 0)];
    let task = Hash::digest(b"task");
    let mut counts = [0u32; 4];
    let runs = 4_000u32;
    for s in 0..runs {
        let seed = Hash::digest(&s.to_le_bytes());
        let got = select_weighted(&seed, &task, Role::Miner, &pool, 1, &BTreeSet::new()).unwrap();
        counts[account_of(&got[0].owner)] += 1;
        // Deterministic.
        assert_eq!(
            got,
            select_weighted(&seed, &task, Role::Miner, &pool, 1, &BTreeSet::new()).unwrap()
        );
    }
    assert_eq!(counts[3], 0, "zero stake selected");
    // Expected 1000 / 3000; 6 sigma of a binomial(4000, 1/4) is about 165.
    assert!((835..=1165).contains(&counts[1]), "{counts:?}");
    assert_eq!(counts[1] + counts[2], runs);
    // Two draws from the two staked owners: always both, never one twice; zero stake is not
    // a worker, so asking for 3 fails with 2 available.
    for s in 0..200u32 {
        let seed = Hash::digest(&s.to_le_bytes());
        let got = select_weighted(&seed, &task, Role::Miner, &pool, 2, &BTreeSet::new()).unwrap();
        let owners: BTreeSet<_> = got.iter().map(|c| c.owner).collect();
        assert_eq!(owners, BTreeSet::from([addr(1), addr(2)]));
    }
    assert_eq!(select_weighted(&task, &task, Role::Miner, &pool, 3, &BTreeSet::new()), Err(2));
    // One owner with two tickets holds at most one seat; excluded owners are skipped.
    let pool = vec![cand(1, 1, COIN), cand(2, 1, COIN), cand(3, 2, COIN)];
    assert_eq!(select_weighted(&task, &task, Role::Miner, &pool, 3, &BTreeSet::new()), Err(2));
    let got =
        select_weighted(&task, &task, Role::Miner, &pool, 1, &BTreeSet::from([addr(1)])).unwrap();
    assert_eq!(got[0].owner, addr(2));
    // Stake weighting over owners with several tickets of different weights: 1:1:2 by stake.
    let pool = vec![cand(1, 1, COIN), cand(2, 2, COIN), cand(3, 3, 2 * COIN)];
    let mut counts = [0u32; 4];
    for s in 0..runs {
        let seed = Hash::digest(&(s + 10_000).to_le_bytes());
        let got =
            select_weighted(&seed, &task, Role::Evaluator, &pool, 1, &BTreeSet::new()).unwrap();
        counts[account_of(&got[0].owner)] += 1;
    }
    assert!((1_800..=2_200).contains(&counts[3]), "{counts:?}");
}

#[test]
fn too_few_tickets_refuses_the_task_and_refunds_the_whole_fee() {
    let mut c = Chain::new();
    // Two miners, but the client's own miner ticket does not count.
    c.tickets(&[
        (0, Role::Miner, 20),
        (1, Role::Miner, 20),
        (4, Role::Supervisor, 20),
        (8, Role::Evaluator, 20),
    ]);
    let before = c.balance(0);
    let id = c.pay(def(2, 1, 1, 0), 500);
    assert_eq!(c.balance(0), before - 500 * COIN - 1);
    c.empty();
    let rec = c.task(&id);
    assert_eq!(
        rec.status,
        TaskStatus::Refused {
            at: 3,
            reason: Refusal::NotEnoughWorkers { role: Role::Miner, wanted: 2, available: 1 }
        }
    );
    assert_eq!(rec.escrow, Amount::ZERO);
    assert_eq!(c.balance(0), before - 1, "only the transaction fee is charged");
    assert!(rec.participants.miners.is_empty());
    // No ticket was bound.
    let free = c.state.entries().filter(|(k, _)| matches!(k, StateKey::FreeTicket { .. })).count();
    assert_eq!(free, 4);
    // A refused task takes no worker transaction.
    assert_eq!(c.one(1, submit(id, b"m")), Err(E::TaskClosed(id)));
}

#[test]
fn tickets_that_expire_before_the_task_ends_or_do_not_match_are_not_eligible() {
    let mut c = Chain::new();
    let short = ticket(Role::Miner, 20, 10); // the task ends at 2 + 1 + 10 + 5 = 18
    let tiny = TxKind::BuyTicket {
        role: Role::Miner,
        stake: Amount(20 * COIN),
        preferences: TicketPreferences { has_gpu: false, max_params: 10, min_fee: Amount::ZERO },
        expires_at: 500,
    };
    let pricey = TxKind::BuyTicket {
        role: Role::Miner,
        stake: Amount(20 * COIN),
        preferences: TicketPreferences {
            has_gpu: false,
            max_params: 0,
            min_fee: Amount(10_000 * COIN),
        },
        expires_at: 500,
    };
    let t = vec![
        c.tx(1, short),
        c.tx(2, tiny),
        c.tx(3, pricey),
        c.tx(4, ticket(Role::Supervisor, 20, 500)),
        c.tx(8, ticket(Role::Evaluator, 20, 500)),
    ];
    c.apply(t).unwrap();
    let mut d = def(1, 1, 1, 0);
    d.preferences.min_stake = Amount(5 * COIN);
    let avail =
        pouw_consensus::available_workers(&c.state, &d, Amount(100 * COIN), &addr(0), c.height)
            .unwrap();
    assert_eq!((avail.miners, avail.supervisors, avail.evaluators), (0, 1, 1));
    let id = c.pay(d, 100);
    c.empty();
    assert!(matches!(
        c.task(&id).status,
        TaskStatus::Refused {
            reason: Refusal::NotEnoughWorkers { role: Role::Miner, available: 0, .. },
            ..
        }
    ));
}

#[test]
fn too_few_workers_is_known_before_paying_for_a_client_task_file() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks");
    let t = pouw_ml::load_client_task(&root.join("mnist-client.toml"), &root).unwrap();
    let mut c = Chain::new();
    c.spec.max_ticket_blocks = 5_000;
    // Tickets must outlive the task (2000 training + 200 evaluation blocks).
    c.tickets_until(&[(1, Role::Miner, 20), (2, Role::Miner, 20)], 4_000);
    let refusal =
        check_workers_available(&c.state, &t.definition, t.fee, &addr(0), c.height).unwrap_err();
    assert_eq!(refusal, Refusal::NotEnoughWorkers { role: Role::Miner, wanted: 3, available: 2 });
    assert!(refusal.to_string().contains("wanted 3"));
}

// ---- split -----------------------------------------------------------------------------

#[test]
fn the_split_is_a_pure_function_of_the_seed() {
    let a = Hash::digest(b"block a");
    let (train, test) = task_split(a);
    assert_eq!(train.len(), 7);
    assert_eq!(test.len(), 3);
    let all: BTreeSet<usize> = train.iter().chain(&test).copied().collect();
    assert_eq!(all, (0..10).collect());
    assert_eq!(task_split(a), (train, test.clone()));
    // Different seeds give different splits (over a few seeds, at least one differs).
    assert!((0..8u8).any(|i| task_split(Hash::digest(&[i])).1 != test));
    // Every segment ends up in the test set for some seed.
    let mut seen = BTreeSet::new();
    for i in 0..200u8 {
        seen.extend(task_split(Hash::digest(&[i, 1])).1);
    }
    assert_eq!(seen.len(), 10);
    // With a validation fraction: 5 train, 2 validation, 3 test.
    let s = split_segments(&a, 3, 2);
    assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (5, 2, 3));
    assert_eq!(s.test, test);
    let mut d = valid_task(1);
    d.dataset.validation_permille = 200;
    assert_eq!(task_split_of(&d, &a), s);
    assert_eq!(s.to_ml().test, s.test);
    // The same segments as the engine's split with the same seed (what `pouw train --seed`
    // uses), for the usual fractions.
    for i in 0..50u8 {
        let seed = Hash::digest(&[i, 2]);
        let ml = pouw_ml::Split::new(seed.as_bytes(), 10, 0.3, 0.0).unwrap();
        assert_eq!(split_segments(&seed, 3, 0).to_ml(), ml);
        let ml = pouw_ml::Split::new(seed.as_bytes(), 10, 0.3, 0.2).unwrap();
        assert_eq!(split_segments(&seed, 3, 2).to_ml(), ml);
    }
    // The task view shows the split of the recorded seed.
    let (c, id) = selected_task();
    let v = task_view(&c.state, &id).unwrap();
    let (train, test) = task_split(c.task(&id).seed);
    let split = v.split.unwrap();
    assert_eq!((split.train, split.test), (train, test));
}

// ---- phases ----------------------------------------------------------------------------

#[test]
fn training_deadline_then_expiry_refunds_the_client_and_returns_every_stake() {
    let (mut c, id) = selected_task();
    let balances: Vec<u64> = (0..12).map(|i| c.balance(i)).collect();
    let rec = c.task(&id);
    // One model only (not all): training continues until the deadline.
    let m = rec.participants.miners[0].worker;
    c.one(account_of(&m), submit(id, b"m")).unwrap();
    assert_eq!(c.task(&id).status, TaskStatus::Training);
    while c.height + 1 < rec.training_deadline {
        c.empty();
    }
    assert_eq!(c.task(&id).status, TaskStatus::Training);
    c.empty(); // block T
    assert_eq!(c.task(&id).status, TaskStatus::Finalising { since: rec.training_deadline });
    // Too late for models.
    let late = c.participants_tx(&rec.participants.miners[1].worker, submit(id, b"late"));
    assert!(matches!(late, Err(E::WrongPhase { phase: "finalising", .. })), "{late:?}");
    // One vote of four: no majority.
    let ev = rec.participants.evaluators[0].worker;
    let v = verdict(&c, id, &[m], &[]);
    c.one(account_of(&ev), v).unwrap();
    while c.height + 1 < rec.finalisation_deadline {
        c.empty();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }));
    c.empty(); // block F
    let rec2 = c.task(&id);
    assert_eq!(rec2.status, TaskStatus::Expired { at: rec.finalisation_deadline });
    assert_eq!(rec2.escrow, Amount::ZERO);
    // One vote of four and a model submitted: the test set counts as withheld (design/014),
    // the miner that submitted gets the miners' share (800), the client the rest.
    assert_eq!(c.balance(0), balances[0] + 200 * COIN);
    // Every selected ticket released: stake back, no confiscation (minus the fees they paid).
    for (_, seat) in rec.participants.all() {
        assert!(c.state.get(&StateKey::Ticket(seat.ticket)).is_none());
        let i = account_of(&seat.worker);
        let fees = u64::from(seat.worker == m || seat.worker == ev); // their one transaction
        let paid = if seat.worker == m { 800 * COIN } else { 0 };
        assert_eq!(c.balance(i), balances[i] + 20 * COIN + paid - fees, "{i}");
    }
    assert_eq!(c.one(account_of(&ev), verdict(&c, id, &[m], &[])), Err(E::TaskClosed(id)));
}

impl Chain {
    /// Applies a one-transaction block from worker `w` (by address).
    fn participants_tx(&mut self, w: &Address, kind: TxKind) -> Result<StateDiff, E> {
        self.one(account_of(w), kind)
    }
}

#[test]
fn every_miner_submitting_ends_training_early() {
    let (mut c, id) = selected_task();
    let rec = c.task(&id);
    let txs: Vec<Transaction> = rec
        .participants
        .miners
        .iter()
        .enumerate()
        .map(|(n, s)| c.tx(account_of(&s.worker), submit(id, &[n as u8])))
        .collect();
    c.apply(txs).unwrap();
    assert_eq!(c.task(&id).status, TaskStatus::Finalising { since: c.height });
    // The training deadline passes without changing anything, the expiry stays at F.
    while c.height < rec.training_deadline {
        c.empty();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }));
    while c.height < rec.finalisation_deadline {
        c.empty();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Expired { .. }));
    // No deadline entry is left behind.
    assert!(!c.state.entries().any(|(k, _)| matches!(k, StateKey::TaskDeadline { .. })));
}

// ---- authorisation ---------------------------------------------------------------------

#[test]
fn only_selected_workers_act_and_each_only_once_in_its_phase() {
    let mut c = Chain::new();
    c.tickets(&[
        (1, Role::Miner, 20),
        (2, Role::Miner, 20),
        (4, Role::Supervisor, 20),
        (8, Role::Evaluator, 20),
        (12, Role::Supervisor, 20), // not selected: 1 supervisor wanted, but...
    ]);
    // In the PayForTask block itself the task is only registered.
    let pay = c.tx(0, TxKind::PayForTask { task: def(1, 1, 1, 0), fee: Amount(100 * COIN) });
    let id = pay.hash();
    let early = c.tx(1, submit(id, b"m"));
    let err = c.apply(vec![pay.clone(), early]).unwrap_err();
    assert!(matches!(err, E::WrongPhase { phase: "registered", .. }), "{err:?}");
    c.apply(vec![pay]).unwrap();
    c.empty();
    let rec = c.task(&id);
    let m = rec.participants.miners[0].worker;
    let other_miner = if m == addr(1) { addr(2) } else { addr(1) };
    let sup = rec.participants.supervisors[0].worker;
    let not_sup = if sup == addr(4) { addr(12) } else { addr(4) };
    let ev = rec.participants.evaluators[0].worker;
    assert_eq!(ev, addr(8));

    // Not selected (a ticket of the right role is not enough any more).
    for (who, kind) in [
        (other_miner, submit(id, b"x")),
        (not_sup, history(id, 0)),
        (addr(13), history(id, 0)),
        (m, history(id, 0)),     // a miner is not a supervisor
        (sup, submit(id, b"y")), // nor a supervisor a miner
    ] {
        let err = c.participants_tx(&who, kind).unwrap_err();
        assert!(matches!(err, E::NotAuthorized { .. }), "{err:?}");
    }
    // Evaluators vote only in Finalising.
    let err = c.participants_tx(&ev, verdict(&c, id, &[], &[])).unwrap_err();
    assert!(matches!(err, E::WrongPhase { phase: "training", .. }), "{err:?}");
    // Histories: once per slot.
    c.participants_tx(&sup, history(id, 0)).unwrap();
    c.participants_tx(&sup, history(id, 1)).unwrap();
    assert!(matches!(c.participants_tx(&sup, history(id, 1)), Err(E::AlreadyRecorded { .. })));
    // The only miner submits: training ends.
    c.participants_tx(&m, submit(id, b"m")).unwrap();
    assert!(matches!(
        c.participants_tx(&m, submit(id, b"again")),
        Err(E::WrongPhase { phase: "finalising", .. })
    ));
    // Supervisors may still commit while finalising.
    c.participants_tx(&sup, history(id, 2)).unwrap();
    // A non-selected evaluator, then a verdict naming outsiders.
    let err = c.participants_tx(&m, verdict(&c, id, &[m], &[])).unwrap_err();
    assert!(matches!(err, E::NotAuthorized { .. }), "{err:?}");
    for (ranking, confiscations, list) in
        [(vec![other_miner], vec![], "ranking"), (vec![sup], vec![], "ranking")]
    {
        let err = c.participants_tx(&ev, verdict(&c, id, &ranking, &confiscations)).unwrap_err();
        assert!(matches!(err, E::NotAParticipant { list: l, .. } if l == list), "{err:?}");
    }
    // Only miners convicted on chain may be confiscated (design/013).
    let err = c.participants_tx(&ev, verdict(&c, id, &[m], &[addr(13)])).unwrap_err();
    assert_eq!(err, E::UnprovenConfiscation(addr(13)));
    let err = c.participants_tx(&ev, verdict(&c, id, &[m], &[m])).unwrap_err();
    assert_eq!(err, E::UnprovenConfiscation(m));
    // Payouts that are not the by-rank split, or name an outsider.
    let bad = TxKind::ChargeForTask {
        task_id: id,
        ranking: vec![m],
        payouts: vec![Payout { to: m, amount: Amount(COIN) }],
        confiscations: vec![],
    };
    assert!(matches!(c.participants_tx(&ev, bad), Err(E::PayoutsNotByRank { .. })));
    let outsider = TxKind::ChargeForTask {
        task_id: id,
        ranking: vec![m],
        payouts: vec![Payout { to: addr(13), amount: Amount(COIN) }],
        confiscations: vec![],
    };
    assert!(matches!(
        c.participants_tx(&ev, outsider),
        Err(E::NotAParticipant { list: "payouts", .. })
    ));
    let dup = TxKind::ChargeForTask {
        task_id: id,
        ranking: vec![m, m],
        payouts: vec![],
        confiscations: vec![],
    };
    assert!(matches!(
        c.participants_tx(&ev, dup),
        Err(E::DuplicateInVerdict { list: "ranking", .. })
    ));
    // The lone evaluator's valid verdict is a majority: completed.
    c.participants_tx(&ev, verdict(&c, id, &[m], &[])).unwrap();
    assert!(matches!(c.task(&id).status, TaskStatus::Completed { .. }));
    assert!(matches!(
        c.participants_tx(&ev, verdict(&c, id, &[m], &[])),
        Err(E::DoubleVote { .. })
    ));
    let unknown = Hash::digest(b"?");
    assert_eq!(c.participants_tx(&m, submit(unknown, b"m")), Err(E::UnknownTask(unknown)));
}

#[test]
fn a_miner_without_a_model_cannot_be_ranked_and_votes_are_single() {
    let (mut c, id) = selected_task();
    let rec = c.task(&id);
    let [a, b, silent] = [0, 1, 2].map(|i| rec.participants.miners[i].worker);
    c.participants_tx(&a, submit(id, b"a")).unwrap();
    c.participants_tx(&b, submit(id, b"b")).unwrap();
    while c.height < rec.training_deadline {
        c.empty();
    }
    let ev = rec.participants.evaluators[0].worker;
    let err = c.participants_tx(&ev, verdict(&c, id, &[a, silent], &[])).unwrap_err();
    assert_eq!(err, E::RankedWithoutModel(silent));
    c.participants_tx(&ev, verdict(&c, id, &[a, b], &[])).unwrap();
    assert!(matches!(
        c.participants_tx(&ev, verdict(&c, id, &[b, a], &[])),
        Err(E::DoubleVote { .. })
    ));
}

// ---- payouts ---------------------------------------------------------------------------

#[test]
fn full_lifecycle_pays_by_rank_and_quota_and_conserves_money() {
    let (mut c, id) = selected_task();
    let rec = c.task(&id);
    let p = rec.participants.clone();
    let [best, second, silent] = [0, 1, 2].map(|i| p.miners[i].worker);
    c.participants_tx(&second, submit(id, b"second")).unwrap();
    c.participants_tx(&best, submit(id, b"best")).unwrap();
    // Three of four supervisors commit histories; one twice.
    for (n, s) in p.supervisors.iter().take(3).enumerate() {
        c.participants_tx(&s.worker, history(id, n as u32)).unwrap();
    }
    c.participants_tx(&p.supervisors[0].worker, history(id, 9)).unwrap();
    while c.height < rec.training_deadline {
        c.empty();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }));
    let before: Vec<u64> = (0..16).map(|i| c.balance(i)).collect();
    let v = verdict(&c, id, &[best, second], &[]);
    // Three of four evaluators agree (majority of 4 is 3); the fourth stays silent; a
    // dissenting verdict never executes.
    let dissent_rank = verdict(&c, id, &[second, best], &[]);
    c.participants_tx(&p.evaluators[0].worker, v.clone()).unwrap();
    c.participants_tx(&p.evaluators[3].worker, dissent_rank).unwrap();
    c.participants_tx(&p.evaluators[1].worker, v.clone()).unwrap();
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }));
    c.participants_tx(&p.evaluators[2].worker, v.clone()).unwrap();
    let done = c.task(&id);
    let TxKind::ChargeForTask { ranking, payouts, confiscations, .. } = &v else { unreachable!() };
    assert_eq!(
        done.status,
        TaskStatus::Completed {
            at: c.height,
            verdict: verdict_hash(ranking, payouts, confiscations)
        }
    );

    let fee = Amount(1_000 * COIN);
    let pot = miners_share(fee);
    assert_eq!(pot, Amount(800 * COIN));
    let by_rank = rank_payouts(pot, &[best, second]);
    assert_eq!(by_rank[0].amount.0, 53_333_333_334); // 2/3 of 800 coins + the rounding unit
    assert_eq!(by_rank[1].amount.0, 26_666_666_666);
    let sup_share = supervisor_quota(fee).0 / 3;
    let ev_share = evaluator_quota(fee).0 / 3;
    let stake = 20 * COIN;
    let delta = |a: &Address| c.balance(account_of(a)) as i128 - before[account_of(a)] as i128;
    // Miners: by rank, plus their stake back; the silent miner only gets its stake back.
    assert_eq!(delta(&best), (by_rank[0].amount.0 + stake) as i128);
    assert_eq!(delta(&second), (by_rank[1].amount.0 + stake) as i128);
    assert_eq!(delta(&silent), stake as i128);
    // Supervisors: active ones an equal share of 10 %; the silent one its stake only.
    for s in &p.supervisors[..3] {
        assert_eq!(delta(&s.worker), (sup_share + stake) as i128);
    }
    assert_eq!(delta(&p.supervisors[3].worker), stake as i128);
    // Evaluators of the majority: an equal share of 10 % (each paid a 1-unit transaction fee
    // for its vote); the dissenting one is not paid and loses its stake (design/007).
    for e in &p.evaluators[..3] {
        assert_eq!(delta(&e.worker), (ev_share + stake) as i128 - 1);
    }
    assert_eq!(delta(&p.evaluators[3].worker), -1, "dissenting evaluator");
    // The client gets the rounding dust and the dissenter's stake back: fee - everything paid.
    let paid = by_rank[0].amount.0 + by_rank[1].amount.0 + 3 * sup_share + 3 * ev_share;
    assert_eq!(delta(&addr(0)), (fee.0 - paid + stake) as i128);
    assert_eq!(done.settlement.as_ref().unwrap().refund.0, fee.0 - paid + stake);
    // Supervisors committed different slots: no slot has a majority, nobody is outvoted.
    let penalties = &done.settlement.as_ref().unwrap().penalties;
    assert_eq!(penalties.len(), 1, "{penalties:?}");
    assert_eq!(penalties[0].seat, p.evaluators[3]);
    assert_eq!(done.escrow, Amount::ZERO);
    // Every ticket is gone (returned or confiscated).
    for (_, s) in p.all() {
        assert!(c.state.get(&StateKey::Ticket(s.ticket)).is_none());
    }
    // The view.
    let view = task_view(&c.state, &id).unwrap();
    assert_eq!(view.phase.name(), "completed");
    assert_eq!(view.models.len(), 2);
    assert_eq!(view.verdicts.len(), 4);
    assert_eq!(view.history_committers.len(), 3);
    assert_eq!(view.settlement.unwrap().payouts.len(), 2 + 3 + 3);
    assert_eq!(view.fee, fee);
    assert!(serde_json::to_string(&task_view(&c.state, &id).unwrap()).is_ok());
}

// ---- committees (design/007) -------------------------------------------------------------

/// Miners 1-3, supervisors 4-6, evaluators 7-9 (20 coins each); a 3/3/3 task (f = 0) paid by
/// account 0 with 1000 coins; every miner submits, so the task is finalising.
fn committee_task() -> (Chain, Hash) {
    let mut c = Chain::new();
    c.staff(3, 3, 3);
    let id = c.pay(def(3, 3, 3, 0), 1_000);
    c.empty(); // selection
    (c, id)
}

fn root_tx(task: Hash, slot: u32, root: Hash) -> TxKind {
    TxKind::MessageHistory { task_id: task, slot, root }
}

impl Chain {
    /// Applies one block holding every `(worker, transaction)` (consecutive nonces per worker).
    fn batch(&mut self, list: Vec<(Address, TxKind)>) {
        let mut nonces: BTreeMap<Address, u64> = BTreeMap::new();
        let txs = list
            .into_iter()
            .map(|(w, kind)| {
                let n = nonces.entry(w).or_insert(self.state.account(&w).nonce);
                let t = tx(&self.spec, &key(account_of(&w)), *n, 1, kind);
                *n += 1;
                t
            })
            .collect();
        self.apply(txs).unwrap();
    }
}

fn submit_all(c: &mut Chain, id: Hash) -> Vec<Address> {
    let miners = workers(&c.task(&id).participants.miners);
    for m in &miners {
        c.participants_tx(m, submit(id, &m.0)).unwrap();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }));
    miners
}

#[test]
fn a_lying_supervisor_is_outvoted_unpaid_and_loses_its_stake() {
    let (mut c, id) = committee_task();
    let p = c.task(&id).participants;
    let sups = workers(&p.supervisors);
    let (honest, liar) = (&sups[..2], sups[2]);
    let right = |slot: u32| Hash::digest(&[b"slot".as_slice(), &slot.to_le_bytes()].concat());
    let mut txs = vec![];
    for slot in 0..3u32 {
        for s in honest {
            txs.push((*s, root_tx(id, slot, right(slot))));
        }
        txs.push((liar, root_tx(id, slot, Hash::digest(right(slot).as_bytes()))));
    }
    c.batch(txs);
    // Slot numbers are bounded.
    let err = c.participants_tx(&liar, root_tx(id, MAX_HISTORY_SLOTS, right(0))).unwrap_err();
    assert_eq!(err, E::HistorySlotOutOfRange { slot: MAX_HISTORY_SLOTS, max: MAX_HISTORY_SLOTS });
    let miners = submit_all(&mut c, id);
    let before: Vec<u64> = (0..16).map(|i| c.balance(i)).collect();
    let v = verdict(&c, id, &miners, &[]);
    for e in workers(&p.evaluators) {
        c.participants_tx(&e, v.clone()).unwrap();
        if matches!(c.task(&id).status, TaskStatus::Completed { .. }) {
            break;
        }
    }
    let done = c.task(&id);
    assert!(matches!(done.status, TaskStatus::Completed { .. }));
    // The third evaluator's share is held for its vote (design/005, late votes).
    let held = done.escrow.0;
    let settlement = done.settlement.unwrap();
    assert_eq!(held, settlement.evaluator_share.0 * settlement.held.len() as u64);
    assert_eq!(settlement.penalties.len(), 1, "{:?}", settlement.penalties);
    let penalty = &settlement.penalties[0];
    assert_eq!(penalty.seat, p.supervisors[2]);
    assert_eq!(penalty.role, Role::Supervisor);
    assert_eq!(penalty.stake, Amount(20 * COIN));
    assert_eq!(
        penalty.reason,
        PenaltyReason::OutvotedHistory {
            slot: 0,
            committed: Hash::digest(right(0).as_bytes()),
            majority: right(0)
        }
    );
    assert!(penalty.reason.to_string().contains("history slot 0"));
    assert!(settlement.confiscated.is_empty(), "the verdict itself confiscated nobody");
    let fee = Amount(1_000 * COIN);
    let stake = 20 * COIN;
    let delta = |a: &Address| c.balance(account_of(a)) as i128 - before[account_of(a)] as i128;
    // Honest supervisors: half the quota each (the liar's third is not theirs) and their stake.
    let sup_share = supervisor_quota(fee).0 / 2;
    for s in honest {
        assert_eq!(delta(s), (sup_share + stake) as i128);
    }
    assert_eq!(delta(&liar), 0, "the liar is not paid and its stake is gone");
    assert!(c.state.get(&StateKey::Ticket(p.supervisors[2].ticket)).is_none());
    // The client gets the liar's stake, and whatever nobody earned, back (the held share
    // later).
    let paid: u64 = settlement.payouts.iter().map(|p| p.amount.0).sum();
    assert_eq!(settlement.refund.0, fee.0 + stake - paid - held);
    assert_eq!(delta(&addr(0)), settlement.refund.0 as i128);
    assert!(settlement.payouts.iter().all(|p| p.to != liar));
    // The view shows it (and serialises for RPC).
    let view = task_view(&c.state, &id).unwrap();
    let json = serde_json::to_string(&view).unwrap();
    assert!(json.contains("OutvotedHistory"), "{json}");
}

#[test]
fn a_slot_without_a_majority_root_penalises_nobody() {
    // Four supervisors (f = 1): a majority needs three equal roots.
    let (mut c, id) = selected_task();
    let p = c.task(&id).participants;
    let sups = workers(&p.supervisors);
    let (a, b) = (Hash::digest(b"a"), Hash::digest(b"b"));
    // Slot 0: a 2-2 tie. Slot 1: one commit only. Slot 2: three different roots.
    let mut txs = vec![];
    for (s, root) in sups.iter().zip([a, a, b, b]) {
        txs.push((*s, root_tx(id, 0, root)));
    }
    txs.push((sups[3], root_tx(id, 1, b)));
    for (s, root) in sups.iter().zip([a, b, Hash::digest(b"c")]) {
        txs.push((*s, root_tx(id, 2, root)));
    }
    c.batch(txs);
    let miners = submit_all(&mut c, id);
    let v = verdict(&c, id, &miners, &[]);
    for e in workers(&p.evaluators).iter().take(3) {
        c.participants_tx(e, v.clone()).unwrap();
    }
    let done = c.task(&id);
    assert!(matches!(done.status, TaskStatus::Completed { .. }));
    let settlement = done.settlement.unwrap();
    assert!(settlement.penalties.is_empty(), "{:?}", settlement.penalties);
    let share = supervisor_quota(Amount(1_000 * COIN));
    for s in &sups {
        let paid = settlement.payouts.iter().find(|p| p.to == *s).map(|p| p.amount);
        assert_eq!(paid, Some(Amount(share.0 / 4)), "every supervisor paid");
        assert!(c.state.get(&StateKey::Ticket(p.seat_of(s).unwrap().1.ticket)).is_none());
    }
}

#[test]
fn a_dissenting_evaluator_is_unpaid_and_loses_its_stake() {
    let (mut c, id) = committee_task();
    let p = c.task(&id).participants;
    let sups = workers(&p.supervisors);
    let root = Hash::digest(b"slot 0");
    for s in &sups {
        c.participants_tx(s, root_tx(id, 0, root)).unwrap();
    }
    let miners = submit_all(&mut c, id);
    let evs = workers(&p.evaluators);
    let before: Vec<u64> = (0..16).map(|i| c.balance(i)).collect();
    // The liar votes the reversed ranking (with the payouts that ranking gives: a valid vote).
    let reversed: Vec<Address> = miners.iter().rev().copied().collect();
    let lie = verdict(&c, id, &reversed, &[]);
    c.participants_tx(&evs[0], lie.clone()).unwrap();
    let v = verdict(&c, id, &miners, &[]);
    c.participants_tx(&evs[1], v.clone()).unwrap();
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }), "1 of 3 is no majority");
    c.participants_tx(&evs[2], v).unwrap();
    let done = c.task(&id);
    let TaskStatus::Completed { verdict: executed, .. } = done.status else {
        panic!("not completed: {:?}", done.status)
    };
    let TxKind::ChargeForTask { ranking, payouts, confiscations, .. } = &lie else {
        unreachable!()
    };
    let voted = verdict_hash(ranking, payouts, confiscations);
    let settlement = done.settlement.unwrap();
    assert_eq!(settlement.penalties.len(), 1, "{:?}", settlement.penalties);
    assert_eq!(settlement.penalties[0].seat, p.evaluators[0]);
    assert_eq!(settlement.penalties[0].role, Role::Evaluator);
    assert_eq!(settlement.penalties[0].reason, PenaltyReason::DissentingVote { voted, executed });
    let fee = Amount(1_000 * COIN);
    let stake = 20 * COIN;
    let delta = |a: &Address| c.balance(account_of(a)) as i128 - before[account_of(a)] as i128;
    assert_eq!(delta(&evs[0]), -1, "only its transaction fee: unpaid, stake confiscated");
    let ev_share = evaluator_quota(fee).0 / 2;
    for e in &evs[1..] {
        assert_eq!(delta(e), (ev_share + stake) as i128 - 1);
    }
    // Supervisors agreed on every slot: all paid, nobody outvoted.
    for s in &sups {
        assert_eq!(delta(s), (supervisor_quota(fee).0 / 3 + stake) as i128);
    }
    // Money: escrow + the dissenter's stake = everything paid + the refund.
    let paid: u64 = settlement.payouts.iter().map(|p| p.amount.0).sum();
    assert_eq!(settlement.refund.0 + paid, fee.0 + stake);
    assert_eq!(delta(&addr(0)), settlement.refund.0 as i128);
}

#[test]
fn a_verdict_confiscates_only_miners_convicted_on_chain() {
    // design/013: a verdict that names any seat not convicted on chain is invalid, whoever
    // votes it; the lying supervisor loses its stake by the majority rule, not by the verdict.
    let (mut c, id) = committee_task();
    let p = c.task(&id).participants;
    let sups = workers(&p.supervisors);
    let evs = workers(&p.evaluators);
    for (s, root) in sups.iter().zip([Hash::digest(b"r"), Hash::digest(b"r"), Hash::digest(b"x")]) {
        c.participants_tx(s, root_tx(id, 0, root)).unwrap();
    }
    let miners = submit_all(&mut c, id);
    for seat in [miners[0], sups[2], evs[2]] {
        let ranking: Vec<Address> = miners.iter().copied().filter(|m| *m != seat).collect();
        let theft = verdict(&c, id, &ranking, &[seat]);
        for e in &evs[..2] {
            let err = c.participants_tx(e, theft.clone()).unwrap_err();
            assert_eq!(err, E::UnprovenConfiscation(seat));
        }
    }
    let before = c.balance(account_of(&miners[0]));
    let v = verdict(&c, id, &miners, &[]);
    for e in &evs[..2] {
        c.participants_tx(e, v.clone()).unwrap();
    }
    let done = c.task(&id);
    assert!(matches!(done.status, TaskStatus::Completed { .. }));
    let settlement = done.settlement.unwrap();
    assert!(settlement.confiscated.is_empty());
    assert_eq!(settlement.penalties.len(), 1, "{:?}", settlement.penalties);
    assert_eq!(settlement.penalties[0].seat, p.supervisors[2]);
    assert!(c.balance(account_of(&miners[0])) > before + 20 * COIN, "paid and stake returned");
}

#[test]
fn confiscation_takes_only_the_selected_ticket_and_pays_the_honest_miners() {
    let mut c = Chain::new();
    // Account 1 has two miner tickets and an evaluator ticket; only one miner ticket is
    // selected (one seat per worker).
    let ids = c.tickets(&[
        (1, Role::Miner, 30),
        (1, Role::Miner, 40),
        (1, Role::Evaluator, 25),
        (2, Role::Miner, 20),
        (4, Role::Supervisor, 20),
        (8, Role::Evaluator, 20),
    ]);
    let id = c.pay(def(2, 1, 1, 0), 100);
    c.empty();
    let rec = c.task(&id);
    let cheat = rec.participants.miners.iter().find(|s| s.worker == addr(1)).unwrap().clone();
    assert!(cheat.ticket == ids[0] || cheat.ticket == ids[1]);
    let spare = if cheat.ticket == ids[0] { ids[1] } else { ids[0] };
    let cheat_stake = if cheat.ticket == ids[0] { 30 } else { 40 };
    // Its one supervisor convicts it on chain (a strict majority of one).
    c.participants_tx(&addr(4), accuse(id, addr(1))).unwrap();
    c.participants_tx(&addr(2), submit(id, b"honest")).unwrap();
    let b1 = c.balance(1);
    let b2 = c.balance(2);
    let v = verdict(&c, id, &[addr(2)], &[addr(1)]);
    if let TxKind::ChargeForTask { payouts, .. } = &v {
        // The honest miner gets the miners' share plus the confiscated stake.
        assert_eq!(payouts[0].amount, Amount(80 * COIN + cheat_stake * COIN));
    }
    c.participants_tx(&addr(8), v).unwrap();
    let done = c.task(&id);
    assert!(matches!(done.status, TaskStatus::Completed { .. }));
    assert_eq!(done.settlement.as_ref().unwrap().confiscated_stake, Amount(cheat_stake * COIN));
    assert_eq!(c.balance(2), b2 + 80 * COIN + cheat_stake * COIN + 20 * COIN);
    assert_eq!(c.balance(1), b1, "the cheater gets nothing back");
    // Only the selected ticket went: the spare miner ticket and the evaluator ticket remain.
    assert!(c.state.get(&StateKey::Ticket(cheat.ticket)).is_none());
    assert!(c.state.get(&StateKey::Ticket(spare)).is_some());
    assert!(c.state.get(&StateKey::Ticket(ids[2])).is_some());
    assert!(c.state.get(&StateKey::FreeTicket { role: Role::Miner, ticket: spare }).is_some());
}

#[test]
fn a_task_whose_evaluators_rank_nobody_refunds_the_miners_share() {
    let mut c = Chain::new();
    c.tickets(&[(1, Role::Miner, 20), (4, Role::Supervisor, 20), (8, Role::Evaluator, 20)]);
    let id = c.pay(def(1, 1, 1, 0), 100);
    c.empty();
    while c.height < c.task(&id).training_deadline {
        c.empty();
    }
    let b0 = c.balance(0);
    c.participants_tx(&addr(8), verdict(&c, id, &[], &[])).unwrap();
    // Nobody ranked, the supervisor silent: client gets 90 of 100 back (evaluator paid 10).
    assert_eq!(c.balance(0), b0 + 90 * COIN);
}

// ---- late votes (design/005) -------------------------------------------------------------

/// The verdict hash of a ChargeForTask.
fn hash_of(v: &TxKind) -> Hash {
    let TxKind::ChargeForTask { ranking, payouts, confiscations, .. } = v else {
        panic!("not a vote: {v:?}")
    };
    verdict_hash(ranking, payouts, confiscations)
}

fn no_deadline_left(c: &Chain) -> bool {
    !c.state.entries().any(|(k, _)| matches!(k, StateKey::TaskDeadline { .. }))
}

#[test]
fn a_miner_flagged_too_late_for_training_is_still_convicted_until_the_first_vote() {
    // Every model is in (training over, Finalising) before the supervisors' accusations of a
    // miner that poisoned its last iterations land: they still convict it, it hands nothing
    // over, and the verdict must confiscate its stake. Once a vote is recorded, accusations
    // close: every vote counted was cast knowing every conviction.
    let (mut c, id) = committee_task();
    let p = c.task(&id).participants;
    let (miners, sups, evs) = (workers(&p.miners), workers(&p.supervisors), workers(&p.evaluators));
    for m in &miners {
        c.participants_tx(m, submit(id, &m.0)).unwrap();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }));
    c.participants_tx(&sups[0], accuse(id, miners[0])).unwrap();
    c.participants_tx(&sups[1], accuse(id, miners[0])).unwrap();
    let rec = c.task(&id);
    assert_eq!(rec.convictions.len(), 1);
    assert_eq!((rec.convictions[0].miner, rec.convictions[0].heirs.len()), (miners[0], 0));
    assert!(matches!(rec.status, TaskStatus::Finalising { .. }), "still finalising");
    // A vote that does not confiscate it is refused; the one that does counts.
    let blind = verdict(&c, id, &miners, &[]);
    let e = unwrap_tx_error(c.participants_tx(&evs[0], blind).unwrap_err());
    assert_eq!(e, E::ConvictionNotConfiscated(miners[0]));
    let v = verdict(&c, id, &miners[1..], &[miners[0]]);
    c.participants_tx(&evs[0], v.clone()).unwrap();
    // The first vote closed the accusations.
    let e = unwrap_tx_error(c.participants_tx(&sups[0], accuse(id, miners[1])).unwrap_err());
    assert!(
        matches!(e, E::WrongPhase { phase: "finalising with a verdict vote recorded", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("cannot accuse a miner as supervisor"), "{e}");
    c.participants_tx(&evs[1], v).unwrap();
    let done = c.task(&id);
    assert!(matches!(done.status, TaskStatus::Completed { .. }));
    let s = done.settlement.unwrap();
    let confiscated: Vec<_> = s.confiscated.iter().map(|seat| seat.worker).collect();
    assert_eq!(confiscated, vec![miners[0]]);
    assert!(s.payouts.iter().all(|p| p.to != miners[0]), "the convict is not paid");
}

#[test]
fn an_evaluator_whose_vote_lands_after_the_execution_is_paid_its_share() {
    // 3 evaluators: 2 votes execute the verdict, each paid a third of the quota; the third
    // vote, a block later, is paid the third held for it.
    let (mut c, id) = committee_task();
    let p = c.task(&id).participants;
    let miners = workers(&p.miners);
    let sups = workers(&p.supervisors);
    // Miner 3 is convicted on chain by two supervisors; the other two submit.
    for s in &sups[..2] {
        c.participants_tx(s, accuse(id, miners[2])).unwrap();
    }
    for m in &miners[..2] {
        c.participants_tx(m, submit(id, &m.0)).unwrap();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }));
    let evs = workers(&p.evaluators);
    let before: Vec<u64> = (0..16).map(|i| c.balance(i)).collect();
    let delta =
        |c: &Chain, a: &Address| c.balance(account_of(a)) as i128 - before[account_of(a)] as i128;
    // The verdict confiscates a miner, so its payouts carry a stake that is gone once it
    // executed.
    let v = verdict(&c, id, &miners[..2], &[miners[2]]);
    c.participants_tx(&evs[0], v.clone()).unwrap();
    c.participants_tx(&evs[1], v.clone()).unwrap();
    let done = c.task(&id);
    assert_eq!(done.status, TaskStatus::Completed { at: c.height, verdict: hash_of(&v) });
    assert!(c.height < done.training_deadline, "completed before the training deadline");
    let fee = Amount(1_000 * COIN);
    let (share, stake) = (evaluator_quota(fee).0 / 3, 20 * COIN);
    let s = done.settlement.clone().unwrap();
    assert_eq!(s.evaluator_share, Amount(share));
    assert_eq!(s.held, vec![evs[2]]);
    assert_eq!(done.escrow, Amount(share), "the third share stays in escrow");
    for e in &evs[..2] {
        assert_eq!(delta(&c, e), (share + stake) as i128 - 1, "a third of the quota");
    }
    // The evaluator that has not voted: its ticket is released at the execution, as before.
    assert_eq!(delta(&c, &evs[2]), stake as i128);
    assert!(c.state.get(&StateKey::Ticket(p.evaluators[2].ticket)).is_none());
    let client = delta(&c, &addr(0));
    // An outsider cannot claim it.
    let err = c.participants_tx(&miners[0], v.clone()).unwrap_err();
    assert!(matches!(err, E::NotAuthorized { .. }), "{err:?}");
    // The late vote, built on the completed state, is the executed verdict.
    let late = verdict(&c, id, &miners[..2], &[miners[2]]);
    assert_eq!(late, v);
    c.participants_tx(&evs[2], late).unwrap();
    assert_eq!(delta(&c, &evs[2]), (share + stake) as i128 - 1, "paid its third");
    let rec = c.task(&id);
    assert_eq!(rec.escrow, Amount::ZERO);
    let s = rec.settlement.clone().unwrap();
    assert!(s.held.is_empty());
    assert_eq!(s.payouts.last(), Some(&Payout { to: evs[2], amount: Amount(share) }));
    assert_eq!(delta(&c, &addr(0)), client, "the client's refund does not move");
    // One vote each, before and after the execution.
    for e in &evs {
        let err = c.participants_tx(e, v.clone()).unwrap_err();
        assert!(matches!(err, E::DoubleVote { .. }), "{err:?}");
    }
    // Nothing happens at the deadlines; escrow + confiscated stake = paid + refund.
    while c.height < rec.finalisation_deadline {
        c.empty();
    }
    assert_eq!(c.task(&id).settlement, rec.settlement);
    let paid: u64 = s.payouts.iter().map(|p| p.amount.0).sum();
    assert_eq!(paid + s.refund.0, fee.0 + stake);
    assert!(no_deadline_left(&c));
    let view = task_view(&c.state, &id).unwrap();
    assert_eq!(view.verdicts.len(), 3);
    assert!(view.verdicts.iter().all(|x| x.verdict == hash_of(&v)));
}

#[test]
fn a_silent_evaluators_share_goes_back_to_the_client_at_the_finalisation_deadline() {
    let (mut c, id) = committee_task();
    let p = c.task(&id).participants;
    let miners = submit_all(&mut c, id);
    let evs = workers(&p.evaluators);
    let silent = c.balance(account_of(&evs[2]));
    let v = verdict(&c, id, &miners, &[]);
    c.participants_tx(&evs[0], v.clone()).unwrap();
    c.participants_tx(&evs[1], v.clone()).unwrap();
    let rec = c.task(&id);
    let share = evaluator_quota(Amount(1_000 * COIN)).0 / 3;
    assert_eq!(rec.escrow, Amount(share));
    let refund = rec.settlement.as_ref().unwrap().refund;
    let b0 = c.balance(0);
    assert_eq!(c.balance(account_of(&evs[2])), silent + 20 * COIN, "stake back at execution");
    while c.height + 1 < rec.finalisation_deadline {
        c.empty();
    }
    assert_eq!(c.task(&id).escrow, Amount(share), "held until the deadline");
    // A vote in block F is too late (the deadline runs first).
    assert_eq!(c.participants_tx(&evs[2], v.clone()), Err(E::TaskClosed(id)));
    c.empty(); // block F
    let done = c.task(&id);
    assert_eq!(done.status, rec.status, "still completed");
    assert_eq!(done.escrow, Amount::ZERO);
    let s = done.settlement.unwrap();
    assert!(s.held.is_empty());
    assert_eq!(s.refund.0, refund.0 + share);
    assert_eq!(c.balance(0), b0 + share);
    assert!(s.payouts.iter().all(|p| p.to != evs[2]), "never paid");
    assert_eq!(c.balance(account_of(&evs[2])), silent + 20 * COIN, "and never penalised");
    assert_eq!(c.participants_tx(&evs[2], v), Err(E::TaskClosed(id)));
    assert!(no_deadline_left(&c));
}

#[test]
fn a_late_vote_for_another_verdict_is_not_paid_and_its_share_goes_to_the_client() {
    // Two models: training ends at its deadline, then the verdict executes.
    let (mut c, id) = committee_task();
    let p = c.task(&id).participants;
    let miners = workers(&p.miners);
    c.participants_tx(&miners[0], submit(id, b"a")).unwrap();
    c.participants_tx(&miners[1], submit(id, b"b")).unwrap();
    let rec = c.task(&id);
    while c.height < rec.training_deadline {
        c.empty();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }));
    let evs = workers(&p.evaluators);
    let v = verdict(&c, id, &miners[..2], &[]);
    let lie = verdict(&c, id, &[miners[1], miners[0]], &[]);
    c.participants_tx(&evs[0], v.clone()).unwrap();
    c.participants_tx(&evs[1], v.clone()).unwrap();
    let before = c.task(&id).settlement.unwrap();
    assert_eq!(before.held, vec![evs[2]]);
    let (b0, liar) = (c.balance(0), c.balance(account_of(&evs[2])));
    // The last block before F still takes a late vote.
    while c.height + 2 < rec.finalisation_deadline {
        c.empty();
    }
    c.participants_tx(&evs[2], lie.clone()).unwrap();
    let after = c.task(&id);
    let s = after.settlement.clone().unwrap();
    let share = before.evaluator_share.0;
    assert_eq!(after.escrow, Amount::ZERO);
    assert!(s.held.is_empty());
    assert_eq!(s.payouts, before.payouts, "not paid");
    assert!(s.penalties.is_empty(), "not penalised: a vote after the execution changes nothing");
    assert_eq!(s.refund.0, before.refund.0 + share);
    assert_eq!(c.balance(0), b0 + share);
    assert_eq!(c.balance(account_of(&evs[2])), liar - 1, "only its transaction fee");
    // Recorded: the view shows it.
    let view = task_view(&c.state, &id).unwrap();
    assert!(view.verdicts.iter().any(|x| x.evaluator == evs[2] && x.verdict == hash_of(&lie)));
    // Block F: nothing is held any more.
    assert_eq!(c.height + 1, rec.finalisation_deadline);
    assert_eq!(c.participants_tx(&evs[2], v), Err(E::TaskClosed(id)));
    c.empty();
    assert_eq!(c.task(&id).settlement, Some(s));
    assert!(no_deadline_left(&c));
}

#[test]
fn two_evaluators_cannot_confiscate_the_third() {
    // A majority of evaluators voting to take the third one's stake (and share) is refused:
    // no evaluator is ever convicted on chain (design/013).
    let (mut c, id) = committee_task();
    let p = c.task(&id).participants;
    let miners = submit_all(&mut c, id);
    let evs = workers(&p.evaluators);
    let v = verdict(&c, id, &miners, &[evs[2]]);
    for e in &evs[..2] {
        assert_eq!(c.participants_tx(e, v.clone()), Err(E::UnprovenConfiscation(evs[2])));
    }
    let honest = verdict(&c, id, &miners, &[]);
    for e in &evs {
        c.participants_tx(e, honest.clone()).unwrap();
    }
    let s = c.task(&id).settlement.unwrap();
    // The quota is split over all three evaluators; the third claimed its held share.
    assert_eq!(s.evaluator_share, Amount(evaluator_quota(Amount(1_000 * COIN)).0 / 3));
    assert!(s.held.is_empty());
    assert!(s.confiscated.is_empty() && s.penalties.is_empty());
}

// ---- validation ------------------------------------------------------------------------

#[test]
fn pay_for_task_and_buy_ticket_validation_errors() {
    let c = Chain::new();
    let check = |kind: TxKind| check_tx_stateless(&c.tx(0, kind), &c.spec);
    let pay = |task: TaskDefinition, fee: u64| TxKind::PayForTask { task, fee: Amount(fee) };
    assert_eq!(check(pay(valid_task(1), 0)), Err(E::ZeroAmount("task fee")));
    let mut big_batch = valid_task(1);
    big_batch.optimizer.batch_size = 71; // 100 samples: 70 for training
    let err = check(pay(big_batch, COIN)).unwrap_err();
    assert!(matches!(
        err,
        E::InvalidTask(pouw_primitives::TaskDefError::BatchLargerThanTrainingSet {
            batch: 71,
            train_samples: 70
        })
    ));
    assert!(err.to_string().contains("optimizer.batch_size"), "{err}");
    let mut committee = valid_task(3);
    committee.workers.max_faulty = 1;
    committee.workers.supervisors = 4;
    let err = check(pay(committee, COIN)).unwrap_err();
    assert!(matches!(
        err,
        E::InvalidTask(pouw_primitives::TaskDefError::CommitteeTooSmall {
            field: "workers.evaluators",
            n: 3,
            max_faulty: 1
        })
    ));
    assert!(check(pay(valid_task(1), COIN)).is_ok());
    // Tickets: stake below the minimum (and zero) refused before any state is read.
    let min = c.spec.min_ticket_stake.0;
    for stake in [0, min - 1] {
        let t = TxKind::BuyTicket {
            role: Role::Miner,
            stake: Amount(stake),
            preferences: TicketPreferences::default(),
            expires_at: 5,
        };
        assert!(matches!(check(t), Err(E::StakeTooLow { .. })));
    }
    // The same rules inside a block.
    let mut c = Chain::new();
    assert_eq!(c.one(0, pay(valid_task(1), 0)), Err(E::ZeroAmount("task fee")));
    let mut d = valid_task(1);
    d.deadlines.training_blocks = u64::MAX;
    assert_eq!(c.one(0, pay(d, COIN)), Err(E::DeadlineOverflow));
    for expires_at in [0, 1, 2_000] {
        let err = c.one(1, ticket(Role::Miner, 20, expires_at)).unwrap_err();
        assert!(matches!(err, E::BadTicketExpiry { .. }), "{expires_at}: {err:?}");
    }
}

#[test]
fn unknown_layers_and_activations_do_not_decode() {
    let d = valid_task(1);
    let bytes = codec::encode(&d);
    let layer = codec::encode(&LayerDef::Dense { units: 8, activation: Activation::Relu });
    let at = bytes.windows(layer.len()).position(|w| w == layer.as_slice()).unwrap();
    // Unknown activation tag.
    let mut bad = bytes.clone();
    bad[at + layer.len() - 1] = 9;
    assert!(codec::decode::<TaskDefinition>(&bad).is_err());
    // Unknown layer kind tag.
    let mut bad = bytes.clone();
    bad[at] = 5;
    assert!(codec::decode::<TaskDefinition>(&bad).is_err());
    assert_eq!(codec::decode::<TaskDefinition>(&bytes).unwrap(), d);
}

// ---- blocks mined on client tasks ------------------------------------------------------

#[test]
fn only_selected_miners_mine_on_a_client_task_in_training() {
    use proptest::strategy::{Strategy, ValueTree};
    let (mut c, id) = selected_task();
    let rec = c.task(&id);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut b =
        pouw_primitives::test_utils::signed_block().new_tree(&mut runner).unwrap().current();
    b.header.task_id = id;
    b.header.miner = rec.participants.miners[0].worker;
    assert_eq!(check_block_task(&c.state, &b), Ok(()));
    b.header.miner = addr(13);
    assert!(matches!(check_block_task(&c.state, &b), Err(E::NotAuthorized { .. })));
    // apply_block runs the same rule.
    let mut blk = c.block(vec![]);
    blk.header.task_id = id;
    blk.header.miner = addr(13);
    blk.proof = b.proof.clone();
    assert!(matches!(apply_block(&c.state, &blk, &c.spec), Err(E::NotAuthorized { .. })));
    // Another task id (a filler task) is not this rule's business.
    b.header.task_id = Hash::digest(b"filler");
    assert_eq!(check_block_task(&c.state, &b), Ok(()));
    // Once training is over, no more blocks on the task.
    while c.height < rec.training_deadline {
        c.empty();
    }
    b.header.task_id = id;
    b.header.miner = rec.participants.miners[0].worker;
    assert!(matches!(check_block_task(&c.state, &b), Err(E::WrongPhase { .. })));
}

// ---- convictions (design/009) ------------------------------------------------------------

/// Iteration `iteration` of `miner` for `task`, signed by the miner, with `loss` to tell
/// variants apart.
fn message(task: Hash, miner: Address, iteration: u64, loss: u32) -> IterationMessage {
    let mut body = IterationBody::identity(task, miner, iteration);
    body.loss = loss;
    body.sign(&key(account_of(&miner)))
}

fn accuse(task: Hash, miner: Address) -> TxKind {
    let message = Box::new(message(task, miner, 3, 0));
    TxKind::AccuseMiner { task_id: task, miner, evidence: MinerEvidence::Flagged { message } }
}

fn equivocation(first: IterationMessage, second: IterationMessage) -> TxKind {
    TxKind::AccuseMiner {
        task_id: first.body.task_id,
        miner: first.body.miner,
        evidence: MinerEvidence::Equivocation { first: Box::new(first), second: Box::new(second) },
    }
}

#[test]
fn an_accusation_must_carry_the_accused_miners_own_signed_message_of_the_task() {
    let (mut c, id) = committee_task();
    let p = c.task(&id).participants;
    let (miners, sups) = (workers(&p.miners), workers(&p.supervisors));
    let flagged = |message| TxKind::AccuseMiner {
        task_id: id,
        miner: miners[0],
        evidence: MinerEvidence::Flagged { message: Box::new(message) },
    };
    let other_task = message(Hash::digest(b"another task"), miners[0], 3, 0);
    let other_miner = message(id, miners[1], 3, 0);
    let mut forged = message(id, miners[0], 3, 0);
    forged.body.loss = 7; // changed after signing
    let unsigned = IterationBody::identity(id, miners[0], 3).sign(&key(account_of(&sups[0])));
    for (bad, why) in [
        (other_task, "of task"),
        (other_miner, "signed by"),
        (forged, "bad signature"),
        (unsigned, "bad signature"),
    ] {
        let e = c.participants_tx(&sups[0], flagged(bad)).unwrap_err();
        assert!(e.to_string().contains(why), "{why}: {e}");
    }
    // Equivocation evidence: two different messages of one iteration, else refused.
    let same = message(id, miners[0], 3, 0);
    let e = c.participants_tx(&sups[0], equivocation(same.clone(), same)).unwrap_err();
    assert!(e.to_string().contains("one message twice"), "{e}");
    let e = c
        .participants_tx(
            &sups[0],
            equivocation(message(id, miners[0], 3, 0), message(id, miners[0], 4, 1)),
        )
        .unwrap_err();
    assert!(e.to_string().contains("iterations 3 and 4"), "{e}");
    let e = c
        .participants_tx(
            &sups[0],
            equivocation(message(id, miners[0], 3, 0), message(id, miners[1], 3, 1)),
        )
        .unwrap_err();
    assert!(e.to_string().contains("signed by"), "{e}");
    assert!(c.task(&id).accusations.is_empty(), "no refused accusation is recorded");
}

#[test]
fn an_equivocation_convicts_on_its_own_and_spares_outvoted_supervisors() {
    // 3 supervisors: two commit one root for slot 0, the third another (it saw the other
    // variant of the equivocating miner's iteration). One supervisor's equivocation evidence
    // convicts the miner; the verdict must confiscate it, and the supervisor in the minority
    // keeps its stake and is paid.
    let (mut c, id) = committee_task();
    let p = c.task(&id).participants;
    let (miners, sups) = (workers(&p.miners), workers(&p.supervisors));
    let (cheat, honest) = (miners[0], &miners[1..]);
    let (a, b) = (message(id, cheat, 5, 1), message(id, cheat, 5, 2));
    for (s, root) in sups.iter().zip([a.id(), a.id(), b.id()]) {
        c.participants_tx(s, root_tx(id, 0, history_root(&[root]))).unwrap();
    }
    c.participants_tx(&sups[2], equivocation(a.clone(), b)).unwrap();
    let rec = c.task(&id);
    assert_eq!(rec.convictions.len(), 1, "one supervisor's equivocation evidence convicts");
    assert_eq!(rec.convictions[0].miner, cheat);
    assert_eq!(rec.convictions[0].equivocation, Some(5));
    assert_eq!(rec.accusations[0].evidence, a.id());
    for m in honest {
        c.participants_tx(m, submit(id, &m.0)).unwrap();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }));
    let before = c.balance(account_of(&sups[2]));
    let v = verdict(&c, id, honest, &[cheat]);
    for e in workers(&p.evaluators).iter().take(2) {
        c.participants_tx(e, v.clone()).unwrap();
    }
    let s = c.task(&id).settlement.unwrap();
    assert!(s.penalties.is_empty(), "{:?}", s.penalties);
    assert_eq!(s.confiscated, vec![p.miners[0].clone()]);
    let share = supervisor_quota(Amount(1_000 * COIN)).0 / 3;
    assert_eq!(c.balance(account_of(&sups[2])), before + 20 * COIN + share, "stake and share");
}

#[test]
fn a_majority_of_supervisors_convicts_a_miner_and_the_chain_holds_it_to_that() {
    // 3 miners, 3 supervisors, 3 evaluators: a strict majority is 2 supervisors.
    let (mut c, id) = committee_task();
    let p = c.task(&id).participants;
    let (miners, sups) = (workers(&p.miners), workers(&p.supervisors));
    let (cheat, done, heir) = (miners[0], miners[1], miners[2]);
    // Only a selected supervisor accuses, only a selected miner.
    let e = unwrap_tx_error(c.participants_tx(&miners[1], accuse(id, cheat)).unwrap_err());
    assert!(matches!(e, E::NotAuthorized { .. }), "{e}");
    let e = c.participants_tx(&sups[0], accuse(id, sups[1])).unwrap_err();
    assert!(e.to_string().contains("is not a selected miner"), "{e}");
    // One miner finished before the conviction: it inherits nothing.
    c.participants_tx(&done, submit(id, b"done")).unwrap();
    c.participants_tx(&sups[0], accuse(id, cheat)).unwrap();
    let rec = c.task(&id);
    assert_eq!(rec.accusations.len(), 1);
    assert!(rec.convictions.is_empty(), "one of three supervisors convicts nobody");
    let twice = unwrap_tx_error(c.participants_tx(&sups[0], accuse(id, cheat)).unwrap_err());
    assert!(matches!(twice, E::AlreadyRecorded { .. }), "{twice}");
    c.participants_tx(&sups[1], accuse(id, cheat)).unwrap();
    let rec = c.task(&id);
    assert_eq!(rec.convictions.len(), 1);
    let conviction = &rec.convictions[0];
    assert_eq!((conviction.miner, conviction.at), (cheat, c.height));
    assert_eq!(conviction.heirs, vec![heir], "the miners still training, in selection order");
    assert_eq!(
        pouw_consensus::pouw::Handover::of_task(&rec),
        vec![pouw_consensus::pouw::Handover { convicted: 0, heirs: vec![2] }]
    );
    let again = unwrap_tx_error(c.participants_tx(&sups[2], accuse(id, cheat)).unwrap_err());
    assert_eq!(again, E::Convicted { task: id, miner: cheat });
    // The convict may no longer mine the task or submit a model.
    let mut blk = c.block(vec![]);
    blk.header.task_id = id;
    blk.header.miner = cheat;
    blk.proof = Some(pouw_primitives::PouwProof {
        winning: pouw_primitives::IterationBody::identity(id, cheat, 0).sign(&key(0)),
        committing: pouw_primitives::IterationBody::identity(id, cheat, 0).sign(&key(0)),
    });
    assert_eq!(check_block_task(&c.state, &blk), Err(E::Convicted { task: id, miner: cheat }));
    let model = unwrap_tx_error(c.participants_tx(&cheat, submit(id, b"poisoned")).unwrap_err());
    assert_eq!(model, E::Convicted { task: id, miner: cheat });
    // Training ends once the miners not convicted submitted.
    c.participants_tx(&heir, submit(id, b"heir")).unwrap();
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }));
    // A verdict must confiscate the convict.
    let evs = workers(&p.evaluators);
    let lenient = unwrap_tx_error(
        c.participants_tx(&evs[0], verdict(&c, id, &[heir, done], &[])).unwrap_err(),
    );
    assert_eq!(lenient, E::ConvictionNotConfiscated(cheat));
    let v = verdict(&c, id, &[heir, done], &[cheat]);
    for e in &evs[..2] {
        c.participants_tx(e, v.clone()).unwrap();
    }
    let rec = c.task(&id);
    assert!(matches!(rec.status, TaskStatus::Completed { .. }));
    assert_eq!(rec.settlement.unwrap().confiscated_stake, Amount(20 * COIN));
    let view = task_view(&c.state, &id).unwrap();
    assert_eq!(view.convictions.len(), 1);
    assert_eq!(view.accusations.len(), 2);
}

// ---- verifiers (design/006) --------------------------------------------------------------

/// [`selected_task`]'s workers plus verifier tickets of accounts 12-14 (stakes 10, 20, 30
/// coins), and a 3/4/4 task with f = 1 that wants `verifiers`.
fn task_with_verifiers(verifiers: u16) -> (Chain, Hash) {
    let mut c = Chain::new();
    let mut list = vec![];
    for i in 1..=3 {
        list.push((i, Role::Miner, 20));
    }
    for i in 4..=7 {
        list.push((i, Role::Supervisor, 20));
    }
    for i in 8..=11 {
        list.push((i, Role::Evaluator, 20));
    }
    for (i, stake) in [(12, 10), (13, 20), (14, 30)] {
        list.push((i, Role::Verifier, stake));
    }
    c.tickets(&list);
    let mut d = def(3, 4, 4, 1);
    d.workers.verifiers = verifiers;
    let id = c.pay(d, 1_000);
    c.empty(); // selection
    (c, id)
}

#[test]
fn verifiers_are_selected_like_the_other_roles_and_recorded_in_state() {
    let (c, id) = task_with_verifiers(3);
    let rec = c.task(&id);
    assert_eq!(rec.status, TaskStatus::Training);
    let p = &rec.participants;
    let verifiers: BTreeSet<Address> = workers(&p.verifiers).into_iter().collect();
    assert_eq!(verifiers, BTreeSet::from([addr(12), addr(13), addr(14)]));
    // One seat per worker across roles; the verifiers' tickets are bound to the task.
    let all: BTreeSet<Address> = p.all().map(|(_, s)| s.worker).collect();
    assert_eq!(all.len(), 14);
    for s in &p.verifiers {
        assert!(c
            .state
            .get(&StateKey::FreeTicket { role: Role::Verifier, ticket: s.ticket })
            .is_none());
        assert_eq!(
            pouw_consensus::authorize_worker(&id, &rec, &s.worker, Role::Verifier),
            Ok(s.ticket)
        );
    }
    // A task that wants none selects none; its verifier tickets stay free.
    let (c0, id0) = task_with_verifiers(0);
    let p0 = c0.task(&id0).participants;
    assert!(p0.verifiers.is_empty());
    assert_eq!(p0.all().count(), 11);
    // Deterministic.
    let (c2, id2) = task_with_verifiers(3);
    assert_eq!(c2.task(&id2).participants, rec.participants);
    // The block committee of a client-task block is the task's verifiers.
    let mut header = c.block(vec![]).header;
    header.task_id = id;
    let committee: BTreeSet<Address> = block_verifiers(&c.state, &header).into_iter().collect();
    assert_eq!(committee, verifiers);
}

#[test]
fn too_few_verifier_tickets_refuses_the_task_and_the_client_sees_it_before_paying() {
    let mut c = Chain::new();
    let mut list = vec![];
    for i in 1..=3 {
        list.push((i, Role::Miner, 20));
    }
    for i in 4..=7 {
        list.push((i, Role::Supervisor, 20));
    }
    for i in 8..=11 {
        list.push((i, Role::Evaluator, 20));
    }
    list.push((12, Role::Verifier, 20));
    list.push((13, Role::Verifier, 20));
    c.tickets(&list);
    let mut d = def(3, 4, 4, 1);
    d.workers.verifiers = 3;
    let before = check_workers_available(&c.state, &d, Amount(1_000 * COIN), &addr(0), c.height);
    assert_eq!(
        before,
        Err(Refusal::NotEnoughWorkers { role: Role::Verifier, wanted: 3, available: 2 })
    );
    let balance = c.balance(0);
    let id = c.pay(d, 1_000);
    c.empty();
    let rec = c.task(&id);
    assert_eq!(
        rec.status,
        TaskStatus::Refused {
            at: c.height,
            reason: Refusal::NotEnoughWorkers { role: Role::Verifier, wanted: 3, available: 2 },
        }
    );
    assert_eq!(c.balance(0), balance - 1); // the fee back, the transaction fee spent
                                           // Nobody is bound: every ticket is still free.
    for i in 12..=13 {
        let ids = pouw_consensus::tickets_of(
            &pouw_consensus::Overlay::new(&c.state),
            &addr(i),
            Role::Verifier,
        );
        assert!(c
            .state
            .get(&StateKey::FreeTicket { role: Role::Verifier, ticket: ids[0] })
            .is_some());
    }
}

#[test]
fn verifier_tickets_are_released_at_the_end_and_money_adds_up() {
    // Completion: verifiers get their stake back (they are not paid from the fee).
    let (mut c, id) = task_with_verifiers(3);
    let rec = c.task(&id);
    let p = rec.participants;
    let before: Vec<u64> = (0..16).map(|i| c.balance(i)).collect();
    for s in &p.miners {
        c.participants_tx(&s.worker, submit(id, &s.worker.0)).unwrap();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Finalising { .. }));
    let ranking: Vec<Address> = workers(&p.miners);
    let v = verdict(&c, id, &ranking, &[]);
    for e in &p.evaluators[..3] {
        c.participants_tx(&e.worker, v.clone()).unwrap();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Completed { .. }));
    for (stake, s) in p.verifiers.iter().map(|s| ([10, 20, 30][account_of(&s.worker) - 12], s)) {
        assert!(c.state.get(&StateKey::Ticket(s.ticket)).is_none());
        let i = account_of(&s.worker);
        assert_eq!(c.balance(i), before[i] + stake * COIN, "verifier {i}");
    }
    // Expiry: every verifier ticket released too (conservation is checked after every block
    // by `Chain::apply`).
    let (mut c, id) = task_with_verifiers(3);
    let rec = c.task(&id);
    let before: Vec<u64> = (0..16).map(|i| c.balance(i)).collect();
    while c.height < rec.finalisation_deadline {
        c.empty();
    }
    assert!(matches!(c.task(&id).status, TaskStatus::Expired { .. }));
    for s in &rec.participants.verifiers {
        assert!(c.state.get(&StateKey::Ticket(s.ticket)).is_none());
        let i = account_of(&s.worker);
        assert_eq!(c.balance(i), before[i] + [10, 20, 30][i - 12] * COIN, "verifier {i}");
    }
}

#[test]
fn filler_blocks_draw_their_verifiers_by_stake_from_the_parent_hash() {
    let mut c = Chain::new();
    // Four verifier tickets (one of them the block miner's, never drawn for its own block).
    c.tickets(&[
        (12, Role::Verifier, 10),
        (13, Role::Verifier, 20),
        (14, Role::Verifier, 30),
        (15, Role::Verifier, 40),
    ]);
    let header = |parent: &[u8]| {
        let mut h = c.block(vec![]).header;
        h.prev_hash = Hash::digest(parent);
        h.task_id = Hash::digest(b"some filler task");
        h
    };
    let h = header(b"p1");
    let got = block_verifiers(&c.state, &h);
    assert_eq!(got.len(), 3);
    assert!(!got.contains(&miner()), "the block's miner attests its own block");
    let set: BTreeSet<Address> = got.iter().copied().collect();
    assert_eq!(set, BTreeSet::from([addr(12), addr(13), addr(14)]));
    assert_eq!(block_verifiers(&c.state, &h), got, "deterministic");
    // Stake-weighted order: over many parents the heaviest verifier is drawn first most often.
    let mut first = BTreeMap::<Address, u32>::new();
    for i in 0..600u32 {
        let h = header(&i.to_le_bytes());
        *first.entry(block_verifiers(&c.state, &h)[0]).or_default() += 1;
    }
    let n = |i| first.get(&addr(i)).copied().unwrap_or(0);
    assert!(n(14) > n(12), "{first:?}");
    // No verifier ticket: no committee, so no quorum (light nodes replay).
    let empty = Chain::new();
    assert!(block_verifiers(&empty.state, &h).is_empty());
    assert_eq!(attestation_quorum(0), None);
    assert_eq!(attestation_quorum(1), Some(1));
    assert_eq!(attestation_quorum(3), Some(2));
    assert_eq!(attestation_quorum(4), Some(3));
    // Zero stake is never a candidate.
    let zero = Candidate { ticket: Hash::digest(b"z"), owner: addr(1), stake: Amount(0) };
    let one = Candidate { ticket: Hash::digest(b"o"), owner: addr(2), stake: Amount(COIN) };
    let task = Hash::digest(b"t");
    assert_eq!(
        select_weighted(
            &task,
            &task,
            Role::Verifier,
            &[zero.clone(), one.clone()],
            2,
            &BTreeSet::new()
        ),
        Err(1)
    );
    let got =
        select_weighted(&task, &task, Role::Verifier, &[zero, one], 1, &BTreeSet::new()).unwrap();
    assert_eq!(got[0].owner, addr(2));
}

#[test]
fn a_verifier_count_must_outvote_the_declared_faults() {
    let mut d = def(3, 4, 4, 1);
    d.workers.verifiers = 2;
    let e = d.validate().unwrap_err().to_string();
    assert!(e.contains("workers.verifiers"), "{e}");
    d.workers.verifiers = 3;
    d.validate().unwrap();
    d.workers.verifiers = 0;
    d.validate().unwrap();
    d.workers.verifiers = 65;
    let e = d.validate().unwrap_err().to_string();
    assert!(e.contains("workers.verifiers"), "{e}");
}

// ---- minimum task cost and committees a client cannot pick (design/010, attack 2) -----------

#[test]
fn a_task_below_the_minimum_task_cost_is_refused() {
    let mut c = Chain::new();
    let devnet = ChainSpec::devnet();
    (c.spec.min_task_nonces, c.spec.min_flops_per_nonce) =
        (devnet.min_task_nonces, devnet.min_flops_per_nonce);
    assert_eq!((c.spec.min_task_nonces, c.spec.min_flops_per_nonce), (8, 200_000));
    let pay = |task: TaskDefinition| TxKind::PayForTask { task, fee: Amount(100 * COIN) };
    // The 4-8-3 task with batch 8 earns the fixed part of an iteration's price only.
    let tiny = valid_task(1);
    assert_eq!(pouw_consensus::pouw::task_nonce_budget(&c.spec, &tiny), 2);
    let err = check_tx_stateless(&c.tx(0, pay(tiny.clone())), &c.spec).unwrap_err();
    assert_eq!(err, E::TaskTooCheap { nonces: 2, min: 8 });
    assert!(err.to_string().contains("minimum task cost"), "{err}");
    // In a block it is refused too, and nothing is paid.
    let before = c.balance(0);
    assert_eq!(c.one(0, pay(tiny)), Err(E::TaskTooCheap { nonces: 2, min: 8 }));
    assert_eq!(c.balance(0), before);
    // The filler's shape (784-64-10, batch 32) earns 17 nonces: paid under a minimum of 17,
    // refused under 18.
    let mut sized = valid_task(1);
    sized.model.input_shape = vec![784];
    sized.model.classes = 10;
    sized.model.layers = vec![
        LayerDef::Dense { units: 64, activation: Activation::Relu },
        LayerDef::Dense { units: 10, activation: Activation::None },
    ];
    sized.optimizer.batch_size = 32;
    assert_eq!(pouw_consensus::pouw::task_nonce_budget(&c.spec, &sized), 17);
    c.spec.min_task_nonces = 18;
    let err = check_tx_stateless(&c.tx(0, pay(sized.clone())), &c.spec).unwrap_err();
    assert_eq!(err, E::TaskTooCheap { nonces: 17, min: 18 });
    // One hidden unit: the batch bytes still earn 4 nonces, but the iteration spends only
    // 4 * 32 * (784 + 10) FLOPs on them, under the devnet's 200,000 FLOPs per nonce.
    let mut narrow = sized.clone();
    narrow.model.layers = vec![
        LayerDef::Dense { units: 1, activation: Activation::Relu },
        LayerDef::Dense { units: 10, activation: Activation::None },
    ];
    c.spec.min_task_nonces = 1;
    let err = check_tx_stateless(&c.tx(0, pay(narrow)), &c.spec).unwrap_err();
    assert_eq!(err, E::TaskTooCheapPerNonce { flops: 101_632, nonces: 4, min_per_nonce: 200_000 });
    assert!(err.to_string().contains("FLOPs per nonce"), "{err}");
    // Eight inputs: priced well enough, but the order seed could shuffle only 8 features
    // (8! orders), under the devnet's 9; nine pass.
    let mut narrow_input = sized.clone();
    narrow_input.model.input_shape = vec![8];
    narrow_input.model.layers = vec![
        LayerDef::Dense { units: 2_000, activation: Activation::Relu },
        LayerDef::Dense { units: 10, activation: Activation::None },
    ];
    narrow_input.optimizer.batch_size = 64;
    c.spec.min_order_units = devnet.min_order_units;
    let err = check_tx_stateless(&c.tx(0, pay(narrow_input.clone())), &c.spec).unwrap_err();
    assert_eq!(err, E::TaskOrderTooSmall { units: 8, min: 9 });
    narrow_input.model.input_shape = vec![9];
    check_tx_stateless(&c.tx(0, pay(narrow_input)), &c.spec).unwrap();
    c.spec.min_task_nonces = 17;
    let id = c.pay(sized, 100);
    assert_eq!(c.task(&id).status, TaskStatus::Registered);
}

#[test]
fn a_client_cannot_pick_its_committees_with_filters() {
    let mut c = Chain::new();
    let gpu = |role: Role| TxKind::BuyTicket {
        role,
        stake: Amount(1_000 * COIN),
        preferences: TicketPreferences { has_gpu: true, max_params: 0, min_fee: Amount::ZERO },
        expires_at: 500,
    };
    // The client (0) and its accomplice (1) hold large GPU tickets in every role; the honest
    // workers hold the chain's minimum stake and no GPU.
    for i in [0, 1] {
        for role in [Role::Miner, Role::Supervisor, Role::Evaluator] {
            c.one(i, gpu(role)).unwrap();
        }
    }
    c.tickets_until(
        &[
            (2, Role::Supervisor, 10),
            (3, Role::Supervisor, 10),
            (4, Role::Evaluator, 10),
            (5, Role::Evaluator, 10),
            (6, Role::Miner, 10),
        ],
        500,
    );
    // Filters only the client's side meets.
    let mut d = def(1, 2, 2, 0);
    d.preferences.min_stake = Amount(500 * COIN);
    d.preferences.needs_gpu = true;
    let avail =
        pouw_consensus::available_workers(&c.state, &d, Amount(100 * COIN), &addr(0), c.height)
            .unwrap();
    // Miners: only the accomplice claims a GPU (the client's own ticket never counts);
    // supervisors and evaluators: every ticket but the client's, whatever the filters.
    assert_eq!((avail.miners, avail.supervisors, avail.evaluators), (1, 3, 3));
    let id = c.pay(d, 100);
    c.empty();
    let rec = c.task(&id);
    assert_eq!(rec.status, TaskStatus::Training);
    assert_eq!(workers(&rec.participants.miners), vec![addr(1)]);
    // The accomplice holds one seat; the committees are the honest workers.
    let sup: BTreeSet<Address> = workers(&rec.participants.supervisors).into_iter().collect();
    let eva: BTreeSet<Address> = workers(&rec.participants.evaluators).into_iter().collect();
    assert_eq!(sup, BTreeSet::from([addr(2), addr(3)]));
    assert_eq!(eva, BTreeSet::from([addr(4), addr(5)]));
}

// ---- the client's bond (design/014) ------------------------------------------------------

mod bond {
    use super::*;

    const BOND: u64 = 200 * COIN; // 20 % of the 1000-coin fee

    /// A chain with the devnet's client bond (2000 bps).
    fn bonded_chain() -> Chain {
        let mut c = Chain::new();
        c.spec.client_bond_bps = 2_000;
        c
    }

    /// [`committee_task`] with the bond: 3 miners, 3 supervisors, 3 evaluators, 1000 coins;
    /// returns (chain, task, the client's balance before the PayForTask).
    fn bonded_task() -> (Chain, Hash, u64) {
        let mut c = bonded_chain();
        c.staff(3, 3, 3);
        let before = c.balance(0);
        let id = c.pay(def(3, 3, 3, 0), 1_000);
        assert_eq!(c.balance(0), before - 1_000 * COIN - BOND - 1, "fee and bond locked");
        assert_eq!(c.task(&id).bond, Amount(BOND));
        assert_eq!(c.task(&id).escrow, Amount(1_000 * COIN));
        c.empty(); // selection
        (c, id, before)
    }

    fn run_to_finalisation_deadline(c: &mut Chain, id: Hash) {
        let f = c.task(&id).finalisation_deadline;
        while c.height < f {
            c.empty();
        }
        assert_eq!(c.task(&id).status, TaskStatus::Expired { at: f });
    }

    #[test]
    fn the_bond_is_locked_and_returned_with_the_verdict() {
        let (mut c, id, _) = bonded_task();
        let miners = submit_all(&mut c, id);
        let evs = workers(&c.task(&id).participants.evaluators);
        let v = verdict(&c, id, &miners, &[]);
        let b0 = c.balance(0);
        c.participants_tx(&evs[0], v.clone()).unwrap();
        c.participants_tx(&evs[1], v).unwrap();
        let done = c.task(&id);
        assert!(matches!(done.status, TaskStatus::Completed { .. }));
        assert_eq!(done.bond, Amount::ZERO);
        let s = done.settlement.unwrap();
        assert_eq!((s.bond_returned, s.bond_confiscated), (Amount(BOND), Amount::ZERO));
        assert_eq!(c.balance(0), b0 + s.refund.0 + BOND);
        assert_eq!(task_view(&c.state, &id).unwrap().bond, Amount::ZERO);
    }

    #[test]
    fn a_withheld_test_set_confiscates_the_bond_and_pays_the_miners_that_submitted() {
        let (mut c, id, before) = bonded_task();
        let rec = c.task(&id);
        let miners = workers(&rec.participants.miners);
        // Two of three miners submit; one evaluator of three votes (not a majority: the
        // client served at most a minority of the committee).
        c.participants_tx(&miners[0], submit(id, b"m0")).unwrap();
        c.participants_tx(&miners[1], submit(id, b"m1")).unwrap();
        while c.height < rec.training_deadline {
            c.empty();
        }
        let evs = workers(&rec.participants.evaluators);
        let v = verdict(&c, id, &miners[..2], &[]);
        c.participants_tx(&evs[0], v).unwrap();
        let m = |c: &Chain, i: usize| c.balance(account_of(&miners[i]));
        let start = [m(&c, 0), m(&c, 1), m(&c, 2)];
        run_to_finalisation_deadline(&mut c, id);
        let done = c.task(&id);
        assert_eq!((done.bond, done.escrow), (Amount::ZERO, Amount::ZERO));
        let s = done.settlement.unwrap();
        assert_eq!((s.bond_confiscated, s.bond_returned), (Amount(BOND), Amount::ZERO));
        // Equal parts of the miners' share (800) and the bond (200): 500 coins each.
        let share = 500 * COIN;
        assert_eq!(
            s.payouts,
            vec![
                Payout { to: miners[0], amount: Amount(share) },
                Payout { to: miners[1], amount: Amount(share) }
            ]
        );
        let stake = 20 * COIN;
        assert_eq!(
            [m(&c, 0), m(&c, 1), m(&c, 2)],
            [start[0] + share + stake, start[1] + share + stake, start[2] + stake]
        );
        // The client gets the committees' quotas back (200), loses the miners' share and the
        // bond: 1000 coins of its 1200 locked.
        assert_eq!(s.refund, Amount(200 * COIN));
        assert_eq!(c.balance(0), before - 1_000 * COIN - 1);
    }

    #[test]
    fn a_majority_that_voted_without_agreeing_returns_the_bond_at_expiry() {
        let (mut c, id, before) = bonded_task();
        let miners = submit_all(&mut c, id);
        let evs = workers(&c.task(&id).participants.evaluators);
        let rankings = [
            vec![miners[0], miners[1], miners[2]],
            vec![miners[1], miners[0], miners[2]],
            vec![miners[2], miners[0], miners[1]],
        ];
        for (e, r) in evs.iter().zip(&rankings) {
            let v = verdict(&c, id, r, &[]);
            c.participants_tx(e, v).unwrap();
        }
        run_to_finalisation_deadline(&mut c, id);
        let s = c.task(&id).settlement.unwrap();
        assert_eq!((s.bond_returned, s.bond_confiscated), (Amount(BOND), Amount::ZERO));
        assert!(s.payouts.is_empty());
        assert_eq!(s.refund, Amount(1_000 * COIN));
        assert_eq!(c.balance(0), before - 1);
    }

    #[test]
    fn without_any_model_the_bond_is_returned_at_expiry() {
        let (mut c, id, before) = bonded_task();
        run_to_finalisation_deadline(&mut c, id);
        let s = c.task(&id).settlement.unwrap();
        assert_eq!((s.bond_returned, s.bond_confiscated), (Amount(BOND), Amount::ZERO));
        assert_eq!(c.balance(0), before - 1);
    }

    #[test]
    fn a_refused_task_returns_the_bond() {
        let mut c = bonded_chain();
        let before = c.balance(0);
        let id = c.pay(def(3, 3, 3, 0), 1_000);
        c.empty(); // selection: no tickets
        let rec = c.task(&id);
        assert!(matches!(rec.status, TaskStatus::Refused { .. }));
        assert_eq!(rec.settlement.unwrap().bond_returned, Amount(BOND));
        assert_eq!(c.balance(0), before - 1);
    }

    #[test]
    fn a_client_that_cannot_lock_the_bond_cannot_pay() {
        let mut c = bonded_chain();
        // Enough for the fee, not for the fee and its bond.
        let fee = Amount(c.balance(0) / 10 * 9);
        let t = c.tx(0, TxKind::PayForTask { task: def(3, 3, 3, 0), fee });
        assert!(matches!(c.apply(vec![t]), Err(E::InsufficientBalance { .. })));
    }
}
