//! A miner trains the filler task and mines real PoUW blocks; a chain running the PoUW
//! validator replays and accepts them, and refuses a block whose proof data was tampered with.

use pouw_chain::{BlockError, Chain, ChainConfig, ChainError, ImportOutcome, PouwValidator};
use pouw_ml::Exec;
use pouw_primitives::{Amount, ChainSpec, CompactTarget, Timestamp};
use pouw_storage::ProofStore;
use pouw_work::{MinedBlock, Miner};
use std::sync::Arc;

fn easy_spec() -> ChainSpec {
    let mut spec = ChainSpec::devnet();
    spec.initial_target = CompactTarget(0x2100_ffff);
    spec.max_target = CompactTarget(0x2100_ffff);
    spec
}

fn open(dir: &std::path::Path, spec: &ChainSpec) -> (Chain, Arc<ProofStore>) {
    let proofs = Arc::new(ProofStore::open(dir).unwrap());
    let validator = Arc::new(PouwValidator::new(proofs.clone(), Exec::new(2)));
    let chain = Chain::open_with(dir, spec.clone(), ChainConfig::default(), validator).unwrap();
    (chain, proofs)
}

fn mine_blocks(
    spec: &ChainSpec,
    chain: &mut Chain,
    proofs: &ProofStore,
    n: u64,
) -> Vec<MinedBlock> {
    let mut miner = Miner::new(spec.clone(), ChainSpec::devnet_key(3), Exec::SINGLE);
    let mut mined = vec![];
    for _ in 0..20 * n {
        let (found, loss) = miner.step(chain, &[], Timestamp::now()).unwrap();
        assert!(loss.is_finite());
        if let Some(m) = found {
            let winning = &m.block.proof.as_ref().unwrap().winning.body;
            proofs.put_proof(winning, &m.data).unwrap();
            let outcome = chain.import_block(m.block.clone(), Timestamp::now()).unwrap();
            assert_eq!(outcome, ImportOutcome::Extended);
            mined.push(m);
            if mined.len() as u64 == n {
                break;
            }
        }
    }
    mined
}

#[test]
fn mined_blocks_replay_and_persist() {
    let spec = easy_spec();
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, proofs) = open(dir.path(), &spec);
    let mined = mine_blocks(&spec, &mut chain, &proofs, 3);
    assert_eq!(mined.len(), 3);
    assert_eq!(chain.height(), 3);
    let miner = ChainSpec::devnet_key(3).public();
    let genesis_balance = spec.genesis.allocations.iter().find(|a| a.address == miner).unwrap();
    let expected = genesis_balance.balance.checked_add(Amount(spec.block_reward.0 * 3)).unwrap();
    assert_eq!(chain.account(&miner).balance, expected);
    // Consecutive wins by one miner are k + 1 iterations apart (commit, then mine).
    let its: Vec<u64> =
        mined.iter().map(|m| m.block.proof.as_ref().unwrap().winning.body.iteration).collect();
    assert!(its.windows(2).all(|w| w[1] > w[0]), "{its:?}");
    let tip = chain.tip();
    drop(chain);
    drop(proofs);
    let (chain, _) = open(dir.path(), &spec);
    assert_eq!(chain.tip(), tip);
}

#[test]
fn a_block_whose_replay_differs_is_refused_and_changes_nothing() {
    let spec = easy_spec();
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, proofs) = open(dir.path(), &spec);
    let mined = mine_blocks(&spec, &mut chain, &proofs, 1);
    let m = &mined[0];

    // A second node that received the block but a tampered start model.
    let other = tempfile::tempdir().unwrap();
    let (mut chain2, proofs2) = open(other.path(), &spec);
    let root = chain2.state().root();
    let winning = &m.block.proof.as_ref().unwrap().winning.body;
    let err = chain2.import_block(m.block.clone(), Timestamp::now()).unwrap_err();
    assert!(matches!(err.block_error(), Some(BlockError::Proof(_))), "{err}");
    assert!(err.to_string().contains("not in the proof store"), "{err}");
    let mut data = m.data.clone();
    data.start_params[7] = f32::from_bits(data.start_params[7].to_bits() ^ 1);
    proofs2.put_proof(winning, &data).unwrap();
    let err = chain2.import_block(m.block.clone(), Timestamp::now()).unwrap_err();
    assert!(matches!(&err, ChainError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("model"), "{err}");
    assert_eq!(chain2.height(), 0);
    assert_eq!(chain2.state().root(), root);

    // With the right data the same block is accepted.
    proofs2.put_proof(winning, &m.data).unwrap();
    assert_eq!(
        chain2.import_block(m.block.clone(), Timestamp::now()).unwrap(),
        ImportOutcome::Extended
    );
}

