//! PoUW proof verification end to end (design 003, reliability anchors table D): a real miner
//! trains the filler task on the shipped MNIST subset, commits to a header k iterations ahead,
//! mines a block; then every single-field mutation is rejected with the variant naming it.

use pouw_consensus::{
    apply_block, genesis_block, genesis_state,
    pouw::{
        check_proof_cheap, filler_epoch, filler_epoch_opening_height, filler_task, filler_task_id,
        mine_iteration, ml_specs, nonce_at, nonce_budget, nonce_precursor, replay, verify_proof,
        IterationCost, PouwError, ProofData, ProofDataKeys, FILLER_EPOCHS,
    },
    ConsensusError,
};
use pouw_ml::{Batch, Exec, IterationOutput, Model, TrainState};
use pouw_primitives::{
    map_hash, Block, ChainSpec, CompactTarget, Hash, Header, IterationBody, Keypair, PouwProof,
    Signature, TaskDefinition, Timestamp, Uint256, HEADER_VERSION,
};
use std::sync::OnceLock;

const WINNING: u64 = 6;

#[derive(Clone)]
struct Fixture {
    spec: ChainSpec,
    miner: Keypair,
    task: TaskDefinition,
    header: Header,
    proof: PouwProof,
    data: ProofData,
    /// The winning iteration's output (what the miner computed).
    out: IterationOutput,
    /// The state before the winning iteration and its batch, for variants.
    start: TrainState,
    batch: Batch,
}

fn h(label: &str) -> Hash {
    Hash::digest(label.as_bytes())
}

/// The nonce budget of an iteration of `task` on `batch`.
fn budget(spec: &ChainSpec, task: &TaskDefinition, batch: &Batch) -> u64 {
    let cost = IterationCost::of(task, batch.len() as u64, batch.byte_len() as u64);
    nonce_budget(spec, &cost)
}

fn flip(hash: Hash) -> Hash {
    let mut b = hash.0;
    b[0] ^= 1;
    Hash(b)
}

fn batch_of(b: usize) -> Batch {
    let data = pouw_ml::shipped_mnist_ref();
    let idx: Vec<u32> = (b * 32..b * 32 + 32).map(|i| i as u32).collect();
    data.gather(&idx)
}

fn body(task_id: Hash, key: &Keypair, iteration: u64, out: &IterationOutput) -> IterationBody {
    pouw_consensus::pouw::iteration_body(task_id, key.public(), 0, iteration, out)
}

fn build() -> Fixture {
    let spec = ChainSpec::devnet();
    let genesis = genesis_block(&spec).unwrap();
    assert_eq!(filler_epoch(&spec, 1), 0);
    let (task_id, task) = filler_task(&spec, &genesis.hash());
    let (model_spec, opt) = ml_specs(&task).unwrap();
    let miner = ChainSpec::devnet_key(1);
    let peer_key = ChainSpec::devnet_key(2);

    // A peer's message for the same task (its own first iteration).
    let mut peer_state = TrainState::new(Model::new(model_spec.clone()).unwrap(), opt).unwrap();
    let peer_out = peer_state.iterate(Exec::SINGLE, &batch_of(100), &[]).unwrap();
    let peer_msg = body(task_id, &peer_key, 0, &peer_out).sign(&peer_key);

    // The header the miner will mine with, fixed k iterations ahead (msg_hash, nonce zero).
    let header = Header {
        version: HEADER_VERSION,
        height: 1,
        prev_hash: genesis.hash(),
        tx_root: Block::compute_tx_root(&[]),
        attestation_root: Block::compute_attestation_root(&[]),
        state_root: h("state"),
        timestamp: Timestamp(spec.genesis.timestamp.0 + 5_000),
        target: spec.initial_target,
        miner: miner.public(),
        task_id,
        msg_hash: Hash::ZERO,
        msg_history_root: h("history"),
        nonce: Hash::ZERO,
    };
    let committed_at = WINNING - u64::from(spec.commitment_depth);

    let mut state = TrainState::new(Model::new(model_spec).unwrap(), opt).unwrap();
    let mut committing = None;
    for i in 0..WINNING {
        let out = state.iterate(Exec::SINGLE, &batch_of(i as usize), &[]).unwrap();
        if i == committed_at {
            let mut b = body(task_id, &miner, i, &out);
            b.commitment = header.zero_nonce_hash();
            committing = Some(b.sign(&miner));
        }
    }
    let start = state.clone();
    let batch = batch_of(WINNING as usize);
    // Bound to the header it mines: its zero-nonce hash seeds the iteration's order.
    let seed = header.zero_nonce_hash();
    let out = state.iterate_bound(Exec::SINGLE, &batch, &[&peer_msg.body.map], &seed.0).unwrap();
    let mut wb = body(task_id, &miner, WINNING, &out);
    wb.peer_msgs = vec![peer_msg.id()];
    wb.order_seed = seed;
    let winning = wb.sign(&miner);
    let mined = mine_iteration(
        &header,
        winning.id(),
        Hash(out.end_model_hash.0),
        map_hash(&out.map),
        Hash(out.end_residual_hash.0),
        budget(&spec, &task, &batch),
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
    Fixture {
        spec,
        miner,
        task,
        header: mined,
        proof: PouwProof { winning, committing: committing.unwrap() },
        data,
        out,
        start,
        batch,
    }
}

fn fixture() -> Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(build).clone()
}

