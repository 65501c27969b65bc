//! Where a task's data is fetched from, and served to whom, once the node that first had it
//! may be gone (design/015, data routing).
//!
//! The client may go offline once training has started. Every seat that holds a copy of a
//! task's data serves it by the client's rule (design/014): a training segment to the task's
//! miners and supervisors, a test segment to its evaluators and only once the client revealed
//! it (`segments::revealed`), a submitted model to its evaluators and to its client once the
//! verdict executed. A worker asks the client for a segment first and then, rotating with
//! backoff, the other seats that may hold it; the client asks the winning miner for the best
//! model first and then the evaluators, who fetched and checked every model. Whatever the
//! source, a segment is checked against the task's segment hash and a model against its
//! submitted hash (both chain data) before it is used or kept.

use super::{
    delivery::{Best, DeliveryAction},
    segments, Agent, SegmentUse, RETRY, SEGMENT_IN_FLIGHT,
};
use crate::node::{Node, Pending};
use pouw_consensus::{task_record, task_split_of, State, StateKey, StateValue, TaskRecord};
use pouw_net::{peer_id_of, InboundId, PeerId, Request, Response};
use pouw_primitives::{Address, Hash, TaskId};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Segments being sent at once. A segment of the devnet's task is about 3 MB, and at a task's
/// selection every worker asks the client for all its segments at the same moment: answered
/// all at once they sat in memory together (the client's resident memory peaked at 230-300
/// MiB). The other requests wait their turn, oldest first.
const SEGMENTS_SENDING: usize = 4;
/// Segment requests that may wait; one more is answered busy (the requester asks the next
/// source, or this one again later).
const SEGMENTS_WAITING: usize = 256;

/// The segments being sent (until the network reports them gone) and the requests waiting.
#[derive(Debug, Default)]
pub(crate) struct SegmentSends {
    sending: HashSet<InboundId>,
    waiting: VecDeque<(PeerId, InboundId, TaskId, u8)>,
}

/// The best model is asked again of the next holder after this long without it, doubled for
/// every full round of holders, up to `2^MAX_MODEL_BACKOFF_ROUNDS` times.
pub(super) const MODEL_RETRY: Duration = RETRY;
const MAX_MODEL_BACKOFF_ROUNDS: u32 = 3;

/// Pushes `a` onto `out` unless it is there already or is `me`.
fn push_other(out: &mut Vec<Address>, a: Address, me: &Address) {
    if a != *me && !out.contains(&a) {
        out.push(a);
    }
}

/// Where node `me` asks for segment `index` of task `record`, in order: the client, then the
/// other seats that may hold it (a training segment: the task's miners and supervisors; a
/// test segment: its evaluators). The other seats are rotated by the index, so the segments
/// of a task spread over them once the client is gone.
pub(crate) fn segment_sources(record: &TaskRecord, index: u8, me: &Address) -> Vec<Address> {
    let p = &record.participants;
    let is_test =
        task_split_of(&record.definition, &record.seed).test.contains(&usize::from(index));
    let mut others = Vec::new();
    let seats: Vec<Address> = if is_test {
        p.evaluators.iter().map(|s| s.worker).collect()
    } else {
        p.miners.iter().chain(&p.supervisors).map(|s| s.worker).collect()
    };
    for w in seats {
        if w != record.client {
            push_other(&mut others, w, me);
        }
    }
    if !others.is_empty() {
        let shift = usize::from(index) % others.len();
        others.rotate_left(shift);
    }
    let mut out = Vec::with_capacity(others.len().saturating_add(1));
    push_other(&mut out, record.client, me);
    out.extend(others);
    out
}

/// Where node `me` asks for the model `best` submitted for task `record`: that miner first,
/// then the task's evaluators (each fetched and checked every model to rank it).
pub(crate) fn model_sources(record: &TaskRecord, best: &Address, me: &Address) -> Vec<Address> {
    let mut out = Vec::new();
    push_other(&mut out, *best, me);
    for s in &record.participants.evaluators {
        push_other(&mut out, s.worker, me);
    }
    out
}

