//! The node's side of the network: a cloneable [`NetworkHandle`] that sends commands to the
//! network task, and the [`NetEvent`]s it receives. Both are bounded channels; nothing in the
//! node ever touches libp2p types other than [`PeerId`] and [`Multiaddr`].

use crate::messages::{GossipMessage, Request, Response};
use serde::Serialize;
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

pub use libp2p::{Multiaddr, PeerId};

/// Capacity of the command queue (node -> network).
pub const COMMAND_QUEUE: usize = 1024;
/// Capacity of the event queue (network -> node).
pub const EVENT_QUEUE: usize = 1024;

/// Identifies one outbound request; its answer comes back as [`NetEvent::Response`].
pub type RequestId = u64;
/// Identifies one inbound request; answer it with [`NetworkHandle::respond`].
pub type InboundId = u64;

/// Identifies one received gossip message awaiting validation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GossipId(pub Vec<u8>);

/// The node's verdict on a received gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Valid: forward it to the mesh.
    Accept,
    /// Provably invalid: drop it and penalise the sender (the node also bans it through
    /// [`NetworkHandle::report`]).
    Reject,
    /// Not invalid but not useful (duplicate, unknown parent, stale): drop it, no penalty.
    Ignore,
}

/// How a peer misbehaved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerVerdict {
    /// Provably invalid data (block, transaction, proof, malformed message): disconnect and ban.
    Ban {
        /// Why, for the logs and `peers`.
        reason: String,
    },
    /// Slow, flaky or unhelpful: lower the score; a peer whose score falls below the
    /// threshold is disconnected (and banned for a while).
    Penalty {
        /// Why.
        reason: String,
        /// Points taken from the score.
        points: u32,
    },
}

/// Why a request got no response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestFailure {
    /// No answer in time.
    #[error("request timed out")]
    Timeout,
    /// The peer is not connected (or disconnected meanwhile).
    #[error("peer not connected")]
    NotConnected,
    /// The response was malformed or over its limit.
    #[error("bad response: {0}")]
    BadResponse(String),
    /// Any other transport failure.
    #[error("request failed: {0}")]
    Other(String),
}

/// What the network tells the node.
#[allow(clippy::large_enum_variant)] // gossip (blocks) is the common event; not worth a box
#[derive(Debug)]
pub enum NetEvent {
    /// A decoded gossip message. The node must answer with [`NetworkHandle::validate`].
    Gossip {
        /// The peer that forwarded it.
        from: PeerId,
        /// Validation handle.
        id: GossipId,
        /// The message.
        message: GossipMessage,
    },
    /// A peer asks something; answer with [`NetworkHandle::respond`].
    Request {
        /// Who asks.
        from: PeerId,
        /// Answer handle.
        id: InboundId,
        /// The request.
        request: Request,
    },
    /// The answer to one of our requests.
    Response {
        /// Who was asked.
        peer: PeerId,
        /// Which request.
        id: RequestId,
        /// The answer.
        result: Result<Response, RequestFailure>,
    },
    /// A response sent with [`NetworkHandle::respond_tracked`] left (written to the peer's
    /// stream), or never will (the peer went, the stream failed, the request had expired):
    /// its memory is freed either way.
    ResponseDone(InboundId),
    /// A peer connected (after the handshake, genesis checked through identify).
    PeerConnected(PeerId),
    /// A peer disconnected.
    PeerDisconnected(PeerId),
}

/// One peer, as `peers` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    /// Peer id.
    pub peer_id: String,
    /// The address we are connected on.
    pub address: Option<String>,
    /// Connected now.
    pub connected: bool,
    /// Our score of the peer (application score plus gossipsub's).
    pub score: f64,
    /// Banned until this many seconds from now (0: not banned).
    pub banned_for_secs: u64,
    /// Last ping round trip, milliseconds.
    pub rtt_ms: Option<f64>,
    /// The peer's agent string (identify).
    pub agent: Option<String>,
    /// Who opened the connection: `"inbound"` (the peer), `"outbound"` (we), `None` when not
    /// connected.
    pub direction: Option<&'static str>,
}

