//! Canonical hashes of the iteration's inputs and outputs (BLAKE3-256).
//!
//! Every hash is `BLAKE3(tag || body)` where `tag` is an ASCII domain string followed by one
//! zero byte, so hashes of different kinds never collide. Integers are little-endian; `f32` values
//! are their IEEE-754 bits as `u32` little-endian (`-0.0` and `+0.0` differ; NaN payloads count).
//!
//! | hash | tag | body |
//! |---|---|---|
//! | model | `pouw-ml/model/v1` | `u32` rank, rank × `u32` input dims, `u32` classes, `u32` layer count, per layer `u8` kind then its fields: dense 0: `u32` units + `u8` activation (relu 0, tanh 1, sigmoid 2, none 3); conv2d 1: `u32` filters, kernel, stride, padding + `u8` activation; maxpool2d 2: `u32` size, stride (the default written out); flatten 3: nothing; dropout 4: `u32` bits of `p`; `u64` parameter count, parameters `f32` |
//! | residual | `pouw-ml/residual/v1` | `u64` n, residual n × `f32`, `u64` m, velocity m × `f32` (m = 0 when momentum is 0) |
//! | batch | `pouw-ml/batch/v1` | [`crate::Batch::canonical_bytes`]: `u32` samples, `u32` features per sample, features `f32` row-major, labels `u32` |
//! | segment | `pouw-ml/segment/v2` | `u32` samples, `u32` features per sample, the root of the Merkle tree over the segment's samples in file order ([`crate::merkle`]) |
//! | message map | `pouw-ml/map/v1` | `u32` entry count, entries `u32` |
//!
//! The model hash covers the shape (input shape, layers, classes) but not the initialiser or
//! its seed: two models with the same function have the same hash.

use std::fmt;

use crate::spec::{LayerSpec, ModelSpec};

/// A BLAKE3-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex (64 characters).
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Domain tags (without the trailing zero byte that [`tagged`] adds).
pub(crate) const MODEL_TAG: &str = "pouw-ml/model/v1";
pub(crate) const RESIDUAL_TAG: &str = "pouw-ml/residual/v1";
pub(crate) const BATCH_TAG: &str = "pouw-ml/batch/v1";
pub(crate) const SEGMENT_TAG: &str = "pouw-ml/segment/v2";
pub(crate) const MAP_TAG: &str = "pouw-ml/map/v1";

/// A hasher that has absorbed `tag || 0x00`.
pub(crate) fn tagged(tag: &str) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.update(tag.as_bytes());
    h.update(&[0]);
    h
}

/// 32-bit plain values whose memory is their little-endian encoding on little-endian targets:
/// `f32` (IEEE bits) and `u32`. Sealed: implemented only here, for these two types.
pub(crate) trait Word32: Copy + sealed::Sealed {
    /// The value's bits as a `u32`.
    fn bits(self) -> u32;
}

mod sealed {
    pub(crate) trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u32 {}
}

impl Word32 for f32 {
    fn bits(self) -> u32 {
        self.to_bits()
    }
}

impl Word32 for u32 {
    fn bits(self) -> u32 {
        self
    }
}

/// The memory of `values` as bytes.
#[cfg(target_endian = "little")]
fn as_bytes<T: Word32>(values: &[T]) -> &[u8] {
    // SAFETY: `T` is `f32` or `u32` (the trait is sealed): 4 bytes, no padding, and every byte
    // pattern is a valid `u8`; `u8` has alignment 1; the slice covers exactly the memory of
    // `values` and borrows it for the same lifetime. On little-endian targets these bytes are
    // exactly the little-endian bits of each value (tested against `update_words_portable`).
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

/// Absorbs `values` as little-endian 32-bit words in order: on little-endian targets their
/// memory in one `update` (which lets BLAKE3 hash many chunks in parallel, SIMD), elsewhere
/// through a buffer.
fn update_words<T: Word32>(h: &mut blake3::Hasher, values: &[T]) {
    #[cfg(target_endian = "little")]
    h.update(as_bytes(values));
    #[cfg(not(target_endian = "little"))]
    update_words_portable(h, values);
}

/// The byte-by-byte definition of [`update_words`] (big-endian targets, and the test oracle).
#[cfg_attr(target_endian = "little", allow(dead_code))]
fn update_words_portable<T: Word32>(h: &mut blake3::Hasher, values: &[T]) {
    // 16 KiB per update lets BLAKE3 hash 16 chunks in parallel (SIMD).
    let mut buf = [0u8; 16384];
    for chunk in values.chunks(4096) {
        for (dst, v) in buf.chunks_exact_mut(4).zip(chunk) {
            dst.copy_from_slice(&v.bits().to_le_bytes());
        }
        h.update(&buf[..chunk.len() * 4]);
    }
}

/// Absorbs `values` as little-endian IEEE bits, in order.
pub(crate) fn update_f32s(h: &mut blake3::Hasher, values: &[f32]) {
    update_words(h, values);
}

/// The byte-by-byte definition of [`update_f32s`] (the test oracle).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn update_f32s_portable(h: &mut blake3::Hasher, values: &[f32]) {
    update_words_portable(h, values);
}

