//! Server settings.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One embedded dashboard file: URL path (`/index.html`), content type, bytes.
pub type Asset = (&'static str, &'static str, &'static [u8]);

/// RPC server settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcConfig {
    /// Largest accepted request body (larger: HTTP 413).
    pub max_body_bytes: usize,
    /// Most requests in one JSON-RPC batch.
    pub max_batch: usize,
    /// Most open connections; more wait in the listen backlog.
    pub max_connections: usize,
    /// Bearer token that authorises admin methods from anywhere.
    pub admin_token: Option<String>,
    /// Allow admin methods from loopback addresses without a token.
    pub trust_loopback: bool,
    /// How long a node call may take before the request fails with "unavailable".
    #[serde(with = "millis")]
    pub call_timeout: Duration,
    /// How long a client may take to send the request head.
    #[serde(with = "millis")]
    pub header_timeout: Duration,
    /// How often process CPU and network bandwidth are sampled for `/health`.
    #[serde(with = "millis")]
    pub sample_interval: Duration,
    /// Most blocks one `pouw_recentBlocks` returns.
    pub max_recent_blocks: u32,
    /// Most points one `pouw_training` returns.
    pub max_training_points: u32,
    /// Dashboard files, served under `GET /` and `GET /dashboard` (`/index.html`) and at
    /// their own paths. Set in code by the node, never from a file.
    #[serde(skip)]
    pub assets: &'static [Asset],
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_batch: 100,
            max_connections: 256,
            admin_token: None,
            trust_loopback: true,
            call_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            sample_interval: Duration::from_secs(5),
            max_recent_blocks: 100,
            max_training_points: 1000,
            assets: &[],
        }
    }
}

impl RpcConfig {
    /// Settings for tests: fast sampling.
    pub fn test() -> Self {
        Self { sample_interval: Duration::from_millis(100), ..Self::default() }
    }
}

/// `Duration` as integer milliseconds in config files.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
