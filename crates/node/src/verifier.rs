//! The verifier role and light mode (SPEC section 1, design/006).
//!
//! Every block has a verifier committee ([`pouw_consensus::block_verifiers`]): the selected
//! verifiers of the client task it trains, or a per-block, stake-weighted draw among the free
//! verifier tickets (filler tasks, and tasks that selected no verifier) seeded by the block's
//! own hash on the state after it, so that its miner learns it only once the block is mined
//! (design/006, design/017).
//!
//! - **Verifier** (`Role::Verifier`): answers a VERIFICATION_REQUEST for a block whose
//!   committee holds this node. It answers once it has imported the block, which runs every
//!   check a full node runs, the bit-exact replay included: a signed attestation with
//!   `valid: true`, or `valid: false` if the block was refused as invalid.
//! - **Light node** ([`NodeConfig::light`](crate::NodeConfig::light)): a gossiped block that
//!   passes the cheap checks (header, signature, PoW, proof structure and commitment) and
//!   whose parent is the tip waits for attestations instead of fetching its proof data. Once
//!   a strict majority of its committee ([`pouw_consensus::attestation_quorum`]) attested it
//!   valid, it is imported without replay (execution and the state root are still checked).
//!   An attestation `valid: false` from a committee member, no quorum within
//!   [`NodeConfig::attestation_timeout`](crate::NodeConfig::attestation_timeout), or an
//!   empty committee fall back to the full path: fetch the proof data, replay. Attestations
//!   from outside the committee are ignored (a bad signature bans its relayer, in node.rs).
//!
//! The miner of a block asks for attestations (a VERIFICATION_REQUEST) as soon as it has
//! imported it; a verifier on the committee also attests a new tip it imported unasked, since
//! a request is relayed only by nodes that already imported its block.
//!
//! Every node records the committee of each block it imports and keeps the `valid: true`
//! attestations of committee members it hears: it relays only those (an attestation from a
//! non-member, or for a block whose committee it does not know, is dropped), and its miner's
//! next template carries those of the tip, which pays their verifiers (design/011).
//!
//! False attestations (design/017): a node remembers the blocks it refused as invalid; a
//! committee member's `valid: true` attestation of one is claimed on chain
//! (ChallengeAttestation), and a verifier drawn as a judge of a claim votes guilty if it refused
//! the attested block, not guilty if the block is in its chain.

use crate::node::{Node, NodeError, Pending};
use pouw_consensus::{
    apply_block, attestation_quorum, claim, claim_id, committee_after, committee_of, ClaimStatus,
    StateKey, JUDGE_BLOCKS,
};
use pouw_net::{GossipId, GossipMessage, PeerId, Request, VerificationRequest};
use pouw_primitives::{
    Address, Attestation, AttestationBody, Block, Hash, Header, Role, Timestamp, TxKind,
};
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::Instant,
};

/// Blocks whose committee, requests and attestations are remembered at most (oldest first
/// forgotten): bounds every map below but `waiting`, which its timeout bounds.
const TRACKED_BLOCKS: usize = 512;

/// Refused blocks remembered for claims and judging at most (design/017).
const REFUSED_BLOCKS: usize = 256;

/// Claims sent and judged remembered at most (a claim is judged once on chain anyway).
const CLAIMS_REMEMBERED: usize = 4096;

/// A verifier attests unasked only a block this recent (a new tip, not one caught up by sync).
const UNASKED_ATTESTATION_AGE_MS: u64 = 120_000;

/// A block a light node holds until its verifiers attest it.
#[derive(Debug)]
struct Waiting {
    block: Box<Block>,
    from: PeerId,
    gossip: GossipId,
    since: Instant,
}