/// The discovery state, as `admin_peers` reports it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiscoveryInfo {
    /// Connections the node tries to keep (it looks for more peers below it).
    pub target_peers: u32,
    /// Most connected peers.
    pub max_peers: u32,
    /// Most inbound connections.
    pub max_inbound: u32,
    /// Most outbound connections.
    pub max_outbound: u32,
    /// Connected peers (identified).
    pub connected: u32,
    /// Of which inbound.
    pub inbound: u32,
    /// Of which outbound.
    pub outbound: u32,
    /// Peers added with `admin_addPeer` or on the bootstrap list (redialled while unreachable).
    pub static_peers: Vec<String>,
    /// Peers of the routing table (Kademlia), connected or not, with their addresses.
    pub known: Vec<KnownPeer>,
}

/// One entry of the routing table.
#[derive(Clone, Debug, Serialize)]
pub struct KnownPeer {
    /// Peer id.
    pub peer_id: String,
    /// Its listen addresses.
    pub addresses: Vec<String>,
}

/// Network counters, shared with the network task.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Bytes received (payloads of gossip and request-response).
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Gossip and request messages received.
    pub messages_in: AtomicU64,
    /// Gossip and request messages sent.
    pub messages_out: AtomicU64,
    /// Peers banned since start.
    pub bans: AtomicU64,
    /// Events dropped because the node's queue was full.
    pub dropped: AtomicU64,
    /// Currently connected peers.
    pub connected: AtomicU64,
}

/// A snapshot of [`NetStats`].
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct NetCounters {
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Messages sent.
    pub messages_out: u64,
    /// Bans since start.
    pub bans: u64,
    /// Events dropped (node too slow).
    pub dropped: u64,
    /// Connected peers.
    pub connected: u64,
}

impl NetStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> NetCounters {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetCounters {
            bytes_in: r(&self.bytes_in),
            bytes_out: r(&self.bytes_out),
            messages_in: r(&self.messages_in),
            messages_out: r(&self.messages_out),
            bans: r(&self.bans),
            dropped: r(&self.dropped),
            connected: r(&self.connected),
        }
    }
}

/// What the network task is told to do.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Command {
    Publish(GossipMessage),
    #[cfg(feature = "test-util")]
    PublishRaw {
        topic: crate::messages::Topic,
        data: Vec<u8>,
    },
    #[cfg(feature = "test-util")]
    RespondRaw {
        id: InboundId,
        data: Vec<u8>,
    },
    #[cfg(feature = "test-util")]
    RequestUnchecked {
        peer: PeerId,
        id: RequestId,
        request: Request,
    },
    Validate {
        id: GossipId,
        from: PeerId,
        acceptance: Acceptance,
    },
    Request {
        peer: PeerId,
        id: RequestId,
        request: Request,
    },
    Respond {
        id: InboundId,
        response: Response,
        /// Report [`NetEvent::ResponseDone`] once it left or failed.
        tracked: bool,
    },
    Report {
        peer: PeerId,
        verdict: PeerVerdict,
    },
    Dial(Multiaddr),
    AddPeer(Multiaddr),
    RemovePeer(PeerId),
    Subscribe(crate::messages::Topic),
    Unsubscribe(crate::messages::Topic),
    Shutdown,
}

/// Why a command could not be queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The command queue is full (the network task is overloaded).
    #[error("network command queue full")]
    Full,
    /// The network task has stopped.
    #[error("network stopped")]
    Stopped,
}

/// State the network task publishes for the node (peers, addresses).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) peers: Mutex<Vec<PeerInfo>>,
    pub(crate) listen_addrs: Mutex<Vec<Multiaddr>>,
    pub(crate) discovery: Mutex<DiscoveryInfo>,
}

/// The node's handle on the network. Cheap to clone; every method is non-blocking.
#[derive(Clone, Debug)]
pub struct NetworkHandle {
    pub(crate) commands: flume::Sender<Command>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stats: Arc<NetStats>,
    pub(crate) next_request: Arc<AtomicU64>,
    pub(crate) local_peer_id: PeerId,
}

impl NetworkHandle {
    fn send(&self, cmd: Command) -> Result<(), HandleError> {
        self.commands.try_send(cmd).map_err(|e| match e {
            flume::TrySendError::Full(_) => HandleError::Full,
            flume::TrySendError::Disconnected(_) => HandleError::Stopped,
        })
    }

