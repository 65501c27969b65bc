//! Money: integer base units, checked arithmetic only, never floats.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

/// Base units per coin (10^8).
pub const COIN: u64 = 100_000_000;

/// An amount of money in base units. Only checked arithmetic is offered.
#[derive(
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Amount(pub u64);

impl Amount {
    /// Zero.
    pub const ZERO: Self = Self(0);
    /// The largest amount.
    pub const MAX: Self = Self(u64::MAX);

    /// `coins` whole coins; `None` on overflow.
    pub const fn coins(coins: u64) -> Option<Self> {
        match coins.checked_mul(COIN) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// Base units.
    pub const fn units(self) -> u64 {
        self.0
    }

    /// `self + other`, `None` on overflow.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    /// `self - other`, `None` if it would go below zero.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }

    /// `self * n`, `None` on overflow.
    pub fn checked_mul(self, n: u64) -> Option<Self> {
        self.0.checked_mul(n).map(Self)
    }

    /// `self / n` rounded down, `None` for `n == 0`.
    pub fn checked_div(self, n: u64) -> Option<Self> {
        self.0.checked_div(n).map(Self)
    }

    /// `self * num / den` rounded down, computed in 128 bits; `None` on `den == 0` or overflow.
    pub fn mul_div(self, num: u64, den: u64) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let v = u128::from(self.0).checked_mul(u128::from(num))? / u128::from(den);
        u64::try_from(v).ok().map(Self)
    }

    /// True for zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Amount {
    /// Decimal coins with all 8 fractional digits trimmed of trailing zeros: `12.5`, `0.00000001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / COIN;
        let frac = self.0 % COIN;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let s = format!("{frac:08}");
            write!(f, "{whole}.{}", s.trim_end_matches('0'))
        }
    }
}

/// Why a decimal coin amount did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid amount {input:?}: {reason}")]
pub struct ParseAmountError {
    input: String,
    reason: &'static str,
}

impl FromStr for Amount {
    type Err = ParseAmountError;

    /// Parses decimal coins (`"12"`, `"0.5"`, `"1.00000001"`) exactly, without floats.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseAmountError { input: s.chars().take(40).collect(), reason };
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected decimal digits before the point"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) || (s.contains('.') && frac.is_empty()) {
            return Err(err("expected decimal digits after the point"));
        }
        if frac.len() > 8 {
            return Err(err("more than 8 decimal places"));
        }
        let whole: u64 = whole.parse().map_err(|_| err("too large"))?;
        let frac_units: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<8}").parse().map_err(|_| err("bad"))?
        };
        whole
            .checked_mul(COIN)
            .and_then(|w| w.checked_add(frac_units))
            .map(Self)
            .ok_or_else(|| err("too large"))
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        for (s, units) in [("0", 0), ("1", COIN), ("0.5", COIN / 2), ("1.00000001", COIN + 1)] {
            let a: Amount = s.parse().unwrap();
            assert_eq!(a.units(), units);
            assert_eq!(a.to_string(), s);
        }
        for bad in ["", ".", "1.", ".5", "-1", "1.123456789", "1e5", "99999999999999999999"] {
            assert!(bad.parse::<Amount>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn checked_arithmetic() {
        assert_eq!(Amount::MAX.checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount(10).mul_div(3, 4), Some(Amount(7)));
        assert_eq!(Amount(10).mul_div(3, 0), None);
        assert_eq!(Amount::MAX.mul_div(2, 1), None);
    }
}
