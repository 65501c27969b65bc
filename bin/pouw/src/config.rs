//! `pouw node` settings, in layers: built-in defaults, then the TOML file (`--config`), then
//! `POUW_*` environment variables, then command-line flags; each later layer overrides the
//! earlier ones key by key. `docs/node-config.md` documents every key.
//!
//! Every error names its source (the file, the variable or the flag), the key and the problem.

use anyhow::{anyhow, bail, Context, Result};
use pouw_net::Multiaddr;
use pouw_primitives::{Amount, Role};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

/// What a node does. Only `miner` changes the node today (it maps to `NodeConfig::mine`);
/// the other roles are validated and handed on by [`wire_roles`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NodeRole {
    Miner,
    Supervisor,
    Evaluator,
    Verifier,
    Client,
}

impl NodeRole {
    pub(crate) const ALL: [Self; 5] =
        [Self::Miner, Self::Supervisor, Self::Evaluator, Self::Verifier, Self::Client];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Miner => "miner",
            Self::Supervisor => "supervisor",
            Self::Evaluator => "evaluator",
            Self::Verifier => "verifier",
            Self::Client => "client",
        }
    }
}

impl FromStr for NodeRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Self::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|r| r.name()).collect();
            format!("unknown role `{s}` (expected one of: {})", names.join(", "))
        })
    }
}

/// Parses a multiaddr, with an example in the error.
pub(crate) fn parse_multiaddr(s: &str) -> Result<Multiaddr, String> {
    s.trim()
        .parse()
        .map_err(|e| format!("`{s}` is not a multiaddr ({e}); e.g. /ip4/127.0.0.1/tcp/4001"))
}

/// Parses a socket address for the RPC server.
pub(crate) fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| format!("`{s}` is not a socket address; e.g. 127.0.0.1:8645"))
}

/// Parses a training thread count (at least 1).
pub(crate) fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("`0` threads: at least 1 is needed".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a thread count (a whole number, at least 1)")),
    }
}

fn parse_number<T: FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.trim().parse().map_err(|_| format!("`{s}` is not {what}"))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("`{s}` is not a boolean (true/false, 1/0, yes/no, on/off)")),
    }
}

// ---- the file ----

/// The TOML file, as written (all keys optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    datadir: Option<PathBuf>,
    chain: Option<String>,
    key: Option<PathBuf>,
    roles: Option<Vec<String>>,
    listen: Option<Vec<String>>,
    bootstrap: Option<Vec<String>>,
    threads: Option<usize>,
    dev: Option<bool>,
    light: Option<bool>,
    #[serde(default)]
    rpc: RpcFile,
    #[serde(default)]
    mining: MiningFile,
    #[serde(default)]
    staking: StakingFile,
    #[serde(default)]
    security: SecurityFile,
    #[serde(default)]
    peers: PeersFile,
    #[serde(default)]
    requests: RequestsFile,
    #[serde(default)]
    supervisor: SupervisorFile,
}

/// `[supervisor]`: sampled screening (design/020).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SupervisorFile {
    replay_fraction: Option<f64>,
}

/// `[requests]`: the per-peer request rate limit (`pouw_node::RequestLimits`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestsFile {
    per_second: Option<u32>,
    burst: Option<u32>,
    ban_after: Option<u32>,
}

/// `[peers]`: connection limits and discovery (design/015).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    max_peers: Option<u32>,
    max_inbound: Option<u32>,
    max_outbound: Option<u32>,
    target_peers: Option<u32>,
    external_addrs: Option<Vec<String>>,
    discovery: Option<bool>,
}

/// `[security]`: alert handlers beside the built-in one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityFile {
    #[serde(default)]
    handlers: Vec<HandlerFile>,
}

/// One `[[security.handlers]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerFile {
    kinds: Vec<String>,
    exec: Option<PathBuf>,
    webhook: Option<String>,
    timeout_ms: Option<u64>,
}

/// What a configured alert handler does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandlerAction {
    /// Run this program with the alert as JSON on stdin.
    Exec(PathBuf),
    /// POST the alert to this `http://` URL.
    Webhook(String),
}

/// A configured alert handler (`[[security.handlers]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandlerSpec {
    pub(crate) kinds: Vec<pouw_primitives::AlertKind>,
    pub(crate) action: HandlerAction,
    pub(crate) timeout: Duration,
}

/// Default time one handler run or webhook try may take.
pub(crate) const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(10);

/// The alert kinds, by their snake_case names.
const ALERT_KINDS: [pouw_primitives::AlertKind; 5] = [
    pouw_primitives::AlertKind::GradientPoisoning,
    pouw_primitives::AlertKind::InvalidIteration,
    pouw_primitives::AlertKind::StaleUpdate,
    pouw_primitives::AlertKind::WrongHistoryRoot,
    pouw_primitives::AlertKind::WrongVerdict,
];

fn alert_kind_name(k: pouw_primitives::AlertKind) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The handlers of the file, checked; `base` resolves relative `exec` paths.
fn parse_handlers(file: &str, base: &Path, handlers: Vec<HandlerFile>) -> Result<Vec<HandlerSpec>> {
    let mut out = Vec::new();
    for (i, h) in handlers.into_iter().enumerate() {
        let at = format!("{file}: `security.handlers[{i}]`");
        if h.kinds.is_empty() {
            bail!("{at}: `kinds` is empty (alert kinds, or \"all\")");
        }
        let mut kinds = Vec::new();
        for k in &h.kinds {
            if k == "all" {
                kinds.extend(ALERT_KINDS);
                continue;
            }
            let kind =
                ALERT_KINDS.into_iter().find(|a| alert_kind_name(*a) == *k).ok_or_else(|| {
                    let names: Vec<String> = ALERT_KINDS.into_iter().map(alert_kind_name).collect();
                    anyhow!(
                        "{at}: unknown alert kind `{k}` (expected \"all\" or one of: {})",
                        names.join(", ")
                    )
                })?;
            kinds.push(kind);
        }
        kinds.sort();
        kinds.dedup();
        let action = match (h.exec, h.webhook) {
            (Some(p), None) => HandlerAction::Exec(if p.is_relative() { base.join(p) } else { p }),
            (None, Some(url)) => {
                url.parse::<pouw_node::WebhookUrl>()
                    .map_err(|e| anyhow!("{at}: `webhook`: {e}"))?;
                HandlerAction::Webhook(url)
            }
            _ => bail!(
                "{at}: give exactly one of `exec = \"PROGRAM\"` or `webhook = \"http://...\"`"
            ),
        };
        let timeout = match h.timeout_ms {
            Some(0) => bail!("{at}: `timeout_ms` must be above 0"),
            Some(ms) => Duration::from_millis(ms),
            None => DEFAULT_HANDLER_TIMEOUT,
        };
        out.push(HandlerSpec { kinds, action, timeout });
    }
    Ok(out)
}

