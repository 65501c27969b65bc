//! Importing a block of 1,000 signed transfers, including the database commit.
//!
//! `cargo bench -p pouw-chain --bench import`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pouw_chain::{
    test_utils::{devnet_key, test_spec, transfer, BlockFactory},
    Chain, ChainConfig, NoProofCheck,
};
use pouw_consensus::apply_block;
use pouw_primitives::Block;
use pouw_storage::Durability;
use std::sync::Arc;

const TXS: usize = 1_000;

fn block_of_transfers() -> (BlockFactory, Block) {
    let spec = test_spec();
    let mut factory = BlockFactory::new(spec.clone());
    let g = factory.genesis;
    let keys: Vec<_> = (0..16).map(devnet_key).collect();
    let txs = (0..TXS)
        .map(|i| {
            let from = i % 16;
            let to = (from + 1 + i % 15) % 16;
            transfer(&spec, &keys[from], (i / 16) as u64, keys[to].public(), 1 + i as u64, 10)
        })
        .collect();
    let block = factory.build(&g, txs);
    (factory, block)
}

fn bench_import(c: &mut Criterion) {
    let (factory, block) = block_of_transfers();
    let spec = factory.spec.clone();
    eprintln!("block: {} transactions, {} bytes", block.transactions.len(), block.size());
    let mut group = c.benchmark_group("import");
    group.sample_size(20);
    for (name, durability) in [
        ("1000_transfers_fsync", Durability::Immediate),
        ("1000_transfers_eventual", Durability::Eventual),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let config = ChainConfig { durability, ..ChainConfig::default() };
                    let chain =
                        Chain::open_with(dir.path(), spec.clone(), config, Arc::new(NoProofCheck))
                            .unwrap();
                    (dir, chain, block.clone())
                },
                |(dir, mut chain, block)| {
                    let now = block.header.timestamp;
                    chain.import_block(block, now).unwrap();
                    (dir, chain)
                },
                BatchSize::PerIteration,
            );
        });
    }
    let genesis_state = factory.state(&factory.genesis).clone();
    group.bench_function("1000_transfers_execute_only", |b| {
        b.iter(|| apply_block(&genesis_state, &block, &spec).unwrap());
    });
    group.bench_function("1000_signatures_verify_only", |b| {
        b.iter(|| {
            for tx in &block.transactions {
                tx.verify_signature().unwrap();
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench_import);
criterion_main!(benches);