/// Whether a node holding the model that hashes to `hash` may serve it to `requester`: some
/// task's miner submitted that hash on chain (SubmitModel) and the task's rule allows the
/// requester (`segments::may_serve_model`: its evaluators, its client once the verdict
/// executed).
pub(crate) fn may_serve_model_hash(state: &State, hash: &Hash, requester: &PeerId) -> bool {
    state.range(StateKey::Task(Hash([0; 32]))..=StateKey::Task(Hash([0xff; 32]))).any(|(k, v)| {
        match (k, v) {
            (StateKey::Task(task), StateValue::Task(r)) => {
                r.models.iter().any(|miner| {
                    let key = StateKey::SubmittedModel { task: *task, miner: *miner };
                    matches!(state.get(&key), Some(StateValue::Hash(h)) if h == hash)
                }) && segments::may_serve_model(r, requester)
            }
            _ => false,
        }
    })
}

/// The holders of one model asked in turn, with backoff.
#[derive(Debug, Default)]
pub(crate) struct Rotation {
    /// Holders asked so far.
    tries: u32,
    /// Not asked again before this instant.
    next_at: Option<Instant>,
}

impl Rotation {
    /// The holder to ask now among `holders` (in order of preference), or `None` while the
    /// last ask is within its delay: the first holder, then each next one after `delay`
    /// (doubled for every full round of holders that did not deliver); `now` is the time.
    pub(super) fn next<'a>(
        &mut self,
        holders: &'a [Address],
        delay: Duration,
        now: Instant,
    ) -> Option<&'a Address> {
        if self.next_at.is_some_and(|at| at > now) || holders.is_empty() {
            return None;
        }
        let n = holders.len();
        let pick = holders.get(usize::try_from(self.tries).unwrap_or(usize::MAX) % n)?;
        self.tries = self.tries.saturating_add(1);
        let rounds =
            (self.tries / u32::try_from(n).unwrap_or(u32::MAX)).min(MAX_MODEL_BACKOFF_ROUNDS);
        self.next_at = Some(now + delay.saturating_mul(1 << rounds));
        Some(pick)
    }
}

impl Agent {
    /// Evaluator: keeps a model it fetched and checked (it hashes to what its miner
    /// submitted), so it can serve it to the task's client once the verdict executed (the
    /// winning miner may be gone by then).
    pub(super) fn keep_model(&self, hash: &Hash, model: &pouw_ml::Model) {
        let dir = self.models_dir();
        let path = dir.join(format!("{hash}.safetensors"));
        if path.exists() {
            return;
        }
        let saved = std::fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| pouw_ml::save_safetensors(model, &path).map_err(|e| e.to_string()));
        if let Err(e) = saved {
            tracing::warn!(target: "evaluator", path = %path.display(), error = %e, "cannot keep a model for its client");
        }
    }
}

