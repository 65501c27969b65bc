//! Property tests of the canonical codec over every primitives type.

use pouw_primitives::{codec, test_utils::*, Canonical};
use proptest::prelude::*;
use std::fmt::Debug;

/// Round trip, exact length, and rejection of a trailing byte.
fn round_trip<T: Canonical + PartialEq + Debug>(value: &T) -> Result<Vec<u8>, TestCaseError> {
    let bytes = codec::encode(value);
    prop_assert_eq!(value.encoded_len(), bytes.len());
    let back: T = codec::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);
    let mut longer = bytes.clone();
    longer.push(0);
    prop_assert!(codec::decode::<T>(&longer).is_err());
    Ok(bytes)
}

/// A single-byte mutation either fails to decode or decodes to another value whose encoding is
/// exactly the mutated bytes. Returns the decoded mutant.
fn mutate<T: Canonical + PartialEq + Debug>(
    value: &T,
    bytes: &[u8],
    pos: prop::sample::Index,
    xor: u8,
) -> Result<Option<T>, TestCaseError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let mut m = bytes.to_vec();
    let i = pos.index(m.len());
    m[i] ^= xor;
    match codec::decode::<T>(&m) {
        Err(_) => Ok(None),
        Ok(v) => {
            prop_assert_ne!(&v, value);
            prop_assert_eq!(codec::encode(&v), m);
            Ok(Some(v))
        }
    }
}

macro_rules! codec_props {
    ($($name:ident: $strategy:expr;)*) => {$(
        proptest! {
            #[test]
            fn $name(v in $strategy, pos in any::<prop::sample::Index>(), xor in 1u8..=255) {
                let bytes = round_trip(&v)?;
                mutate(&v, &bytes, pos, xor)?;
            }
        }
    )*};
}

codec_props! {
    hash: any_hash();
    amount: any_amount();
    public_key: any_public_key();
    signature: any_signature();
    timestamp: any_timestamp();
    compact_target: any_compact_target();
    role: any_role();
    payout: any_payout();
    ticket_preferences: any_ticket_preferences();
    tx_kind: any_tx_kind();
    tx_body: any_tx_body();
    transaction: any_transaction();
    task_definition: any_task();
    header: any_header();
    iteration_body: any_iteration_body();
    iteration_message: any_iteration_message();
    attestation: any_attestation();
    block: any_block();
}

proptest! {
    /// A decodable mutant of a signed transaction no longer verifies.
    #[test]
    fn mutated_transaction_fails_signature(
        tx in signed_transaction(), pos in any::<prop::sample::Index>(), xor in 1u8..=255,
    ) {
        prop_assert!(tx.verify_signature().is_ok());
        let bytes = round_trip(&tx)?;
        if let Some(m) = mutate(&tx, &bytes, pos, xor)? {
            prop_assert!(m.verify_signature().is_err(), "mutant verifies: {:?}", m);
        }
    }

    /// A decodable mutant of a signed iteration message no longer verifies.
    #[test]
    fn mutated_iteration_message_fails_signature(
        msg in signed_iteration_message(), pos in any::<prop::sample::Index>(), xor in 1u8..=255,
    ) {
        prop_assert!(msg.verify_signature().is_ok());
        let bytes = round_trip(&msg)?;
        if let Some(m) = mutate(&msg, &bytes, pos, xor)? {
            prop_assert!(m.verify_signature().is_err());
        }
    }

    /// A decodable mutant of a signed block header (or of its signature) no longer verifies.
    #[test]
    fn mutated_block_header_fails_signature(
        block in signed_block(), pos in any::<prop::sample::Index>(), xor in 1u8..=255,
    ) {
        prop_assert!(block.verify_signature().is_ok());
        // Header and signature are the block's first bytes.
        let head = (block.header.clone(), block.signature);
        let bytes = round_trip(&head)?;
        if let Some((h, s)) = mutate(&head, &bytes, pos, xor)? {
            let mutant = pouw_primitives::Block { header: h, signature: s, ..block };
            prop_assert!(mutant.verify_signature().is_err());
        }
    }

    #[test]
    fn valid_task_validates(e in 1u16..5) {
        prop_assert!(valid_task(e).validate().is_ok());
    }
}
