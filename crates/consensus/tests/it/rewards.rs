//! Verifier rewards (design/011): the attestations of the parent a block carries, the share
//! of the reward they earn, the parts not minted, and the undo of it all.

use crate::common::*;
use pouw_consensus::{
    apply_block, check_block_body, payable_attestations, ConsensusError as E, StateKey,
};
use pouw_primitives::{
    Amount, AttestationBody, ChainSpec, Hash, Role, TicketPreferences, TxKind, COIN,
};

/// A ledger whose block 1 buys verifier tickets for accounts 1..=4, and whose block 2 (the
/// first one drawn on those tickets) records its committee of [`pouw_consensus::BLOCK_VERIFIERS`].
fn with_committee() -> (Ledger, Vec<pouw_primitives::PublicKey>) {
    let mut l = Ledger::new();
    let buys = (1..=4)
        .map(|i| {
            l.tx(
                i,
                TxKind::BuyTicket {
                    role: Role::Verifier,
                    stake: Amount(20 * COIN),
                    preferences: TicketPreferences::default(),
                    expires_at: 8,
                },
            )
        })
        .collect();
    l.apply(buys).unwrap();
    assert!(committee(&l.state).is_empty(), "block 1 was drawn on genesis: no tickets");
    l.apply(vec![]).unwrap();
    let c = committee(&l.state);
    assert_eq!(c.len(), usize::from(pouw_consensus::BLOCK_VERIFIERS));
    (l, c)
}

fn apply_with(
    l: &Ledger,
    atts: Vec<pouw_primitives::Attestation>,
) -> Result<pouw_consensus::StateDiff, E> {
    apply_block(&l.state, &block_with(l.height + 1, vec![], atts), &l.spec)
}

#[test]
fn the_attesting_members_share_is_paid_and_the_rest_not_minted() {
    let (mut l, c) = with_committee();
    let spec = l.spec.clone();
    let share = spec.block_reward.mul_div(u64::from(spec.verifier_share_bps), 10_000).unwrap();
    let part = share.checked_div(c.len() as u64).unwrap();
    let remainder = share.checked_sub(part.checked_mul(c.len() as u64).unwrap()).unwrap();
    let mut atts: Vec<_> = c.iter().take(2).map(|v| attestation(&spec, 2, v, true)).collect();
    atts.sort_by_key(|a| a.body.verifier);
    let before: Vec<Amount> = c.iter().map(|v| l.balance(v)).collect();
    let miner_before = l.balance(&miner());
    let minted_before = l.state.minted();
    let total_before = l.state.total_value().unwrap();
    let diff = apply_with(&l, atts.clone()).unwrap();
    l.state.apply_diff(&diff);
    l.height += 1;
    for (v, b) in c.iter().zip(&before) {
        let paid = atts.iter().any(|a| a.body.verifier == *v);
        let expected = if paid { b.checked_add(part).unwrap() } else { *b };
        assert_eq!(l.balance(v), expected, "verifier {v:?} attested: {paid}");
    }
    let miner_gets = spec.block_reward.checked_sub(share).unwrap().checked_add(remainder).unwrap();
    assert_eq!(l.balance(&miner()), miner_before.checked_add(miner_gets).unwrap());
    // One member's part was not minted.
    let minted = spec.block_reward.checked_sub(part).unwrap();
    assert_eq!(l.state.minted(), minted_before.checked_add(minted).unwrap());
    assert_eq!(l.state.total_value().unwrap(), total_before + u128::from(minted.0));
    assert!(part > Amount::ZERO && share == Amount(5 * COIN / 2));
}