impl Node {
    /// Answers a segment request from the peer `from`: the client of the task serves it by
    /// its phase rule, any other node from the copy it holds by the same rule; either only to
    /// the seats that need it (`segments::may_serve_segment`). `None` inside: not served.
    fn serve_segment(&mut self, from: &PeerId, task: &TaskId, index: u8) -> Response {
        let (record, height) = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            (task_record(chain.state(), task), chain.height())
        };
        let withhold = self.config.attack == Some(crate::Attack::WithholdTest);
        let seg = record.and_then(|r| {
            let test = task_split_of(&r.definition, &r.seed).test;
            if withhold && test.contains(&usize::from(index)) {
                // Attack `withhold-test`: the test set is never revealed.
                return None;
            }
            if !segments::may_serve_segment(&r, index, from) {
                return None;
            }
            if r.client == self.me() && index == segments::START_WEIGHTS_INDEX {
                self.client_start_weights(&r, task, height)
            } else if r.client == self.me() {
                self.agent.segment(&r, task, index, height)
            } else if segments::revealed(&r, index, height) {
                self.agent.segments.held(task, index, &segments::blob_hashes(&r.definition))
            } else {
                None
            }
        });
        Response::Segment(seg)
    }

    /// A segment request: answered now when fewer than [`SEGMENTS_SENDING`] segments are
    /// being sent, else when its turn comes ([`Node::on_response_done`]).
    pub(crate) fn serve_segment_paced(
        &mut self,
        from: PeerId,
        id: InboundId,
        task: TaskId,
        index: u8,
    ) {
        let sends = &mut self.agent.segment_sends;
        if sends.sending.len() < SEGMENTS_SENDING {
            self.send_segment(from, id, task, index);
        } else if sends.waiting.len() < SEGMENTS_WAITING {
            sends.waiting.push_back((from, id, task, index));
        } else {
            let busy = "busy: too many segment requests waiting, ask again later";
            let _ = self.net.respond(id, Response::Error(busy.into()));
        }
    }

    /// Answers a segment request; a segment sent counts until the network reports it gone.
    fn send_segment(&mut self, from: PeerId, id: InboundId, task: TaskId, index: u8) {
        let response = self.serve_segment(&from, &task, index);
        if matches!(response, Response::Segment(Some(_))) {
            if self.net.respond_tracked(id, response).is_ok() {
                self.agent.segment_sends.sending.insert(id);
            }
        } else {
            let _ = self.net.respond(id, response);
        }
    }

    /// A tracked answer left (or failed): the next waiting segment requests are answered.
    pub(crate) fn on_response_done(&mut self, id: InboundId) {
        self.agent.segment_sends.sending.remove(&id);
        while self.agent.segment_sends.sending.len() < SEGMENTS_SENDING {
            let Some((from, id, task, index)) = self.agent.segment_sends.waiting.pop_front() else {
                break;
            };
            self.send_segment(from, id, task, index);
        }
    }

    /// Answers a model request: a model this node holds (its own submitted model, one it
    /// fetched as an evaluator, or the best model it received as a client) that some task's
    /// miner submitted on chain, to whom that task allows.
    pub(super) fn serve_model(&self, from: &PeerId, hash: &Hash) -> Response {
        let allowed = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            may_serve_model_hash(chain.state(), hash, from)
        };
        Response::Model(allowed.then(|| self.agent.model_bytes(hash)).flatten())
    }

    /// Worker: asks for the segments of `indices` of task `id` (or its start weights,
    /// [`segments::START_WEIGHTS_INDEX`]) that are missing and not in flight, each of its next
    /// source (the client first, then the other seats that may hold it).
    pub(super) fn ask_segments(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
        indices: &[usize],
        use_: SegmentUse,
    ) {
        let me = self.me();
        let hashes = &segments::blob_hashes(&record.definition);
        for index in self.agent.segments.due(&id, indices, hashes, SEGMENT_IN_FLIGHT) {
            let sources = segment_sources(record, index, &me);
            let source = self.agent.segments.source(&id, index, &sources);
            let Some(peer) = source.as_ref().and_then(peer_id_of) else { continue };
            if source != Some(record.client) {
                tracing::debug!(target: "node", task = %id.short(), index, source = %peer, "segment asked of another seat");
            }
            self.request(
                peer,
                Request::Segment { task: id, index },
                Pending::Segment { task: id, index, use_ },
            );
        }
    }

    /// Client: asks for the best model of the completed task `id` (the one the verdict ranked
    /// first: the largest miner payout), of its miner first and then of the evaluators, in
    /// turn with backoff, until one delivers it.
    pub(super) fn fetch_best_model(&mut self, id: TaskId, record: &TaskRecord) {
        let models: Vec<(Address, Hash)> = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            pouw_consensus::task_view(chain.state(), &id)
                .map(|v| v.models.iter().map(|m| (m.miner, m.model_hash)).collect())
                .unwrap_or_default()
        };
        let best = Best::of(record, &models, &self.me());
        let Some(DeliveryAction::Ask { holder, miner, hash }) =
            self.agent.delivery.tick(id, best, Instant::now())
        else {
            return;
        };
        if let Some(peer) = peer_id_of(&holder) {
            if holder != miner {
                tracing::debug!(target: "client", task = %id.short(), holder = %peer, "best model asked of another holder");
            }
            self.request(
                peer,
                Request::Model(hash),
                Pending::Model { task: id, miner, hash, deliver: true },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_consensus::TaskStatus;
    use pouw_primitives::ChainSpec;

    fn key(i: usize) -> Address {
        ChainSpec::devnet_key(i).public()
    }

    /// A task of client 0 with miners 1-3, supervisors 4-5, evaluators 6-8.
    fn record() -> TaskRecord {
        super::super::tests::seated_record()
    }

    #[test]
    fn segments_are_asked_of_the_client_first_then_of_the_seats_that_may_hold_them() {
        let r = record();
        let split = task_split_of(&r.definition, &r.seed);
        let train = u8::try_from(split.train[0]).unwrap();
        let test = u8::try_from(split.test[0]).unwrap();
        // A late supervisor (5): the client, then the miners and the other supervisor.
        let s = segment_sources(&r, train, &key(5));
        assert_eq!(s.first(), Some(&key(0)));
        let mut rest = s[1..].to_vec();
        rest.sort();
        let mut want = vec![key(1), key(2), key(3), key(4)];
        want.sort();
        assert_eq!(rest, want, "never itself, never an evaluator");
        // Another segment starts the rotation at another seat.
        let other = u8::try_from(split.train[1]).unwrap();
        assert_ne!(segment_sources(&r, other, &key(5))[1], s[1]);
        // A test segment: the client, then the other evaluators only.
        let s = segment_sources(&r, test, &key(7));
        assert_eq!(s.first(), Some(&key(0)));
        let mut rest = s[1..].to_vec();
        rest.sort();
        let mut want = vec![key(6), key(8)];
        want.sort();
        assert_eq!(rest, want);
    }

    #[test]
    fn the_best_model_is_asked_of_its_miner_then_of_the_evaluators_in_turn_with_backoff() {
        let r = record();
        let holders = model_sources(&r, &key(2), &key(0));
        assert_eq!(holders, [key(2), key(6), key(7), key(8)]);
        let mut rot = Rotation::default();
        // Without delay: each holder in turn, then round again.
        let now = Instant::now();
        let asked: Vec<Address> =
            (0..5).map(|_| *rot.next(&holders, Duration::ZERO, now).unwrap()).collect();
        assert_eq!(asked, [key(2), key(6), key(7), key(8), key(2)]);
        // With a delay: nobody is asked again before it passed.
        let mut rot = Rotation::default();
        let minute = Duration::from_secs(60);
        assert_eq!(rot.next(&holders, minute, now), Some(&key(2)));
        assert_eq!(rot.next(&holders, minute, now + minute / 2), None);
        assert_eq!(rot.next(&holders, minute, now + minute), Some(&key(6)));
        assert_eq!(Rotation::default().next(&[], Duration::ZERO, now), None);
    }

    #[test]
    fn a_model_is_served_only_if_submitted_on_chain_and_to_whom_its_task_allows() {
        use pouw_consensus::State;
        let mut r = record();
        r.models = vec![key(2)];
        let task = Hash::digest(b"task");
        let model = Hash::digest(b"model");
        let submitted = (StateKey::SubmittedModel { task, miner: key(2) }, StateValue::Hash(model));
        let state = |r: &TaskRecord| {
            State::from_entries([
                (StateKey::Task(task), StateValue::Task(Box::new(r.clone()))),
                submitted.clone(),
            ])
        };
        let mut st = state(&r);
        let peer = |i: usize| peer_id_of(&key(i)).unwrap();
        // Evaluators: yes; the client before the verdict, a miner, a stranger: no.
        assert!(may_serve_model_hash(&st, &model, &peer(7)));
        for i in [0, 1, 4, 9] {
            assert!(!may_serve_model_hash(&st, &model, &peer(i)), "{i}");
        }
        // A hash nobody submitted: to nobody.
        assert!(!may_serve_model_hash(&st, &Hash::digest(b"other"), &peer(7)));
        // Once the verdict executed: to the client too, still not to the others.
        r.status = TaskStatus::Completed { at: 60, verdict: Hash::ZERO };
        st = state(&r);
        assert!(may_serve_model_hash(&st, &model, &peer(0)));
        assert!(!may_serve_model_hash(&st, &model, &peer(1)));
    }
}
