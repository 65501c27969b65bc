//! Node settings.

use pouw_net::Multiaddr;
use pouw_primitives::{ChainSpec, Keypair};
use std::{path::PathBuf, time::Duration};

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory (chain and proof databases).
    pub datadir: PathBuf,
    /// Chain spec (genesis and consensus parameters).
    pub spec: ChainSpec,
    /// The node's key: its network identity and, when mining, the miner key.
    pub key: Keypair,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers.
    pub bootstrap: Vec<Multiaddr>,
    /// Mine (train) with every turn of the loop.
    pub mine: bool,
    /// Training threads (results never depend on it).
    pub threads: usize,
    /// Pause between two training iterations (zero: none), to share a CPU.
    pub mining_pause: Duration,
    /// Stop mining after this many blocks mined (the node keeps running).
    pub max_blocks: Option<u64>,
    /// How often every peer is asked for its chain status.
    pub status_interval: Duration,
    /// fsync every block (default); tests may turn it off.
    pub durable: bool,
    /// Serve JSON-RPC, `/metrics` and `/health` on this address (port 0: any free port).
    pub rpc: Option<std::net::SocketAddr>,
    /// RPC server settings.
    pub rpc_config: pouw_rpc::RpcConfig,
    /// Worker roles this node offers (a staking ticket is kept live for each; the node acts
    /// in every task it is selected for). Mining the chain is [`NodeConfig::mine`].
    pub roles: Vec<pouw_primitives::Role>,
}

impl NodeConfig {
    /// Defaults: listen on an OS-chosen loopback port, mine, one thread.
    pub fn new(datadir: PathBuf, spec: ChainSpec, key: Keypair) -> Self {
        Self {
            datadir,
            spec,
            key,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")],
            bootstrap: Vec::new(),
            mine: true,
            threads: 1,
            mining_pause: Duration::ZERO,
            max_blocks: None,
            status_interval: Duration::from_secs(2),
            durable: true,
            rpc: None,
            rpc_config: pouw_rpc::RpcConfig {
                assets: pouw_dashboard::ASSETS,
                ..Default::default()
            },
            roles: Vec::new(),
        }
    }
}

/// The devnet with a fixed difficulty of about `nonces_per_block` nonces per block (no
/// retargeting within 1,000,000 blocks): for loopback test networks and benchmarks, where
/// the block rate must not depend on how fast the machine happens to be at the start.
pub fn local_spec(nonces_per_block: u64) -> ChainSpec {
    use pouw_primitives::{CompactTarget, Uint256};
    let mut spec = ChainSpec::devnet();
    spec.name = format!("local-{nonces_per_block}");
    spec.retarget_window = 1_000_000;
    spec.initial_target =
        CompactTarget::from_target(Uint256::MAX / Uint256::from(nonces_per_block.max(1)));
    spec
}