/// `[staking]`: the tickets the node buys for its worker roles (`pouw_node::Staking`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StakingFile {
    /// Stake of every role's ticket, in coins (a decimal string).
    stake: Option<String>,
    /// Per-role stakes, overriding `stake`.
    miner: Option<String>,
    supervisor: Option<String>,
    evaluator: Option<String>,
    verifier: Option<String>,
    gpu: Option<bool>,
    min_fee: Option<String>,
    max_params: Option<u64>,
    ticket_blocks: Option<u64>,
    renew_blocks: Option<u64>,
}

/// `[rpc]`: where to serve JSON-RPC and the server limits (`pouw_rpc::RpcConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RpcFile {
    listen: Option<String>,
    token: Option<String>,
    max_body_bytes: Option<usize>,
    max_batch: Option<usize>,
    max_connections: Option<usize>,
    trust_loopback: Option<bool>,
    call_timeout: Option<u64>,
    header_timeout: Option<u64>,
    sample_interval: Option<u64>,
    max_recent_blocks: Option<u32>,
    max_training_points: Option<u32>,
}

/// `[mining]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MiningFile {
    pause_ms: Option<u64>,
}

/// One layer of settings: what a source sets (`None`: leaves it to the earlier layers).
#[derive(Debug, Default, Clone)]
pub(crate) struct Layer {
    pub(crate) datadir: Option<PathBuf>,
    pub(crate) chain: Option<String>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) roles: Option<Vec<NodeRole>>,
    pub(crate) listen: Option<Vec<Multiaddr>>,
    pub(crate) bootstrap: Option<Vec<Multiaddr>>,
    pub(crate) threads: Option<usize>,
    pub(crate) dev: Option<bool>,
    pub(crate) light: Option<bool>,
    pub(crate) rpc_listen: Option<SocketAddr>,
    pub(crate) rpc_token: Option<String>,
    pub(crate) rpc_max_body_bytes: Option<usize>,
    pub(crate) rpc_max_batch: Option<usize>,
    pub(crate) rpc_max_connections: Option<usize>,
    pub(crate) rpc_trust_loopback: Option<bool>,
    pub(crate) rpc_call_timeout_ms: Option<u64>,
    pub(crate) rpc_header_timeout_ms: Option<u64>,
    pub(crate) rpc_sample_interval_ms: Option<u64>,
    pub(crate) rpc_max_recent_blocks: Option<u32>,
    pub(crate) rpc_max_training_points: Option<u32>,
    pub(crate) mining_pause_ms: Option<u64>,
    /// Stake of every role's ticket.
    pub(crate) stake: Option<Amount>,
    /// Per-role stakes (override `stake`).
    pub(crate) role_stake: BTreeMap<Role, Amount>,
    pub(crate) gpu: Option<bool>,
    pub(crate) min_fee: Option<Amount>,
    pub(crate) max_params: Option<u64>,
    pub(crate) ticket_blocks: Option<u64>,
    pub(crate) renew_blocks: Option<u64>,
    /// Alert handlers (a later layer's list replaces an earlier one).
    pub(crate) security_handlers: Option<Vec<HandlerSpec>>,
    pub(crate) max_peers: Option<u32>,
    pub(crate) max_inbound: Option<u32>,
    pub(crate) max_outbound: Option<u32>,
    pub(crate) target_peers: Option<u32>,
    pub(crate) external_addrs: Option<Vec<Multiaddr>>,
    pub(crate) discovery: Option<bool>,
    pub(crate) requests_per_second: Option<u32>,
    pub(crate) requests_burst: Option<u32>,
    pub(crate) requests_ban_after: Option<u32>,
    pub(crate) replay_fraction: Option<f64>,
}

impl Layer {
    /// `self` overridden by every key `later` sets.
    fn then(self, later: Self) -> Self {
        Self {
            datadir: later.datadir.or(self.datadir),
            chain: later.chain.or(self.chain),
            key: later.key.or(self.key),
            roles: later.roles.or(self.roles),
            listen: later.listen.or(self.listen),
            bootstrap: later.bootstrap.or(self.bootstrap),
            threads: later.threads.or(self.threads),
            dev: later.dev.or(self.dev),
            light: later.light.or(self.light),
            rpc_listen: later.rpc_listen.or(self.rpc_listen),
            rpc_token: later.rpc_token.or(self.rpc_token),
            rpc_max_body_bytes: later.rpc_max_body_bytes.or(self.rpc_max_body_bytes),
            rpc_max_batch: later.rpc_max_batch.or(self.rpc_max_batch),
            rpc_max_connections: later.rpc_max_connections.or(self.rpc_max_connections),
            rpc_trust_loopback: later.rpc_trust_loopback.or(self.rpc_trust_loopback),
            rpc_call_timeout_ms: later.rpc_call_timeout_ms.or(self.rpc_call_timeout_ms),
            rpc_header_timeout_ms: later.rpc_header_timeout_ms.or(self.rpc_header_timeout_ms),
            rpc_sample_interval_ms: later.rpc_sample_interval_ms.or(self.rpc_sample_interval_ms),
            rpc_max_recent_blocks: later.rpc_max_recent_blocks.or(self.rpc_max_recent_blocks),
            rpc_max_training_points: later.rpc_max_training_points.or(self.rpc_max_training_points),
            mining_pause_ms: later.mining_pause_ms.or(self.mining_pause_ms),
            stake: later.stake.or(self.stake),
            role_stake: {
                let mut m = self.role_stake;
                m.extend(later.role_stake);
                m
            },
            gpu: later.gpu.or(self.gpu),
            min_fee: later.min_fee.or(self.min_fee),
            max_params: later.max_params.or(self.max_params),
            ticket_blocks: later.ticket_blocks.or(self.ticket_blocks),
            renew_blocks: later.renew_blocks.or(self.renew_blocks),
            security_handlers: later.security_handlers.or(self.security_handlers),
            max_peers: later.max_peers.or(self.max_peers),
            max_inbound: later.max_inbound.or(self.max_inbound),
            max_outbound: later.max_outbound.or(self.max_outbound),
            target_peers: later.target_peers.or(self.target_peers),
            external_addrs: later.external_addrs.or(self.external_addrs),
            discovery: later.discovery.or(self.discovery),
            requests_per_second: later.requests_per_second.or(self.requests_per_second),
            requests_burst: later.requests_burst.or(self.requests_burst),
            requests_ban_after: later.requests_ban_after.or(self.requests_ban_after),
            replay_fraction: later.replay_fraction.or(self.replay_fraction),
        }
    }
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// The dotted key written on the line holding `offset` (`rpc.listen`), when there is one.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[start..end].trim();
    let header = |l: &str| l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
    if line.starts_with('[') {
        return Some(header(line));
    }
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() {
        return None;
    }
    let section = text[..start].lines().rev().map(str::trim).find(|l| l.starts_with('['));
    Some(match section {
        Some(s) => format!("{}.{key}", header(s)),
        None => key.to_string(),
    })
}

