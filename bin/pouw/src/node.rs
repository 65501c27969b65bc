//! `pouw node`: a full node (chain, mempool, miner, P2P network).

use crate::config::{
    self, parse_multiaddr, parse_socket_addr, parse_threads, Layer, NodeRole, Settings,
};
use anyhow::{Context, Result};
use clap::Args;
use pouw_net::Multiaddr;
use pouw_node::{NodeConfig, NodeHandle};
use pouw_primitives::{ChainSpec, Keypair};
use std::{
    path::{Path, PathBuf},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

/// File in the data directory holding the node's own key (network identity, miner account).
pub(crate) const NODE_KEY_FILE: &str = "node.key";

/// File in the data directory holding the chain spec the node runs with (written at every
/// start; `pouw chain ... --datadir` reads it when no `--chain` is given).
pub(crate) const CHAIN_SPEC_FILE: &str = "chainspec.toml";

/// Records `spec` in the data directory (through a temporary file and a rename, so a reader
/// never sees half a file), unless the same text is there already.
fn record_spec(datadir: &Path, spec: &ChainSpec) -> Result<()> {
    let path = datadir.join(CHAIN_SPEC_FILE);
    let text = spec.to_toml();
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let tmp = datadir.join(format!("{CHAIN_SPEC_FILE}.tmp"));
    std::fs::write(&tmp, &text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("recording the chain spec in {}", path.display()))
}

/// `pouw node`.
///
/// Settings come in layers: built-in defaults, then the `--config` file, then `POUW_*`
/// environment variables, then these flags (`docs/node-config.md`).
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// TOML config file (keys: `docs/node-config.md`; example: `config/node.example.toml`).
    #[arg(long, env = "POUW_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (defaults, file, environment and flags merged) as
    /// TOML and exit. The RPC token is shown as `<redacted>`.
    #[arg(long)]
    print_config: bool,
    /// Development mode: the built-in devnet chain, listening on loopback.
    #[arg(long)]
    dev: bool,
    /// Data directory (chain and proof databases, the node key). Required here, in the config
    /// file or in POUW_DATADIR.
    #[arg(long)]
    datadir: Option<PathBuf>,
    /// Chain spec: `devnet` (default) or a TOML file.
    #[arg(long)]
    chain: Option<String>,
    /// Key file (`pouw keys new`): the node's identity and miner account. Default: the
    /// data directory's `node.key`, created on first start.
    #[arg(long, alias = "miner-key")]
    key: Option<PathBuf>,
    /// Roles, comma-separated: miner, supervisor, evaluator, verifier, client (default:
    /// miner).
    #[arg(long, value_delimiter = ',', value_parser = parse_role)]
    roles: Option<Vec<NodeRole>>,
    /// Address to listen on, as a multiaddr (repeatable). Default: `/ip4/127.0.0.1/tcp/0`
    /// with `--dev`, else `/ip4/0.0.0.0/tcp/30333`.
    #[arg(long, value_parser = parse_multiaddr)]
    listen: Vec<Multiaddr>,
    /// Peer to connect to, as a multiaddr with or without `/p2p/<peer id>` (repeatable);
    /// retried until reachable.
    #[arg(long, value_parser = parse_multiaddr)]
    bootstrap: Vec<Multiaddr>,
    /// Peer limits, advertised addresses, discovery.
    #[command(flatten)]
    peers: Box<PeerFlags>,
    /// Do not mine (validate and relay only): drops the `miner` role.
    #[arg(long)]
    no_mine: bool,
    /// Light mode: accept a block without replaying it once a strict majority of its
    /// verifiers attested it valid (docs/design/006-verifiers.md).
    #[arg(long)]
    light: bool,
    /// Training threads (the results never depend on it). Default: 1.
    #[arg(long, value_parser = parse_threads)]
    threads: Option<usize>,
    /// Pause between two training iterations, in milliseconds (default 0), to share a CPU.
    #[arg(long)]
    mining_pause_ms: Option<u64>,
    /// Exit after mining this many blocks (default: run until Ctrl-C).
    #[arg(long)]
    blocks: Option<u64>,
    /// Serve JSON-RPC, `/metrics` and `/health` on this address (e.g. `127.0.0.1:8645`;
    /// port 0 picks a free one). Default: no RPC server.
    #[arg(long, value_parser = parse_socket_addr)]
    rpc: Option<std::net::SocketAddr>,
    /// Bearer token that admits admin RPC methods from any address (default: loopback only).
    #[arg(long)]
    rpc_token: Option<String>,
    /// Test the network's defences: behave as a hostile worker (sign-flip, late-sign-flip,
    /// end-sign-flip, noise, stale,
    /// lying-supervisor, lying-evaluator, bad-model, evaluator-theft; or, on a client,
    /// withhold-test; docs/attacks.md). Never on a real network.
    #[arg(long, hide = true)]
    attack: Option<pouw_node::Attack>,
    /// Stake of every worker role's ticket, in coins (default: the chain's
    /// `min_ticket_stake`); `[staking]` in the config file sets it per role.
    #[arg(long)]
    stake: Option<pouw_primitives::Amount>,
    /// Offer a GPU in the tickets (tasks that need one can select this node).
    #[arg(long)]
    gpu: bool,
    /// The smallest task fee the tickets accept, in coins.
    #[arg(long)]
    min_fee: Option<pouw_primitives::Amount>,
}

