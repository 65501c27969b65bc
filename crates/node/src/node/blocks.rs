//! Blocks from peers and from the miner: a gossiped block held until it is validated (cheap
//! checks, its proof data fetched and hash-checked, the replay on the verification thread,
//! `verify.rs`), then accepted and forwarded; the import into the chain (verified under the
//! shared lock, committed under the write lock) and its figures.

use super::*;

impl Node {
    /// Imports a block into the chain; on success the mempool and the validator's view of the
    /// client tasks follow the new tip. The outer error is a local failure (a database failed,
    /// e.g. a full disk: fatal, the node stops with the stored chain intact; or the mempool
    /// could not read the chain), the inner one the import's verdict.
    pub(super) fn import_into_chain(
        &mut self,
        block: Block,
    ) -> Result<Result<ImportOutcome, ChainError>, NodeError> {
        // Kept to remember it (and draw its committee) should the import refuse it as invalid.
        let refused = block.clone();
        // The header rules and the proof check (the replay) run under the shared lock, so the
        // RPC's readers are not held up by a replay; only the commit takes the write lock.
        let now = Timestamp::now();
        let staged = {
            let chain = read(&self.chain);
            chain.admit(block, now).and_then(|checked| chain.verify(checked))
        };
        self.commit_verified(refused, staged, now)
    }

    /// The rest of an import once stages 1 and 2 (`staged`, run here or on the verification
    /// thread, `verify.rs`) ended for `block`: the commit under the write lock, then the
    /// mempool, our own transactions, the validator's view of the client tasks and the
    /// verifier role follow. The chain may have moved on since `staged` was made: a block's
    /// validity depends only on its ancestors, and the commit checks again that the block is
    /// new and its parent stored and valid. Errors as [`Node::import_into_chain`]'s.
    pub(super) fn commit_verified(
        &mut self,
        block: Block,
        staged: Result<ProofChecked, ChainError>,
        now: Timestamp,
    ) -> Result<Result<ImportOutcome, ChainError>, NodeError> {
        let hash = block.hash();
        let height = block.header.height;
        let refused = block;
        let r = {
            let mut chain = write(&self.chain);
            let imported = match staged {
                Ok(proven) => chain.commit(proven),
                Err(ChainError::Known(_)) => Ok(ImportOutcome::AlreadyKnown),
                // Kept as an orphan by the import.
                Err(ChainError::UnknownParent { .. }) => chain.import_block(refused.clone(), now),
                Err(e) => Err(e),
            };
            let r = match imported {
                Err(e) => match e.into_storage_error() {
                    Ok(storage) => return Err(ChainError::Storage(storage).into()),
                    Err(e) => Err(e),
                },
                ok => ok,
            };
            if r.is_ok() {
                let (reverted, applied) = self.mempool.sync_with(&mut chain)?;
                for h in self.own_txs.on_blocks(&reverted, &applied, Instant::now()) {
                    tracing::info!(target: "node", tx = %h.short(), "own transaction pending again: its block left the canonical chain");
                }
                self.own_check_now = true;
                self.validator.update_tasks(chain.tip(), chain.state());
            }
            r
        };
        match &r {
            Ok(_) => {
                self.note_committee(hash);
                self.verifier_after_import(hash, height, true);
                self.judge_claims();
            }
            Err(e) if e.is_peer_fault() => {
                self.note_refused_block(&refused);
                self.verifier_after_import(hash, height, false);
            }
            Err(_) => {}
        }
        Ok(r)
    }

    pub(super) fn after_import(&self, hash: Hash, height: u64, started: Instant, mined: bool) {
        let verify_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let tip_height = read(&self.chain).height();
        self.stats.height.store(tip_height, Ordering::Relaxed);
        let attested = !mined && self.validator.is_attested(&hash);
        self.stats.record_import(ImportRecord {
            hash,
            height,
            at: Instant::now(),
            verify_us,
            mined,
            attested,
        });
        if attested {
            NodeStats::add(&self.stats.blocks_attested, 1);
        } else if !mined {
            self.stats.last_verify_us.store(verify_us, Ordering::Relaxed);
            NodeStats::add(&self.stats.blocks_verified, 1);
        }
    }

