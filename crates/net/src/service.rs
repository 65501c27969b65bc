//! The network task: a libp2p swarm (TCP + noise + yamux; identify, ping, gossipsub,
//! request-response, Kademlia discovery, connection limits and a ban list) owned by one thread running a tokio
//! runtime. It serves the node's [`Command`]s and turns swarm events into [`NetEvent`]s.

use crate::codec::{is_malformed, WireCodec, WireRequest, WireResponse};
use crate::handle::{
    Acceptance, Command, DiscoveryInfo, GossipId, InboundId, KnownPeer, NetConfig, NetEvent,
    NetStats, NetworkHandle, PeerInfo, PeerVerdict, RequestFailure, RequestId, Shared,
    COMMAND_QUEUE, EVENT_QUEUE,
};
use crate::messages::{GossipMessage, Request, Topic, MAX_GOSSIP_BYTES};
use libp2p::{
    allow_block_list, connection_limits,
    futures::StreamExt,
    gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId, TopicHash},
    identify, identity, kad,
    multiaddr::Protocol,
    noise, ping,
    request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel},
    swarm::{
        behaviour::toggle::Toggle, dial_opts::DialOpts, ConnectionId, NetworkBehaviour, SwarmEvent,
    },
    tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use std::{
    collections::{HashMap, HashSet, VecDeque},
    io,
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tracing::{debug, info, warn};

/// How long [`spawn`] waits for every listen address to be bound.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Period of the housekeeping tick (redials, ban expiry).
const TICK: Duration = Duration::from_millis(100);
/// Period of the peers snapshot refresh and of the score decay.
const REFRESH: Duration = Duration::from_secs(1);
/// Redials of a lost (non-bootstrap) peer before giving up on it.
const MAX_REDIALS: u32 = 10;
/// Most connections to one peer.
const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Heartbeats (seconds) a received message waits for the node's verdict.
const VALIDATION_WINDOW_HEARTBEATS: usize = 30;
/// Weight of the application score in gossipsub's score.
const APP_SCORE_WEIGHT: f64 = 1.0;
/// Discovery round period while below the target peer count.
const DISCOVERY_FAST: Duration = Duration::from_secs(2);
/// Discovery round period at or above the target (a random walk keeps the table fresh).
const DISCOVERY_SLOW: Duration = Duration::from_secs(30);
/// A peer dialled by discovery is not dialled again before this.
const DISCOVERY_REDIAL: Duration = Duration::from_secs(30);
/// Timeout of one Kademlia query.
const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Period of the peer table save.
const PEER_TABLE_SAVE: Duration = Duration::from_secs(30);
/// Most entries of the peer table (saved and read).
const PEER_TABLE_MAX: usize = 128;
/// Largest peer table file read back.
const PEER_TABLE_MAX_BYTES: u64 = 256 * 1024;
/// Most requests waiting for one peer to be dialled.
const MAX_WAITING_PER_PEER: usize = 64;

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The node's secret key is not a valid ed25519 secret key.
    #[error("invalid node key: {0}")]
    Identity(String),
    /// The transport (TCP, noise, yamux) could not be built.
    #[error("transport setup failed: {0}")]
    Transport(String),
    /// A behaviour (gossipsub, request-response) could not be configured.
    #[error("network behaviour setup failed: {0}")]
    Behaviour(String),
    /// A listen address is not supported (not `/ip4|ip6/../tcp/..`).
    #[error("bad listen address {addr}: {reason}")]
    BadListenAddress {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// Binding a listen address failed (port in use, no such interface...).
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A listen address was not bound in time.
    #[error("listening on {0} did not start within {LISTEN_TIMEOUT:?}")]
    ListenTimeout(Multiaddr),
    /// The tokio runtime or the network thread could not be started.
    #[error("cannot start the network thread: {0}")]
    Thread(String),
}

/// Starts the network: derives the peer id from `secret` (the node's ed25519 secret key),
/// spawns the network thread, and returns once every address of `config.listen` is bound
/// (so [`NetworkHandle::listen_addrs`] holds the resolved ports).
pub fn spawn(
    config: NetConfig,
    secret: [u8; 32],
) -> Result<(NetworkHandle, flume::Receiver<NetEvent>), NetError> {
    let mut secret = secret;
    let keypair = identity::Keypair::ed25519_from_bytes(&mut secret)
        .map_err(|e| NetError::Identity(e.to_string()))?;
    let local_peer_id = keypair.public().to_peer_id();
    let (command_tx, command_rx) = flume::bounded(COMMAND_QUEUE);
    let (event_tx, event_rx) = flume::bounded(EVENT_QUEUE);
    let shared = Arc::new(Shared::default());
    let stats = Arc::new(NetStats::default());
    let (ready_tx, ready_rx) = flume::bounded(1);
    let (task_shared, task_stats) = (shared.clone(), stats.clone());
    std::thread::Builder::new()
        .name("pouw-net".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(NetError::Thread(e.to_string())));
                    return;
                }
            };
            runtime.block_on(async move {
                match Service::start(config, keypair, task_shared, task_stats, event_tx).await {
                    Ok(service) => {
                        let _ = ready_tx.send(Ok(()));
                        service.run(command_rx).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| NetError::Thread(e.to_string()))?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(NetError::Thread("the network thread stopped while starting".into())),
    }
    let handle = NetworkHandle {
        commands: command_tx,
        shared,
        stats,
        next_request: Arc::new(AtomicU64::new(1)),
        local_peer_id,
    };
    Ok((handle, event_rx))
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    rr: request_response::Behaviour<WireCodec>,
}

/// What we know of one peer.
#[derive(Debug, Default)]
struct PeerState {
    /// The address of its latest connection.
    address: Option<Multiaddr>,
    /// Open connections.
    connections: u32,
    /// Identify done with the right protocol version (`PeerConnected` sent).
    identified: bool,
    rtt: Option<Duration>,
    agent: Option<String>,
    /// An address to redial it on, when we know one (we dialed it, or it told us).
    dial_addr: Option<Multiaddr>,
    /// The peer opened the latest connection.
    inbound: bool,
}

/// An address we keep dialling until connected.
#[derive(Debug)]
struct Redial {
    addr: Multiaddr,
    peer: Option<PeerId>,
    bootstrap: bool,
    backoff: Duration,
    /// When to dial next; `None` while connected.
    next: Option<Instant>,
    /// What a DNS address last resolved to.
    resolved: Vec<Multiaddr>,
    failures: u32,
}

struct Service {
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    shared: Arc<Shared>,
    stats: Arc<NetStats>,
    events: flume::Sender<NetEvent>,
    protocol_version: String,
    topics: HashMap<TopicHash, Topic>,
    outbound: HashMap<OutboundRequestId, (RequestId, PeerId)>,
    inbound:
        HashMap<InboundId, (ResponseChannel<WireResponse>, request_response::InboundRequestId)>,
    /// Responses sent with `respond_tracked`, by libp2p's id, until they left or failed.
    tracked: HashMap<request_response::InboundRequestId, InboundId>,
    inbound_order: VecDeque<InboundId>,
    next_inbound: InboundId,
    peers: HashMap<PeerId, PeerState>,
    bans: HashMap<PeerId, Instant>,
    app_scores: HashMap<PeerId, f64>,
    redials: Vec<Redial>,
    /// DNS addresses resolved off the swarm loop, to dial.
    resolved_tx: tokio::sync::mpsc::UnboundedSender<(Multiaddr, Vec<Multiaddr>)>,
    resolved_rx: tokio::sync::mpsc::UnboundedReceiver<(Multiaddr, Vec<Multiaddr>)>,
    /// Whether "no peers connected" was logged (to log the recovery).
    alone: bool,
    last_refresh: Instant,
    /// Peers removed with `admin_removePeer`: discovery does not dial them.
    removed: HashSet<PeerId>,
    /// Requests to a peer being dialled: sent once it is identified, failed after the request
    /// timeout.
    waiting: HashMap<PeerId, Vec<(RequestId, Request, Instant)>>,
    /// Kademlia lookups of a peer we have requests for.
    lookups: HashMap<kad::QueryId, PeerId>,
    /// The random-walk query in flight.
    walk: Option<kad::QueryId>,
    last_discovery: Instant,
    last_saved: Instant,
    /// Peers dialled by discovery, and when.
    dialled: HashMap<PeerId, Instant>,
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect()
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// Whether a peer's listen address can be dialled (not unspecified, a port).
fn is_dialable(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        Protocol::Ip4(ip) => !ip.is_unspecified(),
        Protocol::Ip6(ip) => !ip.is_unspecified(),
        Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) => true,
        _ => false,
    }) && a.iter().any(|p| matches!(p, Protocol::Tcp(port) if port != 0))
}

