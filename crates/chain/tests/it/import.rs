//! Extension, side chains, reorgs, ties, invalid branches, orphans, queries.

use crate::remine;
use pouw_chain::{
    test_utils::{devnet_key, transfer, BlockBuilder, ChainHarness},
    BlockError, ChainError, ImportOutcome,
};
use pouw_consensus::StateKey;
use pouw_primitives::{Amount, Block, Hash, Timestamp};
use pouw_storage::BlockStatus;

#[test]
fn extend_chain_updates_tip_and_state() {
    let mut h = ChainHarness::new();
    let hashes = h.extend_chain(5);
    assert_eq!(h.chain.height(), 5);
    assert_eq!(h.chain.tip(), hashes[4]);
    assert_eq!(h.chain.state().root(), h.factory.state(&hashes[4]).root());
    assert_eq!(h.chain.state().root(), h.chain.tip_header().state_root);
    for (i, hash) in hashes.iter().enumerate() {
        assert_eq!(h.chain.hash_at(i as u64 + 1), Some(*hash));
        assert_eq!(h.chain.block_at(i as u64 + 1).unwrap().unwrap().hash(), *hash);
        assert_eq!(h.chain.header_entry(hash).unwrap().status, BlockStatus::Valid);
    }
    // A second import of a stored block is a no-op.
    let b = h.factory.block(&hashes[2]).clone();
    assert_eq!(h.import(b).unwrap(), ImportOutcome::AlreadyKnown);
    // The miner got reward + fees.
    let tip = h.chain.tip_header().clone();
    let miner = h.chain.account(&tip.miner);
    assert_eq!(miner.balance, Amount(h.chain.spec().block_reward.0 + 20));
}

fn import_all(h: &mut ChainHarness, blocks: &[Block]) -> Vec<ImportOutcome> {
    blocks.iter().map(|b| h.import(b.clone()).unwrap()).collect()
}

#[test]
fn reorg_to_heavier_branch_and_back_matches_a_chain_that_saw_only_the_winner() {
    let mut h = ChainHarness::new();
    let a = h.extend_chain(5);
    // Fork from A2 with transfers: B3..B6.
    let mut b = Vec::new();
    let mut parent = a[1];
    for i in 0..4 {
        let blk = h.factory.build_with_transfers(&parent, 3, 100 + i);
        parent = blk.hash();
        b.push(blk);
    }
    let out = import_all(&mut h, &b);
    assert_eq!(
        out,
        vec![
            ImportOutcome::SideChain,
            ImportOutcome::SideChain,
            ImportOutcome::SideChain, // tie at height 5: first seen (A5) stays
            ImportOutcome::Reorged { depth: 3 },
        ]
    );
    assert_eq!(h.chain.tip(), b[3].hash());
    assert_eq!(h.chain.state().root(), h.factory.state(&b[3].hash()).root());
    assert_eq!(h.chain.last_tip_change().reverted, vec![a[4], a[3], a[2]]);

    // A grows back: A6 ties, A7 wins.
    let a6 = h.factory.build_with_transfers(&a[4], 2, 7);
    let a7 = h.factory.build_with_transfers(&a6.hash(), 2, 8);
    assert_eq!(h.import(a6.clone()).unwrap(), ImportOutcome::SideChain);
    assert_eq!(h.import(a7.clone()).unwrap(), ImportOutcome::Reorged { depth: 4 });
    assert_eq!(h.chain.tip(), a7.hash());
    assert_eq!(h.chain.state().root(), a7.header.state_root);

    // A node that only ever saw A.
    let mut only = ChainHarness::new();
    for hash in a.iter().chain([a6.hash(), a7.hash()].iter()) {
        assert_eq!(only.import(h.factory.block(hash).clone()).unwrap(), ImportOutcome::Extended);
    }
    assert_eq!(only.chain.tip(), h.chain.tip());
    assert_eq!(only.chain.state(), h.chain.state());
    assert_eq!(only.chain.canonical(), h.chain.canonical());

    // And after a restart, the reorged node still agrees.
    let h = h.reopen().unwrap();
    assert_eq!(h.chain.state(), only.chain.state());
    assert_eq!(h.chain.canonical(), only.chain.canonical());
}

#[test]
fn ties_keep_the_first_seen() {
    let mut h = ChainHarness::new();
    let g = h.chain.tip();
    let x = h.factory.build_with_transfers(&g, 1, 1);
    let y = h.factory.build_with_transfers(&g, 1, 2);
    assert_eq!(h.import(x.clone()).unwrap(), ImportOutcome::Extended);
    assert_eq!(h.import(y.clone()).unwrap(), ImportOutcome::SideChain);
    assert_eq!(h.chain.tip(), x.hash());
    assert_eq!(h.chain.header_entry(&y.hash()).unwrap().status, BlockStatus::Unvalidated);
    // Still after a restart.
    let h = h.reopen().unwrap();
    assert_eq!(h.chain.tip(), x.hash());
}

