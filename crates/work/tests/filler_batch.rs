//! A filler-task block's proof data travels without its batch (design/016): a node that holds
//! only the chain rebuilds the batch from the shipped digits and the filler schedule, and the
//! rebuilt bytes must still hash to the batch the winning message names.

use pouw_chain::{check_proof_data, Chain, ChainConfig, ImportOutcome, PouwValidator};
use pouw_ml::Exec;
use pouw_primitives::{ChainSpec, CompactTarget, Timestamp};
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
    n: usize,
) -> Vec<MinedBlock> {
    let mut miner = Miner::new(spec.clone(), ChainSpec::devnet_key(3), Exec::SINGLE);
    let mut mined = vec![];
    for _ in 0..20 * n {
        let (found, _) = miner.step(chain, &[], Timestamp::now()).unwrap();
        if let Some(m) = found {
            let winning = &m.block.proof.as_ref().unwrap().winning.body;
            proofs.put_proof(winning, &m.data).unwrap();
            chain.import_block(m.block.clone(), Timestamp::now()).unwrap();
            mined.push(m);
            if mined.len() == n {
                break;
            }
        }
    }
    mined
}

fn rebuilt(chain: &Chain, m: &MinedBlock) -> Option<Vec<u8>> {
    let parent = chain.header(&m.block.header.prev_hash).unwrap();
    let ancestors = chain.branch_ancestors(parent);
    PouwValidator::filler_batch(chain.spec(), parent, &ancestors, &m.block).unwrap()
}

#[test]
fn a_filler_block_imports_from_proof_data_without_its_batch() {
    let spec = easy_spec();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut miner_chain, miner_proofs) = open(dir_a.path(), &spec);
    let mined = mine_blocks(&spec, &mut miner_chain, &miner_proofs, 3);
    assert_eq!(mined.len(), 3);

    // A second node, holding only what travels: the block and its proof data minus the batch.
    let (mut chain, proofs) = open(dir_b.path(), &spec);
    for m in &mined {
        let mut sent = m.data.clone();
        sent.batch = Vec::new();
        let full = m.data.encode().len();
        let wire = sent.encode().len();
        assert_eq!(full - wire, m.data.batch.len(), "the batch is all that is left out");
        assert!(!m.data.batch.is_empty());

        sent.batch = rebuilt(&chain, m).expect("a filler-task block");
        assert_eq!(sent.batch, m.data.batch, "the rebuilt batch is the miner's, byte for byte");
        check_proof_data(&chain, &m.block, &sent).unwrap();
        proofs.put_proof(&m.block.proof.as_ref().unwrap().winning.body, &sent).unwrap();
        let outcome = chain.import_block(m.block.clone(), Timestamp::now()).unwrap();
        assert_eq!(outcome, ImportOutcome::Extended, "replayed with the rebuilt batch");
    }
    assert_eq!(chain.tip(), miner_chain.tip());
}

#[test]
fn another_iterations_batch_is_still_refused_by_the_batch_hash() {
    let spec = easy_spec();
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, proofs) = open(dir.path(), &spec);
    let mined = mine_blocks(&spec, &mut chain, &proofs, 2);
    assert_eq!(mined.len(), 2);
    // Block 2's data with block 1's batch (a real batch of the same schedule, wrong iteration):
    // the batch hash check refuses it before anything is stored.
    let (first, second) = (&mined[0], &mined[1]);
    let mut wrong = second.data.clone();
    wrong.batch = first.data.batch.clone();
    assert_ne!(wrong.batch, second.data.batch);
    let dir_b = tempfile::tempdir().unwrap();
    let (mut other, other_proofs) = open(dir_b.path(), &spec);
    other_proofs.put_proof(&first.block.proof.as_ref().unwrap().winning.body, &first.data).unwrap();
    other.import_block(first.block.clone(), Timestamp::now()).unwrap();
    let e = check_proof_data(&other, &second.block, &wrong).unwrap_err();
    assert!(e.to_string().contains("batch"), "{e}");
    assert!(e.is_fault());
    // The rebuilt batch is the right one.
    assert_eq!(rebuilt(&other, second).as_deref(), Some(second.data.batch.as_slice()));
}

/// The start state a lean receiver puts back: the chain's filler state at the block's parent.
fn chain_start(chain: &Chain, m: &MinedBlock) -> Arc<pouw_chain::FillerStart> {
    let parent = chain.header(&m.block.header.prev_hash).unwrap();
    chain.filler_states().unwrap().start_for(chain, parent).expect("the chain's filler state")
}

