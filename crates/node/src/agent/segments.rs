//! A worker's copy of the dataset segments of the client tasks it takes part in.
//!
//! One copy per node and task, whatever the roles that need it (a miner's and a supervisor's
//! training segments, an evaluator's test segments): each segment is fetched once (from the
//! client first, then from the other seats that may hold it, `routing`), checked against the
//! task's hash, kept on disk under `<datadir>/segments/<task>/` while the task runs and
//! checked again whenever it is read back or served to another seat. When the task ends its
//! directory is deleted and nothing more is asked, stored or served for it.
//!
//! A task whose definition names the client's start weights (`Initializer::Weights`,
//! design/021) has one more blob: the start weights file, under index
//! [`START_WEIGHTS_INDEX`] (one past the last segment), fetched, checked against its hash,
//! kept and served like a training segment (to the task's miners and supervisors).

use pouw_consensus::{task_split_of, TaskRecord, TaskStatus};
use pouw_net::{peer_id_of, PeerId};
use pouw_primitives::{Address, Hash, TaskDefinition, TaskId, DATASET_SEGMENTS};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    path::PathBuf,
    time::{Duration, Instant},
};

/// Whether the peer `requester` is the node of one of `workers`. A node's libp2p identity is
/// its worker key (`pouw_net::peer_id_of`), and the connection's noise handshake proves the
/// peer holds it, so a request's peer id names the worker that sent it.
fn is_one_of(requester: &PeerId, workers: impl IntoIterator<Item = Address>) -> bool {
    workers.into_iter().any(|w| peer_id_of(&w).is_some_and(|p| p == *requester))
}

/// Whether a client may serve segment `index` of its task `record` to `requester`, by who
/// asks (design/014): a training segment to the task's selected miners and supervisors, a
/// test segment to its selected evaluators. When it is served (training segments from the
/// selection on, test segments once the task finalises) is the client's phase rule.
pub(crate) fn may_serve_segment(record: &TaskRecord, index: u8, requester: &PeerId) -> bool {
    let p = &record.participants;
    let is_test =
        task_split_of(&record.definition, &record.seed).test.contains(&usize::from(index));
    if is_test {
        is_one_of(requester, p.evaluators.iter().map(|s| s.worker))
    } else {
        is_one_of(requester, p.miners.iter().chain(&p.supervisors).map(|s| s.worker))
    }
}

/// Whether a miner may serve the model it submitted for task `record` (its SubmitModel on
/// chain) to `requester` (design/014): to the task's selected evaluators, and to its client
/// once the verdict executed (the fee paid), never before.
pub(crate) fn may_serve_model(record: &TaskRecord, requester: &PeerId) -> bool {
    is_one_of(requester, record.participants.evaluators.iter().map(|s| s.worker))
        || (matches!(record.status, TaskStatus::Completed { .. })
            && is_one_of(requester, [record.client]))
}

/// Whether segment `index` of task `record` is revealed at chain height `height`, whoever
/// serves it (the client or a seat holding a copy): training segments while the task trains,
/// every segment while it finalises and, for late evaluators' votes, until its finalisation
/// deadline; nothing before the selection or after a refusal or expiry.
pub(crate) fn revealed(record: &TaskRecord, index: u8, height: u64) -> bool {
    let is_test =
        task_split_of(&record.definition, &record.seed).test.contains(&usize::from(index));
    match record.status {
        TaskStatus::Training => !is_test,
        TaskStatus::Finalising { .. } => true,
        TaskStatus::Completed { .. } => height < record.finalisation_deadline,
        _ => false,
    }
}

/// The index of a task's start weights among its blobs: one past its last segment. Never a
/// test segment, so it goes where the training segments go.
pub(crate) const START_WEIGHTS_INDEX: u8 = DATASET_SEGMENTS as u8;

