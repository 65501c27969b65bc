//! Proof-of-work targets: the compact form in headers, full 256-bit targets, and work.

use borsh::{BorshDeserialize, BorshSerialize};
use ruint::aliases::U256;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

pub use ruint::aliases::U256 as Uint256;

/// A 256-bit target in compact form (Bitcoin's `nBits`): the top byte is a base-256 exponent,
/// the low 23 bits a mantissa; `target = mantissa * 256^(exponent - 3)`. The sign bit must be
/// clear. A header's target must equal the retarget rule's output exactly, so only normalised
/// compact values (as [`CompactTarget::from_target`] makes them) are ever valid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct CompactTarget(pub u32);

impl CompactTarget {
    /// Expands to the full target; `None` for a negative, zero or overflowing value.
    pub fn to_target(self) -> Option<U256> {
        let exponent = self.0 >> 24;
        let mantissa = self.0 & 0x007f_ffff;
        if self.0 & 0x0080_0000 != 0 || mantissa == 0 {
            return None;
        }
        let m = U256::from(mantissa);
        let t = if exponent <= 3 {
            m >> (8 * (3 - exponent) as usize)
        } else {
            let shift = 8 * (exponent - 3) as usize;
            if shift >= 256 || m.leading_zeros() < shift {
                return None;
            }
            m << shift
        };
        if t.is_zero() {
            None
        } else {
            Some(t)
        }
    }

    /// The normalised compact form of `target` (rounded down to 23 bits of mantissa).
    pub fn from_target(target: U256) -> Self {
        let bits = 256 - target.leading_zeros();
        let mut size = bits.div_ceil(8) as u32;
        let mut mantissa: u32 = if size <= 3 {
            (target.to::<u64>() << (8 * (3 - size))) as u32
        } else {
            (target >> (8 * (size as usize - 3))).to::<u64>() as u32
        };
        if mantissa & 0x0080_0000 != 0 {
            mantissa >>= 8;
            size += 1;
        }
        Self((size << 24) | mantissa)
    }

    /// The work a block at this target represents: `2^256 / (target + 1)`; zero for an
    /// invalid target.
    pub fn work(self) -> U256 {
        match self.to_target() {
            Some(t) => work_for_target(t),
            None => U256::ZERO,
        }
    }
}

/// `2^256 / (target + 1)`, computed as `(!target / (target + 1)) + 1` to stay in 256 bits.
pub fn work_for_target(target: U256) -> U256 {
    if target == U256::MAX {
        return U256::from(1u8);
    }
    (!target / (target + U256::from(1u8))) + U256::from(1u8)
}

/// True if `hash`, read as a big-endian 256-bit number, is at most `target`.
pub fn meets_target(hash: &crate::Hash, target: U256) -> bool {
    U256::from_be_bytes(hash.0) <= target
}

impl fmt::Debug for CompactTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompactTarget({:#010x})", self.0)
    }
}

impl fmt::Display for CompactTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

impl Serialize for CompactTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for CompactTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        let hex = s.strip_prefix("0x").unwrap_or(&s);
        let v = u32::from_str_radix(hex, 16).map_err(serde::de::Error::custom)?;
        let c = Self(v);
        if c.to_target().is_none() || Self::from_target(c.to_target().unwrap_or_default()) != c {
            return Err(serde::de::Error::custom(format!(
                "{s} is not a normalised compact target"
            )));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitcoin_genesis_bits() {
        let c = CompactTarget(0x1d00ffff);
        let t = c.to_target().unwrap();
        assert_eq!(CompactTarget::from_target(t), c);
        assert_eq!(t, U256::from(0xffffu64) << 208);
    }

    #[test]
    fn invalid_compacts() {
        assert_eq!(CompactTarget(0x1d80ffff).to_target(), None); // negative
        assert_eq!(CompactTarget(0x1d000000).to_target(), None); // zero
        assert_eq!(CompactTarget(0xff7fffff).to_target(), None); // overflow
    }

    #[test]
    fn round_trip_normalises() {
        for v in [1u64, 0x7f, 0x80, 0xffff, 0x12345678, u64::MAX] {
            let t = U256::from(v);
            let c = CompactTarget::from_target(t);
            let back = c.to_target().unwrap();
            assert!(back <= t);
            assert_eq!(CompactTarget::from_target(back), c);
        }
    }

    #[test]
    fn work_is_inverse_of_target() {
        assert_eq!(work_for_target(U256::MAX), U256::from(1u8));
        let easy = CompactTarget(0x2100ffff).work();
        let hard = CompactTarget(0x1d00ffff).work();
        assert!(hard > easy);
    }
}
