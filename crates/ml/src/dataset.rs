//! Datasets: loading (IDX, CSV), the 10-segment split, and the deterministic batch order.
//!
//! A [`Dataset`] holds every sample as `f32` features (row-major, `width` per sample) and a
//! `u32` label. Loaders validate everything (shape, labels, finiteness) and name the file and
//! the problem in their errors. Features that are all pixel quotients (`byte as f32 / 255.0`,
//! an IDX image's values) are kept as their bytes, a quarter of the memory; they read back as
//! the same `f32` bits.
//!
//! From dataset to batches (SPEC section 3):
//! 1. [`Dataset::segments`] cuts the samples, in file order, into `N` equal segments of
//!    `floor(len / N)` samples; the last `len mod N` samples (fewer than `N`) belong to no
//!    segment and are never used. Each segment has a hash ([`Dataset::segment_hash`]): the root
//!    of a Merkle tree over its samples ([`crate::merkle`]).
//! 2. [`Split::new`] shuffles the segment list with a 32-byte seed (on chain: the hash of the
//!    block holding the task); the last `round(test_fraction · N)` segments are the test set,
//!    the `round(validation_fraction · N)` before them the validation set, the rest training.
//! 3. [`BatchSchedule`] lists the training samples (training segments in split order, samples in
//!    file order), permutes them per epoch from the seed, and cuts the permutation into batches
//!    of `batch_size`; a final partial batch is dropped (the permutation changes every epoch, so
//!    no sample is always left out). Batch `b` of an epoch goes to miner `b mod miners`.

mod csv;
mod idx;
mod split;

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
};

pub use split::{BatchSchedule, Segment, Split, SplitError};

use crate::{batch::Batch, hash::Digest, merkle::SegmentTree};

/// Why a dataset file could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// The file could not be read.
    #[error("{}: cannot read the file", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file (or its decompressed content) is empty, or holds no samples.
    #[error("{}: empty file (no samples)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file starts like gzip (1f 8b) but does not decompress.
    #[error("{}: corrupt gzip stream", path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// The first bytes are not an IDX magic number (`00 00 <type> <rank>`).
    #[error("{}: wrong magic number {found:#010x}: not an IDX file (expected 00 00 08 <rank>)", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first four bytes, big-endian.
        found: u32,
    },
    /// An IDX element type other than unsigned byte (0x08).
    #[error("{}: IDX element type {code:#04x} is not supported (only 0x08, unsigned byte)", path.display())]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// The type byte.
        code: u8,
    },
    /// The IDX file has the wrong rank (images need at least 2, labels exactly 1).
    #[error("{}: IDX rank {found}, expected {expected}", path.display())]
    Rank {
        /// The file.
        path: PathBuf,
        /// Found rank.
        found: u8,
        /// What was expected, in words.
        expected: &'static str,
    },
    /// The file is shorter than its header says.
    #[error("{}: truncated: the header announces {expected} bytes, the file has {actual}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header announces (header included).
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// The file is longer than its header says.
    #[error("{}: {extra} unexpected bytes after the data the header announces", path.display())]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Extra bytes.
        extra: u64,
    },
    /// Image and label files disagree on the sample count.
    #[error("{} has {image_count} images but {} has {label_count} labels", images.display(), labels.display())]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Its sample count.
        image_count: u64,
        /// The label file.
        labels: PathBuf,
        /// Its label count.
        label_count: u64,
    },
    /// A label `>= classes`.
    #[error("{}: sample {index}: label {label} out of range (the task has {classes} classes)", path.display())]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// Sample index (0-based).
        index: usize,
        /// The label.
        label: u64,
        /// Number of classes.
        classes: u32,
    },
    /// A NaN or infinite value.
    #[error("{}: line {line}, column {column}: value is NaN or infinite", path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A CSV field that does not parse.
    #[error("{}: line {line}, column {column}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// A CSV row with a different number of columns than the first.
    #[error("{}: line {line}: {found} columns, expected {expected} (as on the first data line)", path.display())]
    ColumnMismatch {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Columns of the first data row.
        expected: usize,
        /// Columns of this row.
        found: usize,
    },
    /// Fewer samples than segments.
    #[error("{}: {samples} samples cannot fill {segments} segments", path.display())]
    TooFewSamples {
        /// The file (images or CSV).
        path: PathBuf,
        /// Samples in the dataset.
        samples: usize,
        /// Segments requested.
        segments: usize,
    },
}

