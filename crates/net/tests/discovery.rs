//! Discovery on real sockets (127.0.0.1): a line of nodes, each knowing only its predecessor,
//! finds the rest through Kademlia; the peer table replaces the bootstrap after a restart;
//! a request reaches a peer that is not connected; a removed peer is forgotten.

use pouw_net::{
    spawn, Acceptance, ChainStatus, GossipMessage, Multiaddr, NetConfig, NetEvent, NetworkHandle,
    PeerId, Request, RequestFailure, Response,
};
use pouw_primitives::{Amount, Hash, Keypair, TxBody, TxKind};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A node whose events a thread answers: gossip accepted and recorded, status requests
/// answered, responses recorded.
struct Node {
    handle: NetworkHandle,
    gossip: Arc<Mutex<Vec<GossipMessage>>>,
    responses: flume::Receiver<(u64, Result<Response, RequestFailure>)>,
}

impl Node {
    fn peer(&self) -> PeerId {
        self.handle.local_peer_id()
    }

    fn addr(&self) -> Multiaddr {
        let addr = self.handle.listen_addrs().first().cloned().expect("listening");
        format!("{addr}/p2p/{}", self.peer()).parse().expect("valid address")
    }

    fn connected(&self) -> usize {
        self.handle.peers().iter().filter(|p| p.connected).count()
    }

    fn is_connected_to(&self, peer: PeerId) -> bool {
        let peer = peer.to_string();
        self.handle.peers().iter().any(|p| p.connected && p.peer_id == peer)
    }

