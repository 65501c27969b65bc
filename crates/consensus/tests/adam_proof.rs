//! A block mined on a task whose on-chain definition asks for Adam (or AdamW) replays
//! bit-exactly from its proof data (design/018): the optimizer state `m ‖ v ‖ [t]` travels as
//! `start_velocity`, sized by `UpdateRule::state_len`, and is covered by the residual hash.

use pouw_consensus::pouw::{
    filler_task, iteration_body, mine_iteration, ml_specs, ml_update_rule, nonce_budget, replay,
    verify_proof, IterationCost, PouwError, ProofData,
};
use pouw_ml::{Batch, Exec, Model, TrainState, UpdateRule};
use pouw_primitives::{
    map_hash, AdamDef, Block, ChainSpec, Hash, Header, PouwProof, TaskDefinition, Timestamp,
    Uint256, UpdateRuleDef, F32, HEADER_VERSION,
};

const WINNING: u64 = 5;

fn batch_of(b: usize) -> Batch {
    let data = pouw_ml::shipped_mnist_ref();
    let idx: Vec<u32> = (b * 32..b * 32 + 32).map(|i| i as u32).collect();
    data.gather(&idx)
}

fn adam_task(spec: &ChainSpec, decoupled: bool) -> (Hash, TaskDefinition) {
    let (id, mut task) = filler_task(spec, &Hash::digest(b"adam opening"));
    task.optimizer.learning_rate = F32::new(0.001);
    let adam = AdamDef {
        beta1: F32::new(0.9),
        beta2: F32::new(0.999),
        epsilon: F32::new(1e-8),
        weight_decay: F32::new(if decoupled { 0.01 } else { 0.0 }),
    };
    task.optimizer.rule =
        if decoupled { UpdateRuleDef::AdamW(adam) } else { UpdateRuleDef::Adam(adam) };
    task.validate().unwrap();
    (id, task)
}

struct Mined {
    spec: ChainSpec,
    task: TaskDefinition,
    header: Header,
    proof: PouwProof,
    data: ProofData,
}

impl Mined {
    fn verify(&self) -> Result<(), PouwError> {
        verify_proof(&self.spec, &self.header, &self.proof, &self.task, &self.data, Exec::SINGLE)
    }
}

