//! Requests and responses: what the node serves its peers (status, headers, blocks with proof
//! data, proof data, task data through the agent, transactions by hash), and what it does with
//! the answers to its own requests (sync, proof data, task data).

use super::server::{answer, proof_data_of};
use super::*;

impl Node {
    pub(super) fn on_response(
        &mut self,
        peer: PeerId,
        pending: Pending,
        result: Result<Response, RequestFailure>,
    ) -> Result<(), NodeError> {
        let response = match result {
            Ok(r) => r,
            Err(failure) => {
                tracing::debug!(target: "node", %peer, %failure, ?pending, "request failed");
                let kind = if matches!(pending, Pending::Status) {
                    PendingKind::Status
                } else {
                    PendingKind::Data
                };
                match pending {
                    pending @ Pending::Proof { .. } => self.proof_fetch_failed(peer, pending)?,
                    Pending::Headers | Pending::Blocks => self.sync.abort(peer),
                    Pending::Segment { task, index, .. } => self.agent_segment_failed(task, index),
                    Pending::Status | Pending::Model { .. } | Pending::Screening { .. } => {}
                    Pending::History { .. } => {}
                    Pending::StartState { task, miner, iteration } => {
                        self.agent_on_start_state(task, miner, iteration, None)
                    }
                    Pending::Transaction { hash, gossip } => {
                        self.fetching_txs.remove(&hash);
                        self.validate(gossip, peer, Acceptance::Ignore);
                    }
                }
                // A slow answer to a status poll is not held against a peer (it may just be
                // busy); slow sync and data answers cost a little score each.
                if failure == RequestFailure::Timeout && !matches!(kind, PendingKind::Status) {
                    self.penalise(peer, "request timed out", 5);
                }
                return Ok(());
            }
        };
        match (pending, response) {
            (Pending::Status, Response::Status(status)) => self.on_status(peer, status),
            (Pending::Headers, Response::Headers(headers)) => {
                let checked = {
                    let chain = read(&self.chain);
                    self.sync.on_headers(peer, &headers, |h| chain.header(h).is_some())
                };
                match checked {
                    Ok(Some((p, req))) => self.request(p, req, Pending::Blocks),
                    Ok(None) => {}
                    Err(fault) => self.ban(peer, format!("bad headers: {fault}")),
                }
            }
            (Pending::Blocks, Response::Blocks(blocks)) => self.on_sync_blocks(peer, blocks)?,
            (Pending::Proof { block, gossip }, Response::Proof(Some(data))) => {
                let hash = block.hash();
                self.fetching.remove(&hash);
                // Checked and stored with the block's verification, off the loop.
                self.verify_gossiped(peer, *block, Some(data), gossip)?;
                self.fetch_ended(&hash)?;
            }
            (pending @ Pending::Proof { .. }, Response::Proof(None)) => {
                self.penalise(peer, "announced a block without its proof data", 20);
                self.proof_fetch_failed(peer, pending)?;
            }
            (Pending::Screening { task, supervisor }, Response::Screening(status)) => {
                self.agent_on_screening(task, supervisor, status)
            }
            (Pending::Segment { task, index, use_ }, Response::Segment(bytes)) => {
                self.agent_on_segment(task, index, bytes, use_)
            }
            (Pending::Model { task, miner, hash, deliver }, Response::Model(bytes)) => {
                self.agent_on_model(task, miner, hash, bytes, deliver)
            }
            (Pending::History { task, slot }, Response::History(messages)) => {
                self.agent_on_history(peer, task, slot, messages)
            }
            (Pending::StartState { task, miner, iteration }, Response::StartState(data)) => {
                self.agent_on_start_state(task, miner, iteration, data)
            }
            (Pending::Transaction { hash, gossip }, Response::Transaction(tx)) => {
                self.on_tx_fetched(peer, hash, gossip, tx)
            }
            (pending, Response::Error(e)) => {
                tracing::debug!(target: "node", %peer, error = %e, ?pending, "peer could not answer");
                if let Pending::StartState { task, miner, iteration } = pending {
                    self.agent_on_start_state(task, miner, iteration, None);
                    return Ok(());
                }
                if let Pending::Transaction { hash, gossip } = pending {
                    self.fetching_txs.remove(&hash);
                    self.validate(gossip, peer, Acceptance::Ignore);
                    return Ok(());
                }
                if let Pending::Segment { task, index, .. } = pending {
                    // Busy (too many segment requests waiting there): the next source.
                    self.agent_segment_failed(task, index);
                    return Ok(());
                }
                if matches!(pending, Pending::Headers | Pending::Blocks) {
                    self.sync.abort(peer);
                }
                self.proof_fetch_failed(peer, pending)?;
            }
            (pending, other) => {
                self.ban(peer, format!("answered {pending:?} with {}", response_name(&other)));
                self.proof_fetch_failed(peer, pending)?;
            }
        }
        Ok(())
    }

