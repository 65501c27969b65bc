//! The chain spec: genesis and every consensus parameter, in a TOML file or built in.

use crate::{Address, Amount, CompactTarget, Keypair, Timestamp, COIN};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A genesis allocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// Account.
    pub address: Address,
    /// Starting balance.
    pub balance: Amount,
}

/// Genesis block contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Genesis timestamp.
    pub timestamp: Timestamp,
    /// Starting balances.
    pub allocations: Vec<Allocation>,
}

/// Every consensus parameter of a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    /// Human name (`devnet`, ...).
    pub name: String,
    /// Chain id signed into every transaction.
    pub chain_id: u64,
    /// Target block interval in milliseconds.
    pub block_time_ms: u64,
    /// Retarget every this many blocks.
    pub retarget_window: u64,
    /// Target of the first retarget window.
    pub initial_target: CompactTarget,
    /// The easiest target allowed.
    pub max_target: CompactTarget,
    /// New coins per block (the only way supply grows).
    pub block_reward: Amount,
    /// Basis points of `block_reward` shared by the verifier committee of a block's parent,
    /// paid to the members whose attestations the block carries (design/011); the parts of
    /// the others are not minted. 0 (no share) when a file leaves it out.
    #[serde(default)]
    pub verifier_share_bps: u16,
    /// Largest encoded block.
    pub max_block_bytes: u64,
    /// Most transactions per block.
    pub max_block_txs: u32,
    /// How far ahead of the local clock a block timestamp may be.
    pub max_future_ms: u64,
    /// Iterations between a zero-nonce commitment and the block mined with it (k).
    pub commitment_depth: u32,
    /// omega_b in parts per billion per batch byte (nonce budget).
    pub omega_b_ppb: u64,
    /// omega_m in parts per billion per model parameter (nonce budget).
    pub omega_m_ppb: u64,
    /// omega_f in parts per billion per training FLOP of the batch (nonce budget). 0 when a
    /// file leaves it out.
    #[serde(default)]
    pub omega_f_ppb: u64,
    /// omega_i in parts per billion per iteration (nonce budget: the fixed part of an
    /// iteration's cost). 0 when a file leaves it out.
    #[serde(default)]
    pub omega_i_ppb: u64,
    /// Smallest nonce budget a full batch of a client task's iteration must earn for its
    /// PayForTask to be accepted (the minimum task cost). 1 when a file leaves it out.
    #[serde(default = "default_min_task_nonces")]
    pub min_task_nonces: u64,
    /// Fewest training FLOPs (forward and backward of a full batch) a client task's iteration
    /// must spend per nonce it earns, or its PayForTask is refused: no task may buy nonces
    /// cheaper than the chain prices them. 0 (no check) when a file leaves it out.
    #[serde(default)]
    pub min_flops_per_nonce: u64,
    /// Fewest units (runs of input features, or kernel taps) a client task's first layer must
    /// give the order seed to shuffle, or its PayForTask is refused (design/010, "The
    /// binding"). 0 (no check) when a file leaves it out.
    #[serde(default)]
    pub min_order_units: u32,
    /// The client's bond, in basis points of the task fee, locked by a PayForTask besides the
    /// fee escrow (design/014): returned with the verdict, the refusal or at expiry, and
    /// confiscated to the miners that submitted a model if the test set was withheld. 0 (no
    /// bond) when a file leaves it out.
    #[serde(default)]
    pub client_bond_bps: u16,
    /// Blocks per filler epoch (a filler model trains this long before the next one).
    pub filler_epoch_blocks: u64,
    /// Smallest stake a ticket may lock.
    pub min_ticket_stake: Amount,
    /// Longest ticket lifetime in blocks.
    pub max_ticket_blocks: u64,
    /// Genesis.
    pub genesis: Genesis,
}