impl Fixture {
    fn verify(&self) -> Result<(), PouwError> {
        verify_proof(&self.spec, &self.header, &self.proof, &self.task, &self.data, Exec::SINGLE)
    }

    /// The miner forges the winning message: edits the body, re-signs it and points the header
    /// at it (what an attacker holding the miner key can do).
    fn forge_winning(&mut self, edit: impl FnOnce(&mut IterationBody)) {
        let mut b = self.proof.winning.body.clone();
        edit(&mut b);
        self.proof.winning = b.sign(&self.miner);
        self.header.msg_hash = self.proof.winning.id();
    }

    /// The miner forges the committing message (edit and re-sign).
    fn forge_committing(&mut self, edit: impl FnOnce(&mut IterationBody)) {
        let mut b = self.proof.committing.body.clone();
        edit(&mut b);
        self.proof.committing = b.sign(&self.miner);
    }

    fn block(&self) -> Block {
        let mut b = Block {
            header: self.header.clone(),
            signature: Signature::default(),
            proof: Some(self.proof.clone()),
            transactions: vec![],
            attestations: vec![],
        };
        b.sign(&self.miner);
        b
    }
}

macro_rules! rejects {
    ($fx:expr, $pat:pat $(if $guard:expr)?) => {{
        let err = $fx.verify().expect_err("a mutated proof must be rejected");
        assert!(matches!(err, $pat $(if $guard)?), "wrong variant: {err:?}");
    }};
}

#[test]
fn honest_proof_verifies() {
    let fx = fixture();
    check_proof_cheap(&fx.spec, &fx.header, &fx.proof, &fx.task).unwrap();
    replay(&fx.spec, &fx.header, &fx.proof, &fx.task, &fx.data, Exec::SINGLE).unwrap();
    assert!(fx.block().verify_signature().is_ok());
    assert_eq!(fx.header.msg_hash, fx.proof.winning.id());
    assert!(!fx.proof.winning.body.peer_msgs.is_empty());
    assert!(!fx.proof.winning.body.map.is_empty());
}

#[test]
fn replay_is_the_same_on_one_and_two_threads() {
    let fx = fixture();
    for threads in [1, 2, 4] {
        replay(&fx.spec, &fx.header, &fx.proof, &fx.task, &fx.data, Exec::new(threads)).unwrap();
        let mut s = fx.start.clone();
        let peer = &fx.data.peers[0].body.map;
        let seed = fx.header.zero_nonce_hash().0;
        assert_eq!(s.iterate_bound(Exec::new(threads), &fx.batch, &[peer], &seed).unwrap(), fx.out);
    }
}

#[test]
fn header_mutations_are_rejected() {
    type Edit = fn(&mut Header);
    let committed: [(&str, Edit); 8] = [
        ("version", |h| h.version += 1),
        ("height", |h| h.height += 1),
        ("prev_hash", |h| h.prev_hash = flip(h.prev_hash)),
        ("tx_root", |h| h.tx_root = flip(h.tx_root)),
        ("state_root", |h| h.state_root = flip(h.state_root)),
        ("timestamp", |h| h.timestamp.0 += 1),
        ("target", |h| h.target = CompactTarget(h.target.0 - 1)),
        ("msg_history_root", |h| h.msg_history_root = flip(h.msg_history_root)),
    ];
    for (name, edit) in committed {
        let mut fx = fixture();
        edit(&mut fx.header);
        let err = fx.verify().expect_err(name);
        assert!(matches!(err, PouwError::CommitmentHash { .. }), "{name}: {err:?}");
    }
    let mut fx = fixture();
    fx.header.nonce = flip(fx.header.nonce);
    rejects!(fx, PouwError::Nonce { .. });
    let mut fx = fixture();
    fx.header.task_id = flip(fx.header.task_id);
    rejects!(fx, PouwError::WinningTask { .. });
    let mut fx = fixture();
    fx.header.miner = ChainSpec::devnet_key(3).public();
    rejects!(fx, PouwError::WinningMiner { .. });
    let mut fx = fixture();
    fx.header.msg_hash = flip(fx.header.msg_hash);
    rejects!(fx, PouwError::MsgHash { .. });
}

