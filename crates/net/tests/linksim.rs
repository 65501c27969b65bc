//! Gossip over emulated links: every node sits behind a userspace TCP relay
//! (`pouw_net::linkemu`, also used by `pouw devnet --latency`) that delays each chunk by a
//! latency with jitter, and delays a chunk by a retransmission timeout with the loss
//! probability (TCP does not lose bytes; a lost segment costs a resend). Nodes advertise
//! their relay's address, so every connection, including those discovery opens, crosses one.
//! The line: each node knows only its predecessor. Prints propagation p50/p95
//! (`cargo nextest run -p pouw-net --test linksim --no-capture`; `POUW_LINKSIM_NODES=24` for
//! a longer line, 12 by default; `POUW_LINKSIM_MAX_PEERS=8` caps each node's connections, so
//! gossip takes several hops).

use pouw_net::{
    linkemu::{Link, Partition, Relay},
    spawn, Acceptance, GossipMessage, Multiaddr, NetConfig, NetEvent, NetworkHandle,
};
use pouw_primitives::{Amount, Hash, Keypair, TxBody, TxKind};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

struct Node {
    handle: NetworkHandle,
    /// When each gossip message arrived.
    seen: Arc<Mutex<Vec<(Instant, GossipMessage)>>>,
    relay_addr: Multiaddr,
    _relay: Relay,
}

fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok()?.parse().ok()
}

fn start(seed: u8, bootstrap: Option<Multiaddr>, link: Link) -> Node {
    let port = pouw_net::free_loopback_port().expect("a free port");
    let relay = Relay::start(port, link, u64::from(seed), 0, Partition::new()).expect("relay");
    let external: Multiaddr =
        format!("/ip4/127.0.0.1/tcp/{}", relay.addr().port()).parse().unwrap();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let mut config = NetConfig::new(Hash::digest(b"linksim"), vec![listen]);
    config.external_addrs = vec![external.clone()];
    if let Some(max) = env_u32("POUW_LINKSIM_MAX_PEERS") {
        config.max_peers = max;
        config.max_inbound = max;
        config.max_outbound = max / 2;
        config.target_peers = config.target_peers.min(max / 2);
    }
    config.bootstrap = bootstrap.into_iter().collect();
    config.redial_backoff = (Duration::from_millis(200), Duration::from_secs(2));
    let (handle, events) = spawn(config, [seed; 32]).expect("network starts");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (h, s) = (handle.clone(), seen.clone());
    std::thread::spawn(move || {
        for event in events.iter() {
            if let NetEvent::Gossip { from, id, message } = event {
                s.lock().unwrap().push((Instant::now(), message));
                let _ = h.validate(id, from, Acceptance::Accept);
            }
        }
    });
    let relay_addr = format!("{external}/p2p/{}", handle.local_peer_id()).parse().unwrap();
    Node { handle, seen, relay_addr, _relay: relay }
}

fn transaction(nonce: u64) -> GossipMessage {
    let key = Keypair::from_label("linksim");
    let body = TxBody {
        chain_id: 1,
        sender: key.public(),
        nonce,
        fee: Amount(1),
        kind: TxKind::Transfer { to: key.public(), amount: Amount(1) },
    };
    GossipMessage::NewTransaction(body.sign(&key))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn gossip_crosses_a_line_of_emulated_links() {
    let n = env_u32("POUW_LINKSIM_NODES").unwrap_or(12).clamp(3, 40) as u8;
    const MESSAGES: u64 = 20;
    let link =
        Link { latency: Duration::from_millis(50), jitter: Duration::from_millis(20), loss: 0.01 };
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let bootstrap = nodes.last().map(|n| n.relay_addr.clone());
        nodes.push(start(90 + i, bootstrap, link));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let connected = |n: &Node| n.handle.peers().iter().filter(|p| p.connected).count();
    while Instant::now() < deadline && !nodes.iter().all(|n| connected(n) >= 3) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let counts: Vec<usize> = nodes.iter().map(connected).collect();
    assert!(counts.iter().all(|c| *c >= 3), "connected peers per node: {counts:?}");
    // Every connection we dialled goes to a relay: peers learn only the relays' addresses.
    let relays: Vec<String> = nodes
        .iter()
        .map(|n| n.relay_addr.to_string().split("/p2p/").next().unwrap_or_default().to_owned())
        .collect();
    for n in &nodes {
        for p in n.handle.peers().iter().filter(|p| p.direction == Some("outbound")) {
            let addr = p.address.clone().unwrap_or_default();
            assert!(relays.contains(&addr), "dialled {addr} directly, not through its relay");
        }
    }
    std::thread::sleep(Duration::from_secs(3)); // gossip meshes form

    let mut sent = Vec::new();
    for nonce in 0..MESSAGES {
        let message = transaction(nonce);
        sent.push((Instant::now(), message.clone()));
        nodes[0].handle.publish(message).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(5));
    let at_end: Vec<usize> = nodes.iter().map(connected).collect();
    let mut delays = Vec::new();
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let seen = node.seen.lock().unwrap();
        for (at, message) in &sent {
            let got = seen.iter().find(|(_, m)| m == message).map(|(t, _)| *t);
            let got = got.unwrap_or_else(|| panic!("node {i} never got a message"));
            delays.push(got.duration_since(*at));
        }
    }
    delays.sort();
    let (p50, p95) = (percentile(&delays, 0.5), percentile(&delays, 0.95));
    eprintln!(
        "linksim: {n} nodes in a line, latency {:?} jitter {:?} loss {}: peers {counts:?} at \
         first, {at_end:?} at the end, propagation p50 {} ms, p95 {} ms, max {} ms ({} deliveries)",
        link.latency,
        link.jitter,
        link.loss,
        p50.as_millis(),
        p95.as_millis(),
        delays.last().map_or(0, |d| d.as_millis()),
        delays.len()
    );
    // A single hop costs the latency; discovery keeps the line a few hops deep.
    assert!(p50 >= link.latency - link.jitter, "faster than the link: {p50:?}");
    assert!(p95 <= Duration::from_secs(2), "p95 {p95:?}");
}
