//! Peers' chain-data requests answered off the event loop.
//!
//! Headers, blocks with their proof data and proof data alone (`HeadersAfter`, `Blocks`,
//! `Proof`, `ProofLean`) are read from the chain and the proof store, encoded and sent: up to
//! megabytes an answer, and a lean filler answer may rebuild the chain's filler state first.
//! A thread of the node's answers them, under the chain's shared lock, from a bounded queue
//! ([`QUEUE`]); the loop hands it each such request after the rate limit admitted it, and
//! answers it itself when the queue is full. What the loop must answer from its own state
//! (status, transactions in the pool, a task's data) stays on the loop.

use super::{blocks::approx_size, read, NodeError, BLOCKS_RESPONSE_BUDGET};
use pouw_chain::{Chain, PouwValidator};
use pouw_consensus::pouw::{proof_of, ProofData};
use pouw_net::{BlockWithProof, InboundId, NetworkHandle, Request, Response};
use pouw_primitives::Block;
use pouw_storage::ProofStore;
use std::sync::{Arc, RwLock};

/// Requests waiting for the thread at most; past that the loop answers.
const QUEUE: usize = 64;

/// The loop's side: the queue to the thread.
pub(crate) struct ChainServer {
    jobs: Option<flume::Sender<(InboundId, Request)>>,
}

impl ChainServer {
    /// The thread answering `chain`'s and `proofs`' data through `net`; without it (it could
    /// not start) the loop answers every request.
    pub(crate) fn start(
        chain: Arc<RwLock<Chain>>,
        proofs: Arc<ProofStore>,
        net: NetworkHandle,
    ) -> Self {
        let (jobs, rx) = flume::bounded::<(InboundId, Request)>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("pouw-serve".into())
            .spawn(move || run(&chain, &proofs, &net, &rx));
        match spawned {
            Ok(_) => Self { jobs: Some(jobs) },
            Err(e) => {
                tracing::error!(target: "node", error = %e, "cannot start the serving thread: requests are answered on the event loop");
                Self { jobs: None }
            }
        }
    }

    /// Hands a chain-data request ([`answer`]) to the thread; gives it back when the thread
    /// cannot take it now.
    pub(crate) fn serve(
        &self,
        id: InboundId,
        request: Request,
    ) -> Result<(), Box<(InboundId, Request)>> {
        match &self.jobs {
            Some(jobs) => jobs.try_send((id, request)).map_err(|e| {
                let (flume::TrySendError::Full(job) | flume::TrySendError::Disconnected(job)) = e;
                Box::new(job)
            }),
            None => Err(Box::new((id, request))),
        }
    }
}

/// The thread: answers each request until the loop's side is dropped.
fn run(
    chain: &RwLock<Chain>,
    proofs: &ProofStore,
    net: &NetworkHandle,
    jobs: &flume::Receiver<(InboundId, Request)>,
) {
    while let Ok((id, request)) = jobs.recv() {
        let name = request.name();
        let answered = crate::agent::guarded(|| answer(&read(chain), proofs, request));
        let response = match answered {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                tracing::error!(target: "node", request = name, error = %e, "cannot read what a peer asked for");
                Response::Error("the node could not read its store".into())
            }
            Err(panic) => {
                tracing::error!(target: "node", request = name, %panic, "answering a peer panicked");
                Response::Error("the node failed to answer".into())
            }
        };
        let _ = net.respond(id, response);
    }
}

/// The answer to a chain-data request: headers, blocks with their proof data, proof data (the
/// loop answers the others from its own state).
pub(crate) fn answer(
    chain: &Chain,
    proofs: &ProofStore,
    request: Request,
) -> Result<Response, NodeError> {
    let lean = matches!(request, Request::ProofLean(_));
    Ok(match request {
        Request::HeadersAfter { locator, max } => {
            let max = max.min(pouw_net::messages::MAX_HEADERS_PER_RESPONSE) as usize;
            Response::Headers(chain.headers_after_locator(&locator, max))
        }
        Request::Blocks(hashes) => {
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for h in hashes {
                let Some(block) = chain.block(&h)? else { break };
                let proof = proof_data_of(proofs, chain, &block, false)?;
                bytes = bytes.saturating_add(approx_size(&block, proof.as_ref()));
                out.push(BlockWithProof { block, proof });
                if bytes > BLOCKS_RESPONSE_BUDGET {
                    break;
                }
            }
            Response::Blocks(out)
        }
        Request::Proof(hash) | Request::ProofLean(hash) => match chain.block(&hash)? {
            Some(block) => Response::Proof(proof_data_of(proofs, chain, &block, lean)?),
            None => Response::Proof(None),
        },
        other => Response::Error(format!("{} is not answered from the chain", other.name())),
    })
}

/// The proof data of `block` as it goes to a peer: a filler-task block's without its batch,
/// which every node rebuilds from chain data, and, `lean` (the peer holds the chain's filler
/// state), without its start state when the iteration started from the chain's filler state
/// at the block's parent (design/016).
pub(crate) fn proof_data_of(
    proofs: &ProofStore,
    chain: &Chain,
    block: &Block,
    lean: bool,
) -> Result<Option<ProofData>, NodeError> {
    let proof = match proof_of(block) {
        Ok(Some(p)) => p,
        _ => return Ok(None),
    };
    let mut data = proofs.get_proof(&proof.winning.body)?;
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