#[test]
fn raw_winning_mutations_break_its_signature() {
    type Edit = fn(&mut IterationBody);
    let edits: [(&str, Edit); 12] = [
        ("batch_hash", |b| b.batch_hash = flip(b.batch_hash)),
        ("start_model_hash", |b| b.start_model_hash = flip(b.start_model_hash)),
        ("start_residual_hash", |b| b.start_residual_hash = flip(b.start_residual_hash)),
        ("map", |b| b.map[0] ^= 1 << 31),
        ("loss", |b| b.loss ^= 1),
        ("accuracy", |b| b.accuracy ^= 1),
        ("iteration", |b| b.iteration += 1),
        ("epoch", |b| b.epoch += 1),
        ("task_id", |b| b.task_id = flip(b.task_id)),
        ("commitment", |b| b.commitment = h("x")),
        ("peer_msgs", |b| b.peer_msgs.push(h("p"))),
        ("miner", |b| b.miner = ChainSpec::devnet_key(3).public()),
    ];
    for (name, edit) in edits {
        let mut fx = fixture();
        edit(&mut fx.proof.winning.body);
        // The header still names the old id, and now disagrees with the signature too.
        let err = fx.verify().expect_err(name);
        if name == "miner" {
            assert!(matches!(err, PouwError::WinningMiner { .. }), "{name}: {err:?}");
        } else {
            assert!(matches!(err, PouwError::WinningSignature(_)), "{name}: {err:?}");
        }
        // With the header pointing at the new id, the signature is what fails.
        fx.header.msg_hash = fx.proof.winning.id();
        let err = fx.verify().expect_err(name);
        if name != "miner" {
            assert!(matches!(err, PouwError::WinningSignature(_)), "{name}: {err:?}");
        }
    }
    let mut fx = fixture();
    fx.proof.winning.signature.0[0] ^= 1;
    rejects!(fx, PouwError::WinningSignature(_));
}