/// A child of `parent` whose header commits to a wrong state root (otherwise valid); recorded
/// in the factory so children can be built on it.
fn bad_state_root_child(h: &mut ChainHarness, parent: &Hash) -> Block {
    let good = h.factory.build(parent, vec![]);
    let state = h.factory.state(&good.hash()).clone();
    let bad = remine(good, |hd| hd.state_root = Hash::digest(b"wrong"));
    h.factory.record(bad.clone(), state);
    bad
}

#[test]
fn invalid_block_on_heavier_fork_leaves_node_on_valid_tip() {
    let mut h = ChainHarness::new();
    let a = h.extend_chain(3);
    // Fork from genesis: B1, B2, B3 valid (B3 ties A3), B4 invalid, B5 on B4.
    let g = h.chain.genesis_hash();
    let b = h.fork(&g, 3);
    let b4 = bad_state_root_child(&mut h, &b[2].hash());
    let b5 = h.factory.build(&b4.hash(), vec![]); // its recorded state is from the bad parent
    assert_eq!(import_all(&mut h, &b), vec![ImportOutcome::SideChain; 3]);
    let root_before = h.chain.state().root();
    let err = h.import(b4.clone()).unwrap_err();
    match &err {
        ChainError::Invalid { hash, error } => {
            assert_eq!(*hash, b4.hash());
            assert!(matches!(**error, BlockError::BadStateRoot { .. }), "{error}");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(h.chain.tip(), a[2]);
    assert_eq!(h.chain.state().root(), root_before);
    assert_eq!(h.chain.state(), h.factory.state(&a[2]));
    assert_eq!(h.chain.header_entry(&b4.hash()).unwrap().status, BlockStatus::Invalid);
    assert!(matches!(h.import(b4.clone()), Err(ChainError::KnownInvalid(_))));
    let err = h.import(b5).unwrap_err();
    assert!(matches!(err.block_error(), Some(BlockError::InvalidAncestor(p)) if *p == b4.hash()));
    // The valid part of the fork is still usable: B4' on B3 wins.
    let b4ok = h.factory.build(&b[2].hash(), vec![]);
    assert_eq!(h.import(b4ok.clone()).unwrap(), ImportOutcome::Reorged { depth: 3 });
    assert_eq!(h.chain.state(), h.factory.state(&b4ok.hash()));
    // Restart: invalid marks persist, tip and state too.
    let h = h.reopen().unwrap();
    assert_eq!(h.chain.tip(), b4ok.hash());
    assert_eq!(h.chain.header_entry(&b4.hash()).unwrap().status, BlockStatus::Invalid);
}

#[test]
fn invalid_ancestor_deep_in_a_heavier_branch_marks_descendants() {
    let mut h = ChainHarness::new();
    let a = h.extend_chain(2);
    let g = h.chain.genesis_hash();
    // B1 is invalid (bad root), B2, B3 build on it: the branch becomes heavier only at B3.
    let b1 = bad_state_root_child(&mut h, &g);
    let b2 = h.factory.build(&b1.hash(), vec![]);
    let b3 = h.factory.build(&b2.hash(), vec![]);
    assert_eq!(h.import(b1.clone()).unwrap(), ImportOutcome::SideChain);
    assert_eq!(h.import(b2.clone()).unwrap(), ImportOutcome::SideChain);
    let err = h.import(b3.clone()).unwrap_err();
    assert!(matches!(&err, ChainError::Invalid { hash, .. } if *hash == b1.hash()), "{err}");
    for x in [&b1, &b2, &b3] {
        assert_eq!(h.chain.header_entry(&x.hash()).unwrap().status, BlockStatus::Invalid);
    }
    assert_eq!(h.chain.tip(), a[1]);
    assert_eq!(h.chain.state(), h.factory.state(&a[1]));
}

#[test]
fn execution_failure_on_the_tip_changes_nothing() {
    let mut h = ChainHarness::new();
    h.extend_chain(2);
    let tip = h.chain.tip();
    // A block whose transfer overspends: built against a state where the sender is rich.
    let poor = pouw_primitives::Keypair::from_label("poor");
    let mut rich = h.factory.state(&tip).clone();
    let key = StateKey::Account(poor.public());
    rich = pouw_consensus::State::from_entries(
        rich.entries().map(|(k, v)| (k.clone(), v.clone())).chain([(
            key,
            pouw_consensus::StateValue::Account(pouw_consensus::Account {
                balance: Amount(1_000_000),
                nonce: 0,
            }),
        )]),
    );
    let spec = h.chain.spec().clone();
    let tx = transfer(&spec, &poor, 0, devnet_key(1).public(), 500, 1);
    let parent = h.chain.tip_header().clone();
    let (bad, _) = BlockBuilder::new(&spec, &parent, &rich).txs(vec![tx]).build().unwrap();
    let before = h.chain.state().clone();
    let err = h.import(bad.clone()).unwrap_err();
    assert!(matches!(err.block_error(), Some(BlockError::Consensus(_))), "{err}");
    assert_eq!(h.chain.state(), &before);
    assert_eq!(h.chain.tip(), tip);
    assert_eq!(h.chain.header_entry(&bad.hash()).unwrap().status, BlockStatus::Invalid);
    assert!(h.chain.block(&bad.hash()).unwrap().is_none(), "invalid bodies are not kept");
    // The chain goes on.
    h.extend_chain(1);
}

#[test]
fn orphans_wait_for_their_parent() {
    let mut h = ChainHarness::new();
    let g = h.chain.genesis_hash();
    let blocks = h.fork(&g, 3);
    let err = h.import(blocks[2].clone()).unwrap_err();
    assert!(matches!(err, ChainError::UnknownParent { parent, .. } if parent == blocks[1].hash()));
    assert!(h.import(blocks[1].clone()).is_err());
    assert_eq!(h.chain.orphan_count(), 2);
    assert_eq!(h.import(blocks[0].clone()).unwrap(), ImportOutcome::Extended);
    let now = h.now();
    let results = h.chain.process_orphans(now);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(_, r)| r.as_ref().is_ok_and(|o| *o == ImportOutcome::Extended)));
    assert_eq!(h.chain.tip(), blocks[2].hash());
    assert_eq!(h.chain.orphan_count(), 0);
}