#[test]
fn filler_epochs_switch_tasks_and_keep_verifying() {
    // Epochs of 2 blocks: blocks 1-2 train the task opened by genesis, 3-4 the task opened by
    // block 2, and so on; every block is replayed against its own epoch's task.
    let mut spec = easy_spec();
    spec.filler_epoch_blocks = 2;
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, proofs) = open(dir.path(), &spec);
    let mined = mine_blocks(&spec, &mut chain, &proofs, 5);
    assert_eq!(chain.height(), 5);
    let tasks: Vec<_> = mined.iter().map(|m| m.block.header.task_id).collect();
    assert_eq!(tasks[0], tasks[1]);
    assert_ne!(tasks[1], tasks[2]);
    assert_eq!(tasks[2], tasks[3]);
    assert_ne!(tasks[3], tasks[4]);
}

#[test]
fn a_block_that_trains_an_unscheduled_batch_is_refused_even_though_it_replays() {
    use pouw_consensus::pouw::{
        filler_task, iteration_body, mine_iteration, ml_specs, TaskSchedule,
    };
    use pouw_primitives::{map_hash, Block, PouwProof, Signature};

    let spec = easy_spec();
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, proofs) = open(dir.path(), &spec);
    let mined = mine_blocks(&spec, &mut chain, &proofs, 1);
    let m = &mined[0];
    let proof = m.block.proof.as_ref().unwrap();
    let w = &proof.winning.body;

    // The same miner trains, from the same start state, the batch scheduled for the *next*
    // iteration, and signs it as this one: every hash it names is honest, so the replay alone
    // cannot tell; the schedule can.
    let (task_id, task) = filler_task(&spec, &chain.hash_at(0).unwrap());
    assert_eq!(task_id, w.task_id);
    let data = pouw_ml::shipped_mnist_ref();
    let schedule = TaskSchedule::new(&task_id, &task, &task_id, data, 0, 1).unwrap();
    let (epoch, b) = schedule.position(w.iteration + 1).unwrap();
    let order = schedule.batches().epoch_order(epoch);
    let batch = data.gather(schedule.batches().batch(&order, b));
    let (model_spec, optimizer) = ml_specs(&task).unwrap();
    let model = pouw_ml::Model::from_params(model_spec, m.data.start_params.clone()).unwrap();
    let mut state = pouw_ml::TrainState::from_parts(
        model,
        optimizer,
        m.data.start_residual.clone(),
        m.data.start_velocity.clone(),
    )
    .unwrap();
    let seed = m.block.header.zero_nonce_hash();
    let out = state.iterate_bound(Exec::SINGLE, &batch, &[], &seed.0).unwrap();
    let key = ChainSpec::devnet_key(3);
    let mut body = iteration_body(task_id, key.public(), w.epoch, w.iteration, &out);
    body.order_seed = seed;
    assert_ne!(body.batch_hash, w.batch_hash);
    let target = m.block.header.target.to_target().unwrap();
    let cost =
        pouw_consensus::pouw::IterationCost::of(&task, batch.len() as u64, batch.byte_len() as u64);
    let budget = pouw_consensus::pouw::nonce_budget(&spec, &cost);
    let header = mine_iteration(
        &m.block.header,
        body.id(),
        pouw_primitives::Hash(out.end_model_hash.0),
        map_hash(&out.map),
        pouw_primitives::Hash(out.end_residual_hash.0),
        budget,
        target,
    )
    .expect("the easy target accepts almost any nonce");
    let mut forged = Block {
        header,
        signature: Signature::default(),
        proof: Some(PouwProof { winning: body.sign(&key), committing: proof.committing.clone() }),
        transactions: m.block.transactions.clone(),
        attestations: m.block.attestations.clone(),
    };
    forged.sign(&key);
    let mut forged_data = m.data.clone();
    forged_data.batch = batch.canonical_bytes();

    // Consistent in itself: the replay alone accepts it.
    let forged_proof = forged.proof.as_ref().unwrap();
    pouw_consensus::pouw::replay(
        &spec,
        &forged.header,
        forged_proof,
        &task,
        &forged_data,
        Exec::SINGLE,
    )
    .unwrap();

    let other = tempfile::tempdir().unwrap();
    let (mut chain2, proofs2) = open(other.path(), &spec);
    proofs2.put_proof(&forged.proof.as_ref().unwrap().winning.body, &forged_data).unwrap();
    let err = chain2.import_block(forged, Timestamp::now()).unwrap_err();
    assert!(matches!(err.block_error(), Some(BlockError::Proof(_))), "{err}");
    assert!(err.to_string().contains("must train batch"), "{err}");
    assert!(err.is_peer_fault(), "an unscheduled batch is the sender's fault: {err}");
    assert_eq!(chain2.height(), 0);
    // The honest block is accepted.
    proofs2.put_proof(w, &m.data).unwrap();
    assert_eq!(
        chain2.import_block(m.block.clone(), Timestamp::now()).unwrap(),
        ImportOutcome::Extended
    );
}