#[test]
fn a_block_without_attestations_mints_the_reward_less_the_whole_share() {
    let (mut l, _) = with_committee();
    let share = l.spec.block_reward.mul_div(u64::from(l.spec.verifier_share_bps), 10_000).unwrap();
    let before = l.state.minted();
    let miner_before = l.balance(&miner());
    l.apply(vec![]).unwrap();
    // Three parts of share / 3 are unpaid; the remainder of the division goes to the miner.
    let part = share.checked_div(3).unwrap();
    let unpaid = part.checked_mul(3).unwrap();
    let minted = l.spec.block_reward.checked_sub(unpaid).unwrap();
    assert_eq!(l.state.minted(), before.checked_add(minted).unwrap());
    assert_eq!(l.balance(&miner()), miner_before.checked_add(minted).unwrap());
}

#[test]
fn no_committee_means_no_share_and_no_attestation() {
    let mut l = Ledger::new();
    l.apply(vec![]).unwrap();
    assert!(committee(&l.state).is_empty());
    assert_eq!(l.state.minted(), l.spec.block_reward);
    let stranger = attestation(&l.spec, 1, &addr(3), true);
    let e = apply_with(&l, vec![stranger]).unwrap_err();
    assert!(
        matches!(e, E::BadAttestation { index: 0, reason } if reason.contains("committee")),
        "{e}"
    );
    l.apply(vec![]).unwrap();
    assert_eq!(l.state.minted(), l.spec.block_reward.checked_mul(2).unwrap());
}

#[test]
fn each_attestation_rule() {
    let (l, c) = with_committee();
    let spec = l.spec.clone();
    let ok = |v: &pouw_primitives::PublicKey| attestation(&spec, 2, v, true);
    let mut sorted = c.clone();
    sorted.sort();
    let outsider = (1..=4).map(addr).find(|a| !c.contains(a)).unwrap();
    let resign = |body: AttestationBody| body.clone().sign(&key(index_of(&body.verifier).unwrap()));
    let cases: Vec<(Vec<pouw_primitives::Attestation>, &str)> = vec![
        (vec![ok(&sorted[1]), ok(&sorted[0])], "sorted"),
        (vec![ok(&sorted[0]), ok(&sorted[0])], "twice"),
        (vec![attestation(&spec, 2, &sorted[0], false)], "valid: true"),
        (vec![attestation(&spec, 1, &sorted[0], true)], "parent"),
        (
            vec![resign(AttestationBody { block: Hash::digest(b"other"), ..ok(&sorted[0]).body })],
            "parent",
        ),
        (vec![resign(AttestationBody { chain_id: 7, ..ok(&sorted[0]).body })], "chain"),
        (vec![ok(&outsider)], "committee"),
        (
            vec![pouw_primitives::Attestation {
                signature: ok(&sorted[1]).signature,
                ..ok(&sorted[0])
            }],
            "signature",
        ),
    ];
    for (atts, want) in cases {
        let e = apply_with(&l, atts).unwrap_err();
        assert!(
            matches!(&e, E::BadAttestation { reason, .. } if reason.contains(want)),
            "{want}: {e}"
        );
    }
    // Every member once, sorted: valid.
    apply_with(&l, sorted.iter().map(ok).collect()).unwrap();
}

#[test]
fn the_miner_template_keeps_only_payable_attestations_sorted() {
    let (l, _) = with_committee();
    let spec = l.spec.clone();
    let parent = block(2, vec![]).header;
    // The committee of that header: drawn with its hash (design/006).
    let c = pouw_consensus::committee_of(&l.state, &parent.hash());
    assert_eq!(c.len(), usize::from(pouw_consensus::BLOCK_VERIFIERS));
    // The test blocks' parent hash is ZERO, which no real header hashes to: attest the header.
    let real = |v: &pouw_primitives::PublicKey, valid| {
        AttestationBody {
            chain_id: spec.chain_id,
            block: parent.hash(),
            height: 2,
            verifier: *v,
            valid,
        }
        .sign(&key(index_of(v).unwrap()))
    };
    let outsider = (1..=4).map(addr).find(|a| !c.contains(a)).unwrap();
    let candidates = vec![
        real(&c[2], true),
        real(&c[0], true),
        real(&c[0], true),
        real(&c[1], false),
        real(&outsider, true),
        attestation(&spec, 2, &c[1], true),
    ];
    let got = payable_attestations(&l.state, &spec, &parent, &candidates);
    let mut want = vec![c[0], c[2]];
    want.sort();
    assert_eq!(got.iter().map(|a| a.body.verifier).collect::<Vec<_>>(), want);
}