/// The hashes of a task's blobs, by index: its segment hashes (Merkle roots of the samples),
/// then the hash of its start weights file (BLAKE3 of its bytes) when it names one.
pub(crate) fn blob_hashes(definition: &TaskDefinition) -> Vec<Hash> {
    let mut hashes = definition.dataset.segment_hashes.clone();
    match definition.model.init.start_weights() {
        // A definition on chain validated with exactly that many segments.
        Some(h) if hashes.len() == DATASET_SEGMENTS => hashes.push(h),
        _ => {}
    }
    hashes
}

/// The blobs to fetch for a task's training data: the training segments `train` and, when
/// the definition names them, the start weights (asked together, used together).
pub(crate) fn with_start_weights(definition: &TaskDefinition, train: &[usize]) -> Vec<usize> {
    let mut wanted = train.to_vec();
    if definition.model.init.start_weights().is_some() {
        wanted.push(usize::from(START_WEIGHTS_INDEX));
    }
    wanted
}

/// Whether `bytes` are blob `index` of a task whose blob hashes are `hashes`
/// ([`blob_hashes`]; a task's segment hashes alone for its segments).
pub(crate) fn segment_ok(hashes: &[Hash], index: u8, bytes: &[u8]) -> bool {
    let Some(want) = hashes.get(usize::from(index)) else { return false };
    if index == START_WEIGHTS_INDEX {
        return Hash::digest(bytes) == *want;
    }
    pouw_ml::segment_hash_of_bytes(bytes).is_some_and(|h| h.0 == want.0)
}

/// Sources that did not answer (timeout, not connected) are passed over for the task's other
/// segments this long (a client gone offline is not asked for each segment in turn).
const UNREACHABLE_FOR: Duration = Duration::from_secs(30);
/// A full round of sources that gave no segment multiplies the retry delay by two, up to
/// `2^MAX_BACKOFF_ROUNDS`.
const MAX_BACKOFF_ROUNDS: u32 = 3;

#[derive(Debug, Default)]
struct TaskSegments {
    /// Segments on disk, checked when stored.
    have: BTreeSet<u8>,
    /// Missing segments asked for: not asked again before this instant (a request in flight
    /// is answered or fails within the network's request timeout).
    asked: HashMap<u8, Instant>,
    /// Missing segments: where they were asked and how often that gave nothing.
    routes: HashMap<u8, Route>,
    /// Sources that did not answer for this task, passed over until then.
    unreachable: HashMap<Address, Instant>,
}

/// Where a missing segment is asked.
#[derive(Debug, Default)]
struct Route {
    /// Requests that gave no segment (failed, refused, wrong bytes, or never answered).
    tries: u32,
    /// The sources it was picked from last (for the backoff: one round is this many tries).
    sources: u32,
    /// The source asked last, while its request is in flight.
    in_flight: Option<Address>,
}

impl Route {
    /// The request gave nothing: the next source is asked after `delay`, doubled for every
    /// full round of sources that gave nothing.
    fn failed(&mut self, delay: Duration) -> Duration {
        self.tries = self.tries.saturating_add(1);
        self.in_flight = None;
        let rounds = (self.tries / self.sources.max(1)).min(MAX_BACKOFF_ROUNDS);
        delay.saturating_mul(1 << rounds)
    }
}

/// The segments of every task this node holds data for.
#[derive(Debug, Default)]
pub(crate) struct SegmentStore {
    root: PathBuf,
    tasks: HashMap<TaskId, TaskSegments>,
    /// Tasks that ended: their data is gone and is never fetched again.
    ended: HashSet<TaskId>,
}