#[test]
fn forged_winning_fields_are_caught_by_their_own_rule() {
    type Case = (&'static str, Box<dyn Fn(&mut IterationBody)>, fn(&PouwError) -> bool);
    let cases: Vec<Case> = vec![
        ("batch_hash", Box::new(|b| b.batch_hash = flip(b.batch_hash)), |e| {
            matches!(e, PouwError::BatchHash { .. })
        }),
        ("start_model_hash", Box::new(|b| b.start_model_hash = flip(b.start_model_hash)), |e| {
            matches!(e, PouwError::StartModelHash { .. })
        }),
        (
            "start_residual_hash",
            Box::new(|b| b.start_residual_hash = flip(b.start_residual_hash)),
            |e| matches!(e, PouwError::StartResidualHash { .. }),
        ),
        ("map sign", Box::new(|b| b.map[0] ^= 1 << 31), |e| matches!(e, PouwError::Map { .. })),
        (
            "map dropped entry",
            Box::new(|b| {
                b.map.pop();
            }),
            |e| matches!(e, PouwError::Map { .. }),
        ),
        ("map order", Box::new(|b| b.map.swap(0, 1)), |e| {
            matches!(e, PouwError::MapOrder { position: 1 })
        }),
        ("map index", Box::new(|b| *b.map.last_mut().unwrap() = 0x7fff_ffff), |e| {
            matches!(e, PouwError::MapIndex { .. })
        }),
        ("loss", Box::new(|b| b.loss ^= 1), |e| matches!(e, PouwError::Loss { .. })),
        ("accuracy", Box::new(|b| b.accuracy ^= 1), |e| matches!(e, PouwError::Accuracy { .. })),
        ("iteration +1", Box::new(|b| b.iteration += 1), |e| {
            matches!(e, PouwError::CommitmentDepth { .. })
        }),
        ("iteration -1", Box::new(|b| b.iteration -= 1), |e| {
            matches!(e, PouwError::CommitmentDepth { .. })
        }),
        ("iteration below k", Box::new(|b| b.iteration = 2), |e| {
            matches!(e, PouwError::CommitmentDepth { expected: None, .. })
        }),
        ("epoch high bit", Box::new(|b| b.epoch ^= 1 << 31), |e| {
            matches!(e, PouwError::EpochOutOfRange { .. })
        }),
        ("epoch beyond task", Box::new(|b| b.epoch = FILLER_EPOCHS), |e| {
            matches!(e, PouwError::EpochOutOfRange { .. })
        }),
        ("epoch jumps more than k", Box::new(|b| b.epoch = 6), |e| {
            matches!(e, PouwError::EpochOrder { .. })
        }),
        ("task_id", Box::new(|b| b.task_id = flip(b.task_id)), |e| {
            matches!(e, PouwError::WinningTask { .. })
        }),
        ("commitment", Box::new(|b| b.commitment = h("later")), |e| {
            matches!(e, PouwError::WinningCommitment(_))
        }),
        ("peer dropped", Box::new(|b| b.peer_msgs.clear()), |e| {
            matches!(e, PouwError::PeerCount { expected: 0, actual: 1 })
        }),
        ("peer replaced", Box::new(|b| b.peer_msgs[0] = flip(b.peer_msgs[0])), |e| {
            matches!(e, PouwError::PeerId { index: 0, .. })
        }),
        ("peer duplicated", Box::new(|b| b.peer_msgs.push(b.peer_msgs[0])), |e| {
            matches!(e, PouwError::DuplicatePeer(_))
        }),
    ];
    for (name, edit, expected) in cases {
        let mut fx = fixture();
        fx.forge_winning(|b| edit(b));
        let err = fx.verify().expect_err(name);
        assert!(expected(&err), "{name}: {err:?}");
    }
    // Another miner signs the same work: not the header's miner.
    let mut fx = fixture();
    let thief = ChainSpec::devnet_key(3);
    let mut b = fx.proof.winning.body.clone();
    b.miner = thief.public();
    fx.proof.winning = b.sign(&thief);
    fx.header.msg_hash = fx.proof.winning.id();
    rejects!(fx, PouwError::WinningMiner { .. });
    // ... and also as the header's miner: the commitment is someone else's.
    fx.header.miner = thief.public();
    rejects!(fx, PouwError::CommittingOwner);
}

#[test]
fn committing_mutations_are_rejected() {
    let mut fx = fixture();
    fx.proof.committing.body.commitment = flip(fx.proof.committing.body.commitment);
    rejects!(fx, PouwError::CommitmentHash { .. });
    let mut fx = fixture();
    fx.proof.committing.body.iteration += 1;
    rejects!(fx, PouwError::CommitmentDepth { .. });
    let mut fx = fixture();
    fx.proof.committing.body.task_id = flip(fx.proof.committing.body.task_id);
    rejects!(fx, PouwError::CommittingOwner);
    let mut fx = fixture();
    fx.proof.committing.body.miner = ChainSpec::devnet_key(3).public();
    rejects!(fx, PouwError::CommittingOwner);
    type Edit = fn(&mut IterationBody);
    let unsigned: [(&str, Edit); 7] = [
        ("batch_hash", |b| b.batch_hash = flip(b.batch_hash)),
        ("start_model_hash", |b| b.start_model_hash = flip(b.start_model_hash)),
        ("start_residual_hash", |b| b.start_residual_hash = flip(b.start_residual_hash)),
        ("map", |b| b.map[0] ^= 1),
        ("loss", |b| b.loss ^= 1),
        ("accuracy", |b| b.accuracy ^= 1),
        ("peer_msgs", |b| b.peer_msgs.push(h("p"))),
    ];
    for (name, edit) in unsigned {
        let mut fx = fixture();
        edit(&mut fx.proof.committing.body);
        let err = fx.verify().expect_err(name);
        assert!(matches!(err, PouwError::CommittingSignature(_)), "{name}: {err:?}");
    }
    let mut fx = fixture();
    fx.proof.committing.signature.0[5] ^= 1;
    rejects!(fx, PouwError::CommittingSignature(_));
    // A committing epoch after the winning one.
    let mut fx = fixture();
    fx.forge_committing(|b| b.epoch = 1);
    rejects!(fx, PouwError::EpochOrder { .. });
}

#[test]
fn commitment_must_be_exactly_k_iterations_earlier_on_this_tip() {
    let fx0 = fixture();
    let k = u64::from(fx0.spec.commitment_depth);
    for depth in [k - 1, k + 1] {
        let mut fx = fixture();
        // A validly signed message that committed to this very header, at the wrong depth.
        fx.forge_committing(|b| b.iteration = WINNING - depth);
        rejects!(fx, PouwError::CommitmentDepth { .. });
    }
    // The miner committed while the tip was another block (proof computed against tip N-1).
    let mut fx = fixture();
    let mut other_tip = fx.header.clone();
    other_tip.prev_hash = h("another tip");
    fx.forge_committing(|b| b.commitment = other_tip.zero_nonce_hash());
    rejects!(fx, PouwError::CommitmentHash { .. });
    // A commitment to nothing.
    let mut fx = fixture();
    fx.forge_committing(|b| b.commitment = Hash::ZERO);
    rejects!(fx, PouwError::CommitmentHash { .. });
}

#[test]
fn proof_data_mutations_are_rejected() {
    let mut fx = fixture();
    fx.data.start_params[1234] = f32::from_bits(fx.data.start_params[1234].to_bits() ^ 1);
    rejects!(fx, PouwError::StartModelHash { .. });
    let mut fx = fixture();
    fx.data.start_residual[77] = f32::from_bits(fx.data.start_residual[77].to_bits() ^ 1);
    rejects!(fx, PouwError::StartResidualHash { .. });
    let mut fx = fixture();
    fx.data.start_residual[0] = -fx.data.start_residual[0] - 0.0; // also flips +0.0 to -0.0
    rejects!(fx, PouwError::StartResidualHash { .. });
    let mut fx = fixture();
    fx.data.start_velocity.push(0.0);
    rejects!(fx, PouwError::StartStateLength { field: "start_velocity", .. });
    let mut fx = fixture();
    fx.data.start_params.pop();
    rejects!(fx, PouwError::StartStateLength { field: "start_params", .. });
    let mut fx = fixture();
    fx.data.batch[100] ^= 1;
    rejects!(fx, PouwError::BatchHash { .. });
    // A peer message's content changed: its id no longer matches.
    let mut fx = fixture();
    fx.data.peers[0].body.map[0] ^= 1 << 31;
    rejects!(fx, PouwError::PeerId { index: 0, .. });
    // Its signature changed (not part of the id).
    let mut fx = fixture();
    fx.data.peers[0].signature.0[0] ^= 1;
    rejects!(fx, PouwError::PeerSignature { index: 0, .. });
    // Missing peer message.
    let mut fx = fixture();
    fx.data.peers.clear();
    rejects!(fx, PouwError::PeerCount { expected: 1, actual: 0 });
}

/// The fixture's start state with `edit` applied, the winning message re-signed with the
/// edited state's hashes: the data matches what the miner signed, so only the finiteness rule
/// can refuse it.
fn with_signed_start(edit: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>)) -> Fixture {
    let mut fx = fixture();
    let (model_spec, opt) = ml_specs(&fx.task).unwrap();
    let (mut params, mut residual) = (fx.data.start_params.clone(), fx.data.start_residual.clone());
    edit(&mut params, &mut residual);
    let model = Model::from_params(model_spec, params.clone()).unwrap();
    let mut state =
        TrainState::from_parts(model, opt, residual.clone(), fx.data.start_velocity.clone())
            .unwrap();
    let (model_hash, residual_hash) = state.start_hashes();
    fx.forge_winning(|b| {
        b.start_model_hash = Hash(model_hash.0);
        b.start_residual_hash = Hash(residual_hash.0);
    });
    fx.data.start_params = params;
    fx.data.start_residual = residual;
    fx
}

