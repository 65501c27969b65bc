//! A gossiped block's verification off the event loop.
//!
//! The check of a block's fetched proof data against the hashes the block names and its
//! storage (megabytes hashed and written), the header rules and the proof check
//! (`Chain::admit`, `Chain::verify`: the replay of one training iteration, 60-166 ms for a
//! 407k-parameter model) run on a thread of their own, under the chain's shared lock, so the
//! loop keeps answering requests meanwhile.
//! The loop sends a gossiped block whose proof data it holds through a bounded queue
//! ([`QUEUE`]) with what it needs afterwards ([`Context`]), and takes back the verdict
//! ([`Verified`]) as soon as it is ready: it then commits the block under the write lock and
//! does what every import does after the proof check (`Node::commit_verified`, then
//! `Node::import_verdict`). A block's validity depends only on its ancestors, and
//! `Chain::commit` checks again that the block is new and its parent stored and valid, so a
//! block verified while the chain moved on is still committed correctly. A gossiped child of a
//! block in verification is held until its parent's verdict ([`MAX_HELD`]).
//!
//! A sync batch goes through the same thread one block at a time, in order: each block is
//! the parent of the next, so the next is sent once the loop committed the one before
//! (`Node::next_sync_block`). The miner's own blocks and the blocks a light node accepts on
//! their attestations are imported on the loop (`Node::import`): the miner's next step builds
//! on its own block; an attested block is not replayed. A commit on the loop waits for a
//! replay under way on the thread (it holds the shared lock).

use super::{
    blocks::{check_and_store, DataCheck},
    read, Node, NodeError,
};
use crate::agent::guarded;
use pouw_chain::{Chain, ChainError, ProofChecked};
use pouw_consensus::pouw::ProofData;
use pouw_net::{Acceptance, GossipId, PeerId};
use pouw_primitives::{Block, Hash, Timestamp};
use pouw_storage::ProofStore;
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    thread::JoinHandle,
    time::Instant,
};

/// Blocks waiting for the verification thread at most; a block that finds the queue full is
/// imported on the loop instead (never dropped).
pub(crate) const QUEUE: usize = 64;
/// Gossiped blocks held at most while their parent is in verification; past that a child is
/// ignored, as a block whose parent is unknown is (sync brings it if its branch wins).
pub(crate) const MAX_HELD: usize = 64;

/// What the loop needs once a block's verification ended.
#[derive(Debug)]
pub(crate) struct Context {
    /// The peer that sent the block (it gossiped it, or answered with its proof data).
    pub(crate) from: PeerId,
    /// The gossip message to validate (accept, reject or ignore) after the import.
    pub(crate) gossip: Option<GossipId>,
    /// When the verification was asked for (the import's figures count from there).
    pub(crate) started: Instant,
    /// The block is the next of a sync batch (`Node::next_sync_block`): its verdict sends the
    /// batch's next block, or ends the batch.
    pub(crate) sync: bool,
}

struct Job {
    context: Context,
    block: Block,
    /// Proof data fetched for the block, checked and stored before the verification.
    data: Option<ProofData>,
}

/// A block's verification, ended.
pub(crate) struct Verified {
    pub(crate) context: Context,
    /// The block (kept to note it should it be refused, or stored as an orphan).
    pub(crate) block: Block,
    /// Stages 1 and 2 of its import (`None`: not run, the proof data sent with the block was
    /// not stored, `data` says why); `Err` with a message when the verification panicked.
    pub(crate) result: Result<Option<Result<ProofChecked, ChainError>>, String>,
    /// The check of the proof data sent with the block (`Ok(Stored)` when none was: it was
    /// stored before).
    pub(crate) data: Result<DataCheck, NodeError>,
}

/// A gossiped block held until its parent's verification ends.
pub(crate) struct Held {
    pub(crate) from: PeerId,
    pub(crate) gossip: GossipId,
    pub(crate) block: Block,
    /// The block's hash (asked for on every gossiped block: [`BlockVerifier::has`]).
    hash: Hash,
}

/// The loop's side: the queue, the results, the blocks in verification and those held.
pub(crate) struct BlockVerifier {
    running: Option<Running>,
    /// Blocks sent to the thread and not taken back yet.
    pub(crate) verifying: std::collections::HashSet<Hash>,
    /// Gossiped blocks whose parent is in verification, by parent.
    pub(crate) held: HashMap<Hash, Vec<Held>>,
}