/// A miner trains `task` with its own rule, commits k iterations ahead, mines with a peer's
/// message applied, and keeps the proof data as the node stores it.
fn mine(decoupled: bool) -> Mined {
    let spec = ChainSpec::devnet();
    let (task_id, task) = adam_task(&spec, decoupled);
    let (model_spec, opt) = ml_specs(&task).unwrap();
    let rule = ml_update_rule(&task);
    assert!(matches!(
        (rule, decoupled),
        (UpdateRule::Adam(_), false) | (UpdateRule::AdamW(_), true)
    ));
    let (miner, peer) = (ChainSpec::devnet_key(1), ChainSpec::devnet_key(2));
    let fresh = || TrainState::with_rule(Model::new(model_spec.clone()).unwrap(), opt, rule);
    let mut peer_state = fresh().unwrap();
    let peer_out = peer_state.iterate(Exec::SINGLE, &batch_of(200), &[]).unwrap();
    let peer_msg = iteration_body(task_id, peer.public(), 0, 0, &peer_out).sign(&peer);
    let header = Header {
        version: HEADER_VERSION,
        height: 1,
        prev_hash: Hash::digest(b"parent"),
        tx_root: Block::compute_tx_root(&[]),
        attestation_root: Block::compute_attestation_root(&[]),
        state_root: Hash::digest(b"state"),
        timestamp: Timestamp(spec.genesis.timestamp.0 + 5_000),
        target: spec.initial_target,
        miner: miner.public(),
        task_id,
        msg_hash: Hash::ZERO,
        msg_history_root: Hash::ZERO,
        nonce: Hash::ZERO,
    };
    let committed_at = WINNING - u64::from(spec.commitment_depth);
    let mut state = fresh().unwrap();
    let mut committing = None;
    for i in 0..WINNING {
        let out = state.iterate(Exec::SINGLE, &batch_of(i as usize), &[]).unwrap();
        if i == committed_at {
            let mut b = iteration_body(task_id, miner.public(), 0, i, &out);
            b.commitment = header.zero_nonce_hash();
            committing = Some(b.sign(&miner));
        }
    }
    let start = state.clone();
    let batch = batch_of(WINNING as usize);
    let seed = header.zero_nonce_hash();
    let out = state.iterate_bound(Exec::SINGLE, &batch, &[&peer_msg.body.map], &seed.0).unwrap();
    let mut wb = iteration_body(task_id, miner.public(), 0, WINNING, &out);
    wb.peer_msgs = vec![peer_msg.id()];
    wb.order_seed = seed;
    let winning = wb.sign(&miner);
    let cost = IterationCost::of(&task, batch.len() as u64, batch.byte_len() as u64);
    let mined = mine_iteration(
        &header,
        winning.id(),
        Hash(out.end_model_hash.0),
        map_hash(&out.map),
        Hash(out.end_residual_hash.0),
        nonce_budget(&spec, &cost),
        Uint256::MAX,
    )
    .expect("the easiest target accepts the first nonce");
    let data = ProofData {
        start_params: start.model().params().to_vec(),
        start_residual: start.residual().to_vec(),
        start_velocity: start.velocity().to_vec(),
        batch: batch.canonical_bytes(),
        peers: vec![peer_msg],
        sample_proofs: vec![],
    };
    Mined {
        spec,
        task,
        header: mined,
        proof: PouwProof { winning, committing: committing.unwrap() },
        data,
    }
}

#[test]
fn an_adam_block_replays_from_its_proof_data() {
    for decoupled in [false, true] {
        let m = mine(decoupled);
        let params = m.data.start_params.len();
        // m ‖ v ‖ [t]: after WINNING iterations the step count is WINNING.
        assert_eq!(m.data.start_velocity.len(), 2 * params + 1);
        assert_eq!(m.data.start_velocity.last().copied(), Some(WINNING as f32));
        assert!(m.data.start_velocity.iter().take(2 * params).any(|&v| v != 0.0));
        m.verify().unwrap();
        // The proof data survives its encoding.
        let back = ProofData::decode(&m.data.encode()).unwrap();
        assert_eq!(back, m.data);
        for threads in [1, 2] {
            replay(&m.spec, &m.header, &m.proof, &m.task, &back, Exec::new(threads)).unwrap();
        }
    }
}

#[test]
fn adam_state_is_checked_like_the_residual() {
    let m = mine(false);
    let params = m.data.start_params.len();
    // An SGD-sized state (no velocity at momentum 0) is refused by length.
    let mut bad = mine(false);
    bad.data.start_velocity.clear();
    assert!(matches!(
        bad.verify(),
        Err(PouwError::StartStateLength { field: "start_velocity", expected, actual: 0 })
            if expected == 2 * params + 1
    ));
    // One bit of m, of v or of the step count changes the residual hash the miner signed.
    for index in [3, params + 3, 2 * params] {
        let mut bad = mine(false);
        let v = &mut bad.data.start_velocity[index];
        *v = f32::from_bits(v.to_bits() ^ 1);
        assert!(
            matches!(bad.verify(), Err(PouwError::StartResidualHash { .. })),
            "state index {index}"
        );
    }
    // The same proof against the definition with another rule does not replay: the rule is
    // part of what the chain agreed on.
    let mut sgd = mine(false);
    sgd.task.optimizer.rule = UpdateRuleDef::Sgd;
    assert!(sgd.verify().is_err());
    let mut w = mine(false);
    w.task = adam_task(&w.spec, true).1;
    assert!(w.verify().is_err(), "AdamW's decay changes the end model");
    m.verify().unwrap();
}
