//! The train/validation/test split of the segments and the per-epoch batch order.

use crate::rng::Rng;

/// Key-derivation context of the segment shuffle.
const SPLIT_CONTEXT: &str = "pouw-ml v1 segment split";
/// Key-derivation context of the batch order (stream = epoch).
const BATCH_CONTEXT: &str = "pouw-ml v1 batch order";

/// A contiguous run of samples, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Position in the unshuffled segment list.
    pub index: usize,
    /// First sample.
    pub start: usize,
    /// Number of samples.
    pub len: usize,
}

/// Why a split cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// Fractions outside `[0, 1]` or leaving no training segment.
    #[error("test fraction {test} and validation fraction {validation} leave no training segment out of {segments}")]
    Fractions {
        /// Test fraction.
        test: f64,
        /// Validation fraction.
        validation: f64,
        /// Segment count.
        segments: usize,
    },
}

/// Which segments are for training, validation and test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Segment indices, in shuffled order.
    pub order: Vec<usize>,
    /// Training segments (the front of `order`).
    pub train: Vec<usize>,
    /// Validation segments.
    pub validation: Vec<usize>,
    /// Test segments (the back of `order`).
    pub test: Vec<usize>,
}

impl Split {
    /// Shuffles `0..segments` with `Rng::derived("pouw-ml v1 segment split", seed, 0)`; the last
    /// `round(test_fraction · segments)` are the test set, the `round(validation_fraction ·
    /// segments)` before them the validation set (rounding half away from zero, in `f64`).
    pub fn new(
        seed: &[u8; 32],
        segments: usize,
        test_fraction: f64,
        validation_fraction: f64,
    ) -> Result<Self, SplitError> {
        let bad = || SplitError::Fractions {
            test: test_fraction,
            validation: validation_fraction,
            segments,
        };
        let ok = |f: f64| (0.0..=1.0).contains(&f);
        if !ok(test_fraction) || !ok(validation_fraction) {
            return Err(bad());
        }
        let test = (test_fraction * segments as f64).round() as usize;
        let validation = (validation_fraction * segments as f64).round() as usize;
        if test + validation >= segments {
            return Err(bad());
        }
        let mut order: Vec<usize> = (0..segments).collect();
        Rng::derived(SPLIT_CONTEXT, seed, 0).shuffle(&mut order);
        let train_end = segments - test - validation;
        Ok(Self {
            train: order[..train_end].to_vec(),
            validation: order[train_end..segments - test].to_vec(),
            test: order[segments - test..].to_vec(),
            order,
        })
    }
}

/// The batch order of every epoch.
#[derive(Debug, Clone)]
pub struct BatchSchedule {
    samples: Vec<u32>,
    batch_size: usize,
    seed: [u8; 32],
}

impl BatchSchedule {
    /// Training samples = the samples of `split.train` segments (segments in split order,
    /// samples in file order).
    pub fn new(segments: &[Segment], split: &Split, batch_size: usize, seed: [u8; 32]) -> Self {
        let samples = split
            .train
            .iter()
            .flat_map(|&s| {
                let seg = segments[s];
                (seg.start as u32)..((seg.start + seg.len) as u32)
            })
            .collect();
        Self { samples, batch_size: batch_size.max(1), seed }
    }

    /// Training samples.
    pub fn train_samples(&self) -> &[u32] {
        &self.samples
    }

    /// Full batches per epoch: `floor(train samples / batch_size)`.
    pub fn batches_per_epoch(&self) -> usize {
        self.samples.len() / self.batch_size
    }

    /// The sample order of `epoch`: the training samples shuffled with
    /// `Rng::derived("pouw-ml v1 batch order", seed, epoch)`. Batch `b` is
    /// `order[b·batch_size .. (b+1)·batch_size]` ([`BatchSchedule::batch`]).
    pub fn epoch_order(&self, epoch: u32) -> Vec<u32> {
        let mut order = self.samples.clone();
        Rng::derived(BATCH_CONTEXT, &self.seed, u64::from(epoch)).shuffle(&mut order);
        order
    }

    /// Batch `b` of an epoch order.
    pub fn batch<'a>(&self, order: &'a [u32], b: usize) -> &'a [u32] {
        &order[b * self.batch_size..(b + 1) * self.batch_size]
    }

    /// The miner that trains batch `b`: `b mod miners`.
    pub fn miner_of(b: usize, miners: usize) -> usize {
        b % miners.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_split_is_7_train_3_test() {
        let s = Split::new(&[0; 32], 10, 0.3, 0.0).unwrap();
        assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (7, 0, 3));
        let mut all = s.order.clone();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_ne!(Split::new(&[1; 32], 10, 0.3, 0.0).unwrap().order, s.order);
        assert!(Split::new(&[0; 32], 10, 0.7, 0.3).is_err());
    }

    #[test]
    fn epochs_differ_and_cover_training_samples() {
        let segs: Vec<Segment> =
            (0..10).map(|i| Segment { index: i, start: i * 10, len: 10 }).collect();
        let split = Split::new(&[7; 32], 10, 0.3, 0.0).unwrap();
        let sched = BatchSchedule::new(&segs, &split, 8, [7; 32]);
        assert_eq!(sched.batches_per_epoch(), 70 / 8);
        let (a, b) = (sched.epoch_order(0), sched.epoch_order(1));
        assert_ne!(a, b);
        let mut s = a.clone();
        s.sort_unstable();
        let mut t = sched.train_samples().to_vec();
        t.sort_unstable();
        assert_eq!(s, t);
        assert!(a.iter().all(|&i| !split.test.contains(&(i as usize / 10))));
    }
}