struct Running {
    jobs: Option<flume::Sender<Job>>,
    results: flume::Receiver<Verified>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the block it is verifying.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl BlockVerifier {
    /// The verification thread of a node whose chain is `chain`; without it (the thread could
    /// not start) every block is imported on the loop.
    pub(crate) fn start(chain: Arc<RwLock<Chain>>, proofs: Arc<ProofStore>) -> Self {
        let (jobs, rx) = flume::bounded::<Job>(QUEUE);
        let (tx, results) = flume::unbounded();
        let spawned = std::thread::Builder::new()
            .name("pouw-verify".into())
            .spawn(move || run(&chain, &proofs, &rx, &tx));
        let running = match spawned {
            Ok(thread) => Some(Running { jobs: Some(jobs), results, thread: Some(thread) }),
            Err(e) => {
                tracing::error!(target: "node", error = %e, "cannot start the block verification thread: blocks are verified on the event loop");
                None
            }
        };
        Self { running, verifying: Default::default(), held: HashMap::new() }
    }

    /// Sends `block` to the thread; gives it back when the queue is full or the thread is gone
    /// (the caller imports it on the loop).
    pub(super) fn submit(
        &mut self,
        context: Context,
        block: Block,
        data: Option<ProofData>,
    ) -> Result<(), Box<(Context, Block, Option<ProofData>)>> {
        let Some(jobs) = self.running.as_ref().and_then(|r| r.jobs.as_ref()) else {
            return Err(Box::new((context, block, data)));
        };
        let hash = block.hash();
        match jobs.try_send(Job { context, block, data }) {
            Ok(()) => {
                self.verifying.insert(hash);
                Ok(())
            }
            Err(flume::TrySendError::Full(job) | flume::TrySendError::Disconnected(job)) => {
                Err(Box::new((job.context, job.block, job.data)))
            }
        }
    }

    /// The results channel, for the loop's wait (`None`: no thread).
    pub(crate) fn results(&self) -> Option<&flume::Receiver<Verified>> {
        self.running.as_ref().map(|r| &r.results)
    }

    /// Whether `hash` is in verification or held for its parent's.
    pub(crate) fn has(&self, hash: &Hash) -> bool {
        self.verifying.contains(hash) || self.held.values().flatten().any(|h| h.hash == *hash)
    }

    /// The thread stopped (it never does while the node runs: every job is guarded): blocks
    /// are verified on the loop from now on; what was in verification is lost (its gossip is
    /// not forwarded; sync brings the blocks back if their branch wins).
    fn stopped(&mut self) -> Vec<Held> {
        tracing::error!(target: "node", "the block verification thread stopped: blocks are verified on the event loop");
        self.running = None;
        self.verifying.clear();
        self.held.drain().flat_map(|(_, v)| v).collect()
    }
}

/// The thread: checks and stores each block's proof data sent with it, then verifies the
/// block, until the loop closes the queue.
fn run(
    chain: &RwLock<Chain>,
    proofs: &ProofStore,
    jobs: &flume::Receiver<Job>,
    results: &flume::Sender<Verified>,
) {
    while let Ok(Job { context, block, data }) = jobs.recv() {
        let copy = block.clone();
        let mut checked = Ok(DataCheck::Stored);
        let result = guarded(|| {
            if let Some(data) = data {
                checked = check_and_store(chain, proofs, &copy, data);
                if !matches!(checked, Ok(DataCheck::Stored)) {
                    return None;
                }
            }
            let chain = read(chain);
            Some(chain.admit(copy, Timestamp::now()).and_then(|checked| chain.verify(checked)))
        });
        if let Err(e) = &result {
            tracing::error!(target: "node", block = %block.hash().short(), error = %e, "the verification of a block panicked: the block is not imported");
        }
        // The loop is gone: the node stops.
        if results.send(Verified { context, block, result, data: checked }).is_err() {
            return;
        }
    }
}

impl Node {
    /// A gossiped block whose proof data is stored: verified on the thread (the loop commits
    /// it when the verdict comes), or on the loop when the queue is full.
    pub(super) fn verify_gossiped(
        &mut self,
        from: PeerId,
        block: Block,
        data: Option<ProofData>,
        gossip: Option<GossipId>,
    ) -> Result<(), NodeError> {
        let context = Context { from, gossip, started: Instant::now(), sync: false };
        match self.block_verifier.submit(context, block, data) {
            Ok(()) => Ok(()),
            Err(job) => {
                let (context, block, data) = *job;
                tracing::debug!(target: "node", hash = %block.hash().short(), "block verification queue full (or its thread gone): verified on the loop");
                self.import(Some(context.from), block, data, context.gossip).map(|_| ())
            }
        }
    }

