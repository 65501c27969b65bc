//! The peer-to-peer network of a PoUW node, on rust-libp2p (SPEC section 5).
//!
//! libp2p stays inside this crate: the node talks to the network task through a
//! [`NetworkHandle`] (commands) and a queue of [`NetEvent`]s, both bounded. Messages are the
//! typed [`GossipMessage`], [`Request`] and [`Response`], canonically encoded and size-limited.
//! [`spawn`] starts the network thread.
//!
//! The `test-util` feature adds `NetworkHandle::publish_raw`, `NetworkHandle::request_unchecked`
//! and `NetworkHandle::respond_raw`, which send what an honest node never sends (for tests
//! that peers ban the sender).

mod codec;
mod handle;
pub mod linkemu;
pub mod messages;
mod ports;
mod service;

pub use handle::{
    peer_id_of, Acceptance, DiscoveryInfo, GossipId, HandleError, InboundId, KnownPeer, Multiaddr,
    NetConfig, NetCounters, NetEvent, NetStats, NetworkHandle, PeerId, PeerInfo, PeerVerdict,
    RequestFailure, RequestId, COMMAND_QUEUE, EVENT_QUEUE,
};
pub use messages::{
    BlockWithProof, ChainStatus, GossipMessage, MessageKind, Request, Response, ScreeningStatus,
    Topic, TxAnnouncement, VerificationRequest, WireError,
};
pub use ports::free_loopback_port;
pub use service::{spawn, NetError};
