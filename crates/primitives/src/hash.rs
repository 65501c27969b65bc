//! The one consensus hash: BLAKE3-256.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

/// A 32-byte BLAKE3 digest (block hashes, transaction ids, task ids, model hashes, ...).
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash (used for "none": genesis parent, no task, the zero nonce).
    pub const ZERO: Self = Self([0; 32]);

    /// BLAKE3 of `bytes`.
    pub fn digest(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// BLAKE3 of a domain tag followed by `bytes`; every consensus object hashes under its own
    /// tag so that two kinds of object can never share a hash.
    pub fn tagged(tag: &str, bytes: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(tag.as_bytes());
        h.update(&[0]);
        h.update(bytes);
        Self(*h.finalize().as_bytes())
    }

    /// BLAKE3 over the concatenation of several byte strings.
    pub fn concat(parts: &[&[u8]]) -> Self {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(p);
        }
        Self(*h.finalize().as_bytes())
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// True for [`Hash::ZERO`].
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }

    /// First 4 bytes as hex, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", hex::encode(self.0))
    }
}

/// Error parsing a hex hash or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} hex characters, got {got:?}")]
pub struct ParseHexError {
    /// How many hex characters were expected.
    pub expected: usize,
    /// What was given (truncated).
    pub got: String,
}

pub(crate) fn parse_hex_array<const N: usize>(s: &str) -> Result<[u8; N], ParseHexError> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    let err = || ParseHexError { expected: N * 2, got: s.chars().take(80).collect() };
    let bytes = hex::decode(s).map_err(|_| err())?;
    bytes.try_into().map_err(|_| err())
}

impl FromStr for Hash {
    type Err = ParseHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_array(s).map(Self)
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Merkle root over a list of leaf hashes: pairs hash as `tagged("merkle", l || r)`, an odd node
/// is promoted unchanged, the empty list has root [`Hash::ZERO`]. Leaves are tagged differently
/// from inner nodes by the callers (they hash whole objects under their own tags).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [l, r] => next.push(Hash::tagged("pouw/merkle", &[l.0, r.0].concat())),
                [one] => next.push(*one),
                _ => unreachable!("chunks(2) yields one or two"),
            }
        }
        level = next;
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::digest(b"abc");
        assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
        assert!("abcd".parse::<Hash>().is_err());
        assert!("zz".repeat(32).parse::<Hash>().is_err());
    }

    #[test]
    fn merkle_root_depends_on_order_and_content() {
        let a = Hash::digest(b"a");
        let b = Hash::digest(b"b");
        let c = Hash::digest(b"c");
        assert_eq!(merkle_root(&[]), Hash::ZERO);
        assert_eq!(merkle_root(&[a]), a);
        assert_ne!(merkle_root(&[a, b]), merkle_root(&[b, a]));
        assert_ne!(merkle_root(&[a, b, c]), merkle_root(&[a, b]));
    }
}
