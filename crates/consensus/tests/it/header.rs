//! Header and body rules, and the whole validation pipeline.

use crate::common::*;
use pouw_consensus::{
    apply_block, check_block_body, check_header, genesis_block, genesis_state, next_target,
    pouw::{check_proof_structure, PouwError},
    validate_and_apply, ConsensusError as E, HeaderContext,
};
use pouw_primitives::{
    meets_target, Amount, Block, ChainSpec, CompactTarget, Hash, Header, IterationBody, Signature,
    Timestamp, Transaction, TxKind,
};

fn mine(header: &mut Header) {
    let target = header.target.to_target().unwrap();
    for i in 0u64.. {
        header.nonce = Hash::digest(&i.to_le_bytes());
        if meets_target(&header.hash(), target) {
            return;
        }
    }
}

/// A valid block 1 on top of genesis carrying `txs`, mined and signed by account 15.
fn child(spec: &ChainSpec, txs: Vec<Transaction>) -> (Header, Block) {
    let parent = genesis_block(spec).unwrap().header;
    let k = key(15);
    let iteration = IterationBody {
        task_id: Hash::ZERO,
        miner: k.public(),
        epoch: 0,
        iteration: 0,
        batch_hash: Hash::ZERO,
        start_model_hash: Hash::ZERO,
        start_residual_hash: Hash::ZERO,
        peer_msgs: vec![],
        map: vec![1, 2, 3],
        loss: 0,
        accuracy: 0,
        commitment: Hash::ZERO,
        order_seed: Hash::ZERO,
    }
    .sign(&k);
    let mut header = Header {
        version: pouw_primitives::HEADER_VERSION,
        height: 1,
        prev_hash: parent.hash(),
        tx_root: Block::compute_tx_root(&txs),
        attestation_root: Block::compute_attestation_root(&[]),
        state_root: Hash::ZERO,
        timestamp: Timestamp(parent.timestamp.0 + spec.block_time_ms),
        target: next_target(spec, 1, parent.target, &[]).unwrap(),
        miner: k.public(),
        task_id: Hash::ZERO,
        msg_hash: iteration.id(),
        msg_history_root: Hash::ZERO,
        nonce: Hash::ZERO,
    };
    let mut block = Block {
        header: header.clone(),
        signature: Signature::default(),
        proof: Some(pouw_primitives::PouwProof {
            winning: iteration.clone(),
            committing: iteration,
        }),
        transactions: txs,
        attestations: vec![],
    };
    let state = genesis_state(spec).unwrap();
    header.state_root = apply_block(&state, &block, spec).unwrap().state_root;
    mine(&mut header);
    block.header = header.clone();
    block.sign(&k);
    (parent, block)
}

fn ctx<'a>(
    spec: &'a ChainSpec,
    parent: &Header,
    now: Timestamp,
    anc: &'a [Timestamp],
) -> HeaderContext<'a> {
    HeaderContext { spec, now, ancestor_timestamps: anc, expected_target: parent.target }
}

fn transfers(spec: &ChainSpec, n: u64) -> Vec<Transaction> {
    (0..n)
        .map(|i| tx(spec, &key(0), i, 1, TxKind::Transfer { to: addr(1), amount: Amount(1) }))
        .collect()
}

#[test]
fn valid_block_passes_the_whole_pipeline() {
    let spec = spec();
    let (parent, block) = child(&spec, transfers(&spec, 3));
    let anc = [parent.timestamp];
    let c = ctx(&spec, &parent, block.header.timestamp, &anc);
    let state = genesis_state(&spec).unwrap();
    let diff = validate_and_apply(&state, &block, &parent, &c).unwrap();
    assert_eq!(diff.state_root, block.header.state_root);
}