/// One-line form of a TOML error: `file: line L, column C: `key`: problem`.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let message = e.message().trim().replace("unknown field", "unknown key");
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            match key_at(text, span.start) {
                Some(key) => anyhow!("{file}: `{key}` (line {line}): {message}"),
                None => anyhow!("{file}: line {line}, column {col}: {message}"),
            }
        }
        None => anyhow!("{file}: {message}"),
    }
}

fn parse_list<T>(
    items: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
    culprit: impl Fn(usize) -> String,
) -> Result<Vec<T>> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| parse(s).map_err(|e| anyhow!("{}: {e}", culprit(i))))
        .collect()
}

/// Reads and checks the TOML file at `path`.
pub(crate) fn file_layer(path: &Path) -> Result<Layer> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {file}"))?;
    parse_file(&file, path.parent().unwrap_or(Path::new("")), &text)
}

/// The settings of config file text; `file` names it in errors and relative paths are
/// relative to `base` (the file's directory).
fn parse_file(file: &str, base: &Path, text: &str) -> Result<Layer> {
    if let Err(e) = text.parse::<toml::Table>() {
        let at = e.span().map(|s| line_col(text, s.start));
        return Err(match at {
            Some((line, col)) => anyhow!(
                "{file}: malformed TOML at line {line}, column {col}: {}",
                e.message().trim()
            ),
            None => anyhow!("{file}: malformed TOML: {}", e.message().trim()),
        });
    }
    let f: FileConfig = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let name = file;
    let key = |k: &'static str| move |i: usize| format!("{name}: `{k}[{i}]`");
    let roles =
        f.roles.as_deref().map(|r| parse_list(r, NodeRole::from_str, key("roles"))).transpose()?;
    let listen =
        f.listen.as_deref().map(|l| parse_list(l, parse_multiaddr, key("listen"))).transpose()?;
    let bootstrap = f
        .bootstrap
        .as_deref()
        .map(|l| parse_list(l, parse_multiaddr, key("bootstrap")))
        .transpose()?;
    let external_addrs = f
        .peers
        .external_addrs
        .as_deref()
        .map(|l| parse_list(l, parse_multiaddr, key("peers.external_addrs")))
        .transpose()?;
    if f.threads == Some(0) {
        bail!("{file}: `threads`: `0` threads: at least 1 is needed");
    }
    let rpc_listen = f
        .rpc
        .listen
        .as_deref()
        .map(|s| parse_socket_addr(s).map_err(|e| anyhow!("{file}: `rpc.listen`: {e}")))
        .transpose()?;
    if f.chain.as_deref().is_some_and(|c| c.trim().is_empty()) {
        bail!("{file}: `chain`: empty (`devnet` or the path of a chain spec file)");
    }
    // A relative path in the file is relative to the file's directory.
    let rel = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
    let chain =
        f.chain.map(
            |c| {
                if c == "devnet" {
                    c
                } else {
                    rel(PathBuf::from(c)).display().to_string()
                }
            },
        );
    let coins = |v: Option<String>, k: &str| {
        v.map(|v| v.trim().parse::<Amount>().map_err(|e| anyhow!("{file}: `staking.{k}`: {e}")))
            .transpose()
    };
    let st = f.staking;
    let mut role_stake = BTreeMap::new();
    for (role, v, k) in [
        (Role::Miner, st.miner, "miner"),
        (Role::Supervisor, st.supervisor, "supervisor"),
        (Role::Evaluator, st.evaluator, "evaluator"),
        (Role::Verifier, st.verifier, "verifier"),
    ] {
        if let Some(a) = coins(v, k)? {
            role_stake.insert(role, a);
        }
    }
    if st.ticket_blocks == Some(0) {
        bail!("{file}: `staking.ticket_blocks`: a ticket must last at least 1 block");
    }
    let security_handlers = if f.security.handlers.is_empty() {
        None
    } else {
        Some(parse_handlers(file, base, f.security.handlers)?)
    };
    let stake = coins(st.stake, "stake")?;
    let min_fee = coins(st.min_fee, "min_fee")?;
    Ok(Layer {
        security_handlers,
        stake,
        role_stake,
        gpu: st.gpu,
        min_fee,
        max_params: st.max_params,
        ticket_blocks: st.ticket_blocks,
        renew_blocks: st.renew_blocks,
        datadir: f.datadir.map(rel),
        chain,
        key: f.key.map(rel),
        roles,
        listen,
        bootstrap,
        threads: f.threads,
        dev: f.dev,
        light: f.light,
        rpc_listen,
        rpc_token: f.rpc.token,
        rpc_max_body_bytes: f.rpc.max_body_bytes,
        rpc_max_batch: f.rpc.max_batch,
        rpc_max_connections: f.rpc.max_connections,
        rpc_trust_loopback: f.rpc.trust_loopback,
        rpc_call_timeout_ms: f.rpc.call_timeout,
        rpc_header_timeout_ms: f.rpc.header_timeout,
        rpc_sample_interval_ms: f.rpc.sample_interval,
        rpc_max_recent_blocks: f.rpc.max_recent_blocks,
        rpc_max_training_points: f.rpc.max_training_points,
        mining_pause_ms: f.mining.pause_ms,
        max_peers: f.peers.max_peers,
        max_inbound: f.peers.max_inbound,
        max_outbound: f.peers.max_outbound,
        target_peers: f.peers.target_peers,
        external_addrs,
        discovery: f.peers.discovery,
        requests_per_second: f.requests.per_second,
        requests_burst: f.requests.burst,
        requests_ban_after: f.requests.ban_after,
        replay_fraction: f.supervisor.replay_fraction,
    })
}

