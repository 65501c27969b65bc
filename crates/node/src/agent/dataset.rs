//! A task's training dataset at a worker: assembled once from the training segments (on a
//! thread of its own, off the event loop), shared by the miner, the validator and the
//! screening, and dropped with the segments when the task ends.

use super::*;
use pouw_ml::pixel_byte;

/// Why a task's dataset could not be assembled.
pub(super) enum Assembly {
    /// A stored segment could not be read or no longer matches its hash: fetched again.
    Damaged(segments::Damaged),
    /// The segments do not make a dataset of the task's shape, or the assembly faulted.
    Failed(String),
}

impl Node {
    /// Worker: the training dataset of task `id` (the training segments of `record`'s split),
    /// assembled once from the segments (fetched from the client while missing, for `use_`)
    /// and shared by the miner, the validator and the screening; `None` while segments are
    /// missing, and once the task ended.
    pub(super) fn task_dataset(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
        use_: SegmentUse,
    ) -> Option<Arc<Dataset>> {
        if let Some((seed, d)) = self.agent.datasets.get(&id) {
            if *seed == record.seed {
                return Some(d.clone());
            }
        }
        if self.agent.segments.ended(&id) || self.agent.bad_datasets.contains(&id) {
            return None;
        }
        let split = task_split_of(&record.definition, &record.seed);
        let wanted = segments::with_start_weights(&record.definition, &split.train);
        self.ask_segments(id, record, &wanted, use_);
        if !self.agent.segments.has_all(&id, &split.train) {
            return None;
        }
        // Assembled on a thread of its own (decoding and checking every sample takes a few
        // hundred milliseconds the event loop must not wait): `None` until it is done.
        if let Some((seed, rx)) = self.agent.assembling.get(&id) {
            if *seed == record.seed {
                let result = rx.try_recv();
                let assembled = match result {
                    Err(flume::TryRecvError::Empty) => return None,
                    Err(flume::TryRecvError::Disconnected) => {
                        Err(Assembly::Failed("the assembly stopped".into()))
                    }
                    Ok(r) => r,
                };
                self.agent.assembling.remove(&id);
                return match assembled {
                    Err(Assembly::Damaged(d)) => {
                        tracing::warn!(target: "node", task = %id.short(), error = %d, "a training segment is damaged");
                        self.agent.segments.damaged(&id, d.index);
                        None
                    }
                    Ok(d) => {
                        let d = Arc::new(d);
                        self.agent.datasets.insert(id, (record.seed, d.clone()));
                        Some(d)
                    }
                    Err(Assembly::Failed(e)) => {
                        tracing::error!(target: "node", task = %id.short(), error = %e, "cannot assemble the task dataset");
                        self.agent.bad_datasets.insert(id);
                        None
                    }
                };
            }
        }
        // Read and checked against their hashes again on the thread too (tens of megabytes).
        let files = match self.agent.segments.files(&id, &split.train) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(target: "node", task = %id.short(), error = %e, "cannot read the training segments");
                return None;
            }
        };
        let (tx, rx) = flume::bounded(1);
        let owned = record.clone();
        let spawned = std::thread::Builder::new().name("pouw-dataset".into()).spawn(move || {
            let assembled = guarded(|| {
                let hashes = &owned.definition.dataset.segment_hashes;
                let segments = segments::read_checked(files, hashes).map_err(Assembly::Damaged)?;
                dataset_from_segments(&owned, segments).map_err(Assembly::Failed)
            })
            .map_err(Assembly::Failed)
            .and_then(|r| r);
            let _ = tx.send(assembled);
        });
        match spawned {
            Ok(_) => {
                self.agent.assembling.insert(id, (record.seed, rx));
            }
            Err(e) => {
                tracing::error!(target: "node", task = %id.short(), error = %e, "cannot start assembling the task dataset")
            }
        }
        None
    }

    /// Worker: task `id` ended: our copy of its segments is deleted and its dataset dropped
    /// (a screening still draining holds its own reference); nothing of it is fetched again.
    pub(super) fn end_task_data(&mut self, id: &TaskId) {
        self.agent.own_states.end(&self.net, id);
        if self.agent.segments.end(id) {
            self.agent.datasets.remove(id);
            self.agent.bad_datasets.remove(id);
            self.agent.assembling.remove(id);
            super::memory::give_freed_pages_back_soon();
        }
    }

    /// Answers to the agent's requests.
    pub(crate) fn agent_on_segment(
        &mut self,
        task: TaskId,
        index: u8,
        bytes: Option<Vec<u8>>,
        use_: SegmentUse,
    ) {
        let Some(bytes) = bytes else {
            // Not revealed (yet): asked again later, while the task runs.
            self.agent.segments.retry_after(&task, index, RETRY);
            return;
        };
        let record = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            task_record(chain.state(), &task)
        };
        let Some(record) = record else { return };
        if !segments::segment_ok(&segments::blob_hashes(&record.definition), index, &bytes) {
            tracing::warn!(target: "node", task = %task.short(), index, "segment does not match its hash: dropped");
            self.agent.segments.retry_after(&task, index, RETRY);
            return;
        }
        match self.agent.segments.store(&task, index, &bytes) {
            Ok(true) => {
                tracing::debug!(target: "node", task = %task.short(), index, ?use_, "segment stored")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(target: "node", task = %task.short(), index, error = %e, "cannot store a segment");
                self.agent.segments.retry_after(&task, index, RETRY);
            }
        }
    }

    /// A segment request that failed (timeout, connection): it may be asked again soon, of
    /// the next source.
    pub(crate) fn agent_segment_failed(&mut self, task: TaskId, index: u8) {
        self.agent.segments.unreachable(&task, index, RETRY);
    }
}