#[test]
fn a_filler_block_travels_without_its_start_state_and_imports_after_a_restart() {
    let spec = easy_spec();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut miner_chain, miner_proofs) = open(dir_a.path(), &spec);
    let mined = mine_blocks(&spec, &mut miner_chain, &miner_proofs, 3);
    assert_eq!(mined.len(), 3);

    let (mut chain, mut proofs) = open(dir_b.path(), &spec);
    for (n, m) in mined.iter().enumerate() {
        if n == 2 {
            // A restarted node holds no end state in memory: it replays the last filler-task
            // block from its stored proof data.
            drop((chain, proofs));
            (chain, proofs) = open(dir_b.path(), &spec);
        }
        let winning = &m.block.proof.as_ref().unwrap().winning.body;
        let start = chain_start(&chain, m);
        // The miner started from the chain's filler state: block n trains one step past block
        // n - 1's end (the epoch's initial model for the first).
        assert_eq!(start.model_hash, winning.start_model_hash, "block {n}");
        assert_eq!(start.residual_hash, winning.start_residual_hash, "block {n}");

        let mut sent = m.data.clone();
        sent.batch = Vec::new();
        sent.start_params = Vec::new();
        sent.start_residual = Vec::new();
        sent.start_velocity = Vec::new();
        let wire = sent.encode().len();
        assert!(wire < 100, "block {n}: {wire} bytes of proof data on the wire");

        sent.batch = rebuilt(&chain, m).unwrap();
        sent.start_params = start.state.model().params().to_vec();
        sent.start_residual = start.state.residual().to_vec();
        sent.start_velocity = start.state.velocity().to_vec();
        assert_eq!(sent, m.data, "block {n}: the completed data is the miner's");
        check_proof_data(&chain, &m.block, &sent).unwrap();
        proofs.put_proof(winning, &sent).unwrap();
        let outcome = chain.import_block(m.block.clone(), Timestamp::now()).unwrap();
        assert_eq!(outcome, ImportOutcome::Extended, "block {n}");
    }
    assert_eq!(chain.tip(), miner_chain.tip());
    // The first two blocks trained on: the third block's start is not the epoch's initial one.
    let first = &mined[0].block.proof.as_ref().unwrap().winning.body;
    let third = &mined[2].block.proof.as_ref().unwrap().winning.body;
    assert_ne!(first.start_model_hash, third.start_model_hash);
}

#[test]
fn a_start_state_that_is_not_the_blocks_is_refused_by_its_hash() {
    let spec = easy_spec();
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, proofs) = open(dir.path(), &spec);
    let mined = mine_blocks(&spec, &mut chain, &proofs, 2);
    assert_eq!(mined.len(), 2);
    // Block 2's data with block 1's start state (the state one filler step earlier).
    let (first, second) = (&mined[0], &mined[1]);
    let dir_b = tempfile::tempdir().unwrap();
    let (mut other, other_proofs) = open(dir_b.path(), &spec);
    other_proofs.put_proof(&first.block.proof.as_ref().unwrap().winning.body, &first.data).unwrap();
    other.import_block(first.block.clone(), Timestamp::now()).unwrap();
    let mut wrong = second.data.clone();
    wrong.start_params = first.data.start_params.clone();
    assert_ne!(wrong.start_params, second.data.start_params);
    let e = check_proof_data(&other, &second.block, &wrong).unwrap_err();
    assert!(e.to_string().contains("start model"), "{e}");
    assert!(e.is_fault());
}

#[test]
fn a_filler_block_from_another_start_than_the_chains_filler_state_is_refused() {
    let spec = easy_spec();
    // A miner on a chain that keeps no filler states trains its own walk: its iterations start
    // wherever that walk is, not from the chain's filler state.
    let dir_free = tempfile::tempdir().unwrap();
    let mut free = Chain::open(dir_free.path(), spec.clone()).unwrap();
    let mut miner = Miner::new(spec.clone(), ChainSpec::devnet_key(3), Exec::SINGLE);
    let mut mined = Vec::new();
    for _ in 0..400 {
        let (found, _) = miner.step(&free, &[], Timestamp::now()).unwrap();
        if let Some(m) = found {
            free.import_block(m.block.clone(), Timestamp::now()).unwrap();
            mined.push(m);
            if mined.len() == 2 {
                break;
            }
        }
    }
    assert_eq!(mined.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let (mut chain, proofs) = open(dir.path(), &spec);
    let mut refused = 0;
    for m in &mined {
        let parent = chain.header(&m.block.header.prev_hash).unwrap();
        let start = chain.filler_states().unwrap().start_for(&chain, parent).unwrap();
        let winning = &m.block.proof.as_ref().unwrap().winning.body;
        proofs.put_proof(winning, &m.data).unwrap();
        let at_chain_state = start.model_hash == winning.start_model_hash
            && start.residual_hash == winning.start_residual_hash;
        match chain.import_block(m.block.clone(), Timestamp::now()) {
            Ok(outcome) => {
                assert!(at_chain_state, "a block from another start was accepted");
                assert_eq!(outcome, ImportOutcome::Extended);
            }
            Err(e) => {
                assert!(!at_chain_state, "{e}");
                assert!(e.is_peer_fault(), "{e}");
                assert!(e.to_string().contains("filler state"), "{e}");
                refused += 1;
                break;
            }
        }
    }
    assert_eq!(refused, 1, "the walk's own start is refused");
}
