//! The devnet's network simulator: `--nodes N --topology line|ring|random --latency MS
//! --jitter MS --loss P [--partition SECONDS] [--late-joiner]`.
//!
//! The usual roles plus full nodes (`node-K`: no roles, not mining, verifying every block) up
//! to N processes. Each node sits behind a userspace TCP relay on loopback
//! (`pouw_net::linkemu`) that delays every chunk by the latency with jitter and costs a lost
//! chunk a retransmission; the node advertises the relay's address, so every connection to it
//! crosses a relay. Each node knows one bootstrap peer: its predecessor (`line`; `ring` also
//! joins the first to the last) or a random earlier node (`random`); discovery (design/015)
//! finds the rest.
//!
//! Measured: block propagation (each node's import time of a canonical block minus its miner's,
//! from `pouw_recentBlocks`' `imported_at_ms`, sampled every few seconds), the orphan rate
//! (blocks mined that did not end on the chain), connected peers per node, and with
//! `--partition S` the time the network takes to agree again once the two halves of the node
//! list, cut apart for S seconds from the start of training, are rejoined; with
//! `--late-joiner`, the time a node started after the task takes to sync.

use super::{call, free_port, write_key, Node};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use pouw_net::linkemu::{Link, Partition, Relay};
use pouw_primitives::{ChainSpec, Timestamp};
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

/// The simulator's flags of `pouw devnet`.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Node processes in all: the usual roles, then full nodes (`node-K`, no roles, not
    /// mining) up to this count. Turns the simulator on (so do the flags below).
    #[arg(long, value_parser = clap::value_parser!(u16).range(2..=64))]
    nodes: Option<u16>,
    /// Who bootstraps from whom: each node from its predecessor (`line`, the default), the
    /// same closed into a ring (`ring`), or from a random earlier node (`random`).
    #[arg(long, value_enum)]
    topology: Option<Topology>,
    /// One-way latency of every link, in milliseconds.
    #[arg(long)]
    latency: Option<u64>,
    /// Jitter of the latency (uniform, plus or minus), in milliseconds.
    #[arg(long)]
    jitter: Option<u64>,
    /// Probability that a chunk is lost (it then costs a resend: 200 ms plus a round trip).
    #[arg(long, value_parser = parse_loss)]
    loss: Option<f64>,
    /// Cut the two halves of the node list apart for this many seconds once training
    /// started, then rejoin them; the report gives the time to agree on one chain again.
    #[arg(long)]
    partition: Option<u64>,
    /// Once the task completed, start one more full node that knows only the last node and
    /// report how long it takes to sync.
    #[arg(long)]
    late_joiner: bool,
}

fn parse_loss(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a probability (0 to 1)")),
    }
}

/// Who bootstraps from whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Topology {
    Line,
    Ring,
    Random,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Ring => "ring",
            Self::Random => "random",
        }
    }

    /// The nodes node `i` of `n` bootstraps from (`draw`: a uniform draw in [0, 1)).
    fn bootstrap(self, i: usize, n: usize, draw: f64) -> Vec<usize> {
        match (self, i) {
            (Self::Ring, 0) if n > 2 => vec![n - 1],
            (_, 0) => Vec::new(),
            (Self::Line | Self::Ring, i) => vec![i - 1],
            (Self::Random, i) => vec![((i as f64 * draw) as usize).min(i - 1)],
        }
    }
}

impl SimArgs {
    /// Whether any simulator flag is given.
    pub(crate) fn active(&self) -> bool {
        self.nodes.is_some()
            || self.topology.is_some()
            || self.latency.is_some()
            || self.jitter.is_some()
            || self.loss.is_some()
            || self.partition.is_some()
            || self.late_joiner
    }

    /// Whether a late joiner is asked for.
    pub(crate) fn late_joiner(&self) -> bool {
        self.late_joiner
    }

    /// The node count asked for, if more than `usual`.
    pub(crate) fn extra_nodes(&self, usual: usize) -> usize {
        self.nodes.map_or(0, |n| usize::from(n).saturating_sub(usual))
    }
}

/// The partition's course.
#[derive(Debug, Default)]
struct Cut {
    began: Option<Instant>,
    healed: Option<Instant>,
    /// The highest height any node reached before the healing: agreeing on the block there
    /// means one chain again.
    top: u64,
    reconverged: Option<Duration>,
}

