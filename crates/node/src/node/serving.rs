//! Requests and responses: what the node serves its peers (status, headers, blocks with proof
//! data, proof data, task data through the agent, transactions by hash), and what it does with
//! the answers to its own requests (sync, proof data, task data).

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
                    Pending::Proof { block, gossip } => {
                        self.fetching.remove(&block.hash());
                        if let Some(id) = gossip {
                            self.validate(id, peer, Acceptance::Ignore);
                        }
                    }
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
            (Pending::Proof { block, gossip }, Response::Proof(data)) => {
                self.fetching.remove(&block.hash());
                match data {
                    Some(data) => self.import_gossiped(peer, *block, data, gossip)?,
                    None => {
                        if let Some(id) = gossip {
                            self.validate(id, peer, Acceptance::Ignore);
                        }
                        self.penalise(peer, "announced a block without its proof data", 20);
                    }
                }
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
                if matches!(pending, Pending::Headers | Pending::Blocks) {
                    self.sync.abort(peer);
                }
            }
            (pending, other) => {
                self.ban(peer, format!("answered {pending:?} with {}", response_name(&other)));
            }
        }
        Ok(())
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

    pub(super) fn on_sync_blocks(
        &mut self,
        peer: PeerId,
        blocks: Vec<BlockWithProof>,
    ) -> Result<(), NodeError> {
        let mut imported = 0usize;
        // Imported here, in order, not on the verification thread: each block of a batch is
        // the parent of the next, and how many were imported decides the next request.
        for BlockWithProof { block, proof } in blocks {
            let needs_data = match proof_of(&block) {
                Ok(Some(p)) => self.proofs.get_proof(&p.winning.body)?.is_none(),
                _ => false,
            };
            if needs_data && proof.is_none() {
                self.penalise(peer, "sent a block without its proof data", 20);
                self.sync.abort(peer);
                return Ok(());
            }
            if !self.import(Some(peer), block, proof, None)? {
                self.sync.abort(peer);
                return Ok(());
            }
            imported += 1;
        }
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
        if let Some(response) = self.agent_serve(&from, &request) {
            let _ = self.net.respond(id, response);
            return Ok(());
        }
        let chain = read(&self.chain);
        let lean = matches!(request, Request::ProofLean(_));
        let response = match request {
            Request::Status => Response::Status(ChainStatus {
                genesis: chain.genesis_hash(),
                tip: chain.tip(),
                height: chain.height(),
                total_work: chain.tip_work().to_be_bytes(),
            }),
            Request::HeadersAfter { locator, max } => {
                let max = max.min(pouw_net::messages::MAX_HEADERS_PER_RESPONSE) as usize;
                Response::Headers(chain.headers_after_locator(&locator, max))
            }
            Request::Blocks(hashes) => {
                let mut out = Vec::new();
                let mut bytes = 0usize;
                for h in hashes {
                    let Some(block) = chain.block(&h)? else { break };
                    let proof = self.proof_data_of(&chain, &block, false)?;
                    bytes = bytes.saturating_add(approx_size(&block, proof.as_ref()));
                    out.push(BlockWithProof { block, proof });
                    if bytes > BLOCKS_RESPONSE_BUDGET {
                        break;
                    }
                }
                Response::Blocks(out)
            }
            Request::Proof(hash) | Request::ProofLean(hash) => match chain.block(&hash)? {
                Some(block) => Response::Proof(self.proof_data_of(&chain, &block, lean)?),
                None => match self.forged.iter().find(|b| b.hash() == hash) {
                    Some(block) => Response::Proof(self.proof_data_of(&chain, block, lean)?),
                    None => Response::Proof(None),
                },
            },
            Request::Segment { .. } => Response::Segment(None),
            Request::Model(_) => Response::Model(None),
            Request::History { .. } => Response::History(Vec::new()),
            Request::Screening { .. } => Response::Screening(None),
            Request::StartState { .. } => Response::StartState(None),
            Request::Transaction(hash) => Response::Transaction(
                self.mempool.get(&hash).or_else(|| self.own_txs.get(&hash)).cloned().map(Box::new),
            ),
        };
        drop(chain);
        let _ = self.net.respond(id, response);
        Ok(())
    }

    /// The proof data of `block` as it goes to a peer: a filler-task block's without its batch,
    /// which every node rebuilds from chain data, and, `lean` (the peer holds the chain's filler
    /// state), without its start state when the iteration started from the chain's filler state
    /// at the block's parent (design/016).
    pub(super) fn proof_data_of(
        &self,
        chain: &Chain,
        block: &Block,
        lean: bool,
    ) -> Result<Option<ProofData>, NodeError> {
        let proof = match proof_of(block) {
            Ok(Some(p)) => p,
            _ => return Ok(None),
        };
        let mut data = self.proofs.get_proof(&proof.winning.body)?;
        if let Some(d) = data.as_mut() {
            let Some(parent) = chain.header(&block.header.prev_hash) else { return Ok(data) };
            let ancestors = chain.branch_ancestors(parent);
            let filler = PouwValidator::filler_task_for(chain.spec(), parent, &ancestors);
            if filler.is_some_and(|(id, _)| id == block.header.task_id) {
                d.batch = Vec::new();
                let w = &proof.winning.body;
                let start = lean
                    .then(|| chain.filler_states().and_then(|f| f.start_for(chain, parent)))
                    .flatten();
                let at_chain_state = start.is_some_and(|s| {
                    s.model_hash == w.start_model_hash && s.residual_hash == w.start_residual_hash
                });
                if at_chain_state {
                    d.start_params = Vec::new();
                    d.start_residual = Vec::new();
                    d.start_velocity = Vec::new();
                }
            }
        }
        Ok(data)
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