    fn response(&self, id: u64, within: Duration) -> Option<Result<Response, RequestFailure>> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.responses.recv_timeout(left) {
                Ok((got, result)) if got == id => return Some(result),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

fn genesis() -> Hash {
    Hash::digest(b"pouw-net-discovery-test")
}

fn status() -> ChainStatus {
    ChainStatus { genesis: genesis(), tip: Hash::digest(b"tip"), height: 3, total_work: [2; 32] }
}

fn config() -> NetConfig {
    let mut config = NetConfig::new(genesis(), vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
    config.redial_backoff = (Duration::from_millis(100), Duration::from_millis(500));
    config.request_timeout = Duration::from_secs(5);
    config
}

fn start(config: NetConfig, seed: u8) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (handle, events) = spawn(config, [seed; 32]).expect("network starts");
    let gossip = Arc::new(Mutex::new(Vec::new()));
    let (responses_tx, responses) = flume::unbounded();
    let (h, g) = (handle.clone(), gossip.clone());
    std::thread::spawn(move || {
        for event in events.iter() {
            match event {
                NetEvent::Gossip { from, id, message } => {
                    let _ = h.validate(id, from, Acceptance::Accept);
                    g.lock().unwrap().push(message);
                }
                NetEvent::Request { id, request: Request::Status, .. } => {
                    let _ = h.respond(id, Response::Status(status()));
                }
                NetEvent::Response { id, result, .. } => {
                    let _ = responses_tx.send((id, result));
                }
                _ => {}
            }
        }
    });
    Node { handle, gossip, responses }
}

/// Polls `f` every 100 ms until it holds or `within` passes.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn transaction() -> GossipMessage {
    let key = Keypair::from_label("discovery");
    let body = TxBody {
        chain_id: 1,
        sender: key.public(),
        nonce: 1,
        fee: Amount(1),
        kind: TxKind::Transfer { to: key.public(), amount: Amount(2) },
    };
    GossipMessage::NewTransaction(body.sign(&key))
}

#[test]
fn a_line_of_nodes_finds_itself_and_gossip_crosses_it() {
    const N: u8 = 6;
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..N {
        let mut config = config();
        config.target_peers = 4;
        if let Some(previous) = nodes.last() {
            config.bootstrap = vec![previous.addr()];
        }
        nodes.push(start(config, 40 + i));
    }
    // Each knows one address (the ends: one neighbour, the others two); discovery finds more.
    let found = eventually(Duration::from_secs(30), || nodes.iter().all(|n| n.connected() >= 3));
    let counts: Vec<usize> = nodes.iter().map(Node::connected).collect();
    assert!(found, "connected peers per node: {counts:?}");
    assert!(!nodes[0].handle.discovery().known.is_empty(), "the routing table is empty");

    std::thread::sleep(Duration::from_millis(1500)); // gossip meshes form
    let tx = transaction();
    nodes[0].handle.publish(tx.clone()).unwrap();
    let reached = eventually(Duration::from_secs(10), || {
        nodes.iter().skip(1).all(|n| n.gossip.lock().unwrap().contains(&tx))
    });
    assert!(reached, "the transaction did not reach every node");
}

#[test]
fn the_peer_table_replaces_the_bootstrap_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("pouw-peer-table-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("peers");
    let a = start(config(), 61);
    let mut b_config = config();
    b_config.bootstrap = vec![a.addr()];
    let b = start(b_config, 62);
    let mut c_config = config();
    c_config.bootstrap = vec![b.addr()];
    c_config.peer_table = Some(table.clone());
    let c = start(c_config.clone(), 63);
    assert!(
        eventually(Duration::from_secs(20), || c.is_connected_to(a.peer())),
        "C never found A through B"
    );
    c.handle.shutdown();
    assert!(eventually(Duration::from_secs(10), || std::fs::read_to_string(&table)
        .is_ok_and(|t| t.contains(&a.peer().to_string()))));

    // Restarted with no bootstrap: the table is enough.
    c_config.bootstrap.clear();
    let c = start(c_config, 63);
    let reconnected = eventually(Duration::from_secs(20), || {
        c.is_connected_to(a.peer()) && c.is_connected_to(b.peer())
    });
    assert!(reconnected, "C did not reconnect from its peer table: {:?}", c.handle.peers());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_request_reaches_a_peer_that_is_not_connected_and_a_removed_peer_is_forgotten() {
    // No discovery rounds (target 0), and C may open no connection but its bootstrap one: B and
    // C both know A (A's routing table holds both) and nothing brings them together but the
    // request.
    let quiet = || {
        let mut c = config();
        c.target_peers = 0;
        c
    };
    let a = start(quiet(), 71);
    let mut b_config = quiet();
    b_config.bootstrap = vec![a.addr()];
    let b = start(b_config, 72);
    assert!(eventually(Duration::from_secs(10), || b.is_connected_to(a.peer())));
    // B's Kademlia refreshes its table (a lookup of itself, 0.5 s after A entered it) before
    // C exists.
    std::thread::sleep(Duration::from_secs(2));
    let mut c_config = quiet();
    c_config.bootstrap = vec![a.addr()];
    c_config.max_outbound = 1;
    let c = start(c_config, 73);
    assert!(eventually(Duration::from_secs(10), || c.is_connected_to(a.peer())
        && a.handle.discovery().known.len() >= 2));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!b.is_connected_to(c.peer()), "B and C met before the request");

    let id = b.handle.request(c.peer(), Request::Status).unwrap();
    assert_eq!(b.response(id, Duration::from_secs(10)), Some(Ok(Response::Status(status()))));
    assert!(b.is_connected_to(c.peer()));

    // An unknown peer: the request fails after the timeout, not before.
    let nobody = PeerId::random();
    let asked = Instant::now();
    let id = b.handle.request(nobody, Request::Status).unwrap();
    assert_eq!(b.response(id, Duration::from_secs(10)), Some(Err(RequestFailure::NotConnected)));
    assert!(asked.elapsed() >= Duration::from_secs(4));

    // Removed: disconnected, out of the routing table, and requests to it refused.
    b.handle.remove_peer(c.peer()).unwrap();
    let c_id = c.peer().to_string();
    assert!(eventually(Duration::from_secs(5), || !b.is_connected_to(c.peer())
        && !b.handle.discovery().known.iter().any(|k| k.peer_id == c_id)));
    let id = b.handle.request(c.peer(), Request::Status).unwrap();
    assert_eq!(b.response(id, Duration::from_secs(2)), Some(Err(RequestFailure::NotConnected)));

    // Added back as a static peer: dialled again.
    b.handle.add_peer(c.addr()).unwrap();
    assert!(eventually(Duration::from_secs(10), || b.is_connected_to(c.peer())));
    assert!(b.handle.discovery().static_peers.contains(&c.addr().to_string()));
}