impl SegmentStore {
    /// A store under `root` (`<datadir>/segments`).
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root, ..Self::default() }
    }

    fn dir(&self, task: &TaskId) -> PathBuf {
        self.root.join(task.to_string())
    }

    fn path(&self, task: &TaskId, index: u8) -> PathBuf {
        self.dir(task).join(format!("segment-{index}.bin"))
    }

    /// Whether `task` ended here (its data released).
    pub(crate) fn ended(&self, task: &TaskId) -> bool {
        self.ended.contains(task)
    }

    /// The segments of `indices` to ask the client for now: those not stored yet (a copy left
    /// on disk by an earlier run counts once it checks against its hash) and not in flight;
    /// each one returned counts as in flight for `in_flight`. None once the task ended.
    pub(crate) fn due(
        &mut self,
        task: &TaskId,
        indices: &[usize],
        hashes: &[Hash],
        in_flight: Duration,
    ) -> Vec<u8> {
        if self.ended(task) {
            return Vec::new();
        }
        let mut ask = Vec::new();
        for &i in indices {
            let Ok(index) = u8::try_from(i) else { continue };
            let t = self.tasks.entry(*task).or_default();
            if t.have.contains(&index) || t.asked.get(&index).is_some_and(|at| *at > Instant::now())
            {
                continue;
            }
            // A request never answered (not sent, or its answer lost) counts as one that gave
            // nothing: the next source is asked.
            if let Some(r) = t.routes.get_mut(&index).filter(|r| r.in_flight.is_some()) {
                r.failed(Duration::ZERO);
            }
            let on_disk = std::fs::read(self.path(task, index))
                .is_ok_and(|bytes| segment_ok(hashes, index, &bytes));
            let t = self.tasks.entry(*task).or_default();
            if on_disk {
                t.have.insert(index);
            } else {
                t.asked.insert(index, Instant::now() + in_flight);
                ask.push(index);
            }
        }
        ask
    }

    /// The source to ask for segment `index` of `task` (just returned by [`Self::due`]) among
    /// `sources`, in order of preference (`routing::segment_sources`: the client first): the
    /// one after those that already gave nothing, passing over the sources unreachable for
    /// this task (unless all are). `None` without sources.
    pub(crate) fn source(
        &mut self,
        task: &TaskId,
        index: u8,
        sources: &[Address],
    ) -> Option<Address> {
        let n = sources.len();
        if n == 0 {
            return None;
        }
        let now = Instant::now();
        let t = self.tasks.entry(*task).or_default();
        t.unreachable.retain(|_, until| *until > now);
        let route = t.routes.entry(index).or_default();
        let start = usize::try_from(route.tries).unwrap_or(usize::MAX) % n;
        let order = sources.iter().cycle().skip(start).take(n);
        let pick = order
            .clone()
            .find(|s| !t.unreachable.contains_key(s))
            .or_else(|| order.clone().next())
            .copied()?;
        route.sources = u32::try_from(n).unwrap_or(u32::MAX);
        route.in_flight = Some(pick);
        Some(pick)
    }

    /// The request for segment `index` of `task` got no segment (refused, or bytes that do not
    /// match): it may be asked again, of the next source, after `delay` (longer after every
    /// full round of sources that gave nothing).
    pub(crate) fn retry_after(&mut self, task: &TaskId, index: u8, delay: Duration) {
        if let Some(t) = self.tasks.get_mut(task) {
            if !t.have.contains(&index) {
                let delay = t.routes.entry(index).or_default().failed(delay);
                t.asked.insert(index, Instant::now() + delay);
            }
        }
    }

    /// The request for segment `index` of `task` failed (timeout, not connected): its source
    /// is passed over for the task's other segments for a while, and the segment is asked of
    /// the next source after `delay` (as [`Self::retry_after`]).
    pub(crate) fn unreachable(&mut self, task: &TaskId, index: u8, delay: Duration) {
        if let Some(t) = self.tasks.get_mut(task) {
            if let Some(source) = t.routes.get(&index).and_then(|r| r.in_flight) {
                t.unreachable.insert(source, Instant::now() + UNREACHABLE_FOR);
            }
        }
        self.retry_after(task, index, delay);
    }

    /// Our copy of segment `index` of `task`, to serve to another seat: only a segment stored
    /// and checked again now against `hashes` (a copy damaged on disk is deleted and fetched
    /// again); none once the task ended. Who may have it is the caller's rule
    /// ([`may_serve_segment`], [`revealed`]).
    pub(crate) fn held(&mut self, task: &TaskId, index: u8, hashes: &[Hash]) -> Option<Vec<u8>> {
        if self.ended(task) || !self.tasks.get(task)?.have.contains(&index) {
            return None;
        }
        let path = self.path(task, index);
        let bytes = std::fs::read(&path).ok().filter(|b| segment_ok(hashes, index, b));
        if bytes.is_none() {
            tracing::warn!(target: "node", path = %path.display(), "a stored segment is unreadable or does not match its hash: deleted");
            let _ = std::fs::remove_file(&path);
            if let Some(t) = self.tasks.get_mut(task) {
                t.have.remove(&index);
                t.asked.remove(&index);
            }
        }
        bytes
    }

    /// Stores segment `index` of `task` (already checked against its hash); `Ok(false)` when
    /// the task ended (the answer came late and is dropped).
    pub(crate) fn store(
        &mut self,
        task: &TaskId,
        index: u8,
        bytes: &[u8],
    ) -> Result<bool, std::io::Error> {
        if self.ended(task) {
            return Ok(false);
        }
        let dir = self.dir(task);
        std::fs::create_dir_all(&dir)?;
        let path = self.path(task, index);
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)?;
        let t = self.tasks.entry(*task).or_default();
        t.have.insert(index);
        t.routes.remove(&index);
        Ok(true)
    }

    /// Whether every segment of `indices` is stored.
    pub(crate) fn has_all(&self, task: &TaskId, indices: &[usize]) -> bool {
        let Some(t) = self.tasks.get(task) else { return indices.is_empty() };
        indices.iter().all(|&i| u8::try_from(i).is_ok_and(|i| t.have.contains(&i)))
    }

    /// The stored segments of `indices`, each checked again against its hash. A segment that
    /// cannot be read or no longer matches is deleted and will be fetched again: the error
    /// names it.
    pub(crate) fn read(
        &mut self,
        task: &TaskId,
        indices: &[usize],
        hashes: &[Hash],
    ) -> Result<BTreeMap<u8, Vec<u8>>, String> {
        let files = self.files(task, indices)?;
        read_checked(files, hashes).map_err(|d| {
            self.damaged(task, d.index);
            d.to_string()
        })
    }

    /// Where the segments `indices` of `task` are stored, for [`read_checked`] off the loop.
    pub(crate) fn files(
        &self,
        task: &TaskId,
        indices: &[usize],
    ) -> Result<Vec<(u8, PathBuf)>, String> {
        indices
            .iter()
            .map(|&i| {
                let index =
                    u8::try_from(i).map_err(|_| format!("segment index {i} out of range"))?;
                Ok((index, self.path(task, index)))
            })
            .collect()
    }

    /// Segment `index` of `task` could not be read or no longer matches its hash: deleted,
    /// and fetched again.
    pub(crate) fn damaged(&mut self, task: &TaskId, index: u8) {
        let _ = std::fs::remove_file(self.path(task, index));
        if let Some(t) = self.tasks.get_mut(task) {
            t.have.remove(&index);
            t.asked.remove(&index);
        }
    }

    /// The task ended: its segments are deleted and nothing more is asked or stored for it.
    /// True the first time (in this run).
    pub(crate) fn end(&mut self, task: &TaskId) -> bool {
        if !self.ended.insert(*task) {
            return false;
        }
        self.tasks.remove(task);
        let dir = self.dir(task);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(target: "node", dir = %dir.display(), error = %e, "cannot delete a task's segments");
            }
        }
        true
    }

    /// Where the segments of `task` are kept.
    #[cfg(test)]
    pub(crate) fn task_dir(&self, task: &TaskId) -> PathBuf {
        self.dir(task)
    }
}

