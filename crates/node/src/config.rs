//! Node settings.

use pouw_net::Multiaddr;
use pouw_primitives::{Amount, ChainSpec, Keypair, Role, TicketPreferences};
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

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
    /// Peer limits and discovery target (`pouw_net::NetConfig`): most connected peers, most
    /// inbound and outbound connections, and the peer count discovery keeps up. The peer
    /// table is kept in `<datadir>/peers`.
    pub peers: PeerLimits,
    /// Addresses peers should dial this node on, advertised instead of the listen addresses
    /// (behind a port mapping or a link emulator). Empty: the listen addresses.
    pub external_addrs: Vec<Multiaddr>,
    /// Kademlia discovery and routing of requests to peers not connected (design/015). Off:
    /// bootstrap and static peers, and whoever dials in, only.
    pub discovery: bool,
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
    /// Light mode (design/006): a gossiped block whose cheap checks pass is imported without
    /// replay once a strict majority of its verifiers attested it valid.
    pub light: bool,
    /// Light mode: how long a block waits for its attestation quorum before it is replayed.
    pub attestation_timeout: Duration,
    /// Per-peer request rate limit (`[requests]` in the config file): a token bucket per peer;
    /// a request over it is refused, a peer that keeps exceeding it is banned for a while.
    pub requests: crate::RequestLimits,
    /// Hostile behaviour adopted on purpose, to exercise the network's defences
    /// (`pouw devnet --attack`, docs/attacks.md). `None` on every real node.
    pub attack: Option<Attack>,
    /// Custom security handlers per alert kind (the built-in stake-confiscation handler is
    /// always added; `security` module docs).
    pub security: crate::SecurityHandlers,
    /// The staking tickets the node buys for its worker roles.
    pub staking: Staking,
    /// Supervisor: the fraction of each miner's iteration messages it replays (design/020);
    /// `None`: `1 / miners` of each (about one miner's training per task); `Some(1.0)`: every
    /// message.
    pub replay_fraction: Option<f64>,
}

/// Peer limits of a node (defaults: those of `pouw_net::NetConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// Most connected peers.
    pub max_peers: u32,
    /// Most inbound connections.
    pub max_inbound: u32,
    /// Most outbound connections.
    pub max_outbound: u32,
    /// Connected peers discovery looks for (0: none, bootstrap and static peers only).
    pub target_peers: u32,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self { max_peers: 50, max_inbound: 40, max_outbound: 20, target_peers: 8 }
    }
}

/// How the node stakes its worker roles' tickets (`[staking]` in the node config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staking {
    /// Stake per role; a role missing here stakes the chain's `min_ticket_stake`.
    pub stake: BTreeMap<Role, Amount>,
    /// What the node offers in every ticket (GPU, smallest task fee, largest model).
    pub preferences: TicketPreferences,
    /// A ticket lasts this many blocks (capped by the chain's `max_ticket_blocks`).
    pub ticket_blocks: u64,
    /// The next ticket is bought once the live one has this many blocks or fewer left (at most
    /// half of `ticket_blocks`), so a role never goes without one.
    pub renew_blocks: u64,
}

impl Default for Staking {
    fn default() -> Self {
        Self {
            stake: BTreeMap::new(),
            preferences: TicketPreferences::default(),
            ticket_blocks: 500_000,
            renew_blocks: 1_000,
        }
    }
}

impl Staking {
    /// The stake of a ticket for `role` on `spec`.
    pub fn stake_for(&self, role: Role, spec: &ChainSpec) -> Amount {
        self.stake.get(&role).copied().unwrap_or(spec.min_ticket_stake)
    }

    /// Blocks a ticket bought on `spec` lasts.
    fn life(&self, spec: &ChainSpec) -> u64 {
        self.ticket_blocks.min(spec.max_ticket_blocks).max(1)
    }

    /// The height a ticket bought at `height` on `spec` expires at.
    pub fn expiry(&self, height: u64, spec: &ChainSpec) -> u64 {
        height.saturating_add(self.life(spec))
    }

    /// A ticket expiring at `expires_at` still counts at `height` on `spec` (it is not due for
    /// renewal). The margin is at most half a ticket's life, so a fresh ticket always counts.
    pub fn lasts(&self, expires_at: u64, height: u64, spec: &ChainSpec) -> bool {
        let margin = self.renew_blocks.min(self.life(spec) / 2);
        expires_at > height.saturating_add(margin)
    }
}

/// A hostile behaviour a node can adopt to test the defences of the others (SPEC section 6).
/// Each one breaks the protocol in a way the honest nodes must detect and punish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// Miner: gossips its iteration messages with every sign flipped.
    SignFlip,
    /// Miner: gossips honest messages up to iteration 100, then every sign flipped (caught
    /// mid-stream by the supervisors' sampled replays, design/020).
    LateSignFlip,
    /// Miner: gossips honest messages until the last 24 iterations of its walk, then every
    /// sign flipped (flagged too late for training: convicted in Finalising, design/009).
    EndSignFlip,
    /// Miner: gossips random message maps (random coordinates and signs).
    Noise,
    /// Miner: gossips an old message map of its own again as each new iteration's.
    Stale,
    /// Supervisor: commits wrong message-history roots.
    LyingSupervisor,
    /// Evaluator: votes a wrong verdict at once, without testing (one miner gets the whole pot).
    LyingEvaluator,
    /// Miner: trains honestly, then submits (and serves) a final model of another shape, and
    /// on its next task one full of NaN.
    BadModel,
    /// Evaluator: tests honestly, then votes a verdict that confiscates the best honest
    /// miner's stake (`pouw devnet` runs two such evaluators of three).
    EvaluatorTheft,
    /// Client: serves its training segments, never its test segments, so no evaluator can
    /// vote; it loses its bond and the miners are paid from its escrow (design/014).
    WithholdTest,
    /// Miner: grinds headers on the filler task: each mining iteration also tries other
    /// headers, each re-running the iteration (the best strategy under the binding), and once,
    /// after a few blocks, forges a block by the old strategy (one iteration, header re-rolled),
    /// which every honest node refuses (design/010).
    Grind,
    /// Client: pays for a self-dealt task of the shape that buys the most nonces per
    /// CPU-second under the chain's budget, for a GPU-only miner seat an accomplice holds
    /// (design/010, attack 2); `pouw devnet --attack tiny-task` measures the accomplice's rate.
    TinyTask,
}