// ---- the environment ----

/// The `POUW_*` variables `get` returns (an empty variable counts as unset).
pub(crate) fn env_layer(get: impl Fn(&str) -> Option<String>) -> Result<Layer> {
    let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let list = |name: &'static str| {
        var(name)
            .map(|v| {
                let items: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
                parse_list(&items, parse_multiaddr, |i| format!("{name} (item {})", i + 1))
            })
            .transpose()
    };
    let roles = var("POUW_ROLES")
        .map(|v| {
            let items: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
            parse_list(&items, NodeRole::from_str, |i| format!("POUW_ROLES (item {})", i + 1))
        })
        .transpose()?;
    Ok(Layer {
        datadir: var("POUW_DATADIR").map(PathBuf::from),
        chain: var("POUW_CHAIN"),
        key: var("POUW_KEY").map(PathBuf::from),
        roles,
        listen: list("POUW_LISTEN")?,
        bootstrap: list("POUW_BOOTSTRAP")?,
        threads: scalar(var("POUW_THREADS"), "POUW_THREADS", parse_threads)?,
        dev: scalar(var("POUW_DEV"), "POUW_DEV", parse_bool)?,
        light: scalar(var("POUW_LIGHT"), "POUW_LIGHT", parse_bool)?,
        rpc_listen: scalar(var("POUW_RPC"), "POUW_RPC", parse_socket_addr)?,
        rpc_token: var("POUW_RPC_TOKEN"),
        rpc_max_body_bytes: scalar(
            var("POUW_RPC_MAX_BODY_BYTES"),
            "POUW_RPC_MAX_BODY_BYTES",
            |s| parse_number(s, "a byte count (a whole number)"),
        )?,
        mining_pause_ms: scalar(var("POUW_MINING_PAUSE_MS"), "POUW_MINING_PAUSE_MS", |s| {
            parse_number(s, "a pause in milliseconds (a whole number)")
        })?,
        stake: scalar(var("POUW_STAKE"), "POUW_STAKE", parse_coins)?,
        gpu: scalar(var("POUW_GPU"), "POUW_GPU", parse_bool)?,
        min_fee: scalar(var("POUW_MIN_FEE"), "POUW_MIN_FEE", parse_coins)?,
        max_params: scalar(var("POUW_MAX_PARAMS"), "POUW_MAX_PARAMS", |s| {
            parse_number(s, "a parameter count (a whole number)")
        })?,
        max_peers: scalar(var("POUW_MAX_PEERS"), "POUW_MAX_PEERS", parse_peer_count)?,
        max_inbound: scalar(var("POUW_MAX_INBOUND"), "POUW_MAX_INBOUND", parse_peer_count)?,
        max_outbound: scalar(var("POUW_MAX_OUTBOUND"), "POUW_MAX_OUTBOUND", parse_peer_count)?,
        target_peers: scalar(var("POUW_TARGET_PEERS"), "POUW_TARGET_PEERS", parse_peer_count)?,
        external_addrs: list("POUW_EXTERNAL_ADDR")?,
        discovery: scalar(var("POUW_DISCOVERY"), "POUW_DISCOVERY", parse_bool)?,
        replay_fraction: scalar(var("POUW_REPLAY_FRACTION"), "POUW_REPLAY_FRACTION", |s| {
            s.trim().parse::<f64>().map_err(|e| format!("`{s}` is not a fraction: {e}"))
        })?,
        ..Layer::default()
    })
}

/// A peer count (a whole number).
pub(crate) fn parse_peer_count(s: &str) -> Result<u32, String> {
    parse_number(s, "a peer count (a whole number)")
}

/// An amount of coins (a decimal string, as in `[staking]`).
fn parse_coins(s: &str) -> Result<Amount, String> {
    s.trim().parse::<Amount>().map_err(|e| format!("`{s}` is not an amount of coins: {e}"))
}

/// A variable's value parsed, the error naming the variable.
fn scalar<T>(
    value: Option<String>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>> {
    value.map(|v| parse(&v).map_err(|e| anyhow!("{name}: {e}"))).transpose()
}

/// The process environment, for [`env_layer`].
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

// ---- the result ----

/// The effective settings of a node after every layer.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) dev: bool,
    /// Light mode (`NodeConfig::light`).
    pub(crate) light: bool,
    pub(crate) datadir: PathBuf,
    pub(crate) chain: String,
    pub(crate) key: Option<PathBuf>,
    pub(crate) roles: Vec<NodeRole>,
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) bootstrap: Vec<Multiaddr>,
    pub(crate) threads: usize,
    pub(crate) rpc_listen: Option<SocketAddr>,
    pub(crate) rpc: pouw_rpc::RpcConfig,
    pub(crate) mining_pause: Duration,
    pub(crate) staking: pouw_node::Staking,
    pub(crate) security_handlers: Vec<HandlerSpec>,
    /// Connection limits and discovery target (`NodeConfig::peers`).
    pub(crate) peers: pouw_node::PeerLimits,
    /// Addresses advertised to peers instead of the listen addresses.
    pub(crate) external_addrs: Vec<Multiaddr>,
    /// Kademlia discovery on (default) or off.
    pub(crate) discovery: bool,
    /// Per-peer request rate limit (`NodeConfig::requests`).
    pub(crate) requests: pouw_node::RequestLimits,
    /// Supervisor: the fraction of each miner's messages replayed (`NodeConfig::replay_fraction`;
    /// `None`: automatic).
    pub(crate) replay_fraction: Option<f64>,
}