/// The simulator of one devnet run: relays, bootstrap plan and measurements.
pub(crate) struct Sim {
    topology: Topology,
    link: Link,
    partition_secs: Option<u64>,
    late_joiner: bool,
    partition: Arc<Partition>,
    /// The node at each position of the line (`line_order`).
    order: Vec<usize>,
    /// Per node: its P2P port, its relay, its peer id.
    ports: Vec<u16>,
    relays: Vec<Relay>,
    peer_ids: Vec<String>,
    /// Block hash → node index → when that node imported it (Unix ms).
    imports: HashMap<String, HashMap<usize, u64>>,
    /// Block hash → its miner's address.
    miners: HashMap<String, String>,
    /// Block hash → its height.
    heights: HashMap<String, u64>,
    /// When every node was first seen with [`FORMED_PEERS`] peers or more (Unix ms), and how
    /// long after the simulator started.
    formed: Option<(u64, Duration)>,
    started: Instant,
    last_sample: Option<Instant>,
    cut: Cut,
    rng: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("topology", &self.topology).field("link", &self.link).finish()
    }
}

/// How often every node's recent imports are read.
const SAMPLE_EVERY: Duration = Duration::from_secs(4);
/// The network counts as formed once every node has this many peers (the bar for a node that
/// knew one bootstrap address): blocks mined before that measure the discovery of the line,
/// not a block's propagation, and are counted apart.
const FORMED_PEERS: u64 = 3;
/// Blocks read from each node per sample (more than are mined between two samples).
const SAMPLE_BLOCKS: u64 = 40;
/// Longest wait for the late joiner to sync.
const JOIN_TIMEOUT: Duration = Duration::from_secs(240);

impl Sim {
    /// The simulator for the nodes `names` (key `i` for node `i`), or `None` without its flags.
    pub(crate) fn new(args: &SimArgs, names: &[String]) -> Result<Option<Self>> {
        let n = names.len();
        if !args.active() {
            return Ok(None);
        }
        let link = Link {
            latency: Duration::from_millis(args.latency.unwrap_or(0)),
            jitter: Duration::from_millis(args.jitter.unwrap_or(0)),
            loss: args.loss.unwrap_or(0.0),
        };
        if link.jitter > link.latency {
            bail!("--jitter {} ms is larger than --latency", link.jitter.as_millis());
        }
        let partition = Partition::new();
        let mut sim = Self {
            topology: args.topology.unwrap_or(Topology::Line),
            link,
            partition_secs: args.partition,
            late_joiner: args.late_joiner,
            partition,
            order: line_order(names),
            ports: Vec::new(),
            relays: Vec::new(),
            peer_ids: Vec::new(),
            imports: HashMap::new(),
            heights: HashMap::new(),
            formed: None,
            started: Instant::now(),
            miners: HashMap::new(),
            last_sample: None,
            cut: Cut::default(),
            rng: 0x9e37_79b9_7f4a_7c15,
        };
        for i in 0..n + usize::from(args.late_joiner) {
            sim.add_node(i, n)?;
        }
        Ok(Some(sim))
    }

    /// The position of node `i` in the line (the late joiner, `n`, after the last).
    fn position(&self, i: usize) -> usize {
        self.order.iter().position(|&j| j == i).unwrap_or(i)
    }

    /// The side of node `i` of `n`: the half of the line it is in.
    fn side(&self, i: usize, n: usize) -> u8 {
        u8::from(2 * self.position(i) >= n)
    }

    /// Port, relay and peer id of node `i` (its side: the half of the `n` nodes it is in).
    fn add_node(&mut self, i: usize, n: usize) -> Result<()> {
        let port = free_port()?;
        let side = self.side(i, n);
        let seed = (i as u64).wrapping_mul(0x2545_f491).wrapping_add(1);
        let relay = Relay::start(port, self.link, seed, side, self.partition.clone())
            .context("starting a link relay")?;
        let key = ChainSpec::devnet_key(i).public();
        let peer = pouw_net::peer_id_of(&key).context("a devnet key is not a peer id")?;
        self.ports.push(port);
        self.relays.push(relay);
        self.peer_ids.push(peer.to_string());
        Ok(())
    }