/// A stored segment that could not be read or no longer matches its hash.
#[derive(Debug)]
pub(crate) struct Damaged {
    pub(crate) index: u8,
    path: PathBuf,
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: unreadable or does not match its hash (fetched again)", self.path.display())
    }
}

/// Reads the segment `files` ([`SegmentStore::files`]), each checked again against its hash
/// (any thread: it touches no store state; a damaged one goes to [`SegmentStore::damaged`]).
pub(crate) fn read_checked(
    files: Vec<(u8, PathBuf)>,
    hashes: &[Hash],
) -> Result<BTreeMap<u8, Vec<u8>>, Damaged> {
    let mut out = BTreeMap::new();
    for (index, path) in files {
        match std::fs::read(&path).ok().filter(|b| segment_ok(hashes, index, b)) {
            Some(b) => {
                out.insert(index, b);
            }
            None => return Err(Damaged { index, path }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten segments of 4 samples of width 2, and their hashes.
    fn segments() -> (Vec<Vec<u8>>, Vec<Hash>) {
        let segs: Vec<Vec<u8>> = (0..10u32)
            .map(|s| {
                let features: Vec<f32> = (0..8).map(|j| (s * 8 + j) as f32).collect();
                let labels: Vec<u32> = (0..4).map(|j| (s + j) % 3).collect();
                pouw_ml::Batch::new(features, labels, 2).unwrap().canonical_bytes()
            })
            .collect();
        let hashes =
            segs.iter().map(|b| Hash(pouw_ml::segment_hash_of_bytes(b).unwrap().0)).collect();
        (segs, hashes)
    }

    #[test]
    fn each_segment_is_asked_once_kept_on_disk_and_dropped_when_the_task_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (segs, hashes) = segments();
        let task = Hash::digest(b"task");
        let mut store = SegmentStore::new(dir.path().join("segments"));
        let train = [0usize, 1, 2];
        let in_flight = Duration::from_secs(60);
        assert_eq!(store.due(&task, &train, &hashes, in_flight), [0, 1, 2]);
        // In flight: not asked again, whichever role asks.
        assert!(store.due(&task, &train, &hashes, in_flight).is_empty());
        // A request that got no segment is asked again after the delay given.
        store.retry_after(&task, 1, Duration::ZERO);
        assert_eq!(store.due(&task, &train, &hashes, in_flight), [1]);
        for i in train {
            assert!(segment_ok(&hashes, i as u8, &segs[i]));
            assert!(store.store(&task, i as u8, &segs[i]).unwrap());
        }
        assert!(store.has_all(&task, &train));
        assert!(!store.has_all(&task, &[3]));
        assert!(store.due(&task, &train, &hashes, Duration::ZERO).is_empty());
        let read = store.read(&task, &train, &hashes).unwrap();
        assert_eq!(read.get(&1), Some(&segs[1]));
        // A copy damaged on disk is deleted on read and asked for again.
        std::fs::write(store.task_dir(&task).join("segment-2.bin"), b"damaged").unwrap();
        let err = store.read(&task, &train, &hashes).unwrap_err();
        assert!(err.contains("segment-2.bin"), "{err}");
        assert!(!store.has_all(&task, &train));
        assert_eq!(store.due(&task, &train, &hashes, Duration::ZERO), [2]);
        // The task ends: the directory goes, late answers are dropped, nothing is asked.
        assert!(store.end(&task));
        assert!(!store.end(&task));
        assert!(!store.task_dir(&task).exists());
        assert!(!store.store(&task, 2, &segs[2]).unwrap());
        assert!(store.due(&task, &train, &hashes, Duration::ZERO).is_empty());
        assert!(!store.task_dir(&task).exists());
    }

    #[test]
    fn a_copy_left_by_an_earlier_run_is_used_once_it_checks() {
        let dir = tempfile::tempdir().unwrap();
        let (segs, hashes) = segments();
        let task = Hash::digest(b"task");
        let root = dir.path().join("segments");
        let mut first = SegmentStore::new(root.clone());
        assert!(first.store(&task, 4, &segs[4]).unwrap());
        // A wrong segment under index 5's name does not count.
        std::fs::write(first.task_dir(&task).join("segment-5.bin"), &segs[6]).unwrap();
        let mut second = SegmentStore::new(root);
        assert_eq!(second.due(&task, &[4, 5], &hashes, Duration::ZERO), [5]);
        assert!(second.has_all(&task, &[4]));
        assert!(!segment_ok(&hashes, 5, &segs[6]));
        assert!(!segment_ok(&hashes, 200, &segs[4]));
    }

    #[test]
    fn a_segment_is_asked_of_the_next_source_after_each_failure_with_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let (segs, hashes) = segments();
        let task = Hash::digest(b"task");
        let mut store = SegmentStore::new(dir.path().join("segments"));
        let key = |i: usize| pouw_primitives::ChainSpec::devnet_key(i).public();
        let (client, a, b) = (key(0), key(1), key(2));
        let sources = [client, a, b];
        let ask = |store: &mut SegmentStore, index: u8| {
            assert_eq!(store.due(&task, &[usize::from(index)], &hashes, Duration::ZERO), [index]);
            store.source(&task, index, &sources).unwrap()
        };
        // The client first; refused: the next seat, then the one after.
        assert_eq!(ask(&mut store, 0), client);
        store.retry_after(&task, 0, Duration::ZERO);
        assert_eq!(ask(&mut store, 0), a);
        store.retry_after(&task, 0, Duration::ZERO);
        assert_eq!(ask(&mut store, 0), b);
        // A full round gave nothing: the next try waits twice the delay.
        store.retry_after(&task, 0, Duration::from_secs(60));
        assert!(store.due(&task, &[0], &hashes, Duration::ZERO).is_empty());
        // The client does not answer for segment 1: the task's other segments pass it over.
        assert_eq!(ask(&mut store, 1), client);
        store.unreachable(&task, 1, Duration::ZERO);
        assert_eq!(ask(&mut store, 2), a, "the client is passed over");
        assert_eq!(ask(&mut store, 1), a);
        // A request never answered counts as one that gave nothing.
        assert_eq!(ask(&mut store, 1), b);
        // All unreachable: asked in turn all the same.
        assert_eq!(store.source(&task, 3, &[client]), Some(client));
        assert_eq!(store.source(&task, 3, &[]), None);
        // Stored: the route is forgotten; served to another seat while held.
        assert!(store.store(&task, 1, &segs[1]).unwrap());
        assert_eq!(store.held(&task, 1, &hashes), Some(segs[1].clone()));
        assert_eq!(store.held(&task, 2, &hashes), None, "not held");
        std::fs::write(store.task_dir(&task).join("segment-1.bin"), b"damaged").unwrap();
        assert_eq!(store.held(&task, 1, &hashes), None, "a damaged copy is not served");
        assert!(!store.has_all(&task, &[1]));
        assert!(store.store(&task, 1, &segs[1]).unwrap());
        assert!(store.end(&task));
        assert_eq!(store.held(&task, 1, &hashes), None, "nothing once the task ended");
    }

    #[test]
    fn start_weights_are_one_more_blob_checked_against_the_hash_of_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (segs, _) = segments();
        let mut r = seated(TaskStatus::Training);
        let task = Hash::digest(b"task");
        let weights = b"the client's safetensors bytes".to_vec();
        // A task without start weights has its segment hashes only: index 10 is nothing.
        assert_eq!(blob_hashes(&r.definition), r.definition.dataset.segment_hashes);
        assert!(!segment_ok(&blob_hashes(&r.definition), START_WEIGHTS_INDEX, &weights));
        r.definition.model.init = pouw_primitives::Initializer::Weights(Hash::digest(&weights));
        let hashes = blob_hashes(&r.definition);
        assert_eq!(hashes.len(), DATASET_SEGMENTS + 1);
        assert!(segment_ok(&hashes, START_WEIGHTS_INDEX, &weights));
        let mut other = weights.clone();
        other[0] ^= 1;
        assert!(!segment_ok(&hashes, START_WEIGHTS_INDEX, &other), "hash mismatch refused");
        assert!(!segment_ok(&hashes, START_WEIGHTS_INDEX, &segs[0]));
        // Asked, stored, held and served like a training segment, to the miners and supervisors.
        let mut store = SegmentStore::new(dir.path().join("segments"));
        let wanted = [usize::from(START_WEIGHTS_INDEX)];
        assert_eq!(store.due(&task, &wanted, &hashes, Duration::ZERO), [START_WEIGHTS_INDEX]);
        assert!(store.store(&task, START_WEIGHTS_INDEX, &weights).unwrap());
        assert!(store.has_all(&task, &wanted));
        assert_eq!(store.held(&task, START_WEIGHTS_INDEX, &hashes), Some(weights.clone()));
        std::fs::write(store.task_dir(&task).join("segment-10.bin"), &other).unwrap();
        assert!(store.read(&task, &wanted, &hashes).is_err(), "a damaged copy is not read");
        assert!(!store.has_all(&task, &wanted));
        assert!(revealed(&r, START_WEIGHTS_INDEX, 10));
        let served: Vec<bool> =
            (0..6).map(|i| may_serve_segment(&r, START_WEIGHTS_INDEX, &peer(i))).collect();
        assert_eq!(served, [false, true, true, false, false, false]);
    }

    #[test]
    fn segments_are_revealed_by_phase_whoever_serves_them() {
        let r = seated(TaskStatus::Training);
        let split = task_split_of(&r.definition, &r.seed);
        let train = u8::try_from(split.train[0]).unwrap();
        let test = u8::try_from(split.test[0]).unwrap();
        assert!(revealed(&r, train, 10) && !revealed(&r, test, 10));
        let f = seated(TaskStatus::Finalising { since: 50 });
        assert!(revealed(&f, train, 60) && revealed(&f, test, 60));
        let done = seated(TaskStatus::Completed { at: 60, verdict: Hash::ZERO });
        assert!(revealed(&done, test, 99) && !revealed(&done, test, 100));
        assert!(!revealed(&seated(TaskStatus::Registered), train, 1));
    }

    /// A task (the devnet's filler definition) whose seats are devnet keys: client 0, miner 1, supervisor 2,
    /// evaluator 3, verifier 4.
    fn seated(status: TaskStatus) -> TaskRecord {
        use pouw_consensus::{Participants, Seat};
        use pouw_primitives::ChainSpec;
        let seat =
            |i: usize| vec![Seat { worker: ChainSpec::devnet_key(i).public(), ticket: Hash::ZERO }];
        let participants = Participants {
            miners: seat(1),
            supervisors: seat(2),
            evaluators: seat(3),
            verifiers: seat(4),
        };
        let definition = pouw_consensus::pouw::filler_task(&ChainSpec::devnet(), &Hash::ZERO).1;
        let mut record = super::super::tests::task_record(definition, participants);
        record.status = status;
        record
    }

    fn peer(i: usize) -> PeerId {
        peer_id_of(&pouw_primitives::ChainSpec::devnet_key(i).public()).unwrap()
    }

    #[test]
    fn segments_go_to_the_seats_that_need_them_and_to_nobody_else() {
        let r = seated(TaskStatus::Training);
        let split = task_split_of(&r.definition, &r.seed);
        let train = u8::try_from(split.train[0]).unwrap();
        let test = u8::try_from(split.test[0]).unwrap();
        // Training segments: the miner and the supervisor.
        let served: Vec<bool> = (0..6).map(|i| may_serve_segment(&r, train, &peer(i))).collect();
        assert_eq!(served, [false, true, true, false, false, false]);
        // Test segments: the evaluator only.
        let served: Vec<bool> = (0..6).map(|i| may_serve_segment(&r, test, &peer(i))).collect();
        assert_eq!(served, [false, false, false, true, false, false]);
    }

    #[test]
    fn models_go_to_the_evaluators_and_to_the_client_only_after_the_verdict() {
        let r = seated(TaskStatus::Finalising { since: 50 });
        let served: Vec<bool> = (0..6).map(|i| may_serve_model(&r, &peer(i))).collect();
        assert_eq!(served, [false, false, false, true, false, false]);
        let done = seated(TaskStatus::Completed { at: 60, verdict: Hash::ZERO });
        let served: Vec<bool> = (0..6).map(|i| may_serve_model(&done, &peer(i))).collect();
        assert_eq!(served, [true, false, false, true, false, false]);
    }
}