/// The peer flags of `pouw node` (`[peers]` in the config file; boxed, they are many).
#[derive(Debug, Args)]
struct PeerFlags {
    /// Most connected peers (default 50; `[peers]` in the config file).
    #[arg(long, value_parser = config::parse_peer_count)]
    max_peers: Option<u32>,
    /// Most inbound connections (default 40, at most `--max-peers`).
    #[arg(long, value_parser = config::parse_peer_count)]
    max_inbound: Option<u32>,
    /// Most outbound connections (default 20, at most `--max-peers`).
    #[arg(long, value_parser = config::parse_peer_count)]
    max_outbound: Option<u32>,
    /// Connected peers discovery keeps up (default 8; 0: no discovery rounds).
    #[arg(long, value_parser = config::parse_peer_count)]
    target_peers: Option<u32>,
    /// Address peers should dial this node on, advertised instead of the listen addresses
    /// (behind a port mapping or a link emulator), as a multiaddr (repeatable).
    #[arg(long, value_parser = parse_multiaddr)]
    external_addr: Vec<Multiaddr>,
    /// No Kademlia discovery: talk to the bootstrap and static peers and whoever dials in.
    #[arg(long)]
    no_discovery: bool,
}

fn parse_role(s: &str) -> Result<NodeRole, String> {
    s.parse()
}

impl NodeArgs {
    /// The flags as the last settings layer.
    fn flag_layer(&self) -> Layer {
        let nonempty = |v: &Vec<Multiaddr>| (!v.is_empty()).then(|| v.clone());
        Layer {
            datadir: self.datadir.clone(),
            chain: self.chain.clone(),
            key: self.key.clone(),
            roles: self.roles.clone(),
            listen: nonempty(&self.listen),
            bootstrap: nonempty(&self.bootstrap),
            threads: self.threads,
            dev: self.dev.then_some(true),
            light: self.light.then_some(true),
            rpc_listen: self.rpc,
            rpc_token: self.rpc_token.clone(),
            mining_pause_ms: self.mining_pause_ms,
            stake: self.stake,
            gpu: self.gpu.then_some(true),
            min_fee: self.min_fee,
            max_peers: self.peers.max_peers,
            max_inbound: self.peers.max_inbound,
            max_outbound: self.peers.max_outbound,
            target_peers: self.peers.target_peers,
            external_addrs: nonempty(&self.peers.external_addr),
            discovery: self.peers.no_discovery.then_some(false),
            ..Layer::default()
        }
    }

    /// Every layer merged: defaults < file < environment < flags.
    fn settings(&self, env: impl Fn(&str) -> Option<String>) -> Result<Settings> {
        let mut layers = Vec::new();
        if let Some(path) = &self.config {
            layers.push(config::file_layer(path)?);
        }
        layers.push(config::env_layer(env)?);
        layers.push(self.flag_layer());
        config::resolve(layers, self.no_mine)
    }
}

