//! The dataset split: which segments of a task train and which test, from its selection seed.

use super::*;

/// Which of the task's [`DATASET_SEGMENTS`] segments are for training, validation and test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskSplit {
    /// Segment indices (positions in the client's segment list), shuffled.
    pub order: Vec<usize>,
    /// Training segments: the front of `order`.
    pub train: Vec<usize>,
    /// Validation segments: just before the test segments.
    pub validation: Vec<usize>,
    /// Test segments: the back of `order` (the client keeps them until finalisation).
    pub test: Vec<usize>,
}

impl TaskSplit {
    /// The same split as the engine's [`pouw_ml::Split`] (for `pouw_ml::BatchSchedule`).
    pub fn to_ml(&self) -> pouw_ml::Split {
        pouw_ml::Split {
            order: self.order.clone(),
            train: self.train.clone(),
            validation: self.validation.clone(),
            test: self.test.clone(),
        }
    }
}

/// The engine's key-derivation context of the segment shuffle (`pouw_ml::Split`).
pub const SPLIT_CONTEXT: &str = "pouw-ml v1 segment split";

/// Shuffles the segment indices `0..10` with `seed`, exactly as the engine's
/// `pouw_ml::Split::new` does (Fisher-Yates from the back with the integer-only, unbiased
/// `pouw_ml::Rng::derived(SPLIT_CONTEXT, seed, 0)`, a BLAKE3-keyed xoshiro256**), so a local
/// dry run with `pouw train --seed <seed>` sees the same segments; then cuts the result with
/// integer counts: the last `test_segments` are the test set, the `validation_segments`
/// before them the validation set, the rest the training set.
pub fn split_segments(seed: &Hash, test_segments: u64, validation_segments: u64) -> TaskSplit {
    let mut order: Vec<usize> = (0..DATASET_SEGMENTS).collect();
    pouw_ml::Rng::derived(SPLIT_CONTEXT, seed.as_bytes(), 0).shuffle(&mut order);
    let n = DATASET_SEGMENTS;
    let test = usize::try_from(test_segments).unwrap_or(n).min(n);
    let validation = usize::try_from(validation_segments).unwrap_or(n).min(n.saturating_sub(test));
    let train_end = n.saturating_sub(test).saturating_sub(validation);
    TaskSplit {
        train: order.iter().take(train_end).copied().collect(),
        validation: order.iter().skip(train_end).take(validation).copied().collect(),
        test: order.iter().skip(train_end.saturating_add(validation)).copied().collect(),
        order,
    }
}

/// The split of a task fixed by the hash of the block holding its PayForTask (the seed), with
/// the default test fraction (300 per-mille = 3 test segments) and no validation segment:
/// `(training segment indices, test segment indices)`.
pub fn task_split(seed: Hash) -> (Vec<usize>, Vec<usize>) {
    let s = split_segments(&seed, 3, 0);
    (s.train, s.test)
}

/// The split of a task with its own `test_permille` and `validation_permille`
/// ([`pouw_primitives::DatasetDef::test_segments`]).
pub fn task_split_of(task: &TaskDefinition, seed: &Hash) -> TaskSplit {
    split_segments(seed, task.dataset.test_segments(), task.dataset.validation_segments())
}