#[test]
fn each_header_rule() {
    let spec = spec();
    let (parent, block) = child(&spec, vec![]);
    let now = block.header.timestamp;
    let anc = [parent.timestamp];
    let c = ctx(&spec, &parent, now, &anc);
    check_header(&block.header, &parent, &c).unwrap();
    let check = |f: &dyn Fn(&mut Header)| {
        let mut h = block.header.clone();
        f(&mut h);
        check_header(&h, &parent, &c).unwrap_err()
    };
    assert!(matches!(
        check(&|h| h.version = pouw_primitives::HEADER_VERSION + 1),
        E::BadVersion { .. }
    ));
    assert!(matches!(check(&|h| h.version = 1), E::BadVersion { expected: 2, got: 1 }));
    assert!(matches!(check(&|h| h.height = 2), E::BadHeight { expected: 1, got: 2 }));
    assert!(matches!(check(&|h| h.prev_hash = Hash::digest(b"x")), E::BadPrevHash { .. }));
    assert!(matches!(check(&|h| h.timestamp = parent.timestamp), E::TimestampTooOld { .. }));
    let too_far = Timestamp(now.0 + spec.max_future_ms + 1);
    let err = check(&|h| h.timestamp = too_far);
    assert!(matches!(err, E::TimestampInFuture { .. }) && err.may_become_valid());
    let at_limit = Timestamp(now.0 + spec.max_future_ms);
    assert!(!matches!(check(&|h| h.timestamp = at_limit), E::TimestampInFuture { .. }));
    assert!(matches!(check(&|h| h.target = CompactTarget(0x1d00_ffff)), E::WrongTarget { .. }));
    // A hard target that is also the expected one: the PoW check fails.
    let hard = CompactTarget(0x1d00_ffff);
    let c2 = HeaderContext { expected_target: hard, ..c };
    let mut h = block.header.clone();
    h.target = hard;
    assert!(matches!(check_header(&h, &parent, &c2), Err(E::InsufficientWork { .. })));
    // Any change to a mined header breaks its PoW (with overwhelming probability at a
    // 1-in-256 target, so try a few).
    let broken = (0u8..16).filter(|i| {
        let mut h = block.header.clone();
        h.nonce = Hash::digest(&[*i]);
        matches!(check_header(&h, &parent, &c), Err(E::InsufficientWork { .. }))
    });
    assert!(broken.count() >= 8);
    // `msg_history_root` is reserved: any other value than zero is refused, before the PoW.
    let err = check(&|h| h.msg_history_root = Hash::digest(b"free"));
    assert!(matches!(err, E::NonZeroHistoryRoot(_)) && !err.may_become_valid(), "{err:?}");
}

#[test]
fn median_time_past_uses_the_last_eleven() {
    let spec = spec();
    let (parent, block) = child(&spec, vec![]);
    let t = block.header.timestamp.0;
    // Eleven ancestors whose median is just below the block, plus older ones ignored.
    let mut anc: Vec<Timestamp> = (0..5).map(|_| Timestamp(t + 100_000)).collect();
    anc.extend((0..11).map(|i| Timestamp(t - 5 + i)));
    let c = ctx(&spec, &parent, block.header.timestamp, &anc);
    assert!(matches!(check_header(&block.header, &parent, &c), Err(E::TimestampTooOld { .. })));
    let anc: Vec<Timestamp> = (0..11).map(|i| Timestamp(t - 6 + i)).collect();
    let c = ctx(&spec, &parent, block.header.timestamp, &anc);
    check_header(&block.header, &parent, &c).unwrap();
}

#[test]
fn each_body_rule() {
    let mut spec = spec();
    let (_, block) = child(&spec, transfers(&spec, 3));
    check_block_body(&block, &spec).unwrap();

    spec.max_block_txs = 2;
    assert!(matches!(check_block_body(&block, &spec), Err(E::TooManyTransactions { .. })));
    spec.max_block_txs = 100;
    spec.max_block_bytes = block.size() as u64 - 1;
    assert!(matches!(check_block_body(&block, &spec), Err(E::BlockTooLarge { .. })));
    spec.max_block_bytes = block.size() as u64;
    check_block_body(&block, &spec).unwrap();

    let mut b = block.clone();
    b.transactions.pop();
    assert!(matches!(check_block_body(&b, &spec), Err(E::BadTxRoot { .. })));
    let mut b = block;
    b.signature.0[0] ^= 1;
    assert!(matches!(check_block_body(&b, &spec), Err(E::BadMinerSignature(_))));
    let g = genesis_block(&spec).unwrap();
    assert!(matches!(check_block_body(&g, &spec), Err(E::GenesisHeight)));
}