/// The pixel value of a byte: `byte as f32 / 255.0`, the value an IDX image's byte loads as.
pub fn pixel(byte: u8) -> f32 {
    f32::from(byte) / 255.0
}

/// The byte whose [`pixel`] has exactly the bits of `value`, if there is one.
pub fn pixel_byte(value: f32) -> Option<u8> {
    let scaled = value * 255.0;
    if !(0.0..=255.0).contains(&scaled) {
        return None;
    }
    // In 0..=255 after the range check, so the conversion is exact.
    let byte = scaled.round() as u8;
    (pixel(byte).to_bits() == value.to_bits()).then_some(byte)
}

/// The bytes of `values` if every one is a [`pixel`] (bit for bit, so `-0.0` is not).
pub fn pixel_bytes(values: &[f32]) -> Option<Vec<u8>> {
    values.iter().map(|&v| pixel_byte(v)).collect()
}

/// How a dataset holds its features.
#[derive(Debug, Clone, PartialEq)]
enum Features {
    /// Any finite values.
    Floats(Vec<f32>),
    /// Every value is the [`pixel`] of its byte.
    Pixels(Vec<u8>),
}

impl Features {
    fn len(&self) -> usize {
        match self {
            Self::Floats(v) => v.len(),
            Self::Pixels(b) => b.len(),
        }
    }

    /// The values `range` (in bounds: callers check).
    fn slice(&self, range: std::ops::Range<usize>) -> Cow<'_, [f32]> {
        match self {
            Self::Floats(v) => Cow::Borrowed(&v[range]),
            Self::Pixels(b) => Cow::Owned(b[range].iter().map(|&x| pixel(x)).collect()),
        }
    }

    /// Appends the values `range` (in bounds: callers check) to `out`.
    fn extend_into(&self, range: std::ops::Range<usize>, out: &mut Vec<f32>) {
        match self {
            Self::Floats(v) => out.extend_from_slice(&v[range]),
            Self::Pixels(b) => out.extend(b[range].iter().map(|&x| pixel(x))),
        }
    }
}

/// A labelled dataset held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    source: PathBuf,
    features: Features,
    labels: Vec<u32>,
    sample_shape: Vec<u32>,
    width: usize,
    classes: u32,
}

impl Dataset {
    /// Loads an IDX pair (the MNIST format): `images` of rank >= 2 (`n × d1 × …`, unsigned
    /// bytes) and `labels` of rank 1 (`n`, unsigned bytes). Each file may be raw or gzip
    /// (detected by the magic bytes `1f 8b`). Pixels become `byte as f32 / 255.0`.
    pub fn load_idx(images: &Path, labels: &Path, classes: u32) -> Result<Self, DatasetError> {
        idx::load(images, labels, classes)
    }

    /// Like [`Dataset::load_idx`], from the file contents already in memory (e.g. embedded with
    /// `include_bytes!`); `images` and `labels` only name the data in errors.
    pub fn load_idx_bytes(
        images: &Path,
        image_bytes: &[u8],
        labels: &Path,
        label_bytes: &[u8],
        classes: u32,
    ) -> Result<Self, DatasetError> {
        idx::load_bytes(images, image_bytes, labels, label_bytes, classes)
    }

    /// Loads a CSV file: one sample per line, `label,f1,f2,…` (label an integer in
    /// `0..classes`, features decimal floats); see `docs/ml.md` for the exact format.
    pub fn load_csv(path: &Path, classes: u32) -> Result<Self, DatasetError> {
        csv::load(path, classes, crate::task::LabelColumn::First)
    }