    pub(super) fn on_gossip_block(
        &mut self,
        from: PeerId,
        id: GossipId,
        block: Block,
    ) -> Result<(), NodeError> {
        let hash = block.hash();
        let (known, parent_known) = {
            let chain = read(&self.chain);
            (chain.header(&hash).is_some(), chain.header(&block.header.prev_hash).is_some())
        };
        if known || self.fetching.contains(&hash) || self.block_verifier.has(&hash) {
            self.validate(id, from, Acceptance::Ignore);
            return Ok(());
        }
        if !parent_known {
            // Its parent is in verification: held until that ends (verify.rs), then taken
            // again from here, or ignored with its parent.
            if self.hold_for_parent(from, &id, &block) {
                return Ok(());
            }
            // A block on a chain we do not have: ask the sender where it is.
            self.validate(id, from, Acceptance::Ignore);
            self.request(from, Request::Status, Pending::Status);
            return Ok(());
        }
        let checked = precheck(&read(&self.chain), &block, Timestamp::now());
        if let Err(e) = checked {
            if e.is_peer_fault() {
                NodeStats::add(&self.stats.blocks_rejected, 1);
                self.validate(id, from, Acceptance::Reject);
                self.ban(from, format!("invalid block: {e}"));
            } else {
                self.validate(id, from, Acceptance::Ignore);
            }
            return Ok(());
        }
        let have_data = match proof_of(&block) {
            Ok(Some(proof)) => self.proofs.get_proof(&proof.winning.body)?.is_some(),
            _ => true,
        };
        if have_data {
            self.verify_gossiped(from, block, None, Some(id))?;
        } else if self.light_hold(from, id.clone(), &block) {
            // Light mode: accepted on its verifiers' attestations, or replayed (verifier.rs).
        } else {
            self.fetching.insert(hash);
            // A filler-task block's start state stays home when this node holds the chain's
            // filler state at its parent (design/016).
            let lean = {
                let chain = read(&self.chain);
                chain.header(&block.header.prev_hash).is_some_and(|parent| {
                    chain.filler_states().and_then(|f| f.start_for(&chain, parent)).is_some()
                })
            };
            let request = if lean { Request::ProofLean(hash) } else { Request::Proof(hash) };
            self.request(
                from,
                request,
                Pending::Proof { block: Box::new(block), gossip: Some(id) },
            );
        }
        Ok(())
    }

    /// Imports a block, storing its proof data first if given (after checking it is exactly
    /// the data the block names). Returns whether the block is now stored and valid so far.
    pub(crate) fn import(
        &mut self,
        from: Option<PeerId>,
        block: Block,
        data: Option<ProofData>,
        gossip: Option<GossipId>,
    ) -> Result<bool, NodeError> {
        if let Some(data) = data {
            if !self.store_proof_data(from, &block, data, gossip.clone())? {
                return Ok(false);
            }
        }
        let started = Instant::now();
        let hash = block.hash();
        let height = block.header.height;
        let result = self.import_into_chain(block)?;
        Ok(self.import_verdict(from, gossip, hash, height, started, result))
    }

    fn reject(&mut self, from: Option<PeerId>, gossip: Option<GossipId>, reason: String) {
        NodeStats::add(&self.stats.blocks_rejected, 1);
        if let (Some(peer), Some(id)) = (from, gossip) {
            self.validate(id, peer, Acceptance::Reject);
        }
        if let Some(peer) = from {
            self.ban(peer, reason);
        }
    }

    /// Stores the proof data of `block` after checking it is exactly the data the block
    /// names. False (the gossip validated, the sender banned when at fault) when it is not.
    fn store_proof_data(
        &mut self,
        from: Option<PeerId>,
        block: &Block,
        data: ProofData,
        gossip: Option<GossipId>,
    ) -> Result<bool, NodeError> {
        let checked = check_and_store(&self.chain, &self.proofs, block, data)?;
        Ok(self.data_verdict(from, gossip, checked))
    }

    /// What a proof-data check means for the block's sender and gossip: true when the data
    /// is stored.
    pub(super) fn data_verdict(
        &mut self,
        from: Option<PeerId>,
        gossip: Option<GossipId>,
        checked: DataCheck,
    ) -> bool {
        match checked {
            DataCheck::Stored => true,
            DataCheck::NotNow => {
                if let (Some(peer), Some(id)) = (from, gossip) {
                    self.validate(id, peer, Acceptance::Ignore);
                }
                false
            }
            DataCheck::Fault(reason) => {
                self.reject(from, gossip, reason);
                false
            }
        }
    }

    /// What an import's verdict `result` means for the block's sender and gossip, and the
    /// import's figures; true when the block is now stored and valid so far.
    pub(super) fn import_verdict(
        &mut self,
        from: Option<PeerId>,
        gossip: Option<GossipId>,
        hash: Hash,
        height: u64,
        started: Instant,
        result: Result<ImportOutcome, ChainError>,
    ) -> bool {
        match result {
            Ok(ImportOutcome::AlreadyKnown) => {
                if let (Some(peer), Some(id)) = (from, gossip) {
                    self.validate(id, peer, Acceptance::Ignore);
                }
                true
            }
            Ok(outcome) => {
                self.after_import(hash, height, started, false);
                if let (Some(peer), Some(id)) = (from, gossip) {
                    self.validate(id, peer, Acceptance::Accept);
                }
                match outcome {
                    ImportOutcome::Reorged { depth } => tracing::info!(
                        target: "node", height, hash = %hash.short(), depth, "reorganised to a heavier chain"
                    ),
                    ImportOutcome::Extended => tracing::debug!(
                        target: "node", height, hash = %hash.short(), "block verified and imported"
                    ),
                    _ => {}
                }
                true
            }
            Err(e) if e.is_peer_fault() => {
                self.reject(from, gossip, format!("invalid block: {e}"));
                false
            }
            Err(e) => {
                tracing::debug!(target: "node", hash = %hash.short(), error = %e, "block not imported");
                if let (Some(peer), Some(id)) = (from, gossip) {
                    self.validate(id, peer, Acceptance::Ignore);
                }
                false
            }
        }
    }
}