/// An address a peer listens on that we can dial (not unspecified).
fn dialable(addrs: &[Multiaddr]) -> Option<Multiaddr> {
    addrs.iter().find(|a| is_dialable(a)).map(strip_p2p)
}

/// Reads the peer table: one `<address>/p2p/<peer id>` a line; lines that do not parse are
/// skipped (the file is ours, but a damaged one must not stop the node).
fn read_peer_table(path: &Path) -> Vec<(PeerId, Multiaddr)> {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(PEER_TABLE_MAX_BYTES).read_to_string(&mut text));
    if let Err(e) = read {
        if e.kind() != io::ErrorKind::NotFound {
            warn!(path = %path.display(), error = %e, "cannot read the peer table");
        }
        return Vec::new();
    }
    text.lines()
        .filter_map(|line| line.trim().parse::<Multiaddr>().ok())
        .filter_map(|addr| Some((peer_of(&addr)?, strip_p2p(&addr))))
        .filter(|(_, addr)| is_dialable(addr))
        .take(PEER_TABLE_MAX)
        .collect()
}

/// Writes the peer table (to a temporary file renamed over the old one).
fn write_peer_table(path: &Path, entries: &[(PeerId, Multiaddr)]) -> io::Result<()> {
    let mut text = String::new();
    for (peer, addr) in entries.iter().take(PEER_TABLE_MAX) {
        text.push_str(&format!("{}\n", addr.clone().with(Protocol::P2p(*peer))));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// libp2p sets `SO_REUSEPORT` on its listeners, so a second node would silently share a port
/// with the first: check first that a fixed ip/port is free with a plain socket.
fn check_port_free(addr: &Multiaddr) -> io::Result<()> {
    let mut iter = addr.iter();
    let ip: std::net::IpAddr = match iter.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    match iter.next() {
        Some(Protocol::Tcp(port)) if port != 0 => std::net::TcpListener::bind((ip, port)).map(drop),
        _ => Ok(()),
    }
}

fn is_tcp_listen_addr(addr: &Multiaddr) -> bool {
    let mut iter = addr.iter();
    matches!(iter.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_)))
        && matches!(iter.next(), Some(Protocol::Tcp(_)))
}

/// A `/dns|dns4|dns6/<host>/tcp/<port>/..` address: its host, port, wanted IP family
/// (`Some(true)`: v4 only, `Some(false)`: v6 only) and the protocols after the port.
fn dns_parts(addr: &Multiaddr) -> Option<(String, u16, Option<bool>, Vec<Protocol<'static>>)> {
    let mut iter = addr.iter();
    let (host, v4) = match iter.next()? {
        Protocol::Dns(host) => (host.into_owned(), None),
        Protocol::Dns4(host) => (host.into_owned(), Some(true)),
        Protocol::Dns6(host) => (host.into_owned(), Some(false)),
        _ => return None,
    };
    let Protocol::Tcp(port) = iter.next()? else { return None };
    Some((host, port, v4, iter.map(|p| p.acquire()).collect()))
}

/// Resolves a DNS address to IP addresses with the system resolver (libp2p's DNS transport is
/// not built in).
async fn resolve(addr: Multiaddr) -> (Multiaddr, Vec<Multiaddr>) {
    let Some((host, port, v4, rest)) = dns_parts(&addr) else { return (addr, Vec::new()) };
    let resolved = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(found) => found
            .filter(|ip| v4.is_none_or(|v4| ip.is_ipv4() == v4))
            .map(|ip| {
                let mut out = Multiaddr::from(ip.ip()).with(Protocol::Tcp(port));
                for p in &rest {
                    out.push(p.clone());
                }
                out
            })
            .collect(),
        Err(e) => {
            debug!(%addr, error = %e, "cannot resolve");
            Vec::new()
        }
    };
    (addr, resolved)
}

/// Score parameters of a topic: rewards for first deliveries and time in the mesh, a heavy
/// penalty for invalid messages; no mesh-delivery quota (the topics carry little traffic).
fn topic_params(topic: &Topic) -> gossipsub::TopicScoreParams {
    let topic_weight = match topic {
        Topic::Blocks => 1.0,
        Topic::Transactions | Topic::Verification => 0.5,
        Topic::Task(_) => 0.3,
        Topic::Alerts => 0.25,
    };
    gossipsub::TopicScoreParams {
        topic_weight,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -50.0,
        invalid_message_deliveries_decay: 0.9,
        ..Default::default()
    }
}