#[test]
fn non_finite_start_states_are_refused_even_when_signed() {
    let fx = with_signed_start(|params, _| params[1234] = f32::NAN);
    rejects!(fx, PouwError::NonFinite { field: "start_params", index: 1234 });
    // A NaN with another payload, in the last value: the first one found is reported.
    let fx = with_signed_start(|params, _| {
        let last = params.len() - 1;
        params[last] = f32::from_bits(0x7fc0_1234);
    });
    let last = fx.data.start_params.len() - 1;
    rejects!(fx, PouwError::NonFinite { field: "start_params", index } if index == last);
    let fx = with_signed_start(|_, residual| residual[5] = f32::INFINITY);
    rejects!(fx, PouwError::NonFinite { field: "start_residual", index: 5 });
    let fx = with_signed_start(|_, residual| residual[300] = f32::NEG_INFINITY);
    rejects!(fx, PouwError::NonFinite { field: "start_residual", index: 300 });
    // Unsigned (the data no longer matches its hash): refused by the same rule, before any
    // hashing.
    let mut fx = fixture();
    fx.data.start_params[0] = f32::NAN;
    rejects!(fx, PouwError::NonFinite { field: "start_params", index: 0 });
    // The error names the field and the position.
    let fx = with_signed_start(|params, _| params[7] = f32::NAN);
    let err = verify_proof(&fx.spec, &fx.header, &fx.proof, &fx.task, &fx.data, Exec::SINGLE)
        .unwrap_err();
    assert!(err.to_string().contains("start_params value 7 is not finite"), "{err}");
}