    /// Holds a gossiped block whose parent is in verification, or whose parent's proof data
    /// is being fetched (its child often arrives first: a block mined right after its parent
    /// overtakes the parent's fetch); false (the caller goes on as for an unknown parent) when
    /// the parent is neither, or too many blocks are held. Released by [`Node::release_held`]
    /// once the parent's fate is known.
    pub(super) fn hold_for_parent(
        &mut self,
        from: PeerId,
        gossip: &GossipId,
        block: &Block,
    ) -> bool {
        let parent = block.header.prev_hash;
        let held: usize = self.block_verifier.held.values().map(Vec::len).sum();
        let pending =
            self.block_verifier.verifying.contains(&parent) || self.fetching.contains(&parent);
        if !pending || held >= MAX_HELD {
            return false;
        }
        let held = Held { from, gossip: gossip.clone(), block: block.clone(), hash: block.hash() };
        self.block_verifier.held.entry(parent).or_default().push(held);
        true
    }

    /// Takes every verdict ready and commits or refuses its block.
    pub(super) fn drain_verified(&mut self) -> Result<(), NodeError> {
        loop {
            let next = match self.block_verifier.results() {
                None => return Ok(()),
                Some(r) => r.try_recv(),
            };
            match next {
                Ok(verified) => self.on_verified(verified)?,
                Err(flume::TryRecvError::Empty) => return Ok(()),
                Err(flume::TryRecvError::Disconnected) => {
                    for h in self.block_verifier.stopped() {
                        self.validate(h.gossip, h.from, Acceptance::Ignore);
                    }
                    // The batch's block in verification is lost: the next status round
                    // syncs again.
                    if let Some(batch) = self.sync_batch.take() {
                        self.sync.abort(batch.peer);
                    }
                    return Ok(());
                }
            }
        }
    }

    /// A block's verification ended: commit and follow-ups as for an import on the loop
    /// (`Node::commit_verified`, `Node::import_verdict`), then the blocks held for it.
    pub(super) fn on_verified(&mut self, verified: Verified) -> Result<(), NodeError> {
        let Verified { context, block, result, data } = verified;
        let hash = block.hash();
        let height = block.header.height;
        self.block_verifier.verifying.remove(&hash);
        // Proof data that is not the block's, or cannot be checked now: the block was not
        // verified; the verdict is the data's. A failure of the proof store stops the node,
        // as on the loop.
        let imported = match (data?, result) {
            (DataCheck::Stored, Ok(Some(staged))) => {
                let result = self.commit_verified(block, staged, Timestamp::now())?;
                self.import_verdict(
                    Some(context.from),
                    context.gossip,
                    hash,
                    height,
                    context.started,
                    result,
                )
            }
            (DataCheck::Stored, Ok(None) | Err(_)) => {
                // A fault of this node's verification, not a verdict on the block.
                if let Some(id) = context.gossip {
                    self.validate(id, context.from, Acceptance::Ignore);
                }
                false
            }
            (checked, _) => self.data_verdict(Some(context.from), context.gossip, checked),
        };
        if context.sync {
            match self.sync_batch.as_mut() {
                Some(batch) if imported => {
                    batch.imported += 1;
                    self.next_sync_block()?;
                }
                Some(_) => {
                    if let Some(batch) = self.sync_batch.take() {
                        self.sync.abort(batch.peer);
                    }
                }
                None => {}
            }
        }
        self.release_held(&hash, imported)
    }

    /// The blocks held for `parent`, now that its verification or its fetch ended: taken
    /// again from the start if the parent was imported, else ignored with it.
    pub(super) fn release_held(&mut self, parent: &Hash, imported: bool) -> Result<(), NodeError> {
        for h in self.block_verifier.held.remove(parent).unwrap_or_default() {
            if imported && !self.banned.contains(&h.from) {
                self.on_gossip_block(h.from, h.gossip, h.block)?;
            } else {
                // Its parent was refused (or not stored): nor is it.
                self.validate(h.gossip, h.from, Acceptance::Ignore);
            }
        }
        Ok(())
    }