const FIXED_TOPICS: [Topic; 4] =
    [Topic::Blocks, Topic::Transactions, Topic::Verification, Topic::Alerts];

fn build_swarm(
    config: &NetConfig,
    keypair: identity::Keypair,
    stats: Arc<NetStats>,
    protocol_version: &str,
) -> Result<Swarm<Behaviour>, NetError> {
    let genesis = config.genesis.to_string();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| MessageId::new(blake3::hash(&m.data).as_bytes()))
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_secs(1))
        // Messages awaiting the node's verdict stay in the cache this many heartbeats: the
        // node has that long to validate a block (replaying its proof) before it is lost.
        .history_length(VALIDATION_WINDOW_HEARTBEATS)
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|e| NetError::Behaviour(format!("gossipsub: {e}")))?;
    let mut score_params = gossipsub::PeerScoreParams {
        app_specific_weight: APP_SCORE_WEIGHT,
        // Local test networks run many nodes on one host.
        ip_colocation_factor_whitelist: [
            std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
            std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    for topic in FIXED_TOPICS {
        score_params
            .topics
            .insert(IdentTopic::new(topic.name(&config.genesis)).hash(), topic_params(&topic));
    }
    let mut gossipsub =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(keypair.clone()), gossip_config)
            .map_err(|e| NetError::Behaviour(format!("gossipsub: {e}")))?;
    gossipsub
        .with_peer_score(score_params, gossipsub::PeerScoreThresholds::default())
        .map_err(|e| NetError::Behaviour(format!("gossipsub scoring: {e}")))?;

    let protocol = StreamProtocol::try_from_owned(format!("/pouw/{genesis}/req/1"))
        .map_err(|e| NetError::Behaviour(format!("request-response protocol: {e}")))?;
    let rr = request_response::Behaviour::with_codec(
        WireCodec::new(stats),
        [(protocol, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(config.request_timeout),
    );
    let identify = identify::Behaviour::new(
        identify::Config::new(protocol_version.to_owned(), keypair.public())
            .with_agent_version(config.agent.clone())
            .with_hide_listen_addrs(!config.external_addrs.is_empty()),
    );
    let kad_protocol = StreamProtocol::try_from_owned(format!("/pouw/{genesis}/kad/1"))
        .map_err(|e| NetError::Behaviour(format!("kademlia protocol: {e}")))?;
    let mut kad_config = kad::Config::new(kad_protocol);
    // Random walks are run by the service, at its own pace.
    kad_config.set_query_timeout(KAD_QUERY_TIMEOUT).set_periodic_bootstrap_interval(None);
    let local_peer = keypair.public().to_peer_id();
    let mut kad = kad::Behaviour::with_config(
        local_peer,
        kad::store::MemoryStore::new(local_peer),
        kad_config,
    );
    // Serve the DHT from the start (by default a node waits for a confirmed external address,
    // which loopback and private networks never get).
    kad.set_mode(Some(kad::Mode::Server));
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_peers))
        .with_max_established_incoming(Some(config.max_inbound.min(config.max_peers)))
        .with_max_established_outgoing(Some(config.max_outbound.min(config.max_peers)))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER));
    let behaviour = Behaviour {
        blocked: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(limits),
        identify,
        kad: Toggle::from(config.discovery.then_some(kad)),
        ping: ping::Behaviour::new(ping::Config::new()),
        gossipsub,
        rr,
    };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| NetError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
        .build();
    let mut swarm = swarm;
    for addr in &config.external_addrs {
        swarm.add_external_address(addr.clone());
    }
    Ok(swarm)
}

impl Service {
    async fn start(
        config: NetConfig,
        keypair: identity::Keypair,
        shared: Arc<Shared>,
        stats: Arc<NetStats>,
        events: flume::Sender<NetEvent>,
    ) -> Result<Self, NetError> {
        let protocol_version = format!("/pouw/{}/1", config.genesis);
        let mut swarm = build_swarm(&config, keypair, stats.clone(), &protocol_version)?;

        let mut topics = HashMap::new();
        for topic in FIXED_TOPICS {
            let ident = IdentTopic::new(topic.name(&config.genesis));
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&ident)
                .map_err(|e| NetError::Behaviour(format!("subscribing to {ident}: {e}")))?;
            topics.insert(ident.hash(), topic);
        }