#[test]
fn an_iteration_that_overflows_is_refused() {
    // Every start value finite but huge: the forward pass overflows, so the loss (and the end
    // state) are not finite.
    let fx = with_signed_start(|params, _| params.iter_mut().for_each(|p| *p = 1.0e38));
    assert!(fx.data.start_params.iter().all(|p| p.is_finite()));
    rejects!(fx, PouwError::NonFinite { field: "loss" | "end_params" | "end_residual", .. });
}

#[test]
fn forged_batches_and_peers_are_rejected() {
    // A batch of another size (the nonce budget grows with the batch), correctly hashed.
    let mut fx = fixture();
    let data = pouw_ml::shipped_mnist_ref();
    let big = data.gather(&(0..64).collect::<Vec<u32>>());
    fx.data.batch = big.canonical_bytes();
    fx.forge_winning(|b| b.batch_hash = Hash(big.hash().0));
    rejects!(fx, PouwError::BatchSize { expected: 32, actual: 64 });
    // Bytes that are no batch.
    let mut fx = fixture();
    fx.data.batch.push(0);
    let bytes = fx.data.batch.clone();
    fx.forge_winning(|b| b.batch_hash = pouw_consensus::pouw::batch_hash_of(&bytes));
    rejects!(fx, PouwError::BadBatch(_));
    // A validly signed peer message for another task.
    let mut fx = fixture();
    let peer_key = ChainSpec::devnet_key(2);
    let mut pb = fx.data.peers[0].body.clone();
    pb.task_id = h("other task");
    fx.data.peers[0] = pb.sign(&peer_key);
    let id = fx.data.peers[0].id();
    fx.forge_winning(|b| b.peer_msgs[0] = id);
    rejects!(fx, PouwError::PeerTask { index: 0, .. });
    // A validly signed peer message whose map addresses a parameter that does not exist.
    let mut fx = fixture();
    let mut pb = fx.data.peers[0].body.clone();
    pb.map.push(0x7fff_fff0);
    fx.data.peers[0] = pb.sign(&peer_key);
    let id = fx.data.peers[0].id();
    fx.forge_winning(|b| b.peer_msgs[0] = id);
    rejects!(fx, PouwError::PeerMapIndex { index: 0, .. });
}

#[test]
fn replay_that_differs_is_rejected_although_pow_is_valid() {
    // The miner skipped the peer update it claims to have applied: everything it reports is
    // self-consistent and the nonce comes from its own (wrong) end model, so the PoW is valid.
    let mut fx = fixture();
    let mut s = fx.start.clone();
    let out =
        s.iterate_bound(Exec::SINGLE, &fx.batch, &[], &fx.header.zero_nonce_hash().0).unwrap();
    fx.forge_winning(|b| {
        b.map = out.map.clone();
        b.loss = out.loss_bits;
        b.accuracy = out.accuracy_bits;
    });
    let mut committed = fx.header.clone();
    committed.nonce = Hash::ZERO;
    let mined = mine_iteration(
        &committed,
        fx.header.msg_hash,
        Hash(out.end_model_hash.0),
        map_hash(&out.map),
        Hash(out.end_residual_hash.0),
        budget(&fx.spec, &fx.task, &fx.batch),
        Uint256::MAX,
    )
    .unwrap();
    assert!(pouw_primitives::meets_target(&mined.hash(), Uint256::MAX));
    fx.header = mined;
    check_proof_cheap(&fx.spec, &fx.header, &fx.proof, &fx.task).unwrap();
    rejects!(fx, PouwError::Map { .. });
}

#[test]
fn nonce_must_be_below_the_budget() {
    let fx0 = fixture();
    let a = budget(&fx0.spec, &fx0.task, &fx0.batch);
    assert!(a >= 2, "devnet gives a few nonces per iteration, got {a}");
    let p = nonce_precursor(
        &Hash(fx0.out.end_model_hash.0),
        &map_hash(&fx0.out.map),
        &Hash(fx0.out.end_residual_hash.0),
    );
    assert_eq!(fx0.header.nonce, nonce_at(&p, 0));
    // The last allowed nonce is accepted ...
    let mut fx = fixture();
    fx.header.nonce = nonce_at(&p, a - 1);
    fx.verify().unwrap();
    // ... the first one beyond the budget is not.
    for j in [a, a + 1, 1 << 21] {
        let mut fx = fixture();
        fx.header.nonce = nonce_at(&p, j);
        rejects!(fx, PouwError::Nonce { budget } if budget == a);
    }
}

