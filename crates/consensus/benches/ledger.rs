//! Ledger throughput: signed-transfer validation and application, and a 1,000-transfer block.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pouw_consensus::{
    apply_block, apply_tx, check_tx_stateless, genesis_state, BlockContext, Overlay,
};
use pouw_primitives::{
    Amount, Block, ChainSpec, CompactTarget, Hash, Header, Signature, Timestamp, Transaction,
    TxBody, TxKind, HEADER_VERSION,
};

fn transfers(spec: &ChainSpec, n: usize) -> Vec<Transaction> {
    // Spread over the 16 funded devnet accounts, sequential nonces per sender.
    let mut nonces = [0u64; 16];
    (0..n)
        .map(|i| {
            let from = i % 16;
            let key = ChainSpec::devnet_key(from);
            let to = ChainSpec::devnet_key((from + 1 + i / 16) % 16).public();
            let to = if to == key.public() {
                ChainSpec::devnet_key((from + 1) % 16).public()
            } else {
                to
            };
            let nonce = nonces[from];
            nonces[from] += 1;
            TxBody {
                chain_id: spec.chain_id,
                sender: key.public(),
                nonce,
                fee: Amount(1),
                kind: TxKind::Transfer { to, amount: Amount(1_000) },
            }
            .sign(&key)
        })
        .collect()
}

fn block(txs: Vec<Transaction>) -> Block {
    let header = Header {
        version: HEADER_VERSION,
        height: 1,
        prev_hash: Hash::ZERO,
        tx_root: Block::compute_tx_root(&txs),
        attestation_root: Block::compute_attestation_root(&[]),
        state_root: Hash::ZERO,
        timestamp: Timestamp(0),
        target: CompactTarget(0x2000_ffff),
        miner: ChainSpec::devnet_key(0).public(),
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

fn bench(c: &mut Criterion) {
    let spec = ChainSpec::devnet();
    let state = genesis_state(&spec).unwrap();
    let one = transfers(&spec, 1).pop().unwrap();
    let b = block(vec![]);
    let ctx = BlockContext::new(&spec, &b.header);

    let mut g = c.benchmark_group("transfer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("validate (signature + chain id)", |bn| {
        bn.iter(|| check_tx_stateless(&one, &spec).unwrap())
    });
    g.bench_function("validate + apply (apply_tx on an overlay)", |bn| {
        bn.iter_batched(
            || Overlay::new(&state),
            |mut o| apply_tx(&mut o, &one, &ctx).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let big = block(transfers(&spec, 1_000));
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Elements(1_000));
    g.sample_size(10);
    g.bench_function("apply_block 1000 signed transfers (incl. state root)", |bn| {
        bn.iter(|| apply_block(&state, &big, &spec).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