/// A dataset with the given segments filled in (the others zero; they are never read).
///
/// Nothing is allocated from the task definition's sample count before the segments are
/// checked: every segment must hold `samples / 10` samples of the model's input width (its
/// labels below the task's classes), so the dataset is at most ten times the size of the
/// data actually received, and every size is computed with checked arithmetic.
///
/// The segments are taken by value: each segment's bytes go as soon as they are decoded, and
/// each decoded segment as soon as it is copied in, so no more than the dataset and the
/// decoded segments not yet copied are held at once.
pub(super) fn dataset_from_segments(
    record: &TaskRecord,
    segments: BTreeMap<u8, Vec<u8>>,
) -> Result<Dataset, String> {
    let shape = record.definition.model.input_shape.clone();
    let classes = record.definition.model.classes;
    let width = shape
        .iter()
        .try_fold(1usize, |w, &d| w.checked_mul(d as usize))
        .ok_or("the input shape overflows")?;
    let seg_len =
        usize::try_from(record.definition.dataset.samples).unwrap_or(usize::MAX) / DATASET_SEGMENTS;
    let mut batches = Vec::with_capacity(segments.len());
    for (i, bytes) in segments {
        let batch = Batch::from_canonical_bytes(&bytes).map_err(|e| format!("segment {i}: {e}"))?;
        drop(bytes);
        if batch.len() != seg_len || batch.width() != width {
            return Err(format!(
                "segment {i} has {} samples of width {}, the task says {seg_len} of width {width}",
                batch.len(),
                batch.width()
            ));
        }
        batch.validate(width, classes).map_err(|e| format!("segment {i}: {e}"))?;
        if usize::from(i) >= DATASET_SEGMENTS {
            return Err(format!("segment {i} is not one of the {DATASET_SEGMENTS}"));
        }
        batches.push((usize::from(i), batch));
    }
    let total = seg_len.checked_mul(DATASET_SEGMENTS).ok_or("the dataset size overflows")?;
    let values = total.checked_mul(width).ok_or("the dataset size overflows")?;
    let mut labels = vec![0u32; total];
    let source = PathBuf::from("network segments");
    // Image data (every value a pixel quotient, as an IDX file loads) is held as its bytes, a
    // quarter of the memory, built straight from the segments.
    let pixels = batches.iter().all(|(_, b)| b.features().iter().all(|&v| pixel_byte(v).is_some()));
    if pixels {
        let mut features = vec![0u8; values];
        for (i, batch) in batches {
            // In range: i < DATASET_SEGMENTS and every product is bounded by `values` above.
            let start = i * seg_len;
            let rows = features[start * width..(start + seg_len) * width].iter_mut();
            for (out, &v) in rows.zip(batch.features()) {
                *out = pixel_byte(v).unwrap_or_default();
            }
            labels[start..start + seg_len].copy_from_slice(batch.labels());
        }
        return Dataset::from_pixels(source, features, labels, shape, classes)
            .map_err(|e| e.to_string());
    }
    let mut features = vec![0.0f32; values];
    for (i, batch) in batches {
        // In range: as above.
        let start = i * seg_len;
        features[start * width..(start + seg_len) * width].copy_from_slice(batch.features());
        labels[start..start + seg_len].copy_from_slice(batch.labels());
    }
    Dataset::from_parts(source, features, labels, shape, classes).map_err(|e| e.to_string())
}