/// Absorbs `values` as little-endian `u32`, in order.
pub(crate) fn update_u32s(h: &mut blake3::Hasher, values: &[u32]) {
    update_words(h, values);
}

/// Model hash over the spec's shape and the flat parameters (layout in the module docs).
pub fn model_hash(spec: &ModelSpec, params: &[f32]) -> Digest {
    let mut h = tagged(MODEL_TAG);
    h.update(&(spec.input_shape.len() as u32).to_le_bytes());
    update_u32s(&mut h, &spec.input_shape);
    h.update(&spec.classes.to_le_bytes());
    h.update(&(spec.layers.len() as u32).to_le_bytes());
    for layer in &spec.layers {
        h.update(&[layer.kind_code()]);
        match layer {
            LayerSpec::Dense { units, activation } => {
                h.update(&units.to_le_bytes());
                h.update(&[activation.code()]);
            }
            LayerSpec::Conv2d { filters, kernel, stride, padding, activation } => {
                update_u32s(&mut h, &[*filters, *kernel, *stride, *padding]);
                h.update(&[activation.code()]);
            }
            LayerSpec::MaxPool2d { size, stride } => {
                update_u32s(&mut h, &[*size, stride.unwrap_or(*size)]);
            }
            LayerSpec::Flatten => {}
            LayerSpec::Dropout { p } => {
                h.update(&p.0.to_le_bytes());
            }
        }
    }
    h.update(&(params.len() as u64).to_le_bytes());
    update_f32s(&mut h, params);
    Digest(*h.finalize().as_bytes())
}

/// Residual hash over the residual vector and the optimizer velocity (layout in the module docs).
pub fn residual_hash(residual: &[f32], velocity: &[f32]) -> Digest {
    let mut h = tagged(RESIDUAL_TAG);
    h.update(&(residual.len() as u64).to_le_bytes());
    update_f32s(&mut h, residual);
    h.update(&(velocity.len() as u64).to_le_bytes());
    update_f32s(&mut h, velocity);
    Digest(*h.finalize().as_bytes())
}

/// Message-map hash (layout in the module docs).
pub fn map_hash(map: &[u32]) -> Digest {
    let mut h = tagged(MAP_TAG);
    h.update(&(map.len() as u32).to_le_bytes());
    update_u32s(&mut h, map);
    Digest(*h.finalize().as_bytes())
}

/// Hash of a sample set (a batch) under `tag`: `u32` count, `u32` width, features,
/// labels.
pub(crate) fn samples_hash(tag: &str, features: &[f32], labels: &[u32], width: usize) -> Digest {
    let mut h = tagged(tag);
    h.update(&(labels.len() as u32).to_le_bytes());
    h.update(&(width as u32).to_le_bytes());
    update_f32s(&mut h, features);
    update_u32s(&mut h, labels);
    Digest(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = map_hash(&[1, 2, 3]);
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }

    #[test]
    fn f32_encoding_is_bits() {
        // -0.0 and +0.0 hash differently.
        assert_ne!(residual_hash(&[0.0], &[]), residual_hash(&[-0.0], &[]));
        // Chunking does not change the stream.
        let v: Vec<f32> = (0..5000).map(|i| i as f32).collect();
        let mut a = blake3::Hasher::new();
        update_f32s(&mut a, &v);
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(a.finalize(), blake3::hash(&bytes));
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    #[test]
    fn memory_hash_equals_the_byte_by_byte_definition() {
        let values: Vec<f32> = (0..10_001).map(|i| (i as f32 * 0.37).sin() - 0.0).collect();
        for len in [0, 1, 255, 256, 4096, 4097, 10_001] {
            let mut a = tagged("t");
            update_f32s(&mut a, &values[..len]);
            let mut b = tagged("t");
            update_f32s_portable(&mut b, &values[..len]);
            assert_eq!(a.finalize(), b.finalize(), "len {len}");
        }
    }

    #[test]
    fn u32_memory_hash_equals_the_byte_by_byte_definition() {
        let values: Vec<u32> = (0..10_001u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect();
        for len in [0, 1, 255, 256, 4096, 4097, 10_001] {
            let mut a = tagged("t");
            update_u32s(&mut a, &values[..len]);
            let mut b = tagged("t");
            update_words_portable(&mut b, &values[..len]);
            assert_eq!(a.finalize(), b.finalize(), "len {len}");
            let bytes: Vec<u8> = values[..len].iter().flat_map(|v| v.to_le_bytes()).collect();
            let mut c = tagged("t");
            c.update(&bytes);
            assert_eq!(a.finalize(), c.finalize(), "len {len}");
        }
    }
}