/// What the verifier role and light mode remember between events.
#[derive(Debug, Default)]
pub(crate) struct Verification {
    /// The committee of recent blocks, computed on their parent state before import.
    committees: HashMap<Hash, Vec<Address>>,
    /// Verifier: blocks asked about that are not imported yet (answered at import).
    requested: HashMap<Hash, u64>,
    /// Verifier: blocks already attested.
    answered: HashSet<Hash>,
    /// Light: attestations heard, per block: verifier -> valid.
    heard: HashMap<Hash, BTreeMap<Address, bool>>,
    /// Every node: the `valid: true` attestations of committee members, per block, for the
    /// miner's template (design/011); at most one per verifier, so bounded by the committee.
    received: HashMap<Hash, BTreeMap<Address, Attestation>>,
    /// Light: blocks waiting for a quorum.
    waiting: HashMap<Hash, Waiting>,
    /// Tracked blocks, oldest first.
    order: VecDeque<Hash>,
    /// Blocks this node refused as invalid (a peer fault at import), with their header: the
    /// evidence of a claim against a `valid: true` attestation of one (design/017), and a
    /// judge's verdict. Oldest first forgotten past [`REFUSED_BLOCKS`].
    refused: HashMap<Hash, Header>,
    refused_order: VecDeque<Hash>,
    /// Claims this node sent (attestation ids) and claims it voted on.
    claimed: HashSet<Hash>,
    judged: HashSet<Hash>,
}

impl Verification {
    fn track(&mut self, hash: Hash) {
        if self.order.contains(&hash) {
            return;
        }
        self.order.push_back(hash);
        while self.order.len() > TRACKED_BLOCKS {
            if let Some(old) = self.order.pop_front() {
                self.committees.remove(&old);
                self.requested.remove(&old);
                self.answered.remove(&old);
                self.heard.remove(&old);
                self.received.remove(&old);
            }
        }
    }

    /// The attestations heard for `block` from its committee members, sorted by verifier.
    pub(crate) fn attestations_of(&self, block: &Hash) -> Vec<Attestation> {
        self.received.get(block).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Whether `att`'s verifier is on its block's committee, as far as this node knows it.
    fn by_member(&self, att: &Attestation) -> bool {
        self.committees.get(&att.body.block).is_some_and(|c| c.contains(&att.body.verifier))
    }

    /// Remembers a block refused as invalid.
    fn note_refused(&mut self, header: &Header) {
        let hash = header.hash();
        if self.refused.insert(hash, header.clone()).is_none() {
            self.refused_order.push_back(hash);
        }
        while self.refused_order.len() > REFUSED_BLOCKS {
            if let Some(old) = self.refused_order.pop_front() {
                self.refused.remove(&old);
            }
        }
    }

    /// Keeps a member's `valid: true` attestation for the template.
    fn keep(&mut self, att: &Attestation) {
        if att.body.valid && self.by_member(att) {
            self.received.entry(att.body.block).or_default().insert(att.body.verifier, att.clone());
        }
    }
}

impl Node {
    fn is_verifier(&self) -> bool {
        self.config.roles.contains(&Role::Verifier)
    }

    /// The committee of `block` (drawn on the state after it, seeded by its hash: design/006),
    /// if its parent is the tip: the block is executed on the tip state (no replay) to draw
    /// it. Remembered for the answers and the quorum. What a light node needs before it
    /// imports a block, and a verifier that refused one.
    fn committee_of(&mut self, block: &Block) -> Option<Vec<Address>> {
        let hash = block.hash();
        if let Some(c) = self.verification.committees.get(&hash) {
            return Some(c.clone());
        }
        let committee = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if block.header.prev_hash != chain.tip() {
                return None;
            }
            let diff = apply_block(chain.state(), block, &self.config.spec).ok()?;
            committee_after(chain.state(), &diff, &hash)
        };
        self.remember_committee(hash, committee.clone());
        Some(committee)
    }

    fn remember_committee(&mut self, hash: Hash, committee: Vec<Address>) {
        self.verification.track(hash);
        self.verification.committees.insert(hash, committee);
    }