    fn draw(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The P2P port of node `i`.
    pub(crate) fn port(&self, i: usize) -> Option<u16> {
        self.ports.get(i).copied()
    }

    /// Node `i`'s relay address, with its peer id.
    fn relay_addr(&self, i: usize) -> Option<String> {
        let relay = self.relays.get(i)?;
        Some(format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", relay.addr().port(), self.peer_ids.get(i)?))
    }

    /// The `pouw node` flags of node `i` of `n`: its advertised relay address and its
    /// bootstrap peers' relays.
    pub(crate) fn node_args(&mut self, i: usize, n: usize) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(relay) = self.relays.get(i) {
            args.push("--external-addr".into());
            args.push(format!("/ip4/127.0.0.1/tcp/{}", relay.addr().port()));
        }
        let draw = self.draw();
        let at = self.position(i);
        for b in self.topology.bootstrap(at, n, draw) {
            let node = self.order.get(b).copied().unwrap_or(b);
            if let Some(addr) = self.relay_addr(node) {
                args.push("--bootstrap".into());
                args.push(addr);
            }
        }
        args
    }

    /// Node `i` runs as process `pid`.
    pub(crate) fn register(&self, i: usize, pid: u32, n: usize) {
        self.partition.register(pid, self.side(i, n));
    }

    /// One look at the network, every turn of the devnet's wait (`phase`: the task's phase):
    /// the partition's course, and every few seconds each node's recent imports.
    pub(crate) fn tick(&mut self, nodes: &[Node], phase: &str) {
        let now = Instant::now();
        if let Some(secs) = self.partition_secs {
            self.partition_course(nodes, phase, secs, now);
        }
        if self.formed.is_none() && nodes.iter().all(|n| peers_of(n.rpc) >= FORMED_PEERS) {
            let after = now.duration_since(self.started);
            self.formed = Some((Timestamp::now().millis(), after));
            eprintln!(
                "devnet: network formed (every node has {FORMED_PEERS} peers or more) after {:.1} s",
                after.as_secs_f64()
            );
        }
        if self.last_sample.is_some_and(|t| now.duration_since(t) < SAMPLE_EVERY) {
            return;
        }
        self.last_sample = Some(now);
        self.sample(nodes);
    }

    fn partition_course(&mut self, nodes: &[Node], phase: &str, secs: u64, now: Instant) {
        match (self.cut.began, self.cut.healed) {
            (None, _) if phase == "training" => {
                self.partition.begin();
                self.cut.began = Some(now);
                eprintln!("devnet: partition: the two halves are cut apart for {secs} s");
            }
            (Some(began), None) if now.duration_since(began) >= Duration::from_secs(secs) => {
                self.cut.top = heights(nodes).into_iter().max().unwrap_or(0);
                self.partition.end();
                self.cut.healed = Some(now);
                eprintln!("devnet: partition healed at height {}", self.cut.top);
            }
            (Some(_), Some(healed)) if self.cut.reconverged.is_none() => {
                let hashes: Vec<Option<String>> =
                    nodes.iter().map(|n| block_hash(n.rpc, self.cut.top)).collect();
                if hashes.iter().all(|h| h.is_some() && *h == hashes[0]) {
                    let took = now.duration_since(healed);
                    self.cut.reconverged = Some(took);
                    eprintln!("devnet: one chain again {:.1} s after healing", took.as_secs_f64());
                }
            }
            _ => {}
        }
    }

    /// Whether the run may end: no partition, or one that healed and after which the nodes
    /// agree on one chain again.
    pub(crate) fn settled(&self) -> bool {
        self.partition_secs.is_none() || self.cut.reconverged.is_some()
    }

    /// Reads every node's recent imports.
    fn sample(&mut self, nodes: &[Node]) {
        for (i, n) in nodes.iter().enumerate() {
            let Ok(blocks) = call(n.rpc, "pouw_recentBlocks", json!([SAMPLE_BLOCKS])) else {
                continue;
            };
            for b in blocks.as_array().into_iter().flatten() {
                let (Some(hash), Some(at)) = (b["hash"].as_str(), b["imported_at_ms"].as_u64())
                else {
                    continue;
                };
                if let Some(miner) = b["miner"].as_str() {
                    self.miners.entry(hash.to_string()).or_insert_with(|| miner.to_string());
                }
                if let Some(height) = b["height"].as_u64() {
                    self.heights.insert(hash.to_string(), height);
                }
                self.imports.entry(hash.to_string()).or_default().entry(i).or_insert(at);
            }
        }
    }

    /// Propagation delays in ms: for every block whose miner's import (its mining) was seen,
    /// every other node's import of it minus that.
    /// Also: the delays of the blocks mined once the network had formed (all of them if it
    /// was never seen formed: then nothing is left out).
    fn delays(&self, nodes: &[Node]) -> (Vec<u64>, usize, Vec<Value>, Vec<u64>) {
        let index: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (ChainSpec::devnet_key(n.key_index).public().to_string(), i))
            .collect();
        let mut delays = Vec::new();
        let mut formed_delays = Vec::new();
        let mut by_height = Vec::new();
        for (hash, seen) in &self.imports {
            let Some(m) = self.miners.get(hash).and_then(|a| index.get(a)) else { continue };
            let Some(mined) = seen.get(m) else { continue };
            let mut block: Vec<u64> = seen
                .iter()
                .filter(|(i, _)| *i != m)
                .map(|(_, at)| at.saturating_sub(*mined))
                .collect();
            block.sort_unstable();
            let height = self.heights.get(hash).copied().unwrap_or(0);
            let after_formed = self.formed.is_none_or(|(at, _)| *mined >= at);
            if after_formed {
                formed_delays.extend(block.iter().copied());
            }
            by_height.push((
                height,
                json!({
                    "height": height,
                    "miner": nodes.get(*m).map(|n| n.name.clone()),
                    "network_formed": after_formed,
                    "samples": block.len(),
                    "p50_ms": block.get(block.len() / 2),
                    "max_ms": block.last(),
                }),
            ));
            delays.extend(block);
        }
        delays.sort_unstable();
        formed_delays.sort_unstable();
        by_height.sort_by_key(|(h, _)| *h);
        let blocks = by_height.len();
        (delays, blocks, by_height.into_iter().map(|(_, v)| v).collect(), formed_delays)
    }

