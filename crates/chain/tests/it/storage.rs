//! Reopening, and refusing corrupted or foreign databases with a named error.

use pouw_chain::{
    test_utils::{test_spec, ChainHarness},
    Chain, ChainError,
};
use pouw_consensus::StateKey;
use pouw_primitives::codec;
use pouw_storage::{Durability, RawTable, StorageError, Store, Table, DB_FILE};
use std::{
    io::{Seek, SeekFrom, Write},
    path::Path,
};

/// A chain of 8 blocks with a side branch, closed; returns the directory, tip and root.
fn closed_chain() -> (tempfile::TempDir, pouw_primitives::Hash, pouw_primitives::Hash) {
    let mut h = ChainHarness::new();
    let a = h.extend_chain(8);
    let side = h.fork(&a[3], 2);
    for b in side {
        h.import(b).unwrap();
    }
    let tip = h.chain.tip();
    let root = h.chain.state().root();
    let (chain, _, dir) = h.into_parts();
    drop(chain);
    (dir, tip, root)
}

fn raw_write(dir: &Path, table: RawTable, key: &[u8], value: &[u8]) {
    let (store, _) = Store::open(dir, &test_spec(), Durability::Immediate).unwrap();
    store.put_raw(table, key, value).unwrap();
}

fn corrupt_table(err: ChainError) -> Table {
    match err {
        ChainError::Storage(e) if e.corrupt_table().is_some() => {
            assert!(e.to_string().contains(" is corrupt: table "), "{e}");
            e.corrupt_table().unwrap()
        }
        other => panic!("expected a Corrupt error, got {other}"),
    }
}

#[test]
fn copy_of_a_closed_chain_reopens_identically() {
    let (dir, tip, root) = closed_chain();
    let chain = Chain::open(dir.path(), test_spec()).unwrap();
    assert_eq!(chain.tip(), tip);
    assert_eq!(chain.state().root(), root);
}

#[test]
fn garbage_state_value_is_a_named_error() {
    let (dir, _, _) = closed_chain();
    let key = codec::encode(&StateKey::Account(pouw_chain::test_utils::devnet_key(0).public()));
    raw_write(dir.path(), RawTable::State, &key, &[0xff, 0x01, 0x02]);
    let err = Chain::open(dir.path(), test_spec()).unwrap_err();
    let text = err.to_string();
    let file = dir.path().join(DB_FILE);
    assert!(text.starts_with(&format!("chain database {} is corrupt:", file.display())), "{text}");
    assert!(text.contains("restore it from a backup"), "{text}");
    assert_eq!(corrupt_table(err), Table::State);
}

#[test]
fn valid_but_wrong_state_value_fails_the_root_check() {
    let (dir, _, _) = closed_chain();
    let key = StateKey::Account(pouw_chain::test_utils::devnet_key(0).public());
    let value = pouw_consensus::StateValue::Account(pouw_consensus::Account {
        balance: pouw_primitives::Amount(1),
        nonce: 0,
    });
    raw_write(dir.path(), RawTable::State, &codec::encode(&key), &codec::encode(&value));
    let err = Chain::open(dir.path(), test_spec()).unwrap_err();
    assert!(err.to_string().contains("state root"), "{err}");
    assert_eq!(corrupt_table(err), Table::State);
}

#[test]
fn garbage_header_and_tip_are_named_errors() {
    let (dir, tip, _) = closed_chain();
    raw_write(dir.path(), RawTable::Headers, tip.as_bytes(), b"not a header");
    assert_eq!(corrupt_table(Chain::open(dir.path(), test_spec()).unwrap_err()), Table::Headers);

    let (dir, _, _) = closed_chain();
    raw_write(dir.path(), RawTable::Meta, b"tip", &[1, 2, 3]);
    assert_eq!(corrupt_table(Chain::open(dir.path(), test_spec()).unwrap_err()), Table::Meta);

    // A tip that decodes but is not indexed.
    let (dir, _, _) = closed_chain();
    raw_write(dir.path(), RawTable::Meta, b"tip", &[7; 32]);
    assert_eq!(corrupt_table(Chain::open(dir.path(), test_spec()).unwrap_err()), Table::Meta);
}

#[test]
fn garbage_block_is_found_when_read() {
    let (dir, _, _) = closed_chain();
    let second = Chain::open(dir.path(), test_spec()).unwrap().canonical()[2];
    raw_write(dir.path(), RawTable::Blocks, second.as_bytes(), &[0; 40]);
    let chain = Chain::open(dir.path(), test_spec()).unwrap();
    let err = chain.block(&second).unwrap_err();
    assert_eq!(corrupt_table(err), Table::Blocks);
}

#[test]
fn damaged_tip_block_is_refused_at_open() {
    let (dir, tip, _) = closed_chain();
    raw_write(dir.path(), RawTable::Blocks, tip.as_bytes(), &[0; 40]);
    assert_eq!(corrupt_table(Chain::open(dir.path(), test_spec()).unwrap_err()), Table::Blocks);
}

#[test]
fn a_valid_block_under_another_hash_is_refused() {
    // A block that decodes but is not the one its key names (e.g. a misdirected write).
    let (dir, tip, _) = closed_chain();
    let chain = Chain::open(dir.path(), test_spec()).unwrap();
    let other = chain.block(&chain.canonical()[1]).unwrap().unwrap();
    drop(chain);
    raw_write(dir.path(), RawTable::Blocks, tip.as_bytes(), &codec::encode(&other));
    let err = Chain::open(dir.path(), test_spec()).unwrap_err();
    assert!(err.to_string().contains("block hashes differently"), "{err}");
    assert_eq!(corrupt_table(err), Table::Blocks);

    // Below the tip it is found when read (by `pouw chain verify`, serving peers, a reorg).
    let (dir, _, _) = closed_chain();
    let second = Chain::open(dir.path(), test_spec()).unwrap().canonical()[2];
    raw_write(dir.path(), RawTable::Blocks, second.as_bytes(), &codec::encode(&other));
    let chain = Chain::open(dir.path(), test_spec()).unwrap();
    assert_eq!(corrupt_table(chain.block(&second).unwrap_err()), Table::Blocks);
}