    /// After an import: every node records the committee of a block that became its tip, drawn
    /// on the tip state (for the attestations it relays and its miner pays).
    pub(crate) fn note_committee(&mut self, hash: Hash) {
        if self.verification.committees.contains_key(&hash) {
            return;
        }
        let committee = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if chain.tip() != hash {
                return;
            }
            committee_of(chain.state(), &hash)
        };
        self.remember_committee(hash, committee);
    }

    /// A block this node refused as invalid: remembered (for claims and judging, design/017)
    /// with its committee (executed on the tip state, its parent), so that a verifier can
    /// attest it `valid: false` and every node can tell a member's false attestation.
    pub(crate) fn note_refused_block(&mut self, block: &Block) {
        self.verification.note_refused(&block.header);
        self.committee_of(block);
    }

    /// A committee member attested `valid: true` a block this node refused as invalid: claim
    /// it on chain (design/017), once per attestation.
    fn challenge_if_false(&mut self, att: &Attestation) {
        let Some(header) = self.verification.refused.get(&att.body.block).cloned() else {
            return;
        };
        let id = claim_id(att);
        if !att.body.valid || att.body.verifier == self.config.key.public() {
            return;
        }
        if self.verification.claimed.len() >= CLAIMS_REMEMBERED {
            self.verification.claimed.clear();
        }
        if !self.verification.claimed.insert(id) {
            return;
        }
        let kind =
            TxKind::ChallengeAttestation { attestation: att.clone(), header: Box::new(header) };
        match self.submit_own(kind) {
            Ok(tx) => {
                tracing::warn!(target: "verifier", verifier = %att.body.verifier, block = %att.body.block.short(), tx = %tx.short(), "false attestation challenged on chain")
            }
            Err(e) => tracing::info!(target: "verifier", error = %e, "attestation claim not sent"),
        }
    }

    /// A verifier votes on the open claims whose judges hold it (design/017): guilty if it
    /// refused the attested block itself, not guilty if the block is stored in its chain (it
    /// passed every check, replay included); otherwise it abstains.
    pub(crate) fn judge_claims(&mut self) {
        if !self.is_verifier() {
            return;
        }
        let me = self.config.key.public();
        let votes: Vec<(Hash, bool)> = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let state = chain.state();
            let from = chain.height().saturating_add(1);
            let to = from.saturating_add(JUDGE_BLOCKS);
            state
                .range(
                    StateKey::ClaimDeadline { height: from, claim: Hash([0; 32]) }
                        ..=StateKey::ClaimDeadline { height: to, claim: Hash([0xff; 32]) },
                )
                .filter_map(|(k, _)| match k {
                    StateKey::ClaimDeadline { claim, .. } => Some(*claim),
                    _ => None,
                })
                .filter(|id| !self.verification.judged.contains(id))
                .filter_map(|id| {
                    let c = claim(state, &id)?;
                    if c.status != ClaimStatus::Judging || !c.judges.contains(&me) {
                        return None;
                    }
                    if self.verification.refused.contains_key(&c.block) {
                        Some((id, true))
                    } else {
                        chain.header(&c.block).is_some().then_some((id, false))
                    }
                })
                .collect()
        };
        for (id, guilty) in votes {
            if self.verification.judged.len() >= CLAIMS_REMEMBERED {
                self.verification.judged.clear();
            }
            self.verification.judged.insert(id);
            match self.submit_own(TxKind::JudgeAttestation { claim: id, guilty }) {
                Ok(_) => {
                    tracing::info!(target: "verifier", claim = %id.short(), guilty, "attestation claim judged")
                }
                Err(e) => tracing::info!(target: "verifier", error = %e, "judgement not sent"),
            }
        }
    }

    /// The miner of `block` asks its verifiers to attest it.
    pub(crate) fn request_verification(&self, block: &Block) {
        let req = VerificationRequest { block: block.hash(), height: block.header.height };
        // A duplicate of a request already gossiped is refused by gossipsub: nothing lost.
        let _ = self.net.publish(GossipMessage::VerificationRequest(req));
    }

    /// A VERIFICATION_REQUEST: a verifier on the block's committee answers once the block is
    /// imported (now, if it already is). True when the node imported the block at that height
    /// itself, the only requests it relays.
    pub(crate) fn on_verification_request(&mut self, req: VerificationRequest) -> bool {
        let stored = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            chain.header(&req.block).is_some_and(|h| h.height == req.height)
        };
        if !self.is_verifier() || self.verification.answered.contains(&req.block) {
            return stored;
        }
        if stored {
            // Stored blocks passed the proof check, replay included, at import.
            self.attest(req.block, req.height, true);
        } else {
            self.verification.track(req.block);
            self.verification.requested.insert(req.block, req.height);
        }
        stored
    }

    /// After this node's import of `hash` at `height` ended (`valid`: imported, or refused as
    /// invalid): answers a request that was waiting for it, or attests a recent block it
    /// imported unasked.
    pub(crate) fn verifier_after_import(&mut self, hash: Hash, height: u64, valid: bool) {
        if let Some(height) = self.verification.requested.remove(&hash) {
            self.attest(hash, height, valid);
            return;
        }
        if !valid || !self.is_verifier() {
            return;
        }
        let recent = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            chain.header(&hash).is_some_and(|h| {
                Timestamp::now().millis().saturating_sub(h.timestamp.millis())
                    <= UNASKED_ATTESTATION_AGE_MS
            })
        };
        if recent {
            self.attest(hash, height, true);
        }
    }

    fn attest(&mut self, block: Hash, height: u64, valid: bool) {
        let me = self.config.key.public();
        let on_committee =
            self.verification.committees.get(&block).is_some_and(|c| c.contains(&me));
        if !self.is_verifier() || !on_committee || !self.verification.answered.insert(block) {
            return;
        }
        let att = AttestationBody {
            chain_id: self.config.spec.chain_id,
            block,
            height,
            verifier: me,
            valid,
        }
        .sign(&self.config.key);
        // Gossip does not return a node's own message: kept here for its own miner.
        self.verification.keep(&att);
        match self.net.publish(GossipMessage::Attestation(att)) {
            Ok(_) => {
                crate::stats::NodeStats::add(&self.stats.attestations_sent, 1);
                tracing::debug!(target: "verifier", block = %block.short(), height, valid, "block attested");
            }
            Err(e) => tracing::debug!(target: "verifier", error = %e, "attestation not gossiped"),
        }
    }

    /// Light mode: holds a gossiped block that passed the cheap checks until its committee
    /// attests it; false (take the full path) when not light, the parent is not the tip, or
    /// the block has no committee.
    pub(crate) fn light_hold(&mut self, from: PeerId, gossip: GossipId, block: &Block) -> bool {
        if !self.config.light {
            return false;
        }
        let Some(committee) = self.committee_of(block) else { return false };
        if attestation_quorum(committee.len()).is_none() {
            return false;
        }
        let hash = block.hash();
        self.fetching.insert(hash);
        self.verification.waiting.insert(
            hash,
            Waiting { block: Box::new(block.clone()), from, gossip, since: Instant::now() },
        );
        true
    }

    /// A correctly signed attestation (checked by the caller): kept for the miner's template
    /// and, on a light node, counted. True when it is from a member of the block's committee as
    /// far as this node knows it (this chain's, a block whose committee it recorded): the only
    /// attestations it relays.
    pub(crate) fn on_attestation(&mut self, att: &Attestation) -> Result<bool, NodeError> {
        let b = &att.body;
        if b.chain_id != self.config.spec.chain_id || !self.verification.by_member(att) {
            return Ok(false);
        }
        self.verification.keep(att);
        self.challenge_if_false(att);
        if !self.config.light {
            return Ok(true);
        }
        self.verification.heard.entry(b.block).or_default().entry(b.verifier).or_insert(b.valid);
        self.light_try(b.block)?;
        Ok(true)
    }

    /// Imports a waiting block on a quorum; falls back to the replay on a committee member's
    /// `valid: false`.
    fn light_try(&mut self, hash: Hash) -> Result<(), NodeError> {
        if !self.verification.waiting.contains_key(&hash) {
            return Ok(());
        }
        let committee = self.verification.committees.get(&hash).cloned().unwrap_or_default();
        let heard = self.verification.heard.get(&hash);
        let votes: Vec<bool> =
            committee.iter().filter_map(|v| heard.and_then(|h| h.get(v)).copied()).collect();
        if votes.contains(&false) {
            tracing::info!(target: "node", block = %hash.short(), "a verifier attested the block invalid: replaying it");
            self.light_fallback(hash);
            return Ok(());
        }
        let valid = votes.len();
        if attestation_quorum(committee.len()).is_none_or(|q| valid < q) {
            return Ok(());
        }
        let Some(w) = self.verification.waiting.remove(&hash) else { return Ok(()) };
        self.fetching.remove(&hash);
        self.validator.trust_attested(hash);
        let imported = self.import(Some(w.from), *w.block, None, Some(w.gossip))?;
        tracing::debug!(target: "node", block = %hash.short(), valid, of = committee.len(), imported, "block accepted on its attestations");
        self.fetch_ended(&hash)
    }

    /// The full path for a held block: fetch its proof data from the peer that sent it, then
    /// replay at import.
    fn light_fallback(&mut self, hash: Hash) {
        let Some(w) = self.verification.waiting.remove(&hash) else { return };
        self.request(
            w.from,
            Request::Proof(hash),
            Pending::Proof { block: w.block, gossip: Some(w.gossip) },
        );
    }

    /// Light mode: blocks that got no quorum in time are replayed.
    pub(crate) fn light_tick(&mut self) {
        let timeout = self.config.attestation_timeout;
        let late: Vec<Hash> = self
            .verification
            .waiting
            .iter()
            .filter(|(_, w)| w.since.elapsed() >= timeout)
            .map(|(h, _)| *h)
            .collect();
        for hash in late {
            tracing::debug!(target: "node", block = %hash.short(), "no attestation quorum in time: replaying the block");
            self.light_fallback(hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_primitives::Keypair;

    fn att(key: &Keypair, block: Hash, valid: bool) -> Attestation {
        AttestationBody { chain_id: 1, block, height: 7, verifier: key.public(), valid }.sign(key)
    }

    #[test]
    fn only_a_members_valid_attestation_is_relayed_and_kept_for_the_miner() {
        let (member, outsider) = (Keypair::from_label("member"), Keypair::from_label("outsider"));
        let (block, unknown) = (Hash::digest(b"block"), Hash::digest(b"unknown"));
        let mut v = Verification::default();
        v.track(block);
        v.committees.insert(block, vec![member.public()]);
        // Relayed (on_attestation's answer) only from a member of a block whose committee is
        // known.
        assert!(v.by_member(&att(&member, block, true)));
        assert!(!v.by_member(&att(&outsider, block, true)));
        assert!(!v.by_member(&att(&member, unknown, true)));
        // Kept for the template: a member's `valid: true` only, once per verifier.
        for a in [att(&outsider, block, true), att(&member, block, false)] {
            v.keep(&a);
        }
        assert!(v.attestations_of(&block).is_empty());
        v.keep(&att(&member, block, true));
        v.keep(&att(&member, block, true));
        assert_eq!(v.attestations_of(&block), vec![att(&member, block, true)]);
        // Forgotten with the block.
        for i in 0..TRACKED_BLOCKS {
            v.track(Hash::digest(&i.to_le_bytes()));
        }
        assert!(v.attestations_of(&block).is_empty() && !v.committees.contains_key(&block));
    }
}