    /// Starts the late joiner (key `n`, knowing only the last node of the line), waits until it holds the
    /// block the client had at its start, and stops it.
    pub(crate) fn late_join(
        &mut self,
        nodes: &[Node],
        exe: &Path,
        dir: &Path,
        spec_path: &Path,
    ) -> Result<Value> {
        let n = nodes.len();
        let (Some(port), Some(relay), Some(last)) = (
            self.port(n),
            self.relays.get(n),
            self.relay_addr(self.order.last().copied().unwrap_or(0)),
        ) else {
            bail!("no relay for the late joiner");
        };
        let client = nodes.first().context("the client node")?.rpc;
        let target = call(client, "pouw_tip", json!([]))?;
        let height = target["height"].as_u64().unwrap_or(0);
        let want = block_hash(client, height).context("the client's tip")?;
        let name = "late-joiner";
        let key = dir.join("keys").join(format!("{name}.key"));
        write_key(&key, &ChainSpec::devnet_key(n))?;
        let rpc: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let log = std::fs::File::create(dir.join("logs").join(format!("{name}.log")))?;
        let started = Instant::now();
        let child = Command::new(exe)
            .arg("node")
            .arg("--datadir")
            .arg(dir.join(name))
            .arg("--chain")
            .arg(spec_path)
            .arg("--key")
            .arg(&key)
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")])
            .args(["--external-addr", &format!("/ip4/127.0.0.1/tcp/{}", relay.addr().port())])
            .args(["--bootstrap", &last])
            .args(["--rpc", &rpc.to_string()])
            .args(["--roles", "client", "--no-mine"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the late joiner")?;
        self.register(n, child.id(), n);
        let joiner = Node { name: name.into(), roles: "", key_index: n, rpc, child };
        eprintln!("devnet: late joiner started; syncing to height {height}");
        let synced = loop {
            if block_hash(rpc, height).as_deref() == Some(want.as_str()) {
                break Some(started.elapsed());
            }
            if started.elapsed() > JOIN_TIMEOUT {
                break None;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let peers = call(rpc, "pouw_health", json!([])).map(|h| h["peers"].clone());
        drop(joiner);
        Ok(json!({
            "height": height,
            "synced": synced.is_some(),
            "sync_seconds": synced.map(|d| round1(d.as_secs_f64())),
            "peers": peers.unwrap_or(Value::Null),
        }))
    }

    /// The simulator's part of the report. `mined`: blocks mined in all; `height`: the
    /// chain's; `late`: the late joiner's figures.
    pub(crate) fn report(
        &self,
        nodes: &[Node],
        mined: u64,
        height: u64,
        late: Option<Value>,
    ) -> serde_json::Map<String, Value> {
        let (all, blocks, by_block, delays) = self.delays(nodes);
        let pct_of = |d: &[u64], p: f64| {
            let i = ((d.len().saturating_sub(1)) as f64 * p).round() as usize;
            d.get(i).copied()
        };
        let pct = |p: f64| pct_of(&delays, p);
        let peers: Vec<u64> = nodes.iter().map(|n| peers_of(n.rpc)).collect();
        let same_tip = agree_at(nodes, height);
        let orphans = mined.saturating_sub(height);
        let (cut, refused, unknown) = self.partition.counts();
        let mut m = serde_json::Map::new();
        m.insert("topology".into(), json!(self.topology.name()));
        m.insert(
            "links".into(),
            json!({
                "latency_ms": self.link.latency.as_millis() as u64,
                "jitter_ms": self.link.jitter.as_millis() as u64,
                "loss": self.link.loss,
            }),
        );
        m.insert("propagation_p50_ms".into(), json!(pct(0.5)));
        m.insert("propagation_p95_ms".into(), json!(pct(0.95)));
        m.insert("propagation_max_ms".into(), json!(delays.last()));
        m.insert("propagation_blocks".into(), json!(blocks));
        m.insert("propagation_samples".into(), json!(delays.len()));
        m.insert(
            "network_formed_seconds".into(),
            json!(self.formed.map(|(_, after)| (after.as_secs_f64() * 10.0).round() / 10.0)),
        );
        m.insert("propagation_all_p50_ms".into(), json!(pct_of(&all, 0.5)));
        m.insert("propagation_all_p95_ms".into(), json!(pct_of(&all, 0.95)));
        m.insert("propagation_all_max_ms".into(), json!(all.last()));
        m.insert("propagation_all_samples".into(), json!(all.len()));
        m.insert("propagation_by_block".into(), json!(by_block));
        m.insert("orphan_blocks".into(), json!(orphans));
        let rate = if mined > 0 { orphans as f64 / mined as f64 } else { 0.0 };
        m.insert("orphan_rate".into(), json!((rate * 10_000.0).round() / 10_000.0));
        m.insert("min_peers".into(), json!(peers.iter().min()));
        m.insert("peers".into(), json!(peers));
        m.insert("same_tip".into(), json!(same_tip));
        if let Some(secs) = self.partition_secs {
            let c = &self.cut;
            m.insert(
                "partition".into(),
                json!({
                    "seconds": secs,
                    "began": c.began.is_some(),
                    "healed_at_height": c.healed.map(|_| c.top),
                    "connections_cut": cut,
                    "connections_refused": refused,
                    "connections_dialer_unknown": unknown,
                }),
            );
            m.insert(
                "partition_healed".into(),
                json!(c.healed.is_some() && c.reconverged.is_some() && same_tip),
            );
            m.insert(
                "reconverge_seconds".into(),
                json!(c.reconverged.map(|d| round1(d.as_secs_f64()))),
            );
        }
        if self.late_joiner {
            m.insert("late_joiner".into(), late.unwrap_or(Value::Null));
        }
        m
    }
}

/// Reads of the nodes' blocks at one height before they are taken to disagree.
const AGREE_TRIES: u32 = 10;

/// Whether every node holds the same block at `height`. The miners are still mining while the
/// nodes are read one after the other, so two blocks of that height may both be live for a
/// moment (an orphan race at the tip): the nodes are read again, a second apart, up to
/// [`AGREE_TRIES`] times, until they agree.
fn agree_at(nodes: &[Node], height: u64) -> bool {
    for attempt in 0..AGREE_TRIES {
        let tips: Vec<Option<String>> = nodes.iter().map(|n| block_hash(n.rpc, height)).collect();
        if tips.iter().all(|t| t.is_some() && *t == tips[0]) {
            return true;
        }
        if attempt + 1 < AGREE_TRIES {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    false
}

/// The peers node `rpc` reports (0 if it does not answer).
fn peers_of(rpc: SocketAddr) -> u64 {
    call(rpc, "pouw_health", json!([])).ok().and_then(|h| h["peers"].as_u64()).unwrap_or(0)
}

/// `spec` made this run's own chain: its name gets a suffix drawn from the clock and the
/// process id (`devnet-local-1a2b3c4d`). The name seeds the genesis block's nonce, so the
/// genesis hash differs from run to run, and with it every P2P protocol id (requests,
/// Kademlia, identify) and gossip topic (design/015): two devnets on one machine, with the
/// same devnet keys, never take each other's nodes as peers, whatever their peer tables or
/// ports.
pub(crate) fn isolated(mut spec: ChainSpec) -> ChainSpec {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let run = format!("{nanos}/{}", std::process::id());
    spec.name = format!("{}-{}", spec.name, pouw_primitives::Hash::digest(run.as_bytes()).short());
    spec
}

/// The simulator's lines of the readable report.
pub(crate) fn print(r: &Value) {
    let Some(topology) = r["topology"].as_str() else { return };
    let l = &r["links"];
    println!(
        "  network         {} nodes, {topology}, links {} ms ± {} ms, loss {}; peers min {}",
        r["nodes"].as_array().map_or(0, Vec::len),
        l["latency_ms"],
        l["jitter_ms"],
        l["loss"],
        r["min_peers"]
    );
    println!(
        "  propagation     p50 {} ms, p95 {} ms, max {} ms once formed (after {} s; every block: p95 {} ms, max {} ms; {} blocks); orphan rate {}; same tip {}",
        r["propagation_p50_ms"],
        r["propagation_p95_ms"],
        r["propagation_max_ms"],
        r["network_formed_seconds"],
        r["propagation_all_p95_ms"],
        r["propagation_all_max_ms"],
        r["propagation_blocks"],
        r["orphan_rate"],
        r["same_tip"]
    );
    if r.get("partition").is_some() {
        println!(
            "  partition       {} s: healed {}, one chain again after {} s",
            r["partition"]["seconds"], r["partition_healed"], r["reconverge_seconds"]
        );
    }
    if let Some(j) = r.get("late_joiner").filter(|j| !j.is_null()) {
        println!(
            "  late joiner     synced {} to height {} in {} s",
            j["synced"], j["height"], j["sync_seconds"]
        );
    }
}

/// The line: the client first, then the miners, supervisors and evaluators taken in turn
/// (one of each, then the next), then any other node of the usual layout, spread evenly along
/// the line; the simulator's full nodes (`node-K`) fill the positions between them. So both
/// halves of the line hold miners, supervisors and evaluators, and a partition splits them.
fn line_order(names: &[String]) -> Vec<usize> {
    let n = names.len();
    let of = |prefix: &str| -> Vec<usize> {
        names.iter().enumerate().filter(|(_, m)| m.starts_with(prefix)).map(|(i, _)| i).collect()
    };
    let groups = [of("miner-"), of("supervisor-"), of("evaluator-")];
    let mut usual: Vec<usize> = of("client");
    let longest = groups.iter().map(Vec::len).max().unwrap_or(0);
    for k in 0..longest {
        usual.extend(groups.iter().filter_map(|g| g.get(k)));
    }
    let extra = of("node-");
    let others: Vec<usize> = (0..n).filter(|i| !usual.contains(i) && !extra.contains(i)).collect();
    usual.extend(others);
    let mut order: Vec<Option<usize>> = vec![None; n];
    for (k, &i) in usual.iter().enumerate() {
        if let Some(slot) = order.get_mut(k * n / usual.len().max(1)) {
            *slot = Some(i);
        }
    }
    let mut rest = extra.into_iter();
    order.into_iter().map(|o| o.or_else(|| rest.next()).unwrap_or(0)).collect()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Every node's height (0 when it does not answer).
fn heights(nodes: &[Node]) -> Vec<u64> {
    nodes
        .iter()
        .map(|n| {
            call(n.rpc, "pouw_tip", json!([])).ok().and_then(|t| t["height"].as_u64()).unwrap_or(0)
        })
        .collect()
}

/// The hash of the canonical block at `height` on the node at `rpc`.
fn block_hash(rpc: SocketAddr, height: u64) -> Option<String> {
    let b = call(rpc, "pouw_block", json!([height])).ok()?;
    b["hash"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_runs_get_two_chains_that_differ_in_nothing_but_the_genesis_hash() {
        let base = ChainSpec::devnet();
        let (a, b) = (isolated(base.clone()), isolated(base.clone()));
        assert_ne!(a.name, b.name);
        assert!(a.name.starts_with("devnet-"), "{}", a.name);
        let genesis = |s: &ChainSpec| pouw_consensus::genesis_block(s).unwrap().hash();
        assert_ne!(genesis(&a), genesis(&b));
        assert_ne!(genesis(&a), genesis(&base));
        // Everything else (accounts, keys, parameters) is the devnet's.
        assert_eq!(ChainSpec { name: base.name.clone(), ..a.clone() }, base);
        assert_eq!(ChainSpec::from_toml(&a.to_toml(), "test").unwrap().name, a.name);
    }

    #[test]
    fn each_topology_bootstraps_from_earlier_nodes_only_but_the_ring_closes() {
        for i in 1..24 {
            assert_eq!(Topology::Line.bootstrap(i, 24, 0.3), vec![i - 1]);
            assert_eq!(Topology::Ring.bootstrap(i, 24, 0.3), vec![i - 1]);
            for draw in [0.0, 0.5, 0.999_999] {
                let b = Topology::Random.bootstrap(i, 24, draw);
                assert!(b.len() == 1 && b[0] < i, "{i} {draw}: {b:?}");
            }
        }
        assert!(Topology::Line.bootstrap(0, 24, 0.3).is_empty());
        assert_eq!(Topology::Ring.bootstrap(0, 24, 0.3), vec![23]);
        assert!(Topology::Random.bootstrap(0, 24, 0.3).is_empty());
    }

    #[test]
    fn loss_is_a_probability() {
        assert_eq!(parse_loss("0.01"), Ok(0.01));
        assert!(parse_loss("1.5").is_err());
        assert!(parse_loss("-0.1").is_err());
        assert!(parse_loss("lots").is_err());
    }

    #[test]
    fn the_simulator_gives_each_node_its_relay_and_its_predecessors() {
        let args = SimArgs {
            nodes: Some(4),
            topology: None,
            latency: Some(5),
            jitter: Some(1),
            loss: Some(0.0),
            partition: None,
            late_joiner: false,
        };
        assert!(args.active());
        assert_eq!(args.extra_nodes(10), 0);
        let names: Vec<String> =
            ["client", "miner-1", "node-3", "node-4"].iter().map(|s| s.to_string()).collect();
        let mut sim = Sim::new(&args, &names).unwrap().unwrap();
        let a0 = sim.node_args(0, 4);
        assert_eq!(a0.len(), 2, "{a0:?}");
        assert_eq!(a0[0], "--external-addr");
        // The line: client, node-3, miner-1, node-4; node 1 (miner-1) follows node 2.
        assert_eq!(sim.order, vec![0, 2, 1, 3]);
        let a1 = sim.node_args(1, 4);
        assert_eq!(a1[2], "--bootstrap");
        let relay2 = sim.relays[2].addr().port();
        assert!(a1[3].starts_with(&format!("/ip4/127.0.0.1/tcp/{relay2}/p2p/")), "{a1:?}");
        assert_eq!((sim.side(0, 4), sim.side(2, 4), sim.side(1, 4)), (0, 0, 1));
        let a2 = sim.node_args(2, 4);
        let relay1 = sim.relays[0].addr().port();
        assert!(a2[3].starts_with(&format!("/ip4/127.0.0.1/tcp/{relay1}/p2p/")), "{a2:?}");
        let ports: std::collections::BTreeSet<u16> = (0..4).filter_map(|i| sim.port(i)).collect();
        assert_eq!(ports.len(), 4);
        let off = SimArgs { nodes: None, latency: None, jitter: None, loss: None, ..args };
        assert!(!off.active());
        assert!(Sim::new(&off, &names).unwrap().is_none());
        let wide = SimArgs { latency: Some(5), jitter: Some(9), ..off };
        assert!(Sim::new(&wide, &names).is_err());
    }

    #[test]
    fn the_line_spreads_the_roles_over_both_halves() {
        let mut names: Vec<String> = vec!["client".into()];
        for role in ["miner", "supervisor", "evaluator"] {
            names.extend((1..=3).map(|i| format!("{role}-{i}")));
        }
        names.extend((11..=24).map(|i| format!("node-{i}")));
        let order = line_order(&names);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..24).collect::<Vec<_>>(), "a permutation: {order:?}");
        assert_eq!(order[0], 0, "the client first");
        let half = |prefix: &str, second: bool| {
            order
                .iter()
                .enumerate()
                .filter(|(p, i)| names[**i].starts_with(prefix) && (2 * p >= 24) == second)
                .count()
        };
        for role in ["miner", "supervisor", "evaluator"] {
            assert!(half(role, false) >= 1 && half(role, true) >= 1, "{role}: {order:?}");
        }
    }
}