        // Listen, and wait for the first bound address of each listener.
        let mut pending = HashMap::new();
        for addr in &config.listen {
            if !is_tcp_listen_addr(addr) {
                return Err(NetError::BadListenAddress {
                    addr: addr.clone(),
                    reason: "expected /ip4|ip6|dns/<host>/tcp/<port>".into(),
                });
            }
            check_port_free(addr)
                .map_err(|e| NetError::Bind { addr: addr.clone(), reason: e.to_string() })?;
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Bind { addr: addr.clone(), reason: e.to_string() })?;
            pending.insert(id, addr.clone());
        }
        let mut bound = Vec::new();
        let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
        while !pending.is_empty() {
            let event = match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
                Ok(event) => event,
                Err(_) => {
                    let addr = pending.into_values().next().unwrap_or_else(Multiaddr::empty);
                    return Err(NetError::ListenTimeout(addr));
                }
            };
            match event {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    pending.remove(&listener_id);
                    bound.push(address);
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    if let Some(addr) = pending.remove(&listener_id) {
                        return Err(NetError::Bind { addr, reason: error.to_string() });
                    }
                }
                SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                    if let Some(addr) = pending.remove(&listener_id) {
                        let reason = match reason {
                            Ok(()) => "listener closed".to_owned(),
                            Err(e) => e.to_string(),
                        };
                        return Err(NetError::Bind { addr, reason });
                    }
                }
                other => debug!(?other, "swarm event while starting"),
            }
        }
        info!(peer = %swarm.local_peer_id(), addrs = ?bound, "network listening");
        if let Ok(mut addrs) = shared.listen_addrs.lock() {
            *addrs = bound;
        }

        let now = Instant::now();
        let redials = config
            .bootstrap
            .iter()
            .map(|addr| Redial {
                addr: addr.clone(),
                peer: peer_of(addr),
                bootstrap: true,
                backoff: config.redial_backoff.0,
                next: Some(now),
                failures: 0,
                resolved: Vec::new(),
            })
            .collect();
        // The peers we knew before the restart: into the routing table, dialled by discovery.
        if let Some(path) = &config.peer_table {
            let known = read_peer_table(path);
            info!(peers = known.len(), path = %path.display(), "peer table read");
            let local = *swarm.local_peer_id();
            if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
                for (peer, addr) in known.into_iter().filter(|(peer, _)| *peer != local) {
                    kad.add_address(&peer, addr);
                }
            }
        }
        let (resolved_tx, resolved_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self {
            swarm,
            config,
            shared,
            stats,
            events,
            protocol_version,
            topics,
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            tracked: HashMap::new(),
            inbound_order: VecDeque::new(),
            next_inbound: 1,
            peers: HashMap::new(),
            bans: HashMap::new(),
            app_scores: HashMap::new(),
            redials,
            resolved_tx,
            resolved_rx,
            alone: false,
            last_refresh: now,
            removed: HashSet::new(),
            waiting: HashMap::new(),
            lookups: HashMap::new(),
            walk: None,
            last_discovery: now,
            last_saved: now,
            dialled: HashMap::new(),
        })
    }

    async fn run(mut self, commands: flume::Receiver<Command>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                command = commands.recv_async() => match command {
                    Ok(Command::Shutdown) | Err(_) => break,
                    Ok(command) => self.on_command(command).await,
                },
                Some((addr, resolved)) = self.resolved_rx.recv() => self.on_resolved(addr, resolved),
                _ = tick.tick() => self.on_tick().await,
            }
        }
        self.save_peer_table();
        info!("network stopped");
        if let Ok(mut peers) = self.shared.peers.lock() {
            peers.clear();
        }
        self.stats.connected.store(0, Ordering::Relaxed);
    }

    // ----- events to the node -----

    /// Sends an event the node must get (requests, responses, peer changes).
    async fn deliver(&self, event: NetEvent) {
        if self.events.send_async(event).await.is_err() {
            debug!("the node stopped listening to network events");
        }
    }

    // ----- commands -----

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish(message) => {
                let topic = message.topic();
                let data = message.encode();
                let max = GossipMessage::max_bytes(message.kind());
                if data.len() > max {
                    warn!(kind = %message.kind(), len = data.len(), max, "not publishing an oversized message");
                    return;
                }
                self.publish(topic, data);
            }
            #[cfg(feature = "test-util")]
            Command::PublishRaw { topic, data } => self.publish(topic, data),
            Command::Validate { id, from, acceptance } => {
                let acceptance = match acceptance {
                    Acceptance::Accept => MessageAcceptance::Accept,
                    Acceptance::Reject => MessageAcceptance::Reject,
                    Acceptance::Ignore => MessageAcceptance::Ignore,
                };
                let known = self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &MessageId(id.0),
                    &from,
                    acceptance,
                );
                if !known {
                    debug!(%from, "validated a message no longer in the cache");
                }
            }
            Command::Request { peer, id, request } => {
                // Our own requests are checked as the peer will check them: never get banned
                // for a request out of bounds.
                if let Err(e) = Request::decode(&request.encode()) {
                    let failure = RequestFailure::Other(format!("request refused locally: {e}"));
                    self.deliver(NetEvent::Response { peer, id, result: Err(failure) }).await;
                    return;
                }
                self.send_request(peer, id, request).await;
            }
            #[cfg(feature = "test-util")]
            Command::RespondRaw { id, data } => {
                if let Some((channel, _)) = self.inbound.remove(&id) {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_response(channel, WireResponse::Raw(data));
                }
            }
            #[cfg(feature = "test-util")]
            Command::RequestUnchecked { peer, id, request } => {
                self.send_request(peer, id, request).await;
            }
            Command::Respond { id, response, tracked } => {
                let sent = match self.inbound.remove(&id) {
                    Some((channel, rr_id)) => {
                        let response = WireResponse::Valid(response);
                        let sent = self.swarm.behaviour_mut().rr.send_response(channel, response);
                        if sent.is_err() {
                            debug!(id, "response not sent: the requester is gone");
                        }
                        sent.is_ok().then_some(rr_id)
                    }
                    None => {
                        debug!(id, "response to an unknown or expired request");
                        None
                    }
                };
                if tracked {
                    match sent {
                        Some(rr_id) => {
                            self.tracked.insert(rr_id, id);
                        }
                        None => self.deliver(NetEvent::ResponseDone(id)).await,
                    }
                }
            }
            Command::Report { peer, verdict } => match verdict {
                PeerVerdict::Ban { reason } => self.ban(peer, &reason, self.config.ban_duration),
                PeerVerdict::Penalty { reason, points } => self.penalise(peer, &reason, points),
            },
            Command::Dial(addr) => {
                if let Some(peer) = peer_of(&addr) {
                    if self.bans.contains_key(&peer) {
                        debug!(%peer, "not dialling a banned peer");
                        return;
                    }
                }
                self.dial(addr);
            }
            Command::AddPeer(addr) => {
                let peer = peer_of(&addr);
                if let Some(peer) = peer {
                    self.removed.remove(&peer);
                    if let Some(plain) = Some(strip_p2p(&addr)).filter(is_dialable) {
                        if let Some(kad) = self.kad() {
                            kad.add_address(&peer, plain);
                        }
                    }
                }
                if !self.redials.iter().any(|r| r.addr == addr) {
                    info!(%addr, "static peer added");
                    self.redials.push(Redial {
                        addr,
                        peer,
                        bootstrap: true,
                        backoff: self.config.redial_backoff.0,
                        next: Some(Instant::now()),
                        failures: 0,
                        resolved: Vec::new(),
                    });
                }
                self.refresh_shared();
            }
            Command::RemovePeer(peer) => {
                info!(%peer, "peer removed");
                self.removed.insert(peer);
                self.redials.retain(|r| r.peer != Some(peer));
                if let Some(kad) = self.kad() {
                    kad.remove_peer(&peer);
                }
                self.dialled.remove(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
                self.fail_waiting(peer).await;
                self.refresh_shared();
                self.save_peer_table();
            }
            Command::Subscribe(topic) => {
                let ident = IdentTopic::new(topic.name(&self.config.genesis));
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                if let Err(e) = gossipsub.set_topic_params(ident.clone(), topic_params(&topic)) {
                    warn!(%ident, error = %e, "cannot set topic score parameters");
                }
                match gossipsub.subscribe(&ident) {
                    Ok(_) => {
                        self.topics.insert(ident.hash(), topic);
                    }
                    Err(e) => warn!(%ident, error = %e, "cannot subscribe"),
                }
            }
            Command::Unsubscribe(topic) => {
                let ident = IdentTopic::new(topic.name(&self.config.genesis));
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&ident);
                self.topics.remove(&ident.hash());
            }
            Command::Shutdown => {}
        }
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) {
        let len = data.len() as u64;
        let ident = IdentTopic::new(topic.name(&self.config.genesis));
        match self.swarm.behaviour_mut().gossipsub.publish(ident, data) {
            Ok(_) => {
                self.stats.bytes_out.fetch_add(len, Ordering::Relaxed);
                self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                debug!(?topic, "published to no peer (none subscribed)");
            }
            Err(gossipsub::PublishError::Duplicate) => {
                debug!(?topic, "not republishing a message already seen");
            }
            Err(e) => warn!(?topic, error = %e, "publish failed"),
        }
    }

    async fn send_request(&mut self, peer: PeerId, id: RequestId, request: Request) {
        let connected = self.peers.get(&peer).is_some_and(|p| p.identified);
        let unreachable = self.bans.contains_key(&peer)
            || self.removed.contains(&peer)
            || peer == *self.swarm.local_peer_id();
        let full = self.waiting.get(&peer).is_some_and(|w| w.len() >= MAX_WAITING_PER_PEER);
        let routable = self.swarm.behaviour().kad.is_enabled();
        if unreachable || (!connected && (full || !routable)) {
            let result = Err(RequestFailure::NotConnected);
            self.deliver(NetEvent::Response { peer, id, result }).await;
            return;
        }
        if !connected {
            // Dial it (on the addresses the routing table knows) and look it up; the request
            // goes once the peer is identified.
            let waiting = self.waiting.entry(peer).or_default();
            let first = waiting.is_empty();
            waiting.push((id, request, Instant::now()));
            if first {
                debug!(%peer, "dialling a peer to send it a request");
                if !self.swarm.is_connected(&peer) {
                    if let Err(e) = self.swarm.dial(DialOpts::peer_id(peer).build()) {
                        debug!(%peer, error = %e, "no known address yet");
                    }
                }
                if let Some(kad) = self.kad() {
                    let query = kad.get_closest_peers(peer);
                    self.lookups.insert(query, peer);
                }
            }
            return;
        }
        let outbound =
            self.swarm.behaviour_mut().rr.send_request(&peer, WireRequest::Valid(request));
        self.outbound.insert(outbound, (id, peer));
    }

    // ----- bans and scores -----

    fn ban(&mut self, peer: PeerId, reason: &str, duration: Duration) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        let until = Instant::now() + duration;
        warn!(%peer, reason, secs = duration.as_secs(), "banning peer");
        let previous = self.bans.insert(peer, until);
        if let Some(previous) = previous {
            if previous > until {
                self.bans.insert(peer, previous);
            }
        } else {
            self.stats.bans.fetch_add(1, Ordering::Relaxed);
        }
        let behaviour = self.swarm.behaviour_mut();
        behaviour.blocked.block_peer(peer);
        behaviour.gossipsub.blacklist_peer(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
        // Banned peers are not redialled (bootstrap peers: not before the ban ends).
        self.redials.retain(|r| r.bootstrap || r.peer != Some(peer));
        for r in self.redials.iter_mut().filter(|r| r.peer == Some(peer)) {
            r.next = Some(until);
        }
        self.refresh_shared();
    }

    fn penalise(&mut self, peer: PeerId, reason: &str, points: u32) {
        let score = self.app_scores.entry(peer).or_insert(0.0);
        *score -= f64::from(points);
        let score = *score;
        debug!(%peer, reason, points, score, "peer penalised");
        self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, score);
        self.refresh_shared();
        if score <= -f64::from(self.config.penalty_ban_threshold) {
            let reason = format!("score {score:.0} after: {reason}");
            self.ban(peer, &reason, self.config.penalty_ban_duration);
        }
    }

    /// Sends the requests that waited for `peer` to be identified.
    fn flush_waiting(&mut self, peer: PeerId) {
        for (id, request, _) in self.waiting.remove(&peer).unwrap_or_default() {
            let outbound =
                self.swarm.behaviour_mut().rr.send_request(&peer, WireRequest::Valid(request));
            self.outbound.insert(outbound, (id, peer));
        }
    }

    /// Fails the requests waiting for `peer`.
    async fn fail_waiting(&mut self, peer: PeerId) {
        for (id, _, _) in self.waiting.remove(&peer).unwrap_or_default() {
            let result = Err(RequestFailure::NotConnected);
            self.deliver(NetEvent::Response { peer, id, result }).await;
        }
    }

    // ----- discovery -----

    fn on_kad(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id,
            result: kad::QueryResult::GetClosestPeers(result),
            step,
            ..
        } = event
        else {
            return;
        };
        let peers = match result {
            Ok(ok) => ok.peers,
            Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        if let Some(target) = self.lookups.get(&id).copied() {
            if let Some(found) = peers.iter().find(|p| p.peer_id == target) {
                if self.waiting.contains_key(&target) && !self.swarm.is_connected(&target) {
                    let addrs: Vec<Multiaddr> =
                        found.addrs.iter().filter(|a| is_dialable(a)).map(strip_p2p).collect();
                    debug!(peer = %target, ?addrs, "found a peer we wait for");
                    let opts = DialOpts::peer_id(target).addresses(addrs).build();
                    if let Err(e) = self.swarm.dial(opts) {
                        debug!(peer = %target, error = %e, "dial failed");
                    }
                }
            }
            if step.last {
                self.lookups.remove(&id);
            }
        }
        if self.walk == Some(id) && step.last {
            debug!(found = peers.len(), "random walk done");
            self.walk = None;
        }
    }

    /// Kademlia, unless discovery is off.
    fn kad(&mut self) -> Option<&mut kad::Behaviour<kad::store::MemoryStore>> {
        self.swarm.behaviour_mut().kad.as_mut()
    }

    /// The routing table: each peer and its addresses.
    fn routing_table(&mut self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut out = Vec::new();
        let Some(kad) = self.kad() else { return out };
        for bucket in kad.kbuckets() {
            for entry in bucket.iter() {
                out.push((*entry.node.key.preimage(), entry.node.value.iter().cloned().collect()));
            }
        }
        out
    }

    /// Below the target peer count: dials peers of the routing table we are not connected to,
    /// and runs a random walk (a lookup of a random id) to learn more of them.
    fn discover(&mut self, now: Instant) {
        let connected = self.connected_count();
        let target = u64::from(self.config.target_peers.min(self.config.max_peers));
        if target == 0 {
            return;
        }
        let period = if connected < target { DISCOVERY_FAST } else { DISCOVERY_SLOW };
        if now.duration_since(self.last_discovery) < period {
            return;
        }
        self.last_discovery = now;
        self.dialled.retain(|_, at| now.duration_since(*at) < DISCOVERY_REDIAL);
        if connected < target {
            let mut want = target.saturating_sub(connected);
            for (peer, addrs) in self.routing_table() {
                if want == 0 {
                    break;
                }
                if self.swarm.is_connected(&peer)
                    || self.bans.contains_key(&peer)
                    || self.removed.contains(&peer)
                    || self.dialled.contains_key(&peer)
                {
                    continue;
                }
                debug!(%peer, "discovery: dialling");
                self.dialled.insert(peer, now);
                want -= 1;
                if let Err(e) = self.swarm.dial(DialOpts::peer_id(peer).addresses(addrs).build()) {
                    debug!(%peer, error = %e, "dial failed");
                }
            }
        }
        if self.walk.is_none() {
            self.walk = self.kad().map(|kad| kad.get_closest_peers(PeerId::random()));
        }
    }

    /// Saves the peer table (routing table and connected peers), when the node keeps one.
    fn save_peer_table(&mut self) {
        let Some(path) = self.config.peer_table.clone() else { return };
        let mut entries: Vec<(PeerId, Multiaddr)> = Vec::new();
        let mut seen = HashSet::new();
        let connected: Vec<(PeerId, Multiaddr)> = self
            .peers
            .iter()
            .filter(|(_, s)| s.identified && s.connections > 0)
            .filter_map(|(p, s)| Some((*p, s.dial_addr.clone()?)))
            .collect();
        let table = self.routing_table();
        let table = table.into_iter().filter_map(|(p, a)| Some((p, a.into_iter().next()?)));
        for (peer, addr) in connected.into_iter().chain(table) {
            if is_dialable(&addr) && !self.removed.contains(&peer) && seen.insert(peer) {
                entries.push((peer, addr));
            }
        }
        if let Err(e) = write_peer_table(&path, &entries) {
            warn!(path = %path.display(), error = %e, "cannot save the peer table");
        }
    }

    // ----- housekeeping -----

    async fn on_tick(&mut self) {
        let now = Instant::now();
        // Expired bans.
        let expired: Vec<PeerId> =
            self.bans.iter().filter(|(_, until)| **until <= now).map(|(p, _)| *p).collect();
        for peer in expired {
            self.bans.remove(&peer);
            let behaviour = self.swarm.behaviour_mut();
            behaviour.blocked.unblock_peer(peer);
            behaviour.gossipsub.remove_blacklisted_peer(&peer);
            info!(%peer, "ban expired");
        }
        self.redial_due(now);
        self.discover(now);
        if now.duration_since(self.last_saved) >= PEER_TABLE_SAVE {
            self.last_saved = now;
            self.save_peer_table();
        }
        // Requests whose peer could not be reached in time.
        let timeout = self.config.request_timeout;
        let expired: Vec<(PeerId, RequestId)> = self
            .waiting
            .iter()
            .flat_map(|(peer, w)| w.iter().map(move |(id, _, at)| (*peer, *id, *at)))
            .filter(|(_, _, at)| now.duration_since(*at) >= timeout)
            .map(|(peer, id, _)| (peer, id))
            .collect();
        for (peer, id) in expired {
            if let Some(w) = self.waiting.get_mut(&peer) {
                w.retain(|(i, _, _)| *i != id);
                if w.is_empty() {
                    self.waiting.remove(&peer);
                }
            }
            let result = Err(RequestFailure::NotConnected);
            self.deliver(NetEvent::Response { peer, id, result }).await;
        }
        if now.duration_since(self.last_refresh) >= REFRESH {
            self.decay_scores(now.duration_since(self.last_refresh));
            self.last_refresh = now;
            self.refresh_shared();
        }
    }

    fn redial_due(&mut self, now: Instant) {
        let (min, max) = self.config.redial_backoff;
        for r in &mut self.redials {
            let Some(next) = r.next else { continue };
            if next > now {
                continue;
            }
            if let Some(peer) = r.peer {
                if let Some(until) = self.bans.get(&peer) {
                    r.next = Some(*until);
                    continue;
                }
                if self.swarm.is_connected(&peer) {
                    r.next = None;
                    continue;
                }
            }
            debug!(addr = %r.addr, backoff = ?r.backoff, "dialling");
            if dns_parts(&r.addr).is_some() {
                let (resolved, addr) = (self.resolved_tx.clone(), r.addr.clone());
                tokio::spawn(async move {
                    let _ = resolved.send(resolve(addr).await);
                });
            } else if let Err(e) = self.swarm.dial(r.addr.clone()) {
                debug!(addr = %r.addr, error = %e, "dial failed");
            }
            r.failures += 1;
            r.next = Some(now + r.backoff);
            r.backoff = (r.backoff * 2).clamp(min, max);
        }
        self.redials.retain(|r| r.bootstrap || r.failures <= MAX_REDIALS);
    }

    /// Dials `addr`, resolving a DNS name first.
    fn dial(&mut self, addr: Multiaddr) {
        if dns_parts(&addr).is_some() {
            let resolved = self.resolved_tx.clone();
            tokio::spawn(async move {
                let _ = resolved.send(resolve(addr).await);
            });
        } else if let Err(e) = self.swarm.dial(addr.clone()) {
            warn!(%addr, error = %e, "dial failed");
        }
    }

    fn on_resolved(&mut self, addr: Multiaddr, resolved: Vec<Multiaddr>) {
        if resolved.is_empty() {
            warn!(%addr, "cannot resolve");
            return;
        }
        for r in self.redials.iter_mut().filter(|r| r.addr == addr) {
            r.resolved.clone_from(&resolved);
        }
        // One address suffices (the others are usually the same host).
        if let Err(e) = self.swarm.dial(resolved[0].clone()) {
            debug!(%addr, error = %e, "dial failed");
        }
    }

    fn decay_scores(&mut self, elapsed: Duration) {
        let half_life = self.config.score_half_life.as_secs_f64().max(1.0);
        let factor = 0.5f64.powf(elapsed.as_secs_f64() / half_life);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        self.app_scores.retain(|peer, score| {
            *score *= factor;
            if score.abs() < 0.5 {
                *score = 0.0;
            }
            gossipsub.set_application_score(peer, *score);
            *score != 0.0
        });
    }

    fn connected_count(&self) -> u64 {
        self.peers.values().filter(|p| p.identified && p.connections > 0).count() as u64
    }

    fn refresh_shared(&mut self) {
        let now = Instant::now();
        let redial_peers: HashSet<PeerId> = self.redials.iter().filter_map(|r| r.peer).collect();
        // Forget peers that are gone and that we neither redial nor ban.
        self.peers.retain(|peer, state| {
            state.connections > 0 || redial_peers.contains(peer) || self.bans.contains_key(peer)
        });
        let mut infos: Vec<PeerInfo> =
            self.peers
                .iter()
                .map(|(peer, state)| {
                    let app = self.app_scores.get(peer).copied().unwrap_or(0.0);
                    // Gossipsub's score already includes the application score (weight 1).
                    let score = self.swarm.behaviour().gossipsub.peer_score(peer).unwrap_or(app);
                    PeerInfo {
                        peer_id: peer.to_string(),
                        address: state.address.as_ref().map(ToString::to_string),
                        connected: state.connections > 0,
                        score,
                        banned_for_secs: self.bans.get(peer).map_or(0, |until| {
                            until.saturating_duration_since(now).as_secs().max(1)
                        }),
                        rtt_ms: state.rtt.map(|d| d.as_secs_f64() * 1000.0),
                        agent: state.agent.clone(),
                        direction: (state.connections > 0).then_some(if state.inbound {
                            "inbound"
                        } else {
                            "outbound"
                        }),
                    }
                })
                .collect();
        for (peer, until) in &self.bans {
            if !self.peers.contains_key(peer) {
                infos.push(PeerInfo {
                    peer_id: peer.to_string(),
                    address: None,
                    connected: false,
                    score: self.app_scores.get(peer).copied().unwrap_or(0.0),
                    banned_for_secs: until.saturating_duration_since(now).as_secs().max(1),
                    rtt_ms: None,
                    agent: None,
                    direction: None,
                });
            }
        }
        infos.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        let live = infos.iter().filter(|p| p.connected && p.banned_for_secs == 0);
        let (inbound, outbound) = live.fold((0u32, 0u32), |(i, o), p| match p.direction {
            Some("inbound") => (i.saturating_add(1), o),
            _ => (i, o.saturating_add(1)),
        });
        if let Ok(mut peers) = self.shared.peers.lock() {
            *peers = infos;
        }
        let known = self
            .routing_table()
            .into_iter()
            .map(|(peer, addrs)| KnownPeer {
                peer_id: peer.to_string(),
                addresses: addrs.iter().map(ToString::to_string).collect(),
            })
            .collect();
        let discovery = DiscoveryInfo {
            target_peers: self.config.target_peers,
            max_peers: self.config.max_peers,
            max_inbound: self.config.max_inbound,
            max_outbound: self.config.max_outbound,
            connected: u32::try_from(self.connected_count()).unwrap_or(u32::MAX),
            inbound,
            outbound,
            static_peers: self
                .redials
                .iter()
                .filter(|r| r.bootstrap)
                .map(|r| r.addr.to_string())
                .collect(),
            known,
        };
        if let Ok(mut shared) = self.shared.discovery.lock() {
            *shared = discovery;
        }
        self.stats.connected.store(self.connected_count(), Ordering::Relaxed);
    }

    // ----- swarm events -----

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Rr(event)) => {
                self.on_request_response(event).await
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event).await,
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result, .. })) => {
                if let Ok(rtt) = result {
                    if let Some(state) = self.peers.get_mut(&peer) {
                        state.rtt = Some(rtt);
                    }
                }
            }
            SwarmEvent::Behaviour(
                BehaviourEvent::Blocked(never) | BehaviourEvent::Limits(never),
            ) => match never {},
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, connection_id, .. } => {
                self.on_connected(peer_id, connection_id, &endpoint);
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                debug!(%peer_id, ?cause, num_established, "connection closed");
                if num_established == 0 {
                    self.on_disconnected(peer_id).await;
                } else if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.connections = num_established;
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(?peer_id, %error, "outgoing connection failed");
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                debug!(%send_back_addr, %error, "incoming connection failed");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if let Ok(mut addrs) = self.shared.listen_addrs.lock() {
                    if !addrs.contains(&address) {
                        addrs.push(address);
                    }
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if let Ok(mut addrs) = self.shared.listen_addrs.lock() {
                    addrs.retain(|a| *a != address);
                }
            }
            other => debug!(?other, "swarm event"),
        }
    }

    fn on_connected(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &libp2p::core::ConnectedPoint,
    ) {
        debug!(%peer, ?connection, ?endpoint, "connection established");
        let remote = endpoint.get_remote_address().clone();
        let state = self.peers.entry(peer).or_default();
        state.connections += 1;
        state.address = Some(strip_p2p(&remote));
        state.inbound = !endpoint.is_dialer();
        if endpoint.is_dialer() {
            state.dial_addr = Some(strip_p2p(&remote));
        }
        let plain = strip_p2p(&remote);
        for r in &mut self.redials {
            // An address given without a peer id follows whoever answers on it.
            let matches = r.peer == Some(peer)
                || (endpoint.is_dialer()
                    && peer_of(&r.addr).is_none()
                    && (strip_p2p(&r.addr) == plain
                        || r.resolved.iter().any(|a| strip_p2p(a) == plain)));
            if matches {
                r.peer = Some(peer);
                r.next = None;
            }
        }
    }

    async fn on_disconnected(&mut self, peer: PeerId) {
        let Some(state) = self.peers.get_mut(&peer) else { return };
        state.connections = 0;
        let was_identified = std::mem::take(&mut state.identified);
        let dial_addr = state.dial_addr.clone();
        if was_identified {
            info!(%peer, "peer disconnected");
        }
        if !self.bans.contains_key(&peer) && !self.removed.contains(&peer) {
            // Redial it: through its entry if it has one, else on an address we know.
            let now = Instant::now();
            let mut found = false;
            for r in self.redials.iter_mut().filter(|r| r.peer == Some(peer)) {
                found = true;
                r.next = Some(now + r.backoff);
            }
            if !found && was_identified {
                if let Some(addr) = dial_addr {
                    let addr = addr.with(Protocol::P2p(peer));
                    self.redials.push(Redial {
                        addr,
                        peer: Some(peer),
                        bootstrap: false,
                        backoff: self.config.redial_backoff.0,
                        next: Some(now + self.config.redial_backoff.0),
                        failures: 0,
                        resolved: Vec::new(),
                    });
                }
            }
        }
        let connected = self.connected_count();
        if connected == 0 && was_identified && !self.alone {
            warn!("no peers connected");
            self.alone = true;
        }
        // The snapshot is up to date before the node hears of the disconnection.
        self.refresh_shared();
        if was_identified {
            self.deliver(NetEvent::PeerDisconnected(peer)).await;
        }
    }

    async fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else { return };
        if info.protocol_version != self.protocol_version {
            warn!(
                peer = %peer_id,
                theirs = %info.protocol_version,
                ours = %self.protocol_version,
                "peer of another chain"
            );
            self.ban(peer_id, "different chain (protocol version)", self.config.ban_duration);
            return;
        }
        // Its listen addresses feed the routing table (an inbound peer is otherwise unroutable).
        for addr in info.listen_addrs.iter().filter(|a| is_dialable(a)) {
            if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                kad.add_address(&peer_id, strip_p2p(addr));
            }
        }
        let state = self.peers.entry(peer_id).or_default();
        state.agent = Some(info.agent_version);
        if state.dial_addr.is_none() {
            state.dial_addr = dialable(&info.listen_addrs);
        }
        if state.identified || state.connections == 0 {
            return;
        }
        state.identified = true;
        let min = self.config.redial_backoff.0;
        for r in self.redials.iter_mut().filter(|r| r.peer == Some(peer_id)) {
            r.backoff = min;
            r.failures = 0;
            r.next = None;
        }
        info!(peer = %peer_id, "peer connected");
        self.flush_waiting(peer_id);
        if self.alone {
            info!("peers connected again");
            self.alone = false;
        }
        self.refresh_shared();
        self.deliver(NetEvent::PeerConnected(peer_id)).await;
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message { propagation_source, message_id, message } = event else {
            return;
        };
        self.stats.bytes_in.fetch_add(message.data.len() as u64, Ordering::Relaxed);
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        let Some(topic) = self.topics.get(&message.topic) else {
            // A topic we just left: not the sender's fault.
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &message_id,
                &propagation_source,
                MessageAcceptance::Ignore,
            );
            return;
        };
        let decoded = GossipMessage::decode(&message.data, topic);
        match decoded {
            Ok(decoded) => {
                let event = NetEvent::Gossip {
                    from: propagation_source,
                    id: GossipId(message_id.0.clone()),
                    message: decoded,
                };
                if self.events.try_send(event).is_err() {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Ignore,
                    );
                }
            }
            Err(error) => {
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    MessageAcceptance::Reject,
                );
                self.ban(
                    propagation_source,
                    &format!("undecodable gossip: {error}"),
                    self.config.ban_duration,
                );
            }
        }
    }

    async fn on_request_response(
        &mut self,
        event: request_response::Event<WireRequest, WireResponse>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, request_id } => {
                    let request = match request {
                        WireRequest::Valid(request) => request,
                        WireRequest::Malformed(reason) => {
                            drop(channel);
                            let reason = format!("malformed request: {reason}");
                            self.ban(peer, &reason, self.config.ban_duration);
                            return;
                        }
                    };
                    let id = self.next_inbound;
                    self.next_inbound += 1;
                    self.inbound.insert(id, (channel, request_id));
                    self.inbound_order.push_back(id);
                    self.prune_inbound();
                    self.deliver(NetEvent::Request { from: peer, id, request }).await;
                }
                request_response::Message::Response { request_id, response } => {
                    let result = match response {
                        WireResponse::Valid(response) => Ok(response),
                        #[cfg(feature = "test-util")]
                        WireResponse::Raw(_) => Err(RequestFailure::BadResponse("raw".into())),
                    };
                    if let Some((id, peer)) = self.outbound.remove(&request_id) {
                        self.deliver(NetEvent::Response { peer, id, result }).await;
                    }
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                let failure = match error {
                    request_response::OutboundFailure::Timeout => RequestFailure::Timeout,
                    request_response::OutboundFailure::DialFailure
                    | request_response::OutboundFailure::ConnectionClosed => {
                        RequestFailure::NotConnected
                    }
                    request_response::OutboundFailure::UnsupportedProtocols => {
                        RequestFailure::Other("peer does not support the protocol".into())
                    }
                    request_response::OutboundFailure::Io(e) if is_malformed(&e) => {
                        self.ban(
                            peer,
                            &format!("malformed response: {e}"),
                            self.config.ban_duration,
                        );
                        RequestFailure::BadResponse(e.to_string())
                    }
                    request_response::OutboundFailure::Io(e) => {
                        RequestFailure::Other(e.to_string())
                    }
                };
                debug!(%peer, %failure, "request failed");
                if let Some((id, peer)) = self.outbound.remove(&request_id) {
                    self.deliver(NetEvent::Response { peer, id, result: Err(failure) }).await;
                }
            }
            request_response::Event::InboundFailure { peer, error, request_id, .. } => {
                // Malformed requests arrive as `WireRequest::Malformed`; these are transport
                // failures and timeouts.
                debug!(%peer, %error, "inbound request failed");
                if let Some(id) = self.tracked.remove(&request_id) {
                    self.deliver(NetEvent::ResponseDone(id)).await;
                }
            }
            request_response::Event::ResponseSent { request_id, .. } => {
                if let Some(id) = self.tracked.remove(&request_id) {
                    self.deliver(NetEvent::ResponseDone(id)).await;
                }
            }
        }
    }

    /// Keeps at most `max_pending_inbound` unanswered requests (dropping the oldest).
    fn prune_inbound(&mut self) {
        let max = self.config.max_pending_inbound.max(1);
        while self.inbound.len() > max {
            let Some(oldest) = self.inbound_order.pop_front() else { break };
            if self.inbound.remove(&oldest).is_some() {
                debug!(id = oldest, "dropping an unanswered inbound request");
            }
        }
        if self.inbound_order.len() > 2 * max {
            let inbound = &self.inbound;
            self.inbound_order.retain(|id| inbound.contains_key(id));
        }
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("peer", self.swarm.local_peer_id()).finish_non_exhaustive()
    }
}
