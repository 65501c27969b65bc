//! False attestations are slashable (design/017): a claim with the signed attestation and the
//! attested header, judges drawn at the next block, a strict majority decides.

use crate::common::*;
use pouw_consensus::{
    claim, claim_id, AttestationClaim, ClaimStatus, ConsensusError as E, StateKey, JUDGE_BLOCKS,
};
use pouw_primitives::{
    Amount, Attestation, AttestationBody, Hash, Header, Role, TicketPreferences, TxKind, COIN,
};

/// The accused verifier, the claimant, and the verifiers that may be drawn as judges.
const ACCUSED: usize = 1;
const CLAIMANT: usize = 7;
const OTHERS: [usize; 5] = [2, 3, 4, 5, 6];

fn buy(l: &Ledger, i: usize) -> pouw_primitives::Transaction {
    l.tx(
        i,
        TxKind::BuyTicket {
            role: Role::Verifier,
            stake: Amount(20 * COIN),
            preferences: TicketPreferences::default(),
            expires_at: 60,
        },
    )
}

/// A ledger at height 2 where accounts 1..=6 hold a free verifier ticket of 20 coins.
fn ledger() -> Ledger {
    let mut spec = spec();
    spec.max_ticket_blocks = 100;
    let mut l = Ledger::with_spec(spec);
    let buys = std::iter::once(ACCUSED).chain(OTHERS).map(|i| buy(&l, i)).collect();
    l.apply(buys).unwrap();
    l.apply(vec![]).unwrap();
    l
}

/// The header of a block at height 2 (a fork block the accused attested).
fn attested_header() -> Header {
    let mut h = block(2, vec![]).header;
    h.nonce = Hash::digest(b"the attested block");
    h
}

fn attestation_by(i: usize, header: &Header, valid: bool) -> Attestation {
    AttestationBody {
        chain_id: spec().chain_id,
        block: header.hash(),
        height: header.height,
        verifier: addr(i),
        valid,
    }
    .sign(&key(i))
}

fn challenge(
    l: &Ledger,
    from: usize,
    att: Attestation,
    header: Header,
) -> pouw_primitives::Transaction {
    l.tx(from, TxKind::ChallengeAttestation { attestation: att, header: Box::new(header) })
}

fn record(l: &Ledger, id: &Hash) -> AttestationClaim {
    claim(&l.state, id).expect("the claim is recorded")
}

fn supply_ok(l: &Ledger) -> bool {
    let genesis = pouw_consensus::genesis_state(&l.spec).unwrap().total_value().unwrap();
    l.state.total_value().unwrap() == genesis + u128::from(l.state.minted().units())
}

/// Opens a claim against the accused at height 3; the judges are drawn at height 4.
fn opened() -> (Ledger, Hash) {
    let mut l = ledger();
    let header = attested_header();
    let att = attestation_by(ACCUSED, &header, true);
    let id = claim_id(&att);
    let before = l.balance(&addr(CLAIMANT));
    l.apply_one(challenge(&l, CLAIMANT, att, header)).unwrap();
    let c = record(&l, &id);
    assert_eq!(c.status, ClaimStatus::Opened);
    assert_eq!((c.verifier, c.claimant, c.opened_at), (addr(ACCUSED), addr(CLAIMANT), 3));
    assert_eq!(c.tickets.len(), 1, "the accused's free verifier ticket is held");
    let bond = l.spec.min_ticket_stake;
    assert_eq!(l.balance(&addr(CLAIMANT)).units(), before.units() - bond.units() - 1);
    l.apply(vec![]).unwrap();
    let c = record(&l, &id);
    assert_eq!(c.status, ClaimStatus::Judging);
    assert!(!c.judges.is_empty() && c.judges.len() <= 5);
    assert!(!c.judges.contains(&addr(ACCUSED)) && !c.judges.contains(&addr(CLAIMANT)));
    assert!(supply_ok(&l));
    (l, id)
}

fn judge_index(c: &AttestationClaim, n: usize) -> usize {
    index_of(&c.judges[n]).unwrap()
}

fn vote(l: &mut Ledger, judge: usize, id: Hash, guilty: bool) -> Result<(), E> {
    let t = l.tx(judge, TxKind::JudgeAttestation { claim: id, guilty });
    l.apply_one(t).map(|_| ())
}

fn verifier_stake(l: &Ledger, i: usize) -> Amount {
    let overlay = pouw_consensus::Overlay::new(&l.state);
    pouw_consensus::tickets_of(&overlay, &addr(i), Role::Verifier)
        .iter()
        .filter_map(|t| overlay.ticket(t))
        .fold(Amount::ZERO, |a, t| a.checked_add(t.stake).unwrap())
}

#[test]
fn a_false_attestation_convicts_and_its_stake_is_confiscated() {
    let (mut l, id) = opened();
    let c = record(&l, &id);
    let majority = c.judges.len() / 2 + 1;
    // What a block without a conviction mints (the reward less the unpaid verifier parts).
    let m0 = l.state.minted();
    l.apply(vec![]).unwrap();
    let per_block = l.state.minted().checked_sub(m0).unwrap();
    assert_eq!(verifier_stake(&l, ACCUSED), Amount(20 * COIN));
    for n in 0..majority - 1 {
        vote(&mut l, judge_index(&c, n), id, true).unwrap();
        assert_eq!(record(&l, &id).status, ClaimStatus::Judging, "decided early");
    }
    let claimant_before = l.balance(&addr(CLAIMANT));
    let minted_before = l.state.minted();
    vote(&mut l, judge_index(&c, majority - 1), id, true).unwrap();
    let c = record(&l, &id);
    assert_eq!(c.status, ClaimStatus::Convicted);
    assert_eq!(c.bond, Amount::ZERO);
    assert_eq!(verifier_stake(&l, ACCUSED), Amount::ZERO, "the ticket is confiscated");
    // Half the stake and the bond to the claimant, the other half burnt.
    let bond = l.spec.min_ticket_stake;
    assert_eq!(
        l.balance(&addr(CLAIMANT)).units(),
        claimant_before.units() + 10 * COIN + bond.units()
    );
    assert_eq!(l.state.minted().units(), minted_before.units() + per_block.units() - 10 * COIN);
    assert!(supply_ok(&l));
    // Decided once: a later vote is refused, and so is a second claim on the attestation.
    if c.judges.len() > majority {
        let e = vote(&mut l, judge_index(&c, majority), id, false).unwrap_err();
        assert!(matches!(e, E::BadJudgement(_)), "{e}");
    }
    let header = attested_header();
    let again = challenge(&l, 2, attestation_by(ACCUSED, &header, true), header);
    assert!(matches!(l.apply_one(again).unwrap_err(), E::BadClaim(_)));
}