/// Why a chain spec could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainSpecError {
    /// The file could not be read.
    #[error("cannot read chain spec {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML is invalid.
    #[error("invalid chain spec {path}: {source}")]
    Parse {
        /// Path.
        path: String,
        /// Cause.
        source: Box<toml::de::Error>,
    },
    /// A parameter is out of range.
    #[error("invalid chain spec {path}: {reason}")]
    Invalid {
        /// Path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// `min_task_nonces` of a chain-spec file that leaves it out.
fn default_min_task_nonces() -> u64 {
    1
}

/// Labels of the funded devnet accounts (`Keypair::from_label`).
pub const DEVNET_ACCOUNTS: usize = 16;

impl ChainSpec {
    /// The built-in local development network.
    pub fn devnet() -> Self {
        let allocations = (0..DEVNET_ACCOUNTS)
            .map(|i| Allocation {
                address: Self::devnet_key(i).public(),
                balance: Amount(1_000_000 * COIN),
            })
            .collect();
        Self {
            name: "devnet".into(),
            chain_id: 0x706f_7577_6465_7631, // "pouwdev1"
            block_time_ms: 5_000,
            retarget_window: 20,
            // About 17 nonces per filler iteration (design/010, "The budget follows the
            // time"): 2/17 of the target the old budget of 2 nonces had.
            initial_target: CompactTarget(0x1e59_b700),
            max_target: CompactTarget(0x2100_ffff),
            block_reward: Amount(50 * COIN),
            verifier_share_bps: 500,
            max_block_bytes: crate::MAX_BLOCK_BYTES as u64,
            max_block_txs: 5_000,
            max_future_ms: 15_000,
            commitment_depth: 5,
            // One nonce per 10 us of an honest iteration's measured CPU time (design/010):
            // 0.2096 ns per batch byte, 1.483 ns per parameter, 0.00813 ns per FLOP, 24.4 us
            // per iteration.
            omega_b_ppb: 20_960,
            omega_m_ppb: 148_300,
            omega_f_ppb: 813,
            omega_i_ppb: 2_442_000_000,
            min_task_nonces: 8,
            min_flops_per_nonce: 200_000,
            min_order_units: 9,
            client_bond_bps: 2_000,
            filler_epoch_blocks: 100,
            min_ticket_stake: Amount(10 * COIN),
            max_ticket_blocks: 1_000_000,
            genesis: Genesis { timestamp: Timestamp(1_764_000_000_000), allocations },
        }
    }

    /// The key of devnet account `i` (deterministic; anyone can spend these).
    pub fn devnet_key(i: usize) -> Keypair {
        Keypair::from_label(&format!("devnet-{i}"))
    }

    /// Parses and validates a spec from TOML text; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ChainSpecError> {
        let spec: Self = toml::from_str(text)
            .map_err(|e| ChainSpecError::Parse { path: origin.to_string(), source: Box::new(e) })?;
        spec.validate()
            .map_err(|reason| ChainSpecError::Invalid { path: origin.into(), reason })?;
        Ok(spec)
    }

    /// Loads `devnet` (built in) or a TOML file.
    pub fn load(name_or_path: &str) -> Result<Self, ChainSpecError> {
        if name_or_path == "devnet" {
            return Ok(Self::devnet());
        }
        let text = std::fs::read_to_string(Path::new(name_or_path))
            .map_err(|source| ChainSpecError::Io { path: name_or_path.into(), source })?;
        Self::from_toml(&text, name_or_path)
    }

    /// TOML text of this spec.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a chain spec always serializes")
    }

    /// Range checks on the parameters.
    pub fn validate(&self) -> Result<(), String> {
        if self.block_time_ms == 0 {
            return Err("block_time_ms must be positive".into());
        }
        if self.retarget_window == 0 {
            return Err("retarget_window must be positive".into());
        }
        let (Some(init), Some(max)) =
            (self.initial_target.to_target(), self.max_target.to_target())
        else {
            return Err("initial_target and max_target must be valid compact targets".into());
        };
        if init > max {
            return Err("initial_target is easier than max_target".into());
        }
        if self.commitment_depth == 0 {
            return Err("commitment_depth must be positive".into());
        }
        if self.max_block_txs == 0 || self.max_block_bytes < 1024 {
            return Err("block limits are too small".into());
        }
        if self.verifier_share_bps > 10_000 {
            return Err("verifier_share_bps must be at most 10000".into());
        }
        if self.filler_epoch_blocks == 0 {
            return Err("filler_epoch_blocks must be positive".into());
        }
        let mut total = Amount::ZERO;
        for a in &self.genesis.allocations {
            total = total.checked_add(a.balance).ok_or("genesis allocations overflow")?;
        }
        let mut seen = std::collections::BTreeSet::new();
        if !self.genesis.allocations.iter().all(|a| seen.insert(a.address)) {
            return Err("genesis allocates one address twice".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_round_trips_through_toml() {
        let spec = ChainSpec::devnet();
        spec.validate().unwrap();
        let text = spec.to_toml();
        assert_eq!(ChainSpec::from_toml(&text, "x").unwrap(), spec);
    }

    #[test]
    fn a_file_without_the_task_cost_minimums_gets_their_defaults() {
        let spec = ChainSpec::devnet();
        let text: String = spec
            .to_toml()
            .lines()
            .filter(|l| !l.starts_with("min_task_nonces") && !l.starts_with("min_flops_per_nonce"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!text.contains("min_task_nonces") && !text.contains("min_flops"));
        let loaded = ChainSpec::from_toml(&text, "old.toml").unwrap();
        assert_eq!((loaded.min_task_nonces, loaded.min_flops_per_nonce), (1, 0));
        let restored = ChainSpec {
            min_task_nonces: spec.min_task_nonces,
            min_flops_per_nonce: spec.min_flops_per_nonce,
            ..loaded
        };
        assert_eq!(restored, spec);
    }

    #[test]
    fn a_file_without_the_client_bond_gets_no_bond() {
        let spec = ChainSpec::devnet();
        assert_eq!(spec.client_bond_bps, 2_000);
        let text: String = spec
            .to_toml()
            .lines()
            .filter(|l| !l.starts_with("client_bond_bps"))
            .map(|l| format!("{l}\n"))
            .collect();
        let loaded = ChainSpec::from_toml(&text, "old.toml").unwrap();
        assert_eq!(loaded.client_bond_bps, 0);
        assert_eq!(ChainSpec { client_bond_bps: spec.client_bond_bps, ..loaded }, spec);
    }

    #[test]
    fn bad_specs_are_named() {
        let err = ChainSpec::from_toml("name = 3", "bad.toml").unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
        let mut spec = ChainSpec::devnet();
        spec.retarget_window = 0;
        let err = ChainSpec::from_toml(&spec.to_toml(), "w.toml").unwrap_err().to_string();
        assert!(err.contains("retarget_window"), "{err}");
        let mut spec = ChainSpec::devnet();
        let dup = spec.genesis.allocations[0].clone();
        spec.genesis.allocations.push(dup);
        assert!(spec.validate().is_err());
    }
}
