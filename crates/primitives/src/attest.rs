//! Signed statements that travel on the network but not in blocks: verifier attestations
//! (the answer to a VERIFICATION_REQUEST) and security alerts (SECURITY_ALERT).

use crate::{codec, Hash, Keypair, PublicKey, Signature, SignatureError, TaskId};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Upper bound on the free-text detail of an alert, in bytes.
pub const MAX_ALERT_DETAIL_BYTES: usize = 1024;
/// Upper bound on the evidence (message ids) one alert carries.
pub const MAX_ALERT_EVIDENCE: usize = 256;

/// What a verifier signs: "I replayed the iteration behind `block` and it is (in)valid".
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AttestationBody {
    /// Chain the block belongs to (the spec's `chain_id`).
    pub chain_id: u64,
    /// Hash of the attested block.
    pub block: Hash,
    /// Its height.
    pub height: u64,
    /// The verifier.
    pub verifier: PublicKey,
    /// The verdict: `true` when every check including the replay passed.
    pub valid: bool,
}

/// A signed attestation.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Attestation {
    /// The signed fields.
    pub body: AttestationBody,
    /// The verifier's signature over [`AttestationBody::id`].
    pub signature: Signature,
}

impl AttestationBody {
    /// The attestation id (what is signed).
    pub fn id(&self) -> Hash {
        Hash::tagged("pouw/attestation", &codec::encode(self))
    }

    /// Signs the attestation.
    pub fn sign(self, key: &Keypair) -> Attestation {
        let signature = key.sign(self.id().as_bytes());
        Attestation { body: self, signature }
    }
}

impl Attestation {
    /// Checks the verifier's signature.
    pub fn verify_signature(&self) -> Result<(), SignatureError> {
        self.body.verifier.verify(self.body.id().as_bytes(), &self.signature)
    }
}

/// The kind of misbehaviour an alert reports; custom handlers register per kind.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Updates far from the robust aggregate of the other miners (direction or magnitude).
    GradientPoisoning,
    /// An iteration message whose replay does not reproduce it.
    InvalidIteration,
    /// An update replayed from an earlier iteration.
    StaleUpdate,
    /// A supervisor committed a history root that does not match the recorded messages.
    WrongHistoryRoot,
    /// An evaluator submitted a verdict that disagrees with the test results.
    WrongVerdict,
}

/// What a reporter signs.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SecurityAlertBody {
    /// Chain id.
    pub chain_id: u64,
    /// Task concerned.
    pub task_id: TaskId,
    /// Who reports (a supervisor, evaluator or verifier of the task).
    pub reporter: PublicKey,
    /// Who is accused.
    pub accused: PublicKey,
    /// What they did.
    pub kind: AlertKind,
    /// Evidence: ids of the iteration messages (or transactions) that show it.
    pub evidence: Vec<Hash>,
    /// Human-readable detail (bounded).
    pub detail: String,
}

/// A signed security alert.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SecurityAlert {
    /// The signed fields.
    pub body: SecurityAlertBody,
    /// The reporter's signature over [`SecurityAlertBody::id`].
    pub signature: Signature,
}

impl SecurityAlertBody {
    /// The alert id (what is signed).
    pub fn id(&self) -> Hash {
        Hash::tagged("pouw/alert", &codec::encode(self))
    }

    /// Signs the alert.
    pub fn sign(self, key: &Keypair) -> SecurityAlert {
        let signature = key.sign(self.id().as_bytes());
        SecurityAlert { body: self, signature }
    }
}

/// Why an alert is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// Detail longer than [`MAX_ALERT_DETAIL_BYTES`].
    #[error("alert detail is {0} bytes, more than {MAX_ALERT_DETAIL_BYTES}")]
    DetailTooLong(usize),
    /// More evidence entries than [`MAX_ALERT_EVIDENCE`].
    #[error("alert carries {0} evidence entries, more than {MAX_ALERT_EVIDENCE}")]
    TooMuchEvidence(usize),
    /// The reporter accuses itself.
    #[error("an alert's reporter cannot be the accused")]
    SelfAccusation,
    /// Bad signature.
    #[error("alert signature: {0}")]
    Signature(#[from] SignatureError),
}

impl SecurityAlert {
    /// Stateless checks: bounds and the reporter's signature.
    pub fn check(&self) -> Result<(), AlertError> {
        let b = &self.body;
        if b.detail.len() > MAX_ALERT_DETAIL_BYTES {
            return Err(AlertError::DetailTooLong(b.detail.len()));
        }
        if b.evidence.len() > MAX_ALERT_EVIDENCE {
            return Err(AlertError::TooMuchEvidence(b.evidence.len()));
        }
        if b.reporter == b.accused {
            return Err(AlertError::SelfAccusation);
        }
        b.reporter.verify(b.id().as_bytes(), &self.signature)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestation_signature_binds_every_field() {
        let key = Keypair::from_label("verifier");
        let body = AttestationBody {
            chain_id: 7,
            block: Hash::digest(b"b"),
            height: 3,
            verifier: key.public(),
            valid: true,
        };
        let mut att = body.sign(&key);
        assert!(att.verify_signature().is_ok());
        let decoded: Attestation = codec::decode(&codec::encode(&att)).unwrap();
        assert_eq!(decoded, att);
        att.body.valid = false;
        assert!(att.verify_signature().is_err());
    }

    #[test]
    fn alert_checks_bounds_and_signature() {
        let key = Keypair::from_label("supervisor");
        let body = SecurityAlertBody {
            chain_id: 7,
            task_id: Hash::digest(b"t"),
            reporter: key.public(),
            accused: Keypair::from_label("miner").public(),
            kind: AlertKind::GradientPoisoning,
            evidence: vec![Hash::digest(b"m")],
            detail: "cosine -0.98 against the median".into(),
        };
        let alert = body.clone().sign(&key);
        assert_eq!(alert.check(), Ok(()));
        let mut self_accused = body.clone();
        self_accused.accused = key.public();
        assert_eq!(self_accused.sign(&key).check(), Err(AlertError::SelfAccusation));
        let mut long = body;
        long.detail = "x".repeat(MAX_ALERT_DETAIL_BYTES + 1);
        assert!(matches!(long.sign(&key).check(), Err(AlertError::DetailTooLong(_))));
        let mut forged = alert;
        forged.body.kind = AlertKind::StaleUpdate;
        assert!(matches!(forged.check(), Err(AlertError::Signature(_))));
    }
}