/// Defaults when no layer sets a key.
pub(crate) const DEFAULT_CHAIN: &str = "devnet";
/// Listen address without `--dev`.
pub(crate) const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/30333";
/// Listen address with `--dev`.
pub(crate) const DEFAULT_DEV_LISTEN: &str = "/ip4/127.0.0.1/tcp/0";

/// Merges the layers, earliest first, and applies the defaults. `no_mine` (the `--no-mine`
/// flag) drops the miner role whatever the layers say.
pub(crate) fn resolve(layers: Vec<Layer>, no_mine: bool) -> Result<Settings> {
    let l = layers.into_iter().fold(Layer::default(), Layer::then);
    let datadir = l.datadir.context(
        "no data directory: set `datadir` in the config file (--config), POUW_DATADIR, or \
         --datadir",
    )?;
    let dev = l.dev.unwrap_or(false);
    let mut roles = Vec::new();
    for r in l.roles.unwrap_or_else(|| vec![NodeRole::Miner]) {
        let dropped = no_mine && r == NodeRole::Miner;
        if dropped || roles.contains(&r) {
            continue;
        }
        roles.push(r);
    }
    let default_listen = if dev { DEFAULT_DEV_LISTEN } else { DEFAULT_LISTEN };
    let listen = l.listen.unwrap_or_else(|| vec![default_listen.parse().expect("a multiaddr")]);
    let d = pouw_node::PeerLimits::default();
    let peers = pouw_node::PeerLimits {
        max_peers: l.max_peers.unwrap_or(d.max_peers),
        max_inbound: l.max_inbound.unwrap_or(d.max_inbound),
        max_outbound: l.max_outbound.unwrap_or(d.max_outbound),
        target_peers: l.target_peers.unwrap_or(d.target_peers),
    };
    if peers.max_peers == 0 {
        bail!("`peers.max_peers` (--max-peers, POUW_MAX_PEERS): 0, at least 1 is needed");
    }
    // A limit above the total would never bind: clamp it, so `--max-peers 8` alone works.
    let peers = pouw_node::PeerLimits {
        max_inbound: peers.max_inbound.min(peers.max_peers),
        max_outbound: peers.max_outbound.min(peers.max_peers),
        ..peers
    };
    if let Some(f) = l.replay_fraction.filter(|f| !(*f > 0.0 && *f <= 1.0)) {
        bail!(
            "`supervisor.replay_fraction` (POUW_REPLAY_FRACTION): {f}, a fraction in (0, 1] is \
             needed (1: replay every message)"
        );
    }
    let defaults = pouw_rpc::RpcConfig::default();
    let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
    let rpc = pouw_rpc::RpcConfig {
        max_body_bytes: l.rpc_max_body_bytes.unwrap_or(defaults.max_body_bytes),
        max_batch: l.rpc_max_batch.unwrap_or(defaults.max_batch),
        max_connections: l.rpc_max_connections.unwrap_or(defaults.max_connections),
        admin_token: l.rpc_token,
        trust_loopback: l.rpc_trust_loopback.unwrap_or(defaults.trust_loopback),
        call_timeout: ms(l.rpc_call_timeout_ms, defaults.call_timeout),
        header_timeout: ms(l.rpc_header_timeout_ms, defaults.header_timeout),
        sample_interval: ms(l.rpc_sample_interval_ms, defaults.sample_interval),
        max_recent_blocks: l.rpc_max_recent_blocks.unwrap_or(defaults.max_recent_blocks),
        max_training_points: l.rpc_max_training_points.unwrap_or(defaults.max_training_points),
        ..defaults
    };
    Ok(Settings {
        dev,
        light: l.light.unwrap_or(false),
        datadir,
        chain: l.chain.unwrap_or_else(|| DEFAULT_CHAIN.into()),
        key: l.key,
        roles,
        listen,
        bootstrap: l.bootstrap.unwrap_or_default(),
        threads: l.threads.unwrap_or(1),
        rpc_listen: l.rpc_listen,
        rpc,
        mining_pause: Duration::from_millis(l.mining_pause_ms.unwrap_or(0)),
        security_handlers: l.security_handlers.unwrap_or_default(),
        peers,
        external_addrs: l.external_addrs.unwrap_or_default(),
        discovery: l.discovery.unwrap_or(true),
        replay_fraction: l.replay_fraction,
        requests: {
            let d = pouw_node::RequestLimits::default();
            pouw_node::RequestLimits {
                per_second: l.requests_per_second.unwrap_or(d.per_second),
                burst: l.requests_burst.unwrap_or(d.burst),
                ban_after: l.requests_ban_after.unwrap_or(d.ban_after),
            }
        },
        staking: {
            let d = pouw_node::Staking::default();
            let mut stake = BTreeMap::new();
            for role in [Role::Miner, Role::Supervisor, Role::Evaluator, Role::Verifier] {
                if let Some(a) = l.role_stake.get(&role).copied().or(l.stake) {
                    stake.insert(role, a);
                }
            }
            pouw_node::Staking {
                stake,
                preferences: pouw_primitives::TicketPreferences {
                    has_gpu: l.gpu.unwrap_or(false),
                    max_params: l.max_params.unwrap_or(0),
                    min_fee: l.min_fee.unwrap_or(Amount::ZERO),
                },
                ticket_blocks: l.ticket_blocks.unwrap_or(d.ticket_blocks),
                renew_blocks: l.renew_blocks.unwrap_or(d.renew_blocks),
            }
        },
    })
}