    /// A request for a block's proof data got no data (it failed, or the peer answered with
    /// an error or something else): the block is no longer being fetched (it is taken again
    /// when announced again, or by sync) and the blocks held for it are ignored with it.
    fn proof_fetch_failed(&mut self, peer: PeerId, pending: Pending) -> Result<(), NodeError> {
        let Pending::Proof { block, gossip } = pending else { return Ok(()) };
        let hash = block.hash();
        self.fetching.remove(&hash);
        if let Some(id) = gossip {
            self.validate(id, peer, Acceptance::Ignore);
        }
        self.fetch_ended(&hash)
    }

    pub(super) fn on_status(&mut self, peer: PeerId, status: ChainStatus) {
        let (genesis, work) = {
            let chain = read(&self.chain);
            (chain.genesis_hash(), chain.tip_work())
        };
        if status.genesis != genesis {
            self.ban(peer, format!("different genesis {}", status.genesis));
            return;
        }
        let chain = self.chain.clone();
        if let Some((p, req)) = self.sync.on_status(peer, status, work, || read(&chain).locator()) {
            tracing::info!(target: "node", %p, "syncing from a heavier peer");
            self.request(p, req, Pending::Headers);
        }
    }

    /// A batch of blocks from the sync peer: verified one after the other, in order, on the
    /// verification thread (`next_sync_block`); a second batch that comes while one is under
    /// way (it never should: one sync request is in flight at a time) is imported here.
    pub(super) fn on_sync_blocks(
        &mut self,
        peer: PeerId,
        blocks: Vec<BlockWithProof>,
    ) -> Result<(), NodeError> {
        if self.sync_batch.is_some() {
            let mut imported = 0usize;
            for BlockWithProof { block, proof } in blocks {
                if !self.sync_block_has_data(peer, &block, proof.is_some())? {
                    return Ok(());
                }
                if !self.import(Some(peer), block, proof, None)? {
                    self.sync.abort(peer);
                    return Ok(());
                }
                imported += 1;
            }
            return self.after_sync_batch(peer, imported);
        }
        self.sync_batch = Some(SyncBatch { peer, blocks: blocks.into(), imported: 0 });
        self.next_sync_block()
    }

    /// Sends the sync batch's next block to the verification thread (the verdict comes back
    /// to `on_verified`, which calls this again), imports it here when the thread cannot take
    /// it, or ends the batch.
    pub(super) fn next_sync_block(&mut self) -> Result<(), NodeError> {
        loop {
            let Some(batch) = self.sync_batch.as_mut() else { return Ok(()) };
            let peer = batch.peer;
            let Some(BlockWithProof { block, proof }) = batch.blocks.pop_front() else {
                let imported = batch.imported;
                self.sync_batch = None;
                return self.after_sync_batch(peer, imported);
            };
            if !self.sync_block_has_data(peer, &block, proof.is_some())? {
                self.sync_batch = None;
                return Ok(());
            }
            let context =
                verify::Context { from: peer, gossip: None, started: Instant::now(), sync: true };
            let Err(job) = self.block_verifier.submit(context, block, proof) else {
                return Ok(());
            };
            let (_, block, data) = *job;
            if !self.import(Some(peer), block, data, None)? {
                self.sync.abort(peer);
                self.sync_batch = None;
                return Ok(());
            }
            if let Some(batch) = self.sync_batch.as_mut() {
                batch.imported += 1;
            }
        }
    }

