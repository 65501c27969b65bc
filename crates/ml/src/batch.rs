//! A mini-batch: the samples one iteration trains on, with its canonical bytes and hash.

use std::sync::OnceLock;

use crate::hash::{self, Digest};

/// A mini-batch: `samples × features` inputs (row-major) and one label per sample.
///
/// Immutable once built, so its hash is computed once, on first use, and kept: the iteration,
/// a supervisor's schedule check and a dropout seed share one pass over the batch.
#[derive(Debug, Clone)]
pub struct Batch {
    features: Vec<f32>,
    labels: Vec<u32>,
    width: usize,
    hash: OnceLock<Digest>,
}

impl PartialEq for Batch {
    /// Equal features (as `f32` values), labels and width (the hash cache does not count).
    fn eq(&self, other: &Self) -> bool {
        self.width == other.width && self.labels == other.labels && self.features == other.features
    }
}

/// Why a batch does not fit a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Feature count is not `samples × width`, or the batch is empty.
    #[error("batch shape: {features} feature values for {samples} samples of width {width}")]
    Shape {
        /// Feature values given.
        features: usize,
        /// Labels given.
        samples: usize,
        /// Expected width.
        width: usize,
    },
    /// A label `>= classes`.
    #[error("batch sample {index}: label {label} out of range (classes = {classes})")]
    Label {
        /// Sample index.
        index: usize,
        /// The label.
        label: u32,
        /// Number of classes.
        classes: u32,
    },
    /// A NaN or infinite feature.
    #[error("batch feature {index} is not finite")]
    NonFinite {
        /// Flat index of the value.
        index: usize,
    },
}

impl Batch {
    /// A batch of `labels.len()` samples of `width` features each (at least one sample; every
    /// feature finite).
    pub fn new(features: Vec<f32>, labels: Vec<u32>, width: usize) -> Result<Self, BatchError> {
        if labels.is_empty()
            || width == 0
            || labels.len() > u32::MAX as usize
            || features.len() != labels.len().saturating_mul(width)
        {
            return Err(BatchError::Shape {
                features: features.len(),
                samples: labels.len(),
                width,
            });
        }
        if let Some(index) = features.iter().position(|v| !v.is_finite()) {
            return Err(BatchError::NonFinite { index });
        }
        Ok(Self { features, labels, width, hash: OnceLock::new() })
    }

    /// Decodes [`Batch::canonical_bytes`] (rejects trailing or missing bytes).
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, BatchError> {
        let bad = || BatchError::Shape { features: 0, samples: 0, width: 0 };
        let mut words = bytes.chunks_exact(4).map(|w| {
            let mut le = [0u8; 4];
            le.copy_from_slice(w);
            u32::from_le_bytes(le)
        });
        let samples = words.next().ok_or_else(bad)? as usize;
        let width = words.next().ok_or_else(bad)? as usize;
        let values = samples.checked_mul(width).ok_or_else(bad)?;
        let expected =
            values.checked_add(samples).and_then(|n| n.checked_add(2)).ok_or_else(bad)?;
        if expected.checked_mul(4) != Some(bytes.len()) {
            return Err(bad());
        }
        // The length is checked: exactly `values` feature words then `samples` label words.
        let features: Vec<f32> = words.by_ref().take(values).map(f32::from_bits).collect();
        let labels: Vec<u32> = words.collect();
        Self::new(features, labels, width)
    }

    /// Checks the batch against a model's input width and class count.
    pub fn validate(&self, width: usize, classes: u32) -> Result<(), BatchError> {
        if width != self.width {
            return Err(BatchError::Shape {
                features: self.features.len(),
                samples: self.labels.len(),
                width,
            });
        }
        if let Some(index) = self.labels.iter().position(|&l| l >= classes) {
            return Err(BatchError::Label { index, label: self.labels[index], classes });
        }
        Ok(())
    }

    /// Inputs, `samples × width` row-major.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// Labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always false (a batch has at least one sample); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features per sample.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The canonical bytes: `u32` samples, `u32` width, features `f32` LE, labels `u32` LE.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        out.extend_from_slice(&(self.labels.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.width as u32).to_le_bytes());
        for v in &self.features {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        for l in &self.labels {
            out.extend_from_slice(&l.to_le_bytes());
        }
        out
    }

    /// Length of [`Batch::canonical_bytes`]: `8 + 4·samples·width + 4·samples`. This is the
    /// `batch_bytes` of the nonce budget (SPEC section 4).
    pub fn byte_len(&self) -> usize {
        8 + 4 * self.features.len() + 4 * self.labels.len()
    }

    /// `BLAKE3("pouw-ml/batch/v1" || 0x00 || canonical_bytes)`, computed on the first call and
    /// kept.
    pub fn hash(&self) -> Digest {
        *self.hash.get_or_init(|| {
            hash::samples_hash(hash::BATCH_TAG, &self.features, &self.labels, self.width)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_round_trip_and_hash() {
        let b = Batch::new(vec![0.5, -1.0, 2.0, 0.0], vec![1, 0], 2).unwrap();
        let bytes = b.canonical_bytes();
        assert_eq!(bytes.len(), b.byte_len());
        assert_eq!(Batch::from_canonical_bytes(&bytes).unwrap(), b);
        let mut tagged = b"pouw-ml/batch/v1\0".to_vec();
        tagged.extend_from_slice(&bytes);
        assert_eq!(b.hash().0, *blake3::hash(&tagged).as_bytes());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Batch::from_canonical_bytes(&longer).is_err());
        // Every shorter prefix is refused too, and the kept hash is the one of the bytes.
        for len in 0..bytes.len() {
            assert!(Batch::from_canonical_bytes(&bytes[..len]).is_err(), "prefix {len}");
        }
        let decoded = Batch::from_canonical_bytes(&bytes).unwrap();
        let copy = decoded.clone();
        assert_eq!(decoded.hash(), b.hash());
        assert_eq!(copy.hash(), b.hash());
        assert_eq!(copy, b);
    }

    #[test]
    fn rejects_bad_batches() {
        assert!(Batch::new(vec![1.0], vec![0, 1], 1).is_err());
        assert!(Batch::new(vec![f32::NAN], vec![0], 1).is_err());
        let b = Batch::new(vec![1.0], vec![3], 1).unwrap();
        assert!(matches!(b.validate(1, 3), Err(BatchError::Label { .. })));
    }
}