/// Puts back the start state of proof data sent lean for `block` (design/016): the chain's
/// filler state at the block's parent, when the block trains the filler task that state
/// belongs to. The data is then checked against the winning message's hashes like any other.
/// False when `block` trains that filler task but the state cannot be rebuilt here now; true
/// otherwise (a client-task block's data is left as sent: its missing start state is a fault).
/// A block's proof data, checked against what the block names.
#[derive(Debug)]
pub(crate) enum DataCheck {
    /// It is the block's data, now in the proof store.
    Stored,
    /// It cannot be checked here now (the tip moved on since the cheap checks, or the
    /// chain's filler state at the parent cannot be rebuilt): not the sender's fault; sync
    /// brings the block back if it wins.
    NotNow,
    /// It is not the block's data: the sender is at fault.
    Fault(String),
}

/// Checks `data` against `block` ([`checked_data`], under the chain's shared lock) and stores
/// it when it is the block's, without the lock (a commit waits for neither the write nor its
/// sync); any thread. The error is a local failure of the proof store.
pub(crate) fn check_and_store(
    chain: &RwLock<Chain>,
    proofs: &ProofStore,
    block: &Block,
    data: ProofData,
) -> Result<DataCheck, NodeError> {
    let checked = checked_data(&read(chain), block, data);
    match checked {
        Ok(data) => {
            if let Ok(Some(proof)) = proof_of(block) {
                proofs.put_proof(&proof.winning.body, &data)?;
            }
            Ok(DataCheck::Stored)
        }
        Err(verdict) => Ok(verdict),
    }
}

/// `data` completed (a filler-task block's batch and start state from chain data, design/016)
/// and checked against what `block` names; the verdict when it is not the block's data or
/// cannot be checked now.
fn checked_data(chain: &Chain, block: &Block, mut data: ProofData) -> Result<ProofData, DataCheck> {
    if data.batch.is_empty() {
        // A filler-task block's batch does not travel: rebuilt from chain data, then checked
        // against the batch hash like any batch.
        data.batch = filler_batch(chain, block).unwrap_or_default();
    }
    // Nor, asked lean, its start state when it is the chain's filler state at the parent: put
    // back, then checked against the start hashes like any data.
    if data.start_params.is_empty() && !complete_filler_start(chain, block, &mut data) {
        return Err(DataCheck::NotNow);
    }
    match check_proof_data(chain, block, &data) {
        Ok(()) => Ok(data),
        Err(e) if !e.is_fault() => Err(DataCheck::NotNow),
        Err(e) => Err(DataCheck::Fault(format!("bad proof data: {e}"))),
    }
}

pub(super) fn complete_filler_start(chain: &Chain, block: &Block, data: &mut ProofData) -> bool {
    let Some(parent) = chain.header(&block.header.prev_hash) else { return false };
    let ancestors = chain.branch_ancestors(parent);
    let filler = PouwValidator::filler_task_for(chain.spec(), parent, &ancestors);
    if filler.is_none_or(|(id, _)| id != block.header.task_id) {
        return true;
    }
    let Some(start) = chain.filler_states().and_then(|f| f.start_for(chain, parent)) else {
        return false;
    };
    data.start_params = start.state.model().params().to_vec();
    data.start_residual = start.state.residual().to_vec();
    data.start_velocity = start.state.velocity().to_vec();
    true
}

/// The batch bytes of `block`'s iteration rebuilt from chain data, when it trains the filler
/// task of its epoch and its parent is stored (`PouwValidator::filler_batch`).
pub(super) fn filler_batch(chain: &Chain, block: &Block) -> Option<Vec<u8>> {
    let parent = chain.header(&block.header.prev_hash)?;
    let ancestors = chain.branch_ancestors(parent);
    PouwValidator::filler_batch(chain.spec(), parent, &ancestors, block).ok().flatten()
}

pub(super) fn approx_size(block: &Block, proof: Option<&ProofData>) -> usize {
    let txs: usize = block.transactions.len().saturating_mul(256);
    let data = proof.map_or(0, |p| {
        (p.start_params.len() + p.start_residual.len() + p.start_velocity.len())
            .saturating_mul(4)
            .saturating_add(p.batch.len())
            .saturating_add(p.peers.len().saturating_mul(16 * 1024))
            .saturating_add(p.sample_proofs.len().saturating_mul(32))
    });
    txs.saturating_add(data).saturating_add(16 * 1024)
}