/// The printable form (`--print-config`): the same keys as the file.
#[derive(Serialize)]
struct Printed {
    dev: bool,
    light: bool,
    datadir: String,
    chain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    roles: Vec<NodeRole>,
    listen: Vec<String>,
    bootstrap: Vec<String>,
    threads: usize,
    rpc: PrintedRpc,
    mining: PrintedMining,
    staking: PrintedStaking,
    #[serde(skip_serializing_if = "PrintedSecurity::is_empty")]
    security: PrintedSecurity,
    peers: PrintedPeers,
    requests: PrintedRequests,
    #[serde(skip_serializing_if = "Option::is_none")]
    supervisor: Option<PrintedSupervisor>,
}

#[derive(Serialize)]
struct PrintedSupervisor {
    replay_fraction: f64,
}

#[derive(Serialize)]
struct PrintedRequests {
    per_second: u32,
    burst: u32,
    ban_after: u32,
}

#[derive(Serialize)]
struct PrintedPeers {
    max_peers: u32,
    max_inbound: u32,
    max_outbound: u32,
    target_peers: u32,
    external_addrs: Vec<String>,
    discovery: bool,
}

#[derive(Serialize)]
struct PrintedSecurity {
    handlers: Vec<PrintedHandler>,
}

impl PrintedSecurity {
    fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

#[derive(Serialize)]
struct PrintedHandler {
    kinds: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<String>,
    timeout_ms: u64,
}

#[derive(Serialize)]
struct PrintedStaking {
    #[serde(skip_serializing_if = "Option::is_none")]
    miner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supervisor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evaluator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verifier: Option<String>,
    gpu: bool,
    min_fee: String,
    max_params: u64,
    ticket_blocks: u64,
    renew_blocks: u64,
}

#[derive(Serialize)]
struct PrintedRpc {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    max_body_bytes: usize,
    max_batch: usize,
    max_connections: usize,
    trust_loopback: bool,
    call_timeout: u64,
    header_timeout: u64,
    sample_interval: u64,
    max_recent_blocks: u32,
    max_training_points: u32,
}

#[derive(Serialize)]
struct PrintedMining {
    pause_ms: u64,
}

/// Marker printed instead of the RPC token.
pub(crate) const REDACTED: &str = "<redacted>";

impl Settings {
    /// The settings as a TOML config file (the RPC token redacted unless `show_secrets`).
    pub(crate) fn to_toml(&self, show_secrets: bool) -> String {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let r = &self.rpc;
        let printed = Printed {
            dev: self.dev,
            light: self.light,
            datadir: self.datadir.display().to_string(),
            chain: self.chain.clone(),
            key: self.key.as_ref().map(|k| k.display().to_string()),
            roles: self.roles.clone(),
            listen: self.listen.iter().map(ToString::to_string).collect(),
            bootstrap: self.bootstrap.iter().map(ToString::to_string).collect(),
            threads: self.threads,
            rpc: PrintedRpc {
                listen: self.rpc_listen.map(|a| a.to_string()),
                token: r.admin_token.as_ref().map(|t| {
                    if show_secrets {
                        t.clone()
                    } else {
                        REDACTED.into()
                    }
                }),
                max_body_bytes: r.max_body_bytes,
                max_batch: r.max_batch,
                max_connections: r.max_connections,
                trust_loopback: r.trust_loopback,
                call_timeout: ms(r.call_timeout),
                header_timeout: ms(r.header_timeout),
                sample_interval: ms(r.sample_interval),
                max_recent_blocks: r.max_recent_blocks,
                max_training_points: r.max_training_points,
            },
            mining: PrintedMining { pause_ms: ms(self.mining_pause) },
            peers: PrintedPeers {
                max_peers: self.peers.max_peers,
                max_inbound: self.peers.max_inbound,
                max_outbound: self.peers.max_outbound,
                target_peers: self.peers.target_peers,
                external_addrs: self.external_addrs.iter().map(ToString::to_string).collect(),
                discovery: self.discovery,
            },
            requests: PrintedRequests {
                per_second: self.requests.per_second,
                burst: self.requests.burst,
                ban_after: self.requests.ban_after,
            },
            supervisor: self
                .replay_fraction
                .map(|replay_fraction| PrintedSupervisor { replay_fraction }),
            security: PrintedSecurity {
                handlers: self
                    .security_handlers
                    .iter()
                    .map(|h| PrintedHandler {
                        kinds: h.kinds.iter().map(|k| alert_kind_name(*k)).collect(),
                        exec: match &h.action {
                            HandlerAction::Exec(p) => Some(p.display().to_string()),
                            HandlerAction::Webhook(_) => None,
                        },
                        webhook: match &h.action {
                            HandlerAction::Webhook(u) => Some(u.clone()),
                            HandlerAction::Exec(_) => None,
                        },
                        timeout_ms: ms(h.timeout),
                    })
                    .collect(),
            },
            staking: {
                let st = &self.staking;
                let of = |r: Role| st.stake.get(&r).map(ToString::to_string);
                PrintedStaking {
                    miner: of(Role::Miner),
                    supervisor: of(Role::Supervisor),
                    evaluator: of(Role::Evaluator),
                    verifier: of(Role::Verifier),
                    gpu: st.preferences.has_gpu,
                    min_fee: st.preferences.min_fee.to_string(),
                    max_params: st.preferences.max_params,
                    ticket_blocks: st.ticket_blocks,
                    renew_blocks: st.renew_blocks,
                }
            },
        };
        toml::to_string(&printed).expect("the settings always serialize")
    }
}

/// Hands the configured roles to the node. `miner` turns mining on (`NodeConfig::mine`); the
/// worker roles (miner, supervisor, evaluator, verifier) each keep a staking ticket and act
/// in what they are selected for; `client` needs nothing (any node can submit tasks).
pub(crate) fn wire_roles(config: &mut pouw_node::NodeConfig, roles: &[NodeRole]) {
    use pouw_primitives::Role;
    config.mine = roles.contains(&NodeRole::Miner);
    config.roles = roles
        .iter()
        .filter_map(|r| match r {
            NodeRole::Miner => Some(Role::Miner),
            NodeRole::Supervisor => Some(Role::Supervisor),
            NodeRole::Evaluator => Some(Role::Evaluator),
            NodeRole::Verifier => Some(Role::Verifier),
            // Any node can submit tasks and serve their datasets.
            NodeRole::Client => None,
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment variables read, with what they set (also listed in `docs/node-config.md`).
    const ENV_VARS: &[(&str, &str)] = &[
        ("POUW_CONFIG", "config file (like --config)"),
        ("POUW_DATADIR", "datadir"),
        ("POUW_CHAIN", "chain"),
        ("POUW_KEY", "key"),
        ("POUW_ROLES", "roles, comma-separated"),
        ("POUW_LISTEN", "listen, comma-separated multiaddrs"),
        ("POUW_BOOTSTRAP", "bootstrap, comma-separated multiaddrs"),
        ("POUW_THREADS", "threads"),
        ("POUW_DEV", "dev (true/false)"),
        ("POUW_LIGHT", "light (true/false)"),
        ("POUW_RPC", "rpc.listen"),
        ("POUW_RPC_TOKEN", "rpc.token"),
        ("POUW_RPC_MAX_BODY_BYTES", "rpc.max_body_bytes"),
        ("POUW_MINING_PAUSE_MS", "mining.pause_ms"),
        ("POUW_STAKE", "staking.stake"),
        ("POUW_GPU", "staking.gpu (true/false)"),
        ("POUW_MIN_FEE", "staking.min_fee"),
        ("POUW_MAX_PARAMS", "staking.max_params"),
        ("POUW_MAX_PEERS", "peers.max_peers"),
        ("POUW_MAX_INBOUND", "peers.max_inbound"),
        ("POUW_MAX_OUTBOUND", "peers.max_outbound"),
        ("POUW_TARGET_PEERS", "peers.target_peers"),
        ("POUW_EXTERNAL_ADDR", "peers.external_addrs, comma-separated multiaddrs"),
        ("POUW_DISCOVERY", "peers.discovery (true/false)"),
        ("POUW_REPLAY_FRACTION", "supervisor.replay_fraction (in (0, 1])"),
    ];

    #[test]
    fn every_variable_and_key_is_documented() {
        let doc = include_str!("../../../docs/node-config.md");
        for (var, _) in ENV_VARS {
            assert!(doc.contains(var), "docs/node-config.md does not mention {var}");
        }
        let example = include_str!("../../../config/node.example.toml");
        let layer = parse_file("node.example.toml", Path::new("config"), example);
        assert!(layer.is_ok(), "{:#}", layer.unwrap_err());
    }

    #[test]
    fn the_replay_fraction_from_the_file_and_the_environment() {
        let file = |text: &str| {
            let l = parse_file("n.toml", Path::new(""), text).unwrap();
            resolve(vec![Layer { datadir: Some("d".into()), ..l }], false)
        };
        let s = file(
            "[supervisor]
replay_fraction = 0.25
",
        )
        .unwrap();
        assert_eq!(s.replay_fraction, Some(0.25));
        assert!(s.to_toml(false).contains("replay_fraction = 0.25"));
        assert_eq!(file("").unwrap().replay_fraction, None);
        let env = env_layer(|k| (k == "POUW_REPLAY_FRACTION").then(|| "1".to_string())).unwrap();
        assert_eq!(env.replay_fraction, Some(1.0));
        for bad in ["1.5", "0", "-0.1"] {
            let e = file(&format!(
                "[supervisor]
replay_fraction = {bad}
"
            ))
            .unwrap_err();
            assert!(format!("{e:#}").contains("replay_fraction"), "{e:#}");
        }
    }

    #[test]
    fn security_handlers_and_staking_from_the_file() {
        let text = r#"
[staking]
stake = "20"
verifier = "12.5"
gpu = true
min_fee = "0.5"

[[security.handlers]]
kinds = ["invalid_iteration", "stale_update"]
exec = "hooks/alert.sh"
timeout_ms = 2000

[[security.handlers]]
kinds = ["all"]
webhook = "http://127.0.0.1:9000/alerts"
"#;
        let l = parse_file("n.toml", Path::new("/etc/pouw"), text).unwrap();
        let s = resolve(vec![Layer { datadir: Some("d".into()), ..l }], false).unwrap();
        let h = &s.security_handlers;
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].action, HandlerAction::Exec("/etc/pouw/hooks/alert.sh".into()));
        assert_eq!(h[0].kinds.len(), 2);
        assert_eq!(h[0].timeout, Duration::from_millis(2000));
        assert_eq!(h[1].kinds.len(), 5);
        assert_eq!(h[1].timeout, DEFAULT_HANDLER_TIMEOUT);
        let st = &s.staking;
        assert_eq!(st.stake[&Role::Miner], Amount(20 * pouw_primitives::COIN));
        assert_eq!(st.stake[&Role::Verifier], Amount(1_250_000_000));
        assert!(st.preferences.has_gpu);
        assert_eq!(st.preferences.min_fee, Amount(50_000_000));
        let printed = s.to_toml(false);
        assert!(printed.contains("[[security.handlers]]"), "{printed}");
        assert!(parse_file("n.toml", Path::new(""), &printed).is_ok(), "{printed}");

        for (bad, says) in [
            (
                "[[security.handlers]]\nkinds = [\"nope\"]\nexec = \"x\"\n",
                "unknown alert kind `nope`",
            ),
            ("[[security.handlers]]\nkinds = []\nexec = \"x\"\n", "`kinds` is empty"),
            ("[[security.handlers]]\nkinds = [\"all\"]\n", "exactly one of"),
            (
                "[[security.handlers]]\nkinds = [\"all\"]\nwebhook = \"https://x:1\"\n",
                "only http://",
            ),
            ("[staking]\nstake = \"1.5.0\"\n", "`staking.stake`"),
        ] {
            let e = format!("{:#}", parse_file("n.toml", Path::new(""), bad).unwrap_err());
            assert!(e.contains(says) && e.contains("n.toml"), "{bad}: {e}");
        }
    }

    #[test]
    fn request_limits_from_the_file() {
        let base = Layer { datadir: Some("d".into()), ..Layer::default() };
        let s = resolve(vec![base.clone()], false).unwrap();
        assert_eq!(s.requests, pouw_node::RequestLimits::default());
        let text = "[requests]\nper_second = 7\nburst = 30\nban_after = 0\n";
        let file = parse_file("n.toml", Path::new(""), text).unwrap();
        let s = resolve(vec![base, file], false).unwrap();
        let want = pouw_node::RequestLimits { per_second: 7, burst: 30, ban_after: 0 };
        assert_eq!(s.requests, want);
        let printed = s.to_toml(false);
        assert!(printed.contains("[requests]") && printed.contains("burst = 30"), "{printed}");
        assert!(parse_file("n.toml", Path::new(""), &printed).is_ok(), "{printed}");
        let bad = "[requests]\nper_minute = 3\n";
        assert!(parse_file("n.toml", Path::new(""), bad).is_err());
    }

    #[test]
    fn peer_settings_from_file_environment_and_flags() {
        let text = "[peers]\nmax_peers = 12\nmax_inbound = 30\ntarget_peers = 4\n\
                    external_addrs = [\"/ip4/127.0.0.1/tcp/7000\"]\ndiscovery = false\n";
        let file = parse_file("n.toml", Path::new(""), text).unwrap();
        let base = Layer { datadir: Some("d".into()), ..Layer::default() };
        let s = resolve(vec![base.clone(), file.clone()], false).unwrap();
        // The inbound limit above the total is clamped to it.
        let want = pouw_node::PeerLimits {
            max_peers: 12,
            max_inbound: 12,
            max_outbound: 12,
            target_peers: 4,
        };
        assert_eq!(s.peers, want);
        assert_eq!(s.external_addrs, vec!["/ip4/127.0.0.1/tcp/7000".parse().unwrap()]);
        assert!(!s.discovery);
        let printed = s.to_toml(false);
        assert!(printed.contains("[peers]") && printed.contains("target_peers = 4"), "{printed}");
        assert!(parse_file("n.toml", Path::new(""), &printed).is_ok(), "{printed}");
        let vars = |n: &str| match n {
            "POUW_MAX_OUTBOUND" => Some("6".to_string()),
            "POUW_DISCOVERY" => Some("on".to_string()),
            "POUW_EXTERNAL_ADDR" => Some("/ip4/10.0.0.1/tcp/1,/ip4/10.0.0.2/tcp/2".to_string()),
            _ => None,
        };
        let env = env_layer(vars).unwrap();
        let flags = Layer { target_peers: Some(9), ..Layer::default() };
        let s = resolve(vec![base.clone(), file, env, flags], false).unwrap();
        assert_eq!((s.peers.max_outbound, s.peers.target_peers), (6, 9));
        assert_eq!(s.external_addrs.len(), 2);
        assert!(s.discovery);
        // Defaults: those of the network crate.
        let s = resolve(vec![base.clone()], false).unwrap();
        assert_eq!(s.peers, pouw_node::PeerLimits::default());
        assert!(s.discovery && s.external_addrs.is_empty());
        let zero = Layer { max_peers: Some(0), ..base };
        assert!(format!("{:#}", resolve(vec![zero], false).unwrap_err()).contains("max_peers"));
        let e = env_layer(|n| (n == "POUW_MAX_PEERS").then(|| "many".into())).unwrap_err();
        assert!(e.to_string().contains("POUW_MAX_PEERS"), "{e}");
        let bad = "[peers]\nexternal_addrs = [\"nope\"]\n";
        let e = format!("{:#}", parse_file("n.toml", Path::new(""), bad).unwrap_err());
        assert!(e.contains("peers.external_addrs[0]"), "{e}");
    }

    #[test]
    fn key_at_names_sections() {
        let text = "threads = \"x\"\n[rpc]\nlisten = 5\n";
        assert_eq!(key_at(text, 10).as_deref(), Some("threads"));
        assert_eq!(key_at(text, 30).as_deref(), Some("rpc.listen"));
        assert_eq!(key_at(text, 15).as_deref(), Some("rpc"));
        assert_eq!(line_col(text, 29), (3, 10));
    }

    #[test]
    fn layers_override_in_order() {
        let file = Layer { threads: Some(2), datadir: Some("a".into()), ..Layer::default() };
        let env = env_layer(|n| (n == "POUW_THREADS").then(|| "3".to_string())).unwrap();
        let s = resolve(vec![file.clone(), env.clone()], false).unwrap();
        assert_eq!((s.threads, s.datadir.to_str().unwrap()), (3, "a"));
        let flags = Layer { threads: Some(4), ..Layer::default() };
        assert_eq!(resolve(vec![file, env, flags], true).unwrap().threads, 4);
        let err = env_layer(|n| (n == "POUW_ROLES").then(|| "miner,boss".into())).unwrap_err();
        assert!(err.to_string().contains("POUW_ROLES (item 2)"), "{err}");
    }

    #[test]
    fn staking_from_the_environment_under_the_flags() {
        let vars = |n: &str| match n {
            "POUW_STAKE" => Some("50".to_string()),
            "POUW_GPU" => Some("yes".to_string()),
            "POUW_MIN_FEE" => Some("2.5".to_string()),
            "POUW_MAX_PARAMS" => Some("100000".to_string()),
            _ => None,
        };
        let env = env_layer(vars).unwrap();
        assert_eq!(env.stake, Some("50".parse().unwrap()));
        assert_eq!((env.gpu, env.max_params), (Some(true), Some(100_000)));
        assert_eq!(env.min_fee, Some("2.5".parse().unwrap()));
        let flags = Layer { stake: Some("70".parse().unwrap()), ..Layer::default() };
        let file = Layer { datadir: Some("a".into()), ..Layer::default() };
        let s = resolve(vec![file, env, flags], false).unwrap();
        let stake = s.staking.stake_for(Role::Miner, &pouw_primitives::ChainSpec::devnet());
        assert_eq!(stake, "70".parse().unwrap());
        assert!(s.staking.preferences.has_gpu);
        assert_eq!(s.staking.preferences.min_fee, "2.5".parse().unwrap());
        let err = env_layer(|n| (n == "POUW_STAKE").then(|| "lots".into())).unwrap_err();
        assert!(err.to_string().contains("POUW_STAKE"), "{err}");
        let err = env_layer(|n| (n == "POUW_GPU").then(|| "maybe".into())).unwrap_err();
        assert!(err.to_string().contains("POUW_GPU"), "{err}");
    }
}