#[test]
fn locator_and_header_ranges() {
    let mut h = ChainHarness::new();
    let hashes = h.extend_chain(30);
    let loc = h.chain.locator();
    assert_eq!(loc[0], h.chain.tip());
    assert_eq!(*loc.last().unwrap(), h.chain.genesis_hash());
    assert!(loc.len() < 20);
    let hs = h.chain.headers_range(28, 10);
    assert_eq!(hs.len(), 3);
    assert_eq!(hs[0].hash(), hashes[27]);
    // A peer at height 10 asks for what follows.
    let theirs = vec![hashes[9], Hash::digest(b"unknown")];
    let next = h.chain.headers_after_locator(&theirs, 5);
    assert_eq!(next.iter().map(|x| x.height).collect::<Vec<_>>(), vec![11, 12, 13, 14, 15]);
    let from_genesis = h.chain.headers_after_locator(&[Hash::digest(b"x")], 2);
    assert_eq!(from_genesis[0].height, 1);
}

#[test]
fn reopen_after_clean_shutdown_keeps_tip_root_and_side_chains() {
    let mut h = ChainHarness::new();
    let a = h.extend_chain(6);
    let side = h.fork(&a[2], 2);
    import_all(&mut h, &side);
    let (tip, root, canonical) =
        (h.chain.tip(), h.chain.state().root(), h.chain.canonical().to_vec());
    let mut h = h.reopen().unwrap();
    assert_eq!(h.chain.tip(), tip);
    assert_eq!(h.chain.state().root(), root);
    assert_eq!(h.chain.canonical(), canonical.as_slice());
    assert_eq!(h.chain.header_entry(&side[1].hash()).unwrap().status, BlockStatus::Unvalidated);
    // Side chain continues after the restart and wins.
    let more = h.fork(&side[1].hash(), 2);
    let out = import_all(&mut h, &more);
    assert_eq!(out, vec![ImportOutcome::SideChain, ImportOutcome::Reorged { depth: 3 }]);
    h.extend_chain(2);
}

#[test]
fn an_import_in_stages_is_the_import_and_each_stage_refuses_what_it_must() {
    let mut h = ChainHarness::new();
    let hashes = h.extend_chain(2);
    let tip = h.chain.tip();
    let block = h.factory.build_with_transfers(&tip, 2, 99);
    let hash = block.hash();
    let now = Timestamp(block.header.timestamp.0);
    // Stages 1 and 2 only read (a shared borrow); stage 3 stores and executes.
    let checked = h.chain.admit(block, now).unwrap();
    assert_eq!(checked.block().hash(), hash);
    let proven = h.chain.verify(checked).unwrap();
    assert_eq!(h.chain.tip(), tip, "nothing moves before the commit");
    assert_eq!(h.chain.commit(proven).unwrap(), ImportOutcome::Extended);
    assert_eq!(h.chain.tip(), hash);
    assert_eq!(h.chain.state().root(), h.factory.state(&hash).root());
    // Stage 1 refuses a stored block, one whose parent is unknown and one that breaks a
    // header rule.
    let stored = h.factory.block(&hashes[1]).clone();
    assert!(matches!(h.chain.admit(stored, now), Err(ChainError::Known(b)) if b == hashes[1]));
    let mut orphan = h.factory.build_with_transfers(&hash, 1, 100);
    orphan.header.prev_hash = Hash([7; 32]);
    assert!(matches!(h.chain.admit(orphan, now), Err(ChainError::UnknownParent { .. })));
    let mut late = h.factory.build_with_transfers(&hash, 1, 101);
    late.header.height += 1;
    let e = h.chain.admit(late, now).unwrap_err();
    assert!(e.is_peer_fault(), "{e}");
}
