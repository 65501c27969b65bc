//! `pouw node`: a full node (chain, mempool, miner, P2P network).

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

/// `pouw node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Development mode: the built-in devnet chain, listening on loopback.
    #[arg(long)]
    dev: bool,
    /// Data directory (chain and proof databases, the node key).
    #[arg(long)]
    datadir: PathBuf,
    /// Chain spec: `devnet` or a TOML file.
    #[arg(long, default_value = "devnet")]
    chain: String,
    /// Key file (`pouw keys new`): the node's identity and miner account. Default: the
    /// data directory's `node.key`, created on first start.
    #[arg(long, alias = "miner-key")]
    key: Option<PathBuf>,
    /// Address to listen on, as a multiaddr (repeatable). Default: `/ip4/127.0.0.1/tcp/0`
    /// with `--dev`, else `/ip4/0.0.0.0/tcp/30333`.
    #[arg(long, value_parser = parse_multiaddr)]
    listen: Vec<Multiaddr>,
    /// Peer to connect to, as a multiaddr with or without `/p2p/<peer id>` (repeatable);
    /// retried until reachable.
    #[arg(long, value_parser = parse_multiaddr)]
    bootstrap: Vec<Multiaddr>,
    /// Worker roles (comma-separated: miner, supervisor, evaluator, verifier): a staking
    /// ticket is kept live for each, and the node works in every task it is selected for.
    #[arg(long, value_delimiter = ',', value_parser = parse_role)]
    roles: Vec<pouw_primitives::Role>,
    /// Do not mine (validate and relay only).
    #[arg(long)]
    no_mine: bool,
    /// Training threads (the results never depend on it).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Exit after mining this many blocks (default: run until Ctrl-C).
    #[arg(long)]
    blocks: Option<u64>,
    /// Serve JSON-RPC, `/metrics` and `/health` on this address (e.g. `127.0.0.1:8645`;
    /// port 0 picks a free one). Default: no RPC server.
    #[arg(long)]
    rpc: Option<std::net::SocketAddr>,
    /// Bearer token that admits admin RPC methods from any address (default: loopback only).
    #[arg(long, env = "POUW_RPC_TOKEN")]
    rpc_token: Option<String>,
}

fn parse_role(s: &str) -> Result<pouw_primitives::Role, String> {
    use pouw_primitives::Role;
    match s.trim().to_ascii_lowercase().as_str() {
        "miner" => Ok(Role::Miner),
        "supervisor" => Ok(Role::Supervisor),
        "evaluator" => Ok(Role::Evaluator),
        "verifier" => Ok(Role::Verifier),
        other => Err(format!(
            "unknown role `{other}`: expected miner, supervisor, evaluator or verifier"
        )),
    }
}

fn parse_multiaddr(s: &str) -> Result<Multiaddr, String> {
    s.parse().map_err(|e| format!("`{s}` is not a multiaddr ({e}); e.g. /ip4/127.0.0.1/tcp/4001"))
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
    let spec = ChainSpec::load(&args.chain)?;
    std::fs::create_dir_all(&args.datadir)
        .with_context(|| format!("creating the data directory {}", args.datadir.display()))?;
    let key = match &args.key {
        Some(path) => crate::keys::read_key(path)?,
        None => load_or_create_key(&args.datadir.join(NODE_KEY_FILE))?,
    };
    let mut config = NodeConfig::new(args.datadir.clone(), spec, key);
    config.listen = if !args.listen.is_empty() {
        args.listen
    } else if args.dev {
        vec!["/ip4/127.0.0.1/tcp/0".parse()?]
    } else {
        vec!["/ip4/0.0.0.0/tcp/30333".parse()?]
    };
    config.bootstrap = args.bootstrap;
    config.mine = !args.no_mine;
    config.roles = args.roles;
    config.threads = args.threads.max(1);
    config.max_blocks = args.blocks;
    config.rpc = args.rpc;
    config.rpc_config.admin_token = args.rpc_token;
    let mut node = NodeHandle::start(config)
        .with_context(|| format!("starting the node in {}", args.datadir.display()))?;
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
