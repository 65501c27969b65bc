//! The incremental lattice hash (LtHash) behind the state root.

use super::*;

/// Number of 16-bit lanes in the lattice hash.
const LANES: usize = 1024;

/// The incremental lattice hash behind the state root.
#[derive(Clone, PartialEq, Eq)]
pub struct LtHash(Box<[u16; LANES]>);

impl std::fmt::Debug for LtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LtHash({})", self.root().short())
    }
}

impl Default for LtHash {
    fn default() -> Self {
        Self(Box::new([0; LANES]))
    }
}

impl LtHash {
    fn entry_lanes(key: &StateKey, value: &StateValue) -> [u16; LANES] {
        let mut h = blake3::Hasher::new();
        h.update(b"pouw/state-entry\0");
        let k = codec::encode(key);
        let len = u32::try_from(k.len()).unwrap_or(u32::MAX);
        h.update(&len.to_le_bytes());
        h.update(&k);
        h.update(&codec::encode(value));
        let mut bytes = [0u8; LANES * 2];
        h.finalize_xof().fill(&mut bytes);
        let mut lanes = [0u16; LANES];
        for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            if let [a, b] = pair {
                *lane = u16::from_le_bytes([*a, *b]);
            }
        }
        lanes
    }

    /// Adds an entry.
    pub fn insert(&mut self, key: &StateKey, value: &StateValue) {
        let e = Self::entry_lanes(key, value);
        for (l, x) in self.0.iter_mut().zip(e.iter()) {
            *l = l.wrapping_add(*x);
        }
    }

    /// Removes an entry previously added.
    pub fn remove(&mut self, key: &StateKey, value: &StateValue) {
        let e = Self::entry_lanes(key, value);
        for (l, x) in self.0.iter_mut().zip(e.iter()) {
            *l = l.wrapping_sub(*x);
        }
    }

    /// The 32-byte state root.
    pub fn root(&self) -> Hash {
        let mut bytes = Vec::with_capacity(LANES * 2);
        for l in self.0.iter() {
            bytes.extend_from_slice(&l.to_le_bytes());
        }
        Hash::tagged("pouw/state-root", &bytes)
    }
}