    /// Like [`Dataset::load_csv`], with the label in column `label_column` (the task file's
    /// `dataset.label_column`); the features are the other columns, in order.
    pub fn load_csv_labelled(
        path: &Path,
        classes: u32,
        label_column: crate::task::LabelColumn,
    ) -> Result<Self, DatasetError> {
        csv::load(path, classes, label_column)
    }

    /// Samples per class (index = label) in the given segments (`which` indexes `segments`;
    /// an index out of range counts nothing).
    pub fn class_counts(&self, segments: &[Segment], which: &[usize]) -> Vec<u64> {
        let mut counts = vec![0u64; self.classes as usize];
        for s in which.iter().filter_map(|&i| segments.get(i)) {
            let end = s.start.saturating_add(s.len).min(self.labels.len());
            for &l in self.labels.get(s.start..end).unwrap_or(&[]) {
                if let Some(c) = counts.get_mut(l as usize) {
                    *c += 1;
                }
            }
        }
        counts
    }

    /// A dataset from memory (`features` is `labels.len() × product(sample_shape)`); checks
    /// shapes, labels and finiteness like the loaders. `source` names it in errors.
    pub fn from_parts(
        source: PathBuf,
        features: Vec<f32>,
        labels: Vec<u32>,
        sample_shape: Vec<u32>,
        classes: u32,
    ) -> Result<Self, DatasetError> {
        let width = check_parts(&source, features.len(), &labels, &sample_shape, classes)?;
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(DatasetError::NonFinite {
                path: source,
                line: i / width + 1,
                column: i % width + 1,
            });
        }
        let features = match pixel_bytes(&features) {
            Some(bytes) => Features::Pixels(bytes),
            None => Features::Floats(features),
        };
        Ok(Self { source, features, labels, sample_shape, width, classes })
    }

    /// A dataset from memory whose features are the [`pixel`]s of `pixels` (`labels.len() ×
    /// product(sample_shape)` bytes); checks shapes and labels like [`Dataset::from_parts`].
    pub fn from_pixels(
        source: PathBuf,
        pixels: Vec<u8>,
        labels: Vec<u32>,
        sample_shape: Vec<u32>,
        classes: u32,
    ) -> Result<Self, DatasetError> {
        let width = check_parts(&source, pixels.len(), &labels, &sample_shape, classes)?;
        Ok(Self {
            source,
            features: Features::Pixels(pixels),
            labels,
            sample_shape,
            width,
            classes,
        })
    }

    /// Bytes the features and labels take in memory.
    pub fn memory_bytes(&self) -> usize {
        let features = match &self.features {
            Features::Floats(v) => v.len() * std::mem::size_of::<f32>(),
            Features::Pixels(b) => b.len(),
        };
        features + self.labels.len() * std::mem::size_of::<u32>()
    }

    /// The file the samples came from (the image file for IDX).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if there are no samples (never, for a loaded dataset).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Shape of one sample (e.g. `[28, 28]`).
    pub fn sample_shape(&self) -> &[u32] {
        &self.sample_shape
    }

    /// Features per sample (product of the sample shape).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of classes the labels were checked against.
    pub fn classes(&self) -> u32 {
        self.classes
    }

    /// All features, row-major (a copy when they are held as pixels).
    pub fn features(&self) -> Cow<'_, [f32]> {
        self.features.slice(0..self.features.len())
    }

    /// All labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The batch of the given sample indices, in that order. Panics on an index out of range.
    pub fn gather(&self, indices: &[u32]) -> Batch {
        let mut features = Vec::with_capacity(indices.len() * self.width);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let i = i as usize;
            self.features.extend_into(i * self.width..(i + 1) * self.width, &mut features);
            labels.push(self.labels[i]);
        }
        Batch::new(features, labels, self.width).expect("samples were validated on load")
    }

    /// Features and labels of a range of samples (the features a copy when they are held as
    /// pixels).
    pub fn range(&self, start: usize, len: usize) -> (Cow<'_, [f32]>, &[u32]) {
        (
            self.features.slice(start * self.width..(start + len) * self.width),
            &self.labels[start..start + len],
        )
    }

    /// `count` equal segments in file order (remainder dropped; see the module docs).
    pub fn segments(&self, count: usize) -> Result<Vec<Segment>, DatasetError> {
        let size = self.len().checked_div(count).unwrap_or(0);
        if size == 0 {
            return Err(DatasetError::TooFewSamples {
                path: self.source.clone(),
                samples: self.len(),
                segments: count,
            });
        }
        Ok((0..count).map(|index| Segment { index, start: index * size, len: size }).collect())
    }

    /// The canonical bytes of a segment: same layout as [`Batch::canonical_bytes`].
    pub fn segment_bytes(&self, segment: &Segment) -> Vec<u8> {
        let (x, y) = self.range(segment.start, segment.len);
        Batch::new(x.into_owned(), y.to_vec(), self.width).expect("validated").canonical_bytes()
    }

    /// The Merkle tree of a segment's samples ([`crate::merkle`]).
    pub fn segment_tree(&self, segment: &Segment) -> SegmentTree {
        let (x, y) = self.range(segment.start, segment.len);
        SegmentTree::new(&x, y, self.width)
    }

    /// The segment hash: the root of the segment's Merkle tree ([`crate::merkle`]).
    pub fn segment_hash(&self, segment: &Segment) -> Digest {
        self.segment_tree(segment).root()
    }

    /// The Merkle proofs of the samples `indices` (dataset indices, in order) in the
    /// segments of `segment_len` samples that hold them, concatenated in that order (each as
    /// [`SegmentTree::proof`] gives it): what a client-task block's proof data carries.
    /// `None` if an index is past the last whole segment.
    pub fn sample_proofs(&self, segment_len: usize, indices: &[u32]) -> Option<Vec<Digest>> {
        let mut trees: std::collections::BTreeMap<usize, SegmentTree> = Default::default();
        let mut out = Vec::new();
        for &g in indices {
            let g = g as usize;
            let seg = g.checked_div(segment_len)?;
            if seg.checked_add(1)?.checked_mul(segment_len)? > self.len() {
                return None;
            }
            let tree = trees.entry(seg).or_insert_with(|| {
                self.segment_tree(&Segment {
                    index: seg,
                    start: seg * segment_len,
                    len: segment_len,
                })
            });
            out.extend(tree.proof(g % segment_len)?);
        }
        Some(out)
    }
}

