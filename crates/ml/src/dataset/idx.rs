//! IDX files (the MNIST format), raw or gzip.
//!
//! Layout: magic `00 00 <type> <rank>` (type `08` = unsigned byte, the only one supported),
//! `rank` big-endian `u32` dimensions, then the elements in row-major order. Nothing may follow.

use std::{io::Read, path::Path};

use super::{Dataset, DatasetError};

/// A decoded IDX file of unsigned bytes.
struct Idx {
    dims: Vec<u32>,
    data: Vec<u8>,
}

fn read_file(path: &Path) -> Result<Vec<u8>, DatasetError> {
    let raw = std::fs::read(path)
        .map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?;
    decompress(path, raw)
}

/// Raw or gzip bytes of the file named `path` (the name is only used in errors).
fn decompress(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, DatasetError> {
    if raw.is_empty() {
        return Err(DatasetError::Empty { path: path.to_path_buf() });
    }
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|source| DatasetError::Gzip { path: path.to_path_buf(), source })?;
        if out.is_empty() {
            return Err(DatasetError::Empty { path: path.to_path_buf() });
        }
        return Ok(out);
    }
    Ok(raw)
}

fn parse(path: &Path, bytes: Vec<u8>) -> Result<Idx, DatasetError> {
    let truncated = |expected: u64| DatasetError::Truncated {
        path: path.to_path_buf(),
        expected,
        actual: bytes.len() as u64,
    };
    let Some(magic) = bytes.get(..4) else { return Err(truncated(4)) };
    let found = u32::from_be_bytes(magic.try_into().expect("4 bytes"));
    if magic[0] != 0 || magic[1] != 0 || magic[3] == 0 {
        return Err(DatasetError::BadMagic { path: path.to_path_buf(), found });
    }
    if magic[2] != 0x08 {
        return Err(DatasetError::UnsupportedType { path: path.to_path_buf(), code: magic[2] });
    }
    let rank = magic[3] as usize;
    let header = 4 + 4 * rank;
    let Some(dim_bytes) = bytes.get(4..header) else { return Err(truncated(header as u64)) };
    let dims: Vec<u32> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)));
    let expected = elements.and_then(|e| e.checked_add(header as u64)).unwrap_or(u64::MAX);
    let actual = bytes.len() as u64;
    if actual < expected {
        return Err(truncated(expected));
    }
    if actual > expected {
        return Err(DatasetError::TrailingBytes {
            path: path.to_path_buf(),
            extra: actual - expected,
        });
    }
    let mut data = bytes;
    data.drain(..header);
    Ok(Idx { dims, data })
}

pub(super) fn load(images: &Path, labels: &Path, classes: u32) -> Result<Dataset, DatasetError> {
    let img = parse(images, read_file(images)?)?;
    let lab = parse(labels, read_file(labels)?)?;
    build(images, img, labels, lab, classes)
}

/// Like [`load`], from the (raw or gzip) file contents; `images` and `labels` name them.
pub(super) fn load_bytes(
    images: &Path,
    image_bytes: &[u8],
    labels: &Path,
    label_bytes: &[u8],
    classes: u32,
) -> Result<Dataset, DatasetError> {
    let img = parse(images, decompress(images, image_bytes.to_vec())?)?;
    let lab = parse(labels, decompress(labels, label_bytes.to_vec())?)?;
    build(images, img, labels, lab, classes)
}

fn build(
    images: &Path,
    img: Idx,
    labels: &Path,
    lab: Idx,
    classes: u32,
) -> Result<Dataset, DatasetError> {
    if img.dims.len() < 2 {
        return Err(DatasetError::Rank {
            path: images.to_path_buf(),
            found: img.dims.len() as u8,
            expected: "at least 2 (samples x shape)",
        });
    }
    if lab.dims.len() != 1 {
        return Err(DatasetError::Rank {
            path: labels.to_path_buf(),
            found: lab.dims.len() as u8,
            expected: "1 (one label per sample)",
        });
    }
    if img.dims[0] != lab.dims[0] {
        return Err(DatasetError::CountMismatch {
            images: images.to_path_buf(),
            image_count: u64::from(img.dims[0]),
            labels: labels.to_path_buf(),
            label_count: u64::from(lab.dims[0]),
        });
    }
    if img.dims[0] == 0 || img.data.is_empty() {
        return Err(DatasetError::Empty { path: images.to_path_buf() });
    }
    if let Some(index) = lab.data.iter().position(|&l| u32::from(l) >= classes) {
        return Err(DatasetError::LabelOutOfRange {
            path: labels.to_path_buf(),
            index,
            label: u64::from(lab.data[index]),
            classes,
        });
    }
    let labels_u32 = lab.data.iter().map(|&l| u32::from(l)).collect();
    let shape = img.dims[1..].to_vec();
    Dataset::from_pixels(images.to_path_buf(), img.data, labels_u32, shape, classes)
}