/// The proof checks left `check_block_body` for the PoUW structure check; each still fails.
#[test]
fn each_proof_structure_rule() {
    let spec = spec();
    let (_, block) = child(&spec, transfers(&spec, 1));
    assert!(check_proof_structure(&block).unwrap().is_some());
    // Only genesis carries no proof.
    assert!(check_proof_structure(&genesis_block(&spec).unwrap()).unwrap().is_none());
    let mut b = block.clone();
    b.proof = None;
    check_block_body(&b, &spec).unwrap();
    assert!(matches!(check_proof_structure(&b), Err(PouwError::MissingProof)));
    // A changed winning message no longer has the header's msg_hash (it is re-signed, so the
    // signature is not what fails).
    let mut b = block.clone();
    if let Some(p) = b.proof.as_mut() {
        p.winning = IterationBody { epoch: 9, ..p.winning.body.clone() }.sign(&key(15));
    }
    assert!(matches!(check_proof_structure(&b), Err(PouwError::MsgHash { .. })));
    let mut b = block.clone();
    if let Some(p) = b.proof.as_mut() {
        p.winning =
            IterationBody { task_id: Hash::digest(b"t"), ..p.winning.body.clone() }.sign(&key(15));
    }
    assert!(matches!(check_proof_structure(&b), Err(PouwError::MsgHash { .. })));
    // Winning message by another miner.
    let mut b = block.clone();
    if let Some(p) = b.proof.as_mut() {
        p.winning =
            IterationBody { miner: key(14).public(), ..p.winning.body.clone() }.sign(&key(14));
    }
    assert!(matches!(check_proof_structure(&b), Err(PouwError::WinningMiner { .. })));
    let mut b = block.clone();
    if let Some(it) = b.proof.as_mut().map(|p| &mut p.winning) {
        it.signature.0[1] ^= 1;
    }
    assert!(matches!(check_proof_structure(&b), Err(PouwError::WinningSignature(_))));
    // Committing message by another miner, or with a bad signature.
    let mut b = block.clone();
    if let Some(p) = b.proof.as_mut() {
        p.committing =
            IterationBody { miner: key(14).public(), ..p.committing.body.clone() }.sign(&key(14));
    }
    assert!(matches!(check_proof_structure(&b), Err(PouwError::CommittingOwner)));
    let mut b = block.clone();
    if let Some(it) = b.proof.as_mut().map(|p| &mut p.committing) {
        it.signature.0[1] ^= 1;
    }
    assert!(matches!(check_proof_structure(&b), Err(PouwError::CommittingSignature(_))));
    // The pipeline runs it.
    let parent = genesis_block(&spec).unwrap().header;
    let anc = [parent.timestamp];
    let c = ctx(&spec, &parent, block.header.timestamp, &anc);
    let state = genesis_state(&spec).unwrap();
    let mut b = block;
    b.proof = None;
    assert!(matches!(
        validate_and_apply(&state, &b, &parent, &c),
        Err(E::Pouw(PouwError::MissingProof))
    ));
}

#[test]
fn state_root_mismatch() {
    let spec = spec();
    let (parent, mut block) = child(&spec, transfers(&spec, 2));
    block.header.state_root = Hash::digest(b"wrong");
    mine(&mut block.header);
    block.sign(&key(15));
    let anc = [parent.timestamp];
    let c = ctx(&spec, &parent, block.header.timestamp, &anc);
    let state = genesis_state(&spec).unwrap();
    assert!(matches!(
        validate_and_apply(&state, &block, &parent, &c),
        Err(E::StateRootMismatch { .. })
    ));
}

#[test]
fn invalid_transaction_fails_the_block() {
    let spec = spec();
    let mut txs = transfers(&spec, 2);
    txs.push(tx(&spec, &key(0), 7, 1, TxKind::Transfer { to: addr(1), amount: Amount(1) }));
    let block = {
        // Build without the helper (apply_block would fail while computing the root).
        let (_, mut b) = child(&spec, vec![]);
        b.transactions = txs;
        b.header.tx_root = Block::compute_tx_root(&b.transactions);
        mine(&mut b.header);
        b.sign(&key(15));
        b
    };
    let parent = genesis_block(&spec).unwrap().header;
    let anc = [parent.timestamp];
    let c = ctx(&spec, &parent, block.header.timestamp, &anc);
    let state = genesis_state(&spec).unwrap();
    let err = validate_and_apply(&state, &block, &parent, &c).unwrap_err();
    assert!(matches!(unwrap_tx_error(err), E::WrongNonce { .. }));
}