/// The key in `path`, or a new one written there (mode 0600).
fn load_or_create_key(path: &Path) -> Result<Keypair> {
    if path.exists() {
        return crate::keys::read_key(path);
    }
    let key = Keypair::generate();
    crate::keys::write_key(path, &key)?;
    tracing::info!(target: "node", path = %path.display(), address = %key.public(), "created the node key");
    Ok(key)
}

pub(crate) fn run(args: NodeArgs) -> Result<()> {
    let settings = args.settings(config::process_env)?;
    let spec = ChainSpec::load(&settings.chain)?;
    if args.print_config {
        print!("{}", settings.to_toml(false));
        return Ok(());
    }
    let datadir = settings.datadir.clone();
    std::fs::create_dir_all(&datadir)
        .with_context(|| format!("creating the data directory {}", datadir.display()))?;
    let key = match &settings.key {
        Some(path) => crate::keys::read_key(path)?,
        None => load_or_create_key(&datadir.join(NODE_KEY_FILE))?,
    };
    let spec_min_stake = spec.min_ticket_stake;
    let mut config = NodeConfig::new(datadir.clone(), spec, key);
    config.listen = settings.listen.clone();
    config.bootstrap = settings.bootstrap.clone();
    config.peers = settings.peers;
    config.external_addrs = settings.external_addrs.clone();
    config.discovery = settings.discovery;
    config.requests = settings.requests;
    config.replay_fraction = settings.replay_fraction;
    config::wire_roles(&mut config, &settings.roles);
    config.light = settings.light;
    config.threads = settings.threads.max(1);
    config.mining_pause = settings.mining_pause;
    config.max_blocks = args.blocks;
    for (role, stake) in &settings.staking.stake {
        anyhow::ensure!(
            *stake >= spec_min_stake,
            "the {role:?} ticket stake {stake} is below the chain's min_ticket_stake \
             {spec_min_stake} (--stake or [staking] in the config file)"
        );
    }
    config.staking = settings.staking.clone();
    for h in &settings.security_handlers {
        let handler: std::sync::Arc<dyn pouw_node::SecurityHandler> = match &h.action {
            config::HandlerAction::Exec(program) => {
                std::sync::Arc::new(pouw_node::ExecHandler::new(program.clone(), h.timeout))
            }
            config::HandlerAction::Webhook(url) => {
                let url = url.parse().map_err(|e: String| anyhow::anyhow!(e))?;
                std::sync::Arc::new(pouw_node::WebhookHandler::new(url, h.timeout))
            }
        };
        for kind in &h.kinds {
            config.security.register(*kind, handler.clone());
        }
        tracing::info!(target: "node", handler = handler.name(), kinds = ?h.kinds, "security alert handler");
    }
    config.attack = args.attack;
    if let Some(attack) = args.attack {
        tracing::warn!(target: "node", %attack, "this node behaves as a hostile worker on purpose");
    }
    config.rpc = settings.rpc_listen;
    config.rpc_config = pouw_rpc::RpcConfig { assets: config.rpc_config.assets, ..settings.rpc };
    let spec = config.spec.clone();
    let mut node = NodeHandle::start(config)
        .with_context(|| format!("starting the node in {}", datadir.display()))?;
    // Recorded once the node opened the chain with it (a spec the data directory's genesis
    // refuses is never recorded).
    if let Err(e) = record_spec(&datadir, &spec) {
        node.stop_flag().store(true, Ordering::SeqCst);
        let _ = node.wait();
        return Err(e);
    }
    for addr in node.p2p_addrs() {
        tracing::info!(target: "node", %addr, "listening");
    }
    let stop = node.stop_flag();
    // SIGINT and SIGTERM both stop the loop after the current iteration; every block is
    // already committed when it is imported, so nothing is lost.
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    let started = Instant::now();
    let mut last_log = Instant::now();
    while node.is_running() && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        let s = node.stats().snapshot();
        if args.blocks.is_some_and(|n| s.blocks_mined >= n) {
            break;
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            let rate = s.iterations as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let peers = node.net().stats().connected;
            tracing::info!(
                target: "node",
                height = s.height,
                peers,
                mined = s.blocks_mined,
                verified = s.blocks_verified,
                rejected = s.blocks_rejected,
                rate = format!("{rate:.0} it/s"),
                "status"
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    node.wait().context("node stopped on an error")
}