/// Checks the parts of a dataset of `values` feature values; returns the width.
fn check_parts(
    source: &Path,
    values: usize,
    labels: &[u32],
    sample_shape: &[u32],
    classes: u32,
) -> Result<usize, DatasetError> {
    let width: usize = sample_shape.iter().map(|&d| d as usize).product();
    if labels.is_empty() || width == 0 {
        return Err(DatasetError::Empty { path: source.to_path_buf() });
    }
    if values != labels.len() * width {
        return Err(DatasetError::Truncated {
            path: source.to_path_buf(),
            expected: (labels.len() * width) as u64,
            actual: values as u64,
        });
    }
    if let Some(index) = labels.iter().position(|&l| l >= classes) {
        return Err(DatasetError::LabelOutOfRange {
            path: source.to_path_buf(),
            index,
            label: u64::from(labels[index]),
            classes,
        });
    }
    Ok(width)
}

/// The segment hash of canonical segment bytes as a client serves them over the network
/// ([`Dataset::segment_bytes`]); `None` if the bytes are not a canonical batch.
pub fn segment_hash_of_bytes(bytes: &[u8]) -> Option<Digest> {
    let b = Batch::from_canonical_bytes(bytes).ok()?;
    Some(SegmentTree::new(b.features(), b.labels(), b.width()).root())
}