#[test]
fn an_iteration_wins_at_most_once_and_reorgs_free_it() {
    let fx = fixture();
    let spec = &fx.spec;
    let mut state = genesis_state(spec).unwrap();
    let first = fx.block();
    let diff = apply_block(&state, &first, spec).unwrap();
    state.apply_diff(&diff);
    // The same (task, miner, iteration) in another block (another header, same proof identity).
    let mut second = first;
    second.header.timestamp.0 += 1;
    second.sign(&fx.miner);
    let err = apply_block(&state, &second, spec).unwrap_err();
    assert!(
        matches!(err, ConsensusError::Pouw(PouwError::IterationReused { iteration: WINNING, .. })),
        "{err:?}"
    );
    // Reorg: revert the first block with its undo data; the second is now accepted.
    state.revert(&diff.undo);
    assert_eq!(state, genesis_state(spec).unwrap());
    let diff2 = apply_block(&state, &second, spec).unwrap();
    state.apply_diff(&diff2);
    // Another iteration of the same miner is a different identity.
    let mut third = second.clone();
    third.proof.as_mut().unwrap().winning.body.iteration += 1;
    apply_block(&state, &third, spec).unwrap();
    // Genesis (no proof) records nothing.
    apply_block(&state, &genesis_block(spec).unwrap(), spec).unwrap();
}

#[test]
fn mined_header_hash_is_the_header_hash_and_hard_targets_find_nothing() {
    let fx = fixture();
    let args =
        (Hash(fx.out.end_model_hash.0), map_hash(&fx.out.map), Hash(fx.out.end_residual_hash.0));
    let mut committed = fx.header.clone();
    committed.nonce = Hash::ZERO;
    committed.msg_hash = Hash::ZERO;
    // A target just at the mined header's hash: found, and it is that header.
    let target = Uint256::from_be_bytes(fx.header.hash().0);
    let found = mine_iteration(
        &committed,
        fx.proof.winning.id(),
        args.0,
        args.1,
        args.2,
        budget(&fx.spec, &fx.task, &fx.batch),
        target,
    )
    .unwrap();
    assert_eq!(found, fx.header);
    assert!(pouw_primitives::meets_target(&found.hash(), target));
    let none = mine_iteration(
        &committed,
        fx.proof.winning.id(),
        args.0,
        args.1,
        args.2,
        budget(&fx.spec, &fx.task, &fx.batch),
        Uint256::ZERO,
    );
    assert_eq!(none, None);
}

#[test]
fn map_hash_has_one_definition() {
    for map in [vec![], vec![0u32], vec![1, 2, 0x8000_0003], (0..5000).collect::<Vec<u32>>()] {
        assert_eq!(map_hash(&map), Hash(pouw_ml::map_hash(&map).0));
    }
    let fx = fixture();
    assert_eq!(fx.proof.winning.body.map_hash(), Hash(fx.out.map_hash.0));
}

#[test]
fn proof_data_encoding_and_addresses() {
    let fx = fixture();
    let bytes = fx.data.encode();
    let back = ProofData::decode(&bytes).unwrap();
    assert_eq!(back, fx.data);
    let mut longer = bytes;
    longer.push(0);
    assert!(ProofData::decode(&longer).is_err());
    // NaN and -0.0 keep their bits.
    let mut odd = fx.data.clone();
    odd.start_residual[0] = f32::from_bits(0x7fc0_0001);
    odd.start_residual[1] = -0.0;
    let back = ProofData::decode(&odd.encode()).unwrap();
    assert_eq!(back.start_residual[0].to_bits(), 0x7fc0_0001);
    assert_eq!(back.start_residual[1].to_bits(), (-0.0f32).to_bits());
    let (model_spec, _) = ml_specs(&fx.task).unwrap();
    assert_eq!(fx.data.keys(&model_spec), ProofDataKeys::of(&fx.proof.winning.body));
    assert_eq!(
        pouw_consensus::pouw::batch_hash_of(&fx.data.batch),
        Hash(Batch::from_canonical_bytes(&fx.data.batch).unwrap().hash().0)
    );
}