    /// The fetch of `hash`'s proof data ended: the blocks held for it are released unless it
    /// went into verification (they wait for its verdict then).
    pub(crate) fn fetch_ended(&mut self, hash: &Hash) -> Result<(), NodeError> {
        if self.block_verifier.verifying.contains(hash) || self.fetching.contains(hash) {
            return Ok(());
        }
        let imported = read(&self.chain).header(hash).is_some();
        self.release_held(hash, imported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_primitives::ChainSpec;
    use std::time::Duration;

    fn context(from: PeerId) -> Context {
        Context { from, gossip: Some(GossipId(vec![1])), started: Instant::now(), sync: false }
    }

    #[test]
    fn the_thread_gives_back_each_blocks_verdict_in_order_and_stops_with_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::open(dir.path(), ChainSpec::devnet()).unwrap();
        let genesis = chain.block(&chain.genesis_hash()).unwrap().unwrap();
        let mut orphan = genesis.clone();
        orphan.header.height = 1;
        orphan.header.prev_hash = Hash::digest(b"a parent nobody has");
        let proofs = Arc::new(ProofStore::open(dir.path()).unwrap());
        let mut v = BlockVerifier::start(Arc::new(RwLock::new(chain)), proofs);
        let peer = PeerId::random();
        assert!(v.submit(context(peer), genesis.clone(), None).is_ok());
        assert!(v.submit(context(peer), orphan.clone(), None).is_ok());
        assert!(v.has(&genesis.hash()) && v.has(&orphan.hash()));
        let results = v.results().unwrap().clone();
        let first = results.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(first.block.hash(), genesis.hash());
        assert_eq!(first.context.from, peer);
        assert!(matches!(first.result, Ok(Some(Err(ChainError::Known(h)))) if h == genesis.hash()));
        let second = results.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(second.block.hash(), orphan.hash());
        assert!(matches!(
            second.result,
            Ok(Some(Err(ChainError::UnknownParent { hash, .. }))) if hash == orphan.hash()
        ));
        // Dropping the loop's side closes the queue and joins the thread: its results end.
        drop(v);
        assert!(matches!(results.recv(), Err(flume::RecvError::Disconnected)));
    }

    #[test]
    fn a_block_the_thread_cannot_take_is_given_back_to_the_caller() {
        let mut v =
            BlockVerifier { running: None, verifying: Default::default(), held: HashMap::new() };
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::open(dir.path(), ChainSpec::devnet()).unwrap();
        let genesis = chain.block(&chain.genesis_hash()).unwrap().unwrap();
        let back = v.submit(context(PeerId::random()), genesis.clone(), None).unwrap_err();
        assert_eq!(back.1.hash(), genesis.hash());
        assert!(!v.has(&genesis.hash()), "a block given back is not in verification");
    }

    /// A chain of `spec` with its proof store and the PoUW validator.
    fn open(dir: &std::path::Path, spec: &ChainSpec) -> (Chain, Arc<ProofStore>) {
        let proofs = Arc::new(ProofStore::open(dir).unwrap());
        let validator =
            Arc::new(pouw_chain::PouwValidator::new(proofs.clone(), pouw_ml::Exec::SINGLE));
        let chain =
            Chain::open_with(dir, spec.clone(), pouw_chain::ChainConfig::default(), validator)
                .unwrap();
        (chain, proofs)
    }

    #[test]
    fn fetched_proof_data_is_checked_and_stored_on_the_thread_and_bad_data_is_the_senders_fault() {
        let mut spec = ChainSpec::devnet();
        spec.initial_target = pouw_primitives::CompactTarget(0x2100_ffff);
        spec.max_target = pouw_primitives::CompactTarget(0x2100_ffff);
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // A block mined on one chain, with its complete proof data.
        let (mined_on, _) = open(dir_a.path(), &spec);
        let mut miner =
            pouw_work::Miner::new(spec.clone(), ChainSpec::devnet_key(3), pouw_ml::Exec::SINGLE);
        let mined = (0..200)
            .find_map(|_| miner.step(&mined_on, &[], Timestamp::now()).unwrap().0)
            .expect("a block at the easy target");
        // Another node verifies it on its thread, from data a peer sent.
        let (chain, proofs) = open(dir_b.path(), &spec);
        let mut v = BlockVerifier::start(Arc::new(RwLock::new(chain)), proofs.clone());
        let results = v.results().unwrap().clone();
        let winning = mined.block.proof.as_ref().unwrap().winning.body.clone();
        let mut bad = mined.data.clone();
        bad.start_params[0] = f32::from_bits(bad.start_params[0].to_bits() ^ 1);
        let peer = PeerId::random();
        v.submit(context(peer), mined.block.clone(), Some(bad)).unwrap();
        let first = results.recv_timeout(Duration::from_secs(60)).unwrap();
        assert!(matches!(first.data, Ok(DataCheck::Fault(_))), "{:?}", first.data);
        assert!(matches!(first.result, Ok(None)), "a block whose data is bad is not verified");
        assert!(proofs.get_proof(&winning).unwrap().is_none(), "bad data is not stored");
        v.submit(context(peer), mined.block.clone(), Some(mined.data.clone())).unwrap();
        let second = results.recv_timeout(Duration::from_secs(60)).unwrap();
        assert!(matches!(second.data, Ok(DataCheck::Stored)), "{:?}", second.data);
        assert!(matches!(second.result, Ok(Some(Ok(_)))), "the block replays");
        assert_eq!(proofs.get_proof(&winning).unwrap(), Some(mined.data));
    }
}
