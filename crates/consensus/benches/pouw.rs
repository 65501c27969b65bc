//! PoUW costs on the filler task (784-64-10 MLP, batch 32, shipped MNIST):
//! - verifying one block (cheap checks, replay, both) next to the iteration it replays;
//! - the miner's per-iteration overhead (commitment hash, the `a` nonce attempts, IT_RES id
//!   and signature, the model/residual/map hashes inside the iteration) next to the plain
//!   training step;
//! - the cost table of design 010: one honest filler iteration with all its mining work
//!   (`honest/iteration_with_mining`, yielding `a` nonce attempts) against a grinder under the
//!   current rules, which re-rolls a free header field after one real iteration
//!   (`grind/variant_all_a`: one header variant with its zero-nonce hash and the `a` nonces;
//!   `grind/attempt_tight`: one attempt of a grinder that keeps the encoded header and the `a`
//!   nonces and rewrites only the varied bytes).
//!
//! `cargo bench -p pouw-consensus --bench pouw`

#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use pouw_consensus::{
    genesis_block,
    pouw::{check_proof_cheap, filler_task, mine_iteration, ml_specs, replay, ProofData},
};
use pouw_ml::{Batch, Exec, IterationOutput, Model, TrainState};
use pouw_primitives::{
    map_hash, Block, ChainSpec, Hash, Header, IterationBody, PouwProof, TaskDefinition, Timestamp,
    Uint256, HEADER_VERSION,
};

struct Setup {
    spec: ChainSpec,
    task: TaskDefinition,
    header: Header,
    committed: Header,
    proof: PouwProof,
    data: ProofData,
    start: TrainState,
    batch: Batch,
    out: IterationOutput,
    key: pouw_primitives::Keypair,
}

fn batch_of(b: usize) -> Batch {
    let idx: Vec<u32> = (b * 32..b * 32 + 32).map(|i| i as u32).collect();
    pouw_ml::shipped_mnist_ref().gather(&idx)
}

fn body(
    task_id: Hash,
    key: &pouw_primitives::Keypair,
    i: u64,
    o: &IterationOutput,
) -> IterationBody {
    pouw_consensus::pouw::iteration_body(task_id, key.public(), 0, i, o)
}

fn setup() -> Setup {
    let spec = ChainSpec::devnet();
    let genesis = genesis_block(&spec).unwrap();
    let (task_id, task) = filler_task(&spec, &genesis.hash());
    let (m, o) = ml_specs(&task).unwrap();
    let key = ChainSpec::devnet_key(1);
    let peer = ChainSpec::devnet_key(2);
    let mut ps = TrainState::new(Model::new(m.clone()).unwrap(), o).unwrap();
    let peer_msg =
        body(task_id, &peer, 0, &ps.iterate(Exec::SINGLE, &batch_of(99), &[]).unwrap()).sign(&peer);
    let committed = Header {
        version: HEADER_VERSION,
        height: 1,
        prev_hash: genesis.hash(),
        tx_root: Block::compute_tx_root(&[]),
        attestation_root: Block::compute_attestation_root(&[]),
        state_root: Hash::digest(b"state"),
        timestamp: Timestamp(spec.genesis.timestamp.0 + 5_000),
        target: spec.initial_target,
        miner: key.public(),
        task_id,
        msg_hash: Hash::ZERO,
        msg_history_root: Hash::ZERO,
        nonce: Hash::ZERO,
    };
    let k = u64::from(spec.commitment_depth);
    let mut state = TrainState::new(Model::new(m).unwrap(), o).unwrap();
    let mut committing = None;
    for i in 0..k {
        let out = state.iterate(Exec::SINGLE, &batch_of(i as usize), &[]).unwrap();
        if i == 0 {
            let mut b = body(task_id, &key, 0, &out);
            b.commitment = committed.zero_nonce_hash();
            committing = Some(b.sign(&key));
        }
    }
    let start = state.clone();
    let batch = batch_of(k as usize);
    let seed = committed.zero_nonce_hash();
    let out = state.iterate_bound(Exec::SINGLE, &batch, &[&peer_msg.body.map], &seed.0).unwrap();
    let mut wb = body(task_id, &key, k, &out);
    wb.peer_msgs = vec![peer_msg.id()];
    wb.order_seed = seed;
    let winning = wb.sign(&key);
    let header = mine_iteration(
        &committed,
        winning.id(),
        Hash(out.end_model_hash.0),
        map_hash(&out.map),
        Hash(out.end_residual_hash.0),
        1,
        Uint256::MAX,
    )
    .unwrap();
    let data = ProofData {
        start_params: start.model().params().to_vec(),
        start_residual: start.residual().to_vec(),
        start_velocity: start.velocity().to_vec(),
        batch: batch.canonical_bytes(),
        peers: vec![peer_msg],
        sample_proofs: vec![],
    };
    let proof = PouwProof { winning, committing: committing.unwrap() };
    Setup { spec, task, header, committed, proof, data, start, batch, out, key }
}