impl Attack {
    /// Every attack, in the order the CLI lists them.
    pub const ALL: [Self; 12] = [
        Self::SignFlip,
        Self::LateSignFlip,
        Self::EndSignFlip,
        Self::Noise,
        Self::Stale,
        Self::LyingSupervisor,
        Self::LyingEvaluator,
        Self::BadModel,
        Self::EvaluatorTheft,
        Self::WithholdTest,
        Self::Grind,
        Self::TinyTask,
    ];

    /// The CLI name (`sign-flip`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::SignFlip => "sign-flip",
            Self::LateSignFlip => "late-sign-flip",
            Self::EndSignFlip => "end-sign-flip",
            Self::Noise => "noise",
            Self::Stale => "stale",
            Self::LyingSupervisor => "lying-supervisor",
            Self::LyingEvaluator => "lying-evaluator",
            Self::BadModel => "bad-model",
            Self::EvaluatorTheft => "evaluator-theft",
            Self::WithholdTest => "withhold-test",
            Self::Grind => "grind",
            Self::TinyTask => "tiny-task",
        }
    }

    /// The worker role whose behaviour the attack changes; `None` for the client's.
    pub fn role(self) -> Option<pouw_primitives::Role> {
        use pouw_primitives::Role;
        match self {
            Self::SignFlip
            | Self::LateSignFlip
            | Self::EndSignFlip
            | Self::Noise
            | Self::Stale
            | Self::BadModel
            | Self::Grind => Some(Role::Miner),
            Self::LyingSupervisor => Some(Role::Supervisor),
            Self::LyingEvaluator | Self::EvaluatorTheft => Some(Role::Evaluator),
            Self::WithholdTest | Self::TinyTask => None,
        }
    }
}

impl std::fmt::Display for Attack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Attack {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|a| a.name()).collect();
            format!("unknown attack `{s}` (expected one of: {})", names.join(", "))
        })
    }
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
            peers: PeerLimits::default(),
            external_addrs: Vec::new(),
            discovery: true,
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
            light: false,
            attestation_timeout: Duration::from_secs(10),
            requests: crate::RequestLimits::default(),
            attack: None,
            security: crate::SecurityHandlers::default(),
            staking: Staking::default(),
            replay_fraction: None,
        }
    }
}

/// The devnet with a fixed difficulty of about `iterations_x2 / 2` filler iterations per
/// block (no retargeting within 1,000,000 blocks): for loopback test networks and benchmarks,
/// where the block rate must not depend on how fast the machine happens to be at the start.
/// (The argument counts nonces at two per filler iteration, the budget before it followed the
/// iteration's time; the target scales by the filler's budget today, so the block rate per
/// iteration stays what the tests were tuned for.)
pub fn local_spec(iterations_x2: u64) -> ChainSpec {
    use pouw_primitives::{CompactTarget, Hash, Uint256};
    let mut spec = ChainSpec::devnet();
    spec.name = format!("local-{iterations_x2}");
    spec.retarget_window = 1_000_000;
    let (_, filler) = pouw_consensus::pouw::filler_task(&spec, &Hash::ZERO);
    let per_iteration = pouw_consensus::pouw::task_nonce_budget(&spec, &filler).max(2);
    let nonces = iterations_x2.max(1).saturating_mul(per_iteration) / 2;
    spec.initial_target = CompactTarget::from_target(Uint256::MAX / Uint256::from(nonces.max(1)));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staking_stake_expiry_and_renewal() {
        let spec = ChainSpec::devnet();
        let mut s = Staking::default();
        assert_eq!(s.stake_for(Role::Miner, &spec), spec.min_ticket_stake);
        s.stake.insert(Role::Miner, Amount(50 * pouw_primitives::COIN));
        assert_eq!(s.stake_for(Role::Miner, &spec), Amount(50 * pouw_primitives::COIN));
        assert_eq!(s.stake_for(Role::Verifier, &spec), spec.min_ticket_stake);
        s.ticket_blocks = 100;
        s.renew_blocks = 10;
        assert_eq!(s.expiry(7, &spec), 107);
        s.ticket_blocks = u64::MAX;
        assert_eq!(s.expiry(7, &spec), 7 + spec.max_ticket_blocks);
        s.ticket_blocks = 100;
        // Renewed once 10 blocks or fewer are left.
        assert!(s.lasts(107, 96, &spec));
        assert!(!s.lasts(107, 97, &spec));
        // The margin never exceeds half a ticket's life (else every ticket would be renewed
        // at once, forever).
        s.renew_blocks = 1_000;
        assert!(s.lasts(107, 56, &spec));
        assert!(!s.lasts(107, 57, &spec));
        // ... and of the chain's cap on a ticket's life.
        let mut short = spec;
        short.max_ticket_blocks = 8;
        s.ticket_blocks = 500_000;
        assert_eq!(s.expiry(7, &short), 15);
        assert!(s.lasts(15, 10, &short));
        assert!(!s.lasts(15, 11, &short));
    }
}