    /// Whether a synced block comes with the proof data it needs (this node may hold it
    /// already); a peer that left it out is penalised and the sync with it stops.
    fn sync_block_has_data(
        &mut self,
        peer: PeerId,
        block: &Block,
        has_data: bool,
    ) -> Result<bool, NodeError> {
        let needs_data = match proof_of(block) {
            Ok(Some(p)) => self.proofs.get_proof(&p.winning.body)?.is_none(),
            _ => false,
        };
        if needs_data && !has_data {
            self.penalise(peer, "sent a block without its proof data", 20);
            self.sync.abort(peer);
            return Ok(false);
        }
        Ok(true)
    }

    /// A sync batch ended with `imported` blocks imported: the next request of the sync.
    fn after_sync_batch(&mut self, peer: PeerId, imported: usize) -> Result<(), NodeError> {
        let chain = self.chain.clone();
        let next = self.sync.after_blocks(peer, imported, || read(&chain).locator());
        if let Some((p, req)) = next {
            let pending = if matches!(req, Request::HeadersAfter { .. }) {
                Pending::Headers
            } else {
                Pending::Blocks
            };
            self.request(p, req, pending);
        } else if !self.sync.is_active() {
            tracing::info!(target: "node", height = read(&self.chain).height(), synced = self.sync.synced, "sync finished");
        }
        Ok(())
    }

    pub(super) fn serve(
        &mut self,
        from: PeerId,
        id: InboundId,
        request: Request,
    ) -> Result<(), NodeError> {
        if let Request::StartState { task, iteration } = &request {
            self.serve_start_state(&from, task, *iteration, id);
            return Ok(());
        }
        if let Request::Segment { task, index } = request {
            self.serve_segment_paced(from, id, task, index);
            return Ok(());
        }
        if let Some(response) = self.agent_serve(&from, &request) {
            let _ = self.net.respond(id, response);
            return Ok(());
        }
        let response = match request {
            Request::Status => {
                let chain = read(&self.chain);
                Response::Status(ChainStatus {
                    genesis: chain.genesis_hash(),
                    tip: chain.tip(),
                    height: chain.height(),
                    total_work: chain.tip_work().to_be_bytes(),
                })
            }
            Request::Model(_) => Response::Model(None),
            Request::History { .. } => Response::History(Vec::new()),
            Request::Screening { .. } => Response::Screening(None),
            Request::StartState { .. } => Response::StartState(None),
            Request::Transaction(hash) => Response::Transaction(
                self.mempool.get(&hash).or_else(|| self.own_txs.get(&hash)).cloned().map(Box::new),
            ),
            // The grinding attacker serves the proof data of its forged blocks, which its own
            // chain refused (design/010).
            Request::Proof(hash) | Request::ProofLean(hash)
                if self.forged.iter().any(|b| b.hash() == hash) =>
            {
                let lean = matches!(request, Request::ProofLean(_));
                let forged = self.forged.iter().find(|b| b.hash() == hash);
                let chain = read(&self.chain);
                match forged {
                    Some(block) => {
                        Response::Proof(proof_data_of(&self.proofs, &chain, block, lean)?)
                    }
                    None => Response::Proof(None),
                }
            }
            // Headers, blocks and proof data: on the serving thread, or here when it is busy.
            request => match self.chain_server.serve(id, request) {
                Ok(()) => return Ok(()),
                Err(job) => answer(&read(&self.chain), &self.proofs, job.1)?,
            },
        };
        let _ = self.net.respond(id, response);
        Ok(())
    }
}

pub(super) fn response_name(r: &Response) -> &'static str {
    match r {
        Response::Status(_) => "Status",
        Response::Headers(_) => "Headers",
        Response::Blocks(_) => "Blocks",
        Response::Proof(_) => "Proof",
        Response::Segment(_) => "Segment",
        Response::Model(_) => "Model",
        Response::History(_) => "History",
        Response::Screening(_) => "Screening",
        Response::Transaction(_) => "Transaction",
        Response::StartState(_) => "StartState",
        Response::Error(_) => "Error",
    }
}