    /// Our peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The addresses we listen on (ports resolved).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.shared.listen_addrs.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Known peers.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Counters.
    pub fn stats(&self) -> NetCounters {
        self.stats.snapshot()
    }

    /// Gossips a message on its topic.
    pub fn publish(&self, message: GossipMessage) -> Result<(), HandleError> {
        self.send(Command::Publish(message))
    }

    /// Reports the verdict on a received gossip message.
    pub fn validate(
        &self,
        id: GossipId,
        from: PeerId,
        acceptance: Acceptance,
    ) -> Result<(), HandleError> {
        self.send(Command::Validate { id, from, acceptance })
    }

    /// Sends a request; the answer arrives as [`NetEvent::Response`] with the returned id. A
    /// peer that is not connected is dialled first: on an address from the routing table, or
    /// found by a Kademlia lookup of its id (the request waits up to the request timeout).
    pub fn request(&self, peer: PeerId, request: Request) -> Result<RequestId, HandleError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.send(Command::Request { peer, id, request })?;
        Ok(id)
    }

    /// Answers an inbound request.
    pub fn respond(&self, id: InboundId, response: Response) -> Result<(), HandleError> {
        self.send(Command::Respond { id, response, tracked: false })
    }

    /// Answers an inbound request and reports [`NetEvent::ResponseDone`] with `id` once the
    /// answer left or failed: a node sending large answers (segments) keeps a bounded number
    /// in flight with it.
    pub fn respond_tracked(&self, id: InboundId, response: Response) -> Result<(), HandleError> {
        self.send(Command::Respond { id, response, tracked: true })
    }

    /// Reports a misbehaving peer.
    pub fn report(&self, peer: PeerId, verdict: PeerVerdict) -> Result<(), HandleError> {
        self.send(Command::Report { peer, verdict })
    }

    /// Dials an address (with or without `/p2p/<peer id>`).
    pub fn dial(&self, addr: Multiaddr) -> Result<(), HandleError> {
        self.send(Command::Dial(addr))
    }

    /// Adds a static peer: dialled now and redialled whenever unreachable, like a bootstrap
    /// peer (`addr` ends in `/p2p/<peer id>`, or names whoever answers on it).
    pub fn add_peer(&self, addr: Multiaddr) -> Result<(), HandleError> {
        self.send(Command::AddPeer(addr))
    }

    /// Disconnects a peer and forgets it: no redial, removed from the routing table and the
    /// peer table; discovery does not dial it again until it is added back (it may still dial
    /// us).
    pub fn remove_peer(&self, peer: PeerId) -> Result<(), HandleError> {
        self.send(Command::RemovePeer(peer))
    }

    /// The discovery state (limits, connection counts, routing table).
    pub fn discovery(&self) -> DiscoveryInfo {
        self.shared.discovery.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Subscribes to a topic (blocks, transactions, verification and alerts are subscribed
    /// from the start; task topics on demand).
    pub fn subscribe(&self, topic: crate::messages::Topic) -> Result<(), HandleError> {
        self.send(Command::Subscribe(topic))
    }

    /// Leaves a topic.
    pub fn unsubscribe(&self, topic: crate::messages::Topic) -> Result<(), HandleError> {
        self.send(Command::Unsubscribe(topic))
    }

    /// Test support: publishes `data` on `topic` as it is, unchecked (peers that receive it
    /// must reject it and ban us).
    #[cfg(feature = "test-util")]
    pub fn publish_raw(
        &self,
        topic: crate::messages::Topic,
        data: Vec<u8>,
    ) -> Result<(), HandleError> {
        self.send(Command::PublishRaw { topic, data })
    }

    /// Test support: sends a request without the local bounds check (peers must refuse an
    /// out-of-bounds one and ban us).
    #[cfg(feature = "test-util")]
    pub fn request_unchecked(
        &self,
        peer: PeerId,
        request: Request,
    ) -> Result<RequestId, HandleError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.send(Command::RequestUnchecked { peer, id, request })?;
        Ok(id)
    }

    /// Test support: answers an inbound request with `data` as it is (the requester must
    /// refuse it and ban us).
    #[cfg(feature = "test-util")]
    pub fn respond_raw(&self, id: InboundId, data: Vec<u8>) -> Result<(), HandleError> {
        self.send(Command::RespondRaw { id, data })
    }

    /// Stops the network task (closing connections).
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

/// Network configuration.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Addresses to listen on (e.g. `/ip4/127.0.0.1/tcp/0`).
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers, retried until reachable (with or without `/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Genesis hash: names the topics and the identify protocol version.
    pub genesis: pouw_primitives::Hash,
    /// Most connected peers.
    pub max_peers: u32,
    /// Most inbound connections (at most `max_peers`).
    pub max_inbound: u32,
    /// Most outbound connections (at most `max_peers`).
    pub max_outbound: u32,
    /// Connected peers the node looks for: below it, it dials peers of its routing table and
    /// runs a random-walk query (Kademlia) every few seconds. 0: no discovery rounds
    /// (Kademlia still refreshes its table while it is small, which may open connections;
    /// [`NetConfig::discovery`] turns it all off).
    pub target_peers: u32,
    /// Addresses peers should dial us on, advertised (identify) instead of the listen
    /// addresses: behind a port mapping or a link emulator. Empty: the listen addresses.
    pub external_addrs: Vec<Multiaddr>,
    /// Kademlia discovery (and routing of requests to peers not connected). Off: the node
    /// talks to its bootstrap and static peers and to whoever dials it, and a request to a
    /// peer not connected fails at once.
    pub discovery: bool,
    /// The peer table: where the peers we know are saved (periodically and at shutdown) and
    /// read back at start, so a restart does not need the bootstrap peers. `None`: not kept.
    pub peer_table: Option<std::path::PathBuf>,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// How long a banned peer stays banned.
    pub ban_duration: Duration,
    /// First and longest wait before redialling a lost peer.
    pub redial_backoff: (Duration, Duration),
    /// Agent string sent through identify.
    pub agent: String,
    /// A peer whose application score (lowered by [`PeerVerdict::Penalty`]) falls to minus
    /// this is disconnected and banned for [`NetConfig::penalty_ban_duration`].
    pub penalty_ban_threshold: u32,
    /// How long a peer banned for its low score stays banned.
    pub penalty_ban_duration: Duration,
    /// Application scores decay back toward 0 with this half-life.
    pub score_half_life: Duration,
    /// Most inbound requests awaiting the node's answer; beyond it the oldest is dropped
    /// (its peer sees the stream close).
    pub max_pending_inbound: usize,
}

impl NetConfig {
    /// Defaults for a node of the chain with `genesis`, listening on `listen`.
    pub fn new(genesis: pouw_primitives::Hash, listen: Vec<Multiaddr>) -> Self {
        Self {
            listen,
            bootstrap: Vec::new(),
            genesis,
            max_peers: 50,
            max_inbound: 40,
            max_outbound: 20,
            target_peers: 8,
            discovery: true,
            external_addrs: Vec::new(),
            peer_table: None,
            request_timeout: Duration::from_secs(20),
            ban_duration: Duration::from_secs(3600),
            redial_backoff: (Duration::from_millis(500), Duration::from_secs(30)),
            agent: concat!("pouw/", env!("CARGO_PKG_VERSION")).to_owned(),
            penalty_ban_threshold: 100,
            penalty_ban_duration: Duration::from_secs(600),
            score_half_life: Duration::from_secs(600),
            max_pending_inbound: 256,
        }
    }
}

/// The peer id of the node whose key is `key` (a node's peer id is derived from its ed25519
/// key, which is also its account address): how a worker finds the client or a miner.
pub fn peer_id_of(key: &pouw_primitives::PublicKey) -> Option<PeerId> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(libp2p::identity::PublicKey::from(pk).to_peer_id())
}

#[cfg(test)]
mod peer_id_tests {
    #[test]
    fn peer_id_of_matches_the_identity_derived_from_the_secret() {
        let key = pouw_primitives::Keypair::from_label("node");
        let id = libp2p::identity::Keypair::ed25519_from_bytes(key.secret_bytes())
            .unwrap()
            .public()
            .to_peer_id();
        assert_eq!(super::peer_id_of(&key.public()), Some(id));
    }
}
