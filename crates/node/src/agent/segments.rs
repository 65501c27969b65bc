//! A worker's copy of the dataset segments of the client tasks it takes part in.
//!
//! One copy per node and task, whatever the roles that need it (a miner's and a supervisor's
//! training segments, an evaluator's test segments): each segment is fetched from the client
//! once, checked against the task's hash, kept on disk under `<datadir>/segments/<task>/`
//! while the task runs and checked again whenever it is read back. When the task ends its
//! directory is deleted and nothing more is asked or stored for it.

use pouw_consensus::{task_split_of, TaskRecord, TaskStatus};
use pouw_net::{peer_id_of, PeerId};
use pouw_primitives::{Address, Hash, TaskId};
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

/// Whether `bytes` are segment `index` of a task whose segment hashes are `hashes`.
pub(crate) fn segment_ok(hashes: &[Hash], index: u8, bytes: &[u8]) -> bool {
    let Some(want) = hashes.get(usize::from(index)) else { return false };
    pouw_ml::segment_hash_of_bytes(bytes).is_some_and(|h| h.0 == want.0)
}

#[derive(Debug, Default)]
struct TaskSegments {
    /// Segments on disk, checked when stored.
    have: BTreeSet<u8>,
    /// Missing segments asked for: not asked again before this instant (a request in flight
    /// is answered or fails within the network's request timeout).
    asked: HashMap<u8, Instant>,
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

    /// The request for segment `index` of `task` got no segment: it may be asked again after
    /// `delay`.
    pub(crate) fn retry_after(&mut self, task: &TaskId, index: u8, delay: Duration) {
        if let Some(t) = self.tasks.get_mut(task) {
            if !t.have.contains(&index) {
                t.asked.insert(index, Instant::now() + delay);
            }
        }
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
        self.tasks.entry(*task).or_default().have.insert(index);
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
        let mut out = BTreeMap::new();
        for &i in indices {
            let index = u8::try_from(i).map_err(|_| format!("segment index {i} out of range"))?;
            let path = self.path(task, index);
            let bytes = std::fs::read(&path).ok().filter(|b| segment_ok(hashes, index, b));
            match bytes {
                Some(b) => {
                    out.insert(index, b);
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                    if let Some(t) = self.tasks.get_mut(task) {
                        t.have.remove(&index);
                        t.asked.remove(&index);
                    }
                    return Err(format!(
                        "{}: unreadable or does not match its hash (fetched again)",
                        path.display()
                    ));
                }
            }
        }
        Ok(out)
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

    /// A task (the devnet's filler definition) whose seats are devnet keys: client 0, miner 1, supervisor 2,
    /// evaluator 3, verifier 4.
    fn seated(status: TaskStatus) -> TaskRecord {
        use pouw_consensus::{Participants, Seat};
        use pouw_primitives::{Amount, ChainSpec};
        let seat =
            |i: usize| vec![Seat { worker: ChainSpec::devnet_key(i).public(), ticket: Hash::ZERO }];
        TaskRecord {
            client: ChainSpec::devnet_key(0).public(),
            definition: pouw_consensus::pouw::filler_task(&ChainSpec::devnet(), &Hash::ZERO).1,
            fee: Amount(1),
            escrow: Amount(1),
            bond: Amount::ZERO,
            created_at: 1,
            created_in: Hash::ZERO,
            seed: Hash::digest(b"seed"),
            training_deadline: 50,
            finalisation_deadline: 100,
            participants: Participants {
                miners: seat(1),
                supervisors: seat(2),
                evaluators: seat(3),
                verifiers: seat(4),
            },
            models: vec![],
            history_committers: vec![],
            accusations: vec![],
            convictions: vec![],
            status,
            settlement: None,
        }
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
