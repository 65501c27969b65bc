//! The canonical binary codec for everything that is hashed or signed.
//!
//! Values are encoded with borsh (fixed-width little-endian integers, `u32` length prefixes,
//! one-byte enum tags). [`decode`] accepts a byte string only if it is the *one* encoding of the
//! value it decodes to: trailing bytes are rejected, and the decoded value is re-encoded and
//! compared byte for byte, so no non-canonical form (a bool byte of 2, an unknown enum tag, a
//! NaN float, an invalid UTF-8 string, ...) can ever be accepted. JSON appears only at the edges.

use borsh::{BorshDeserialize, BorshSerialize};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes do not describe a value of the expected type (truncated, bad tag, ...).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// The type being decoded.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// A value decoded, but bytes were left over.
    #[error("malformed {what}: {extra} trailing bytes")]
    TrailingBytes {
        /// The type being decoded.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// The bytes decode to a value whose canonical encoding differs.
    #[error("non-canonical encoding of {what}")]
    NonCanonical {
        /// The type being decoded.
        what: &'static str,
    },
    /// The input is longer than the limit for this type.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// The type being decoded.
        what: &'static str,
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// A type with a canonical encoding. Blanket-implemented for every borsh type.
pub trait Canonical: BorshSerialize + BorshDeserialize {
    /// Canonical bytes of `self`.
    fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("writing to a Vec cannot fail")
    }

    /// Length of the canonical encoding.
    fn encoded_len(&self) -> usize {
        self.encode().len()
    }
}

impl<T: BorshSerialize + BorshDeserialize> Canonical for T {}

/// Canonical bytes of `value`.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("writing to a Vec cannot fail")
}

/// Decodes `bytes` as the canonical encoding of a `T`; see the module docs.
pub fn decode<T: BorshSerialize + BorshDeserialize>(bytes: &[u8]) -> Result<T, CodecError> {
    let what = short_type_name::<T>();
    let mut rest = bytes;
    let value = T::deserialize(&mut rest)
        .map_err(|e| CodecError::Malformed { what, reason: e.to_string() })?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes { what, extra: rest.len() });
    }
    if encode(&value) != bytes {
        return Err(CodecError::NonCanonical { what });
    }
    Ok(value)
}

/// [`decode`] with an upper bound on the input length, checked before any parsing.
pub fn decode_bounded<T: BorshSerialize + BorshDeserialize>(
    bytes: &[u8],
    max: usize,
) -> Result<T, CodecError> {
    if bytes.len() > max {
        return Err(CodecError::TooLarge { what: short_type_name::<T>(), len: bytes.len(), max });
    }
    decode(bytes)
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, BorshSerialize, BorshDeserialize)]
    struct S {
        a: u32,
        b: bool,
        c: Option<u8>,
        d: f32,
        e: String,
    }

    fn sample() -> S {
        S { a: 7, b: true, c: Some(3), d: 1.5, e: "x".into() }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample());
        assert_eq!(decode::<S>(&bytes).unwrap(), sample());
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = encode(&sample());
        bytes.push(0);
        assert!(matches!(decode::<S>(&bytes), Err(CodecError::TrailingBytes { extra: 1, .. })));
    }

    #[test]
    fn rejects_non_canonical_bool_and_option() {
        let mut bytes = encode(&sample());
        bytes[4] = 2; // bool byte
        assert!(decode::<S>(&bytes).is_err());
        let mut bytes = encode(&sample());
        bytes[5] = 2; // option tag
        assert!(decode::<S>(&bytes).is_err());
    }

    #[test]
    fn rejects_nan_and_truncation() {
        let mut bytes = encode(&sample());
        bytes[7..11].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(decode::<S>(&bytes).is_err());
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            assert!(decode::<S>(&bytes[..cut]).is_err(), "prefix of {cut} bytes accepted");
        }
    }

    #[test]
    fn bounded_rejects_before_parsing() {
        let bytes = encode(&sample());
        assert!(matches!(decode_bounded::<S>(&bytes, 3), Err(CodecError::TooLarge { .. })));
    }
}