/// The nonce budget of the setup's iteration.
fn budget(s: &Setup) -> u64 {
    let cost = pouw_consensus::pouw::IterationCost::of(
        &s.task,
        s.batch.len() as u64,
        s.batch.byte_len() as u64,
    );
    pouw_consensus::pouw::nonce_budget(&s.spec, &cost)
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let peer_map = s.data.peers[0].body.map.clone();
    let (params, batch_bytes, a) =
        (s.start.model().param_count() as u64, s.batch.byte_len() as u64, budget(&s));
    eprintln!(
        "filler task: {params} parameters, batch {batch_bytes} bytes, nonce budget a = {}, map {} entries",
        a,
        s.out.map.len()
    );

    let mut g = c.benchmark_group("verify");
    g.bench_function("cheap_checks", |b| {
        b.iter(|| check_proof_cheap(&s.spec, &s.header, &s.proof, &s.task).unwrap())
    });
    g.bench_function("replay", |b| {
        b.iter(|| replay(&s.spec, &s.header, &s.proof, &s.task, &s.data, Exec::SINGLE).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("train");
    g.bench_function("iterate", |b| {
        b.iter_batched_ref(
            || (s.start.clone(), unhashed(&s.batch)),
            |(st, batch)| black_box(st.iterate(Exec::SINGLE, batch, &[&peer_map]).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("sgd_step", |b| {
        b.iter_batched_ref(
            || s.start.clone(),
            |st| black_box(st.sgd_step(Exec::SINGLE, &s.batch).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("state_clone", |b| b.iter(|| black_box(s.start.clone())));
    g.finish();

    let mut g = c.benchmark_group("mining_overhead");
    g.bench_function("commitment_zero_nonce_hash", |b| {
        b.iter(|| black_box(s.committed.zero_nonce_hash()))
    });
    let (end, mh) = (Hash(s.out.end_model_hash.0), map_hash(&s.out.map));
    let res = Hash(s.out.end_residual_hash.0);
    let winning_id = s.proof.winning.id();
    g.bench_function("nonce_attempts_all_a", |b| {
        b.iter(|| {
            black_box(mine_iteration(&s.committed, winning_id, end, mh, res, a, Uint256::ZERO))
        })
    });
    g.bench_function("itres_id", |b| b.iter(|| black_box(s.proof.winning.id())));
    g.bench_function("itres_id_and_sign", |b| {
        b.iter(|| black_box(s.proof.winning.body.clone().sign(&s.key)))
    });
    g.bench_function("map_hash", |b| b.iter(|| black_box(map_hash(&s.out.map))));
    let model = s.start.model();
    g.bench_function("model_hash", |b| b.iter(|| black_box(model.hash())));
    g.bench_function("residual_hash", |b| b.iter(|| black_box(s.start.residual_hash())));
    g.bench_function("batch_hash", |b| {
        b.iter_batched_ref(
            || unhashed(&s.batch),
            |batch| black_box(batch.hash()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A copy of `b` that has not hashed itself yet (a `Batch` keeps its hash once computed): an
/// honest miner's every iteration trains a new batch; a grinder's variants share one.
fn unhashed(b: &Batch) -> Batch {
    Batch::new(b.features().to_vec(), b.labels().to_vec(), b.width()).unwrap()
}

/// Design 010's cost table: attempts per CPU-second of an honest miner against a grinder.
fn cost_table(c: &mut Criterion) {
    let s = setup();
    let peer_map = s.data.peers[0].body.map.clone();
    let a = budget(&s);
    eprintln!("cost table: a = {a} nonce attempts per iteration");
    let task_id = s.proof.winning.body.task_id;

    // The honest miner, per iteration: train bound to the header committed k iterations
    // earlier (its zero-nonce hash seeds the order), publish IT_RES committing to the header k
    // ahead (zero-nonce hash, id, signature), try the iteration's `a` nonces on the committed
    // header.
    let seed = s.committed.zero_nonce_hash();
    let mut g = c.benchmark_group("honest");
    g.bench_function("iteration_with_mining", |b| {
        b.iter_batched_ref(
            || (s.start.clone(), unhashed(&s.batch)),
            |(st, batch)| {
                let out = st.iterate_bound(Exec::SINGLE, batch, &[&peer_map], &seed.0).unwrap();
                let mut body = body(task_id, &s.key, 1, &out);
                body.order_seed = seed;
                let winning_id = body.id(); // commitment zero, as a winning message
                body.commitment = s.committed.zero_nonce_hash();
                black_box(body.sign(&s.key));
                black_box(mine_iteration(
                    &s.committed,
                    winning_id,
                    Hash(out.end_model_hash.0),
                    map_hash(&out.map),
                    Hash(out.end_residual_hash.0),
                    a,
                    Uint256::ZERO,
                ))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // The grinder under the binding (design/010): a header variant (here `msg_history_root`
    // re-rolled) has its own order seed, so each variant re-runs the iteration from the saved
    // start state (the state copy, which the honest miner makes too when it mines, is in the
    // setup and not timed), then the message id and the `a` attempts. It skips what does not
    // change between variants of one iteration (the batch is gathered and hashed once) and signs
    // only a variant that wins; an attempt whose block would be refused is not counted, and these are
    // all valid (the test `a_header_variant_needs_its_own_iteration` checks one).
    let mut g = c.benchmark_group("grind");
    let mut variant = s.committed.clone();
    let mut counter = 0u64;
    g.bench_function("variant_reiterate", |b| {
        b.iter_batched_ref(
            || s.start.clone(),
            |st| {
                counter += 1;
                variant.msg_history_root.0[..8].copy_from_slice(&counter.to_le_bytes());
                let seed = variant.zero_nonce_hash();
                let out = st.iterate_bound(Exec::SINGLE, &s.batch, &[&peer_map], &seed.0).unwrap();
                let mut body = body(task_id, &s.key, 1, &out);
                body.order_seed = seed;
                black_box(mine_iteration(
                    &variant,
                    body.id(),
                    Hash(out.end_model_hash.0),
                    map_hash(&out.map),
                    Hash(out.end_residual_hash.0),
                    a,
                    Uint256::ZERO,
                ))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // The grinder of the rules before the binding, for the record: after one real iteration,
    // each variant of a free header field is a fresh header with `a` fresh attempts. Under the
    // binding every such block is refused (its replay runs in the variant's order), so these
    // attempts are worth nothing; they show what the binding took away.
    let mut g = c.benchmark_group("grind_unbound");
    let (end, mh, res) =
        (Hash(s.out.end_model_hash.0), map_hash(&s.out.map), Hash(s.out.end_residual_hash.0));
    let winning_id = s.proof.winning.id();
    let mut variant = s.committed.clone();
    g.bench_function("variant_all_a", |b| {
        b.iter(|| {
            counter += 1;
            variant.msg_history_root.0[..8].copy_from_slice(&counter.to_le_bytes());
            black_box(variant.zero_nonce_hash());
            black_box(mine_iteration(&variant, winning_id, end, mh, res, a, Uint256::ZERO))
        })
    });
    // The tight loop: header encoded once, nonces derived once; an attempt rewrites the varied
    // bytes and the nonce and hashes. Checked against `Header::hash` before timing.
    let precursor = pouw_consensus::pouw::nonce_precursor(&end, &mh, &res);
    let nonces: Vec<Hash> = (0..a).map(|j| pouw_consensus::pouw::nonce_at(&precursor, j)).collect();
    let mut header = s.committed.clone();
    header.msg_hash = winning_id;
    let mut buf = pouw_primitives::codec::encode(&header);
    let nonce_at_offset = buf.len() - 32;
    let root_at = buf.len() - 64; // msg_history_root precedes the nonce
    let mut check = header;
    check.msg_history_root.0[..8].copy_from_slice(&7u64.to_le_bytes());
    check.nonce = nonces[0];
    buf[root_at..root_at + 8].copy_from_slice(&7u64.to_le_bytes());
    buf[nonce_at_offset..].copy_from_slice(nonces[0].as_bytes());
    assert_eq!(Hash::tagged("pouw/header", &buf), check.hash(), "the tight loop hashes headers");
    let mut attempt = 0u64;
    g.bench_function("attempt_tight", |b| {
        b.iter(|| {
            attempt += 1;
            let j = (attempt % a) as usize;
            if j == 0 {
                buf[root_at..root_at + 8].copy_from_slice(&attempt.to_le_bytes());
            }
            buf[nonce_at_offset..].copy_from_slice(nonces[j].as_bytes());
            black_box(pouw_primitives::meets_target(
                &Hash::tagged("pouw/header", &buf),
                Uint256::ZERO,
            ))
        })
    });
    g.finish();
}

criterion_group!(pouw, benches, cost_table);
criterion_main!(pouw);