#[test]
fn missing_undo_data_stops_a_reorg() {
    // Fail-stop: a reorg that needs undo data that is not there stops with a named error
    // and moves nothing (as Bitcoin's feature_abortnode.py).
    let mut h = ChainHarness::new();
    let a = h.extend_chain(3);
    let side = h.fork(&a[0], 3);
    h.import(side[0].clone()).unwrap();
    h.import(side[1].clone()).unwrap();
    let (chain, _, dir) = h.into_parts();
    drop(chain);
    raw_write(dir.path(), RawTable::Undo, a[2].as_bytes(), &[]);
    let mut chain = Chain::open(dir.path(), test_spec()).unwrap();
    let now = side[2].header.timestamp;
    let err = chain.import_block(side[2].clone(), now).unwrap_err();
    assert_eq!(corrupt_table(err), Table::Undo);
    assert_eq!(chain.tip(), a[2]);
    drop(chain);
    let chain = Chain::open(dir.path(), test_spec()).unwrap();
    assert_eq!(chain.tip(), a[2]);
}

#[test]
fn wrong_but_decodable_undo_data_is_corruption_not_an_invalid_block() {
    let mut h = ChainHarness::new();
    let a = h.extend_chain(3);
    let side = h.fork(&a[0], 3);
    h.import(side[0].clone()).unwrap();
    h.import(side[1].clone()).unwrap();
    let (chain, _, dir) = h.into_parts();
    drop(chain);
    // Undo data of a[2] replaced by the (valid encoding of) empty undo data.
    let empty = codec::encode(&pouw_consensus::BlockUndo::default());
    raw_write(dir.path(), RawTable::Undo, a[2].as_bytes(), &empty);
    let mut chain = Chain::open(dir.path(), test_spec()).unwrap();
    let now = side[2].header.timestamp;
    let err = chain.import_block(side[2].clone(), now).unwrap_err();
    assert_eq!(corrupt_table(err), Table::Undo);
    // The side branch is not marked invalid.
    let status = chain.header_entry(&side[1].hash()).unwrap().status;
    assert_eq!(status, pouw_storage::BlockStatus::Unvalidated);
    assert_eq!(chain.tip(), a[2]);
}

#[test]
fn other_genesis_is_refused() {
    let (dir, _, _) = closed_chain();
    let mut spec = test_spec();
    spec.genesis.timestamp.0 += 1;
    let err = Chain::open(dir.path(), spec).unwrap_err();
    assert!(
        matches!(&err, ChainError::Storage(e) if matches!(e.cause(), StorageError::GenesisMismatch { .. })),
        "{err}"
    );
}

#[test]
fn overwritten_file_bytes_never_give_silent_bad_data() {
    // Overwrite 200 bytes at several offsets (as Bitcoin's feature_init.py does): opening must
    // fail with an error, or, if the bytes hit unused pages, give exactly the old chain.
    let mut detected = 0;
    for offset_permille in [50u64, 200, 400, 600, 800, 950] {
        let (dir, tip, root) = closed_chain();
        let path = dir.path().join(DB_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(len * offset_permille / 1000)).unwrap();
        f.write_all(&[0xa5; 200]).unwrap();
        drop(f);
        let result = std::panic::catch_unwind(|| Chain::open(dir.path(), test_spec()));
        match result {
            Ok(Err(e)) => {
                detected += 1;
                eprintln!("offset {offset_permille}‰: {e}");
            }
            Ok(Ok(chain)) => {
                assert_eq!(chain.tip(), tip);
                assert_eq!(chain.state().root(), root);
                for hsh in chain.canonical() {
                    chain.block(hsh).unwrap().unwrap();
                }
            }
            Err(_) => panic!("opening a corrupted file panicked (offset {offset_permille}‰)"),
        }
    }
    eprintln!("{detected} of 6 overwrites detected at open");
}

/// Every offset at which `needle` occurs in `haystack`.
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn overwritten_live_records_are_detected() {
    // Overwrite bytes where live records are (found by searching the file for the tip hash
    // and for an encoded state key): open, or the first read of that record, must fail with
    // an error, never panic or return different data.
    let key = codec::encode(&StateKey::Account(pouw_chain::test_utils::devnet_key(3).public()));
    for which in 0..2 {
        let (dir, tip, root) = closed_chain();
        let path = dir.path().join(DB_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let needle: &[u8] = if which == 0 { tip.as_bytes() } else { &key };
        let hits = find_all(&bytes, needle);
        assert!(!hits.is_empty());
        for &at in &hits {
            let end = (at + 64).min(bytes.len());
            for b in &mut bytes[at..end] {
                *b ^= 0x5a;
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let result = std::panic::catch_unwind(|| {
            let chain = Chain::open(dir.path(), test_spec())?;
            for h in chain.canonical() {
                chain.block(h)?;
            }
            Ok::<_, ChainError>((chain.tip(), chain.state().root()))
        });
        match result {
            Ok(Err(e)) => eprintln!("needle {which}: detected: {e}"),
            Ok(Ok((t, r))) => panic!(
                "needle {which}: corruption undetected (same data: {})",
                t == tip && r == root
            ),
            Err(_) => panic!("needle {which}: opening a corrupted file panicked"),
        }
    }
}