#[test]
fn a_true_attestation_cannot_be_slashed() {
    // The judges replayed the block and found it valid: acquitted, the bond to the verifier.
    let (mut l, id) = opened();
    let c = record(&l, &id);
    let majority = c.judges.len() / 2 + 1;
    let accused_before = l.balance(&addr(ACCUSED));
    // A minority calling it false changes nothing.
    if majority > 1 {
        vote(&mut l, judge_index(&c, 0), id, true).unwrap();
    }
    let start = usize::from(majority > 1);
    for n in start..start + majority {
        vote(&mut l, judge_index(&c, n), id, false).unwrap();
    }
    let c = record(&l, &id);
    assert_eq!(c.status, ClaimStatus::Acquitted);
    assert_eq!(verifier_stake(&l, ACCUSED), Amount(20 * COIN), "the stake is untouched");
    assert_eq!(
        l.balance(&addr(ACCUSED)).units(),
        accused_before.units() + l.spec.min_ticket_stake.units()
    );
    assert!(supply_ok(&l));

    // Silent judges: dismissed at the deadline, the bond back, the ticket still live past its
    // own expiry until then.
    let (mut l, id) = opened();
    let claimant_before = l.balance(&addr(CLAIMANT));
    while l.height < 4 + JUDGE_BLOCKS {
        l.apply(vec![]).unwrap();
    }
    let c = record(&l, &id);
    assert_eq!(c.status, ClaimStatus::Dismissed);
    assert_eq!(
        l.balance(&addr(CLAIMANT)).units(),
        claimant_before.units() + l.spec.min_ticket_stake.units()
    );
    assert_eq!(verifier_stake(&l, ACCUSED), Amount(20 * COIN));
    assert!(supply_ok(&l));
}

#[test]
fn malformed_evidence_and_votes_are_refused() {
    let mut l = ledger();
    let header = attested_header();
    let good = attestation_by(ACCUSED, &header, true);
    let mut other_header = header.clone();
    other_header.nonce = Hash::digest(b"another block");
    let mut bad_sig = good.clone();
    bad_sig.body.height += 1;
    let mut other_chain = good.clone();
    other_chain.body.chain_id += 1;
    let mut future = header.clone();
    future.height = 9;
    let cases: Vec<(&str, usize, Attestation, Header)> = vec![
        ("valid: false", CLAIMANT, attestation_by(ACCUSED, &header, false), header.clone()),
        ("another block's header", CLAIMANT, good.clone(), other_header),
        ("bad signature", CLAIMANT, bad_sig, header.clone()),
        ("another chain", CLAIMANT, other_chain, header.clone()),
        ("the verifier itself", ACCUSED, good.clone(), header.clone()),
        ("not below this height", CLAIMANT, attestation_by(ACCUSED, &future, true), future),
        // Account 8 holds no verifier ticket: nothing to slash.
        ("no free ticket", CLAIMANT, attestation_by(8, &header, true), header.clone()),
    ];
    for (what, from, att, h) in cases {
        let e = l.apply_one(challenge(&l, from, att, h)).unwrap_err();
        assert!(matches!(e, E::BadClaim(_)), "{what}: {e}");
    }
    assert!(l.state.range(StateKey::AttestationClaim(Hash::ZERO)..).next().is_none());
    // Votes: no claim, not yet drawn, not a judge, twice.
    let e = vote(&mut l, 2, Hash::digest(b"no claim"), true).unwrap_err();
    assert!(matches!(e, E::BadJudgement(_)), "{e}");
    let id = claim_id(&good);
    // In the opening block itself the judges are not drawn yet.
    let open = challenge(&l, CLAIMANT, good, header);
    let early = l.tx(2, TxKind::JudgeAttestation { claim: id, guilty: true });
    let e = unwrap_tx_error(l.apply(vec![open.clone(), early]).unwrap_err());
    assert!(matches!(e, E::BadJudgement(_)), "before the draw: {e}");
    l.apply_one(open).unwrap();
    l.apply(vec![]).unwrap();
    let c = record(&l, &id);
    let outsider = [8usize, 9].into_iter().find(|i| !c.judges.contains(&addr(*i))).unwrap();
    assert!(matches!(vote(&mut l, outsider, id, true).unwrap_err(), E::BadJudgement(_)));
    assert!(matches!(vote(&mut l, ACCUSED, id, false).unwrap_err(), E::BadJudgement(_)));
    if c.judges.len() >= 3 {
        vote(&mut l, judge_index(&c, 0), id, true).unwrap();
        let e = vote(&mut l, judge_index(&c, 0), id, true).unwrap_err();
        assert!(matches!(e, E::BadJudgement(_)), "twice: {e}");
    }
}
