//! ed25519 keys and signatures. An account's address is its 32-byte public key.

use crate::{hash::parse_hex_array, Hash, ParseHexError};
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

/// An ed25519 public key; also the account address.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct PublicKey(pub [u8; 32]);

/// An account address (the account's public key).
pub type Address = PublicKey;

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl Default for Signature {
    fn default() -> Self {
        Self([0; 64])
    }
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The public key bytes are not a valid curve point.
    #[error("public key {0} is not a valid ed25519 point")]
    BadPublicKey(PublicKey),
    /// The signature does not verify for this key and message.
    #[error("signature does not verify for {0}")]
    Invalid(PublicKey),
}

impl PublicKey {
    /// Verifies `sig` over `msg` (strict verification: rejects small-order keys and
    /// non-canonical signatures, so a signature has exactly one valid form).
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        let vk =
            VerifyingKey::from_bytes(&self.0).map_err(|_| SignatureError::BadPublicKey(*self))?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        vk.verify_strict(msg, &sig).map_err(|_| SignatureError::Invalid(*self))
    }

    /// First 4 bytes as hex, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

/// A secret signing key. Not `Debug`-printable in full, never serialized by accident.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

impl Keypair {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        Self { signing: SigningKey::generate(&mut rand_core::OsRng) }
    }

    /// The key whose secret is exactly these 32 bytes.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self { signing: SigningKey::from_bytes(&secret) }
    }

    /// A deterministic key derived from a label (dev and test accounts only: anyone who knows
    /// the label can spend).
    pub fn from_label(label: &str) -> Self {
        Self::from_secret(Hash::tagged("pouw/dev-key", label.as_bytes()).0)
    }

    /// The secret bytes (for writing key files).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key / address.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.signing.sign(msg).to_bytes())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..8]))
    }
}

impl FromStr for PublicKey {
    type Err = ParseHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_array(s).map(Self)
    }
}

impl FromStr for Signature {
    type Err = ParseHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_array(s).map(Self)
    }
}

macro_rules! serde_as_hex {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_hex!(PublicKey);
serde_as_hex!(Signature);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let k = Keypair::from_label("alice");
        let sig = k.sign(b"msg");
        k.public().verify(b"msg", &sig).unwrap();
        assert_eq!(k.public().verify(b"msh", &sig), Err(SignatureError::Invalid(k.public())));
        let other = Keypair::from_label("bob").public();
        assert!(other.verify(b"msg", &sig).is_err());
        let mut bad = sig;
        bad.0[0] ^= 1;
        assert!(k.public().verify(b"msg", &bad).is_err());
    }

    #[test]
    fn labels_are_deterministic() {
        assert_eq!(Keypair::from_label("x").public(), Keypair::from_label("x").public());
        assert_ne!(Keypair::from_label("x").public(), Keypair::from_label("y").public());
        let k = Keypair::from_label("x");
        assert_eq!(Keypair::from_secret(k.secret_bytes()).public(), k.public());
    }
}