#[test]
fn filler_tasks_are_derived_from_the_chain() {
    let spec = ChainSpec::devnet();
    let (id_a, a) = filler_task(&spec, &h("block a"));
    let (id_a2, a2) = filler_task(&spec, &h("block a"));
    let (id_b, b) = filler_task(&spec, &h("block b"));
    assert_eq!((id_a, &a), (id_a2, &a2));
    assert_eq!(id_a, filler_task_id(&h("block a")));
    assert_ne!(id_a, id_b);
    assert_ne!(a.model.seed, b.model.seed);
    assert_eq!(a.dataset, b.dataset);
    a.validate().unwrap();
    assert_eq!(a.parameter_count(), Some(784 * 64 + 64 + 64 * 10 + 10));
    let (m, o) = ml_specs(&a).unwrap();
    assert_eq!(m.layout().unwrap().params as u64, a.parameter_count().unwrap());
    assert_eq!((o.batch_size, o.tau, o.momentum), (32, 0.01, 0.0));
    // Segment hashes are the shipped data's.
    let data = pouw_ml::shipped_mnist_ref();
    let segs = data.segments(10).unwrap();
    assert_eq!(a.dataset.segment_hashes[3], Hash(data.segment_hash(&segs[3]).0));
    // Epochs: block e * filler_epoch_blocks opens epoch e.
    let n = spec.filler_epoch_blocks;
    assert_eq!(filler_epoch(&spec, 0), 0);
    assert_eq!(filler_epoch(&spec, n - 1), 0);
    assert_eq!(filler_epoch(&spec, n), 1);
    assert_eq!(filler_epoch(&spec, 5 * n + 3), 5);
    assert_eq!(filler_epoch_opening_height(&spec, 5), Some(5 * n));
    assert_eq!(filler_epoch_opening_height(&spec, u64::MAX), None);
}

#[test]
fn a_non_genesis_block_without_proof_is_rejected() {
    let fx = fixture();
    let mut b = fx.block();
    b.proof = None;
    assert_eq!(pouw_consensus::pouw::proof_of(&b), Err(PouwError::MissingProof));
    let g = genesis_block(&fx.spec).unwrap();
    assert_eq!(pouw_consensus::pouw::proof_of(&g), Ok(None));
}

/// The grinder of design/010 (attack 1): after one real iteration, re-roll a free header field
/// and re-sign a committing message for the variant. The iteration was bound to the header it
/// ran for, so the variant's block is refused, whatever the winning message names as its seed;
/// only a new iteration run for the variant gives it valid nonces.
#[test]
fn a_header_variant_needs_its_own_iteration() {
    let fx0 = fixture();
    let mut variant = fx0.header.clone();
    variant.nonce = Hash::ZERO;
    variant.msg_history_root = flip(variant.msg_history_root);
    let seed = variant.zero_nonce_hash();
    assert_ne!(seed, fx0.header.zero_nonce_hash());
    // Mines the variant with the outputs `out` and a winning message naming `order_seed`.
    let forge = |out: &IterationOutput, order_seed: Hash| {
        let mut fx = fixture();
        fx.forge_committing(|b| b.commitment = seed);
        let mut wb = fx.proof.winning.body.clone();
        wb.map = out.map.clone();
        wb.loss = out.loss_bits;
        wb.accuracy = out.accuracy_bits;
        wb.order_seed = order_seed;
        fx.proof.winning = wb.sign(&fx.miner);
        fx.header = mine_iteration(
            &variant,
            fx.proof.winning.id(),
            Hash(out.end_model_hash.0),
            map_hash(&out.map),
            Hash(out.end_residual_hash.0),
            budget(&fx.spec, &fx.task, &fx.batch),
            Uint256::MAX,
        )
        .unwrap();
        fx
    };
    // The old iteration, its seed left as it ran: refused before any replay.
    let fx = forge(&fx0.out, fx0.proof.winning.body.order_seed);
    let err = check_proof_cheap(&fx.spec, &fx.header, &fx.proof, &fx.task).unwrap_err();
    assert!(matches!(err, PouwError::OrderSeed { .. }), "{err:?}");
    // The old iteration claiming the variant's seed: the replay runs in the variant's order and
    // its residual (hence its nonces) differs.
    let fx = forge(&fx0.out, seed);
    check_proof_cheap(&fx.spec, &fx.header, &fx.proof, &fx.task).unwrap();
    let err = fx.verify().unwrap_err();
    assert!(
        matches!(
            err,
            PouwError::Map { .. }
                | PouwError::Loss { .. }
                | PouwError::Accuracy { .. }
                | PouwError::Nonce { .. }
        ),
        "{err:?}"
    );
    // The same iteration run again for the variant: valid.
    let mut s = fx0.start.clone();
    let peer = &fx0.data.peers[0].body.map;
    let out = s.iterate_bound(Exec::SINGLE, &fx0.batch, &[peer], &seed.0).unwrap();
    assert_ne!(out.end_residual_hash, fx0.out.end_residual_hash);
    let fx = forge(&out, seed);
    fx.verify().unwrap();
}