/// The grinding miner of design/010: its bound variants (one iteration each) make valid blocks
/// that a verifying chain imports; its one unbound forgery (the old rules' strategy: one
/// iteration, header re-rolled) is refused by the replay.
#[test]
fn a_grinders_variants_are_valid_blocks_and_its_forgery_is_refused() {
    let mut spec = easy_spec();
    // About one attempt in 16 wins: the honest attempt often fails and the variants get tried.
    spec.initial_target = CompactTarget(0x2010_0000);
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, proofs) = open(dir.path(), &spec);
    let mut miner = Miner::new(spec, ChainSpec::devnet_key(3), Exec::SINGLE);
    let mut grinder = pouw_work::Grinder::new(3, Some(3));
    grinder.forge_delay = std::time::Duration::ZERO;
    miner.set_grinder(Some(grinder));
    let (mut accepted, mut refused) = (0u64, 0u64);
    for _ in 0..3_000 {
        let (found, _) = miner.step(&chain, &[], Timestamp::now()).unwrap();
        let Some(m) = found else { continue };
        let winning = &m.block.proof.as_ref().unwrap().winning.body;
        proofs.put_proof(winning, &m.data).unwrap();
        match chain.import_block(m.block.clone(), Timestamp::now()) {
            Ok(outcome) => {
                assert_eq!(outcome, ImportOutcome::Extended);
                accepted += 1;
            }
            Err(e) => {
                assert!(matches!(e.block_error(), Some(BlockError::Proof(_))), "{e}");
                assert!(e.is_peer_fault(), "a forged block is the sender's fault: {e}");
                refused += 1;
            }
        }
        let stats = miner.stats();
        if refused == 1 && stats.variant_blocks >= 1 && accepted >= 4 {
            break;
        }
    }
    let stats = miner.stats();
    assert_eq!(refused, 1, "exactly the one forgery is refused");
    assert_eq!(stats.forged_sent, 1);
    assert!(stats.variant_blocks >= 1, "some block was found by a header variant: {stats:?}");
    assert_eq!(accepted, stats.blocks_found, "every valid block found was imported");
    assert!(stats.attempts > 0 && stats.cpu_ns > 0 && stats.attempts_per_cpu_second() > 0.0);
    assert_eq!(stats.filler_attempts, stats.attempts);
}

#[test]
fn a_transaction_the_template_refuses_is_left_out_and_reported_and_mining_goes_on() {
    use pouw_primitives::{TxBody, TxKind};
    let spec = easy_spec();
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, proofs) = open(dir.path(), &spec);
    // A transfer whose nonce is ahead of its sender's account: no block can hold it.
    let sender = ChainSpec::devnet_key(0);
    let stale = TxBody {
        chain_id: spec.chain_id,
        sender: sender.public(),
        nonce: 7,
        fee: Amount(1),
        kind: TxKind::Transfer { to: ChainSpec::devnet_key(1).public(), amount: Amount(1) },
    }
    .sign(&sender);
    let mut miner = Miner::new(spec, ChainSpec::devnet_key(3), Exec::SINGLE);
    let mut refused = Vec::new();
    let mut found = 0;
    for _ in 0..200 {
        let out = miner.step_with(&chain, std::slice::from_ref(&stale), Timestamp::now(), &[]);
        let out = out.expect("the step goes on without the transaction");
        refused.extend(out.refused_txs.iter().map(|(id, _)| *id));
        if let Some(m) = out.block {
            assert!(m.block.transactions.is_empty(), "the refused transaction is not in a block");
            let winning = &m.block.proof.as_ref().unwrap().winning.body;
            proofs.put_proof(winning, &m.data).unwrap();
            assert_eq!(
                chain.import_block(m.block, Timestamp::now()).unwrap(),
                ImportOutcome::Extended
            );
            found += 1;
            if found == 2 {
                break;
            }
        }
    }
    assert_eq!(found, 2, "blocks are still mined");
    assert!(!refused.is_empty() && refused.iter().all(|id| *id == stale.hash()), "{refused:?}");
}