#[test]
fn the_committee_and_the_minted_total_are_undone() {
    let (mut l, c) = with_committee();
    let before = l.state.clone();
    let atts = {
        let mut a: Vec<_> = c.iter().map(|v| attestation(&l.spec, 2, v, true)).collect();
        a.sort_by_key(|a| a.body.verifier);
        a
    };
    let diff = apply_with(&l, atts).unwrap();
    assert!(diff.changes.contains_key(&StateKey::Minted));
    l.state.apply_diff(&diff);
    assert_ne!(l.state.minted(), before.minted());
    l.state.revert(&diff.undo);
    assert_eq!(l.state, before);
    assert_eq!(l.state.root(), before.root());
    assert_eq!(committee(&l.state), c);
}

#[test]
fn the_body_check_covers_the_attestation_root() {
    let spec = spec();
    let key0 = key(0);
    let mut b = block_with(1, vec![], vec![attestation(&spec, 0, &addr(1), true)]);
    b.header.miner = key0.public();
    b.sign(&key0);
    check_block_body(&b, &spec).unwrap();
    b.attestations.clear();
    assert!(matches!(check_block_body(&b, &spec), Err(E::BadAttestationRoot { .. })));
}

#[test]
fn a_share_above_the_reward_is_refused() {
    let mut spec = ChainSpec::devnet();
    spec.verifier_share_bps = 10_000;
    spec.validate().unwrap();
    spec.verifier_share_bps = 10_001;
    assert!(spec.validate().unwrap_err().contains("verifier_share_bps"));
}

#[test]
fn a_blocks_committee_is_drawn_with_its_own_hash() {
    // The state after a block records the draw's inputs; the committee follows from the
    // block's hash, which covers its nonce: its miner learns it only once the block is mined.
    let (l, c) = with_committee();
    assert_eq!(pouw_consensus::committee_of(&l.state, &Hash::ZERO), c);
    let mut seen = std::collections::BTreeSet::new();
    for n in 0..64u32 {
        let nonce = Hash::digest(&n.to_le_bytes());
        let committee = pouw_consensus::committee_of(&l.state, &nonce);
        assert_eq!(committee.len(), c.len());
        assert!(!committee.contains(&miner()));
        seen.insert(committee);
    }
    assert!(seen.len() > 1, "the committee depends on the block hash");
    // The same draw as a header's: block_verifiers seeds with the header's hash.
    let mut h = block(2, vec![]).header;
    h.nonce = Hash::digest(b"nonce");
    let direct = pouw_consensus::block_verifiers(&l.state, &h);
    assert_eq!(pouw_consensus::committee_of(&l.state, &h.hash()), direct);
}

#[test]
fn a_light_node_draws_before_import_the_committee_the_next_block_pays() {
    // A light node executes the block on its parent state and draws on the result
    // (`committee_after`); the next block draws on the stored state (`committee_of`).
    let (mut l, _) = with_committee();
    let mut b = block(l.height + 1, vec![]);
    b.header.nonce = Hash::digest(b"a mined nonce");
    let diff = apply_block(&l.state, &b, &l.spec).unwrap();
    let before = pouw_consensus::committee_after(&l.state, &diff, &b.header.hash());
    l.state.apply_diff(&diff);
    assert_eq!(before, pouw_consensus::committee_of(&l.state, &b.header.hash()));
    assert_eq!(before.len(), usize::from(pouw_consensus::BLOCK_VERIFIERS));
    assert_eq!(before, pouw_consensus::block_verifiers(&l.state, &b.header));
}
