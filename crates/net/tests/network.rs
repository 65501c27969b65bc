//! The network on real sockets (127.0.0.1): gossip with validation, request-response, bans,
//! bootstrap and redial, chain separation, request limits.

use pouw_net::{
    spawn, Acceptance, BlockWithProof, ChainStatus, GossipMessage, Multiaddr, NetConfig, NetError,
    NetEvent, NetworkHandle, PeerId, PeerVerdict, Request, RequestFailure, Response, Topic,
};
use pouw_primitives::{Amount, ChainSpec, Hash, Keypair, TxBody, TxKind};
use std::time::{Duration, Instant};

struct Node {
    handle: NetworkHandle,
    events: flume::Receiver<NetEvent>,
}

impl Node {
    fn peer(&self) -> PeerId {
        self.handle.local_peer_id()
    }

    /// Our first listen address, with `/p2p/<peer id>`.
    fn addr(&self) -> Multiaddr {
        let addr = self.handle.listen_addrs().first().cloned().expect("listening");
        format!("{addr}/p2p/{}", self.peer()).parse().expect("valid address")
    }

    /// Waits until `f` maps an event to `Some`, skipping the others.
    fn wait<T>(&self, within: Duration, mut f: impl FnMut(NetEvent) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    if let Some(t) = f(event) {
                        return Some(t);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn wait_connected(&self, peer: PeerId) {
        let seen = self.wait(Duration::from_secs(8), |e| match e {
            NetEvent::PeerConnected(p) if p == peer => Some(()),
            _ => None,
        });
        assert!(seen.is_some(), "{} never connected to {peer}", self.peer());
    }

    fn wait_disconnected(&self, peer: PeerId) {
        let seen = self.wait(Duration::from_secs(8), |e| match e {
            NetEvent::PeerDisconnected(p) if p == peer => Some(()),
            _ => None,
        });
        assert!(seen.is_some(), "{} never lost {peer}", self.peer());
    }

    /// The answer to request `id`.
    fn response(&self, id: u64, within: Duration) -> Option<Result<Response, RequestFailure>> {
        self.wait(within, |e| match e {
            NetEvent::Response { id: got, result, .. } if got == id => Some(result),
            _ => None,
        })
    }
}

fn genesis() -> Hash {
    Hash::digest(b"pouw-net-test")
}

fn config(genesis: Hash) -> NetConfig {
    let mut config = NetConfig::new(genesis, vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
    config.redial_backoff = (Duration::from_millis(100), Duration::from_millis(500));
    config.request_timeout = Duration::from_secs(2);
    // These tests build their topologies by hand (discovery: tests/discovery.rs).
    config.discovery = false;
    config
}

fn start(config: NetConfig, seed: u8) -> Node {
    // Logs of the network task, with RUST_LOG=pouw_net=debug (shown for failing tests).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (handle, events) = spawn(config, [seed; 32]).expect("network starts");
    Node { handle, events }
}

fn block() -> pouw_primitives::Block {
    pouw_consensus::genesis_block(&ChainSpec::devnet()).expect("devnet genesis")
}

fn transaction() -> GossipMessage {
    transaction_with_nonce(3)
}

fn transaction_with_nonce(nonce: u64) -> GossipMessage {
    let key = Keypair::from_label("x");
    let body = TxBody {
        chain_id: 1,
        sender: key.public(),
        nonce,
        fee: Amount(1),
        kind: TxKind::Transfer { to: key.public(), amount: Amount(5) },
    };
    GossipMessage::NewTransaction(body.sign(&key))
}

/// `a` dials `b`; both see the other connected.
fn connect(a: &Node, b: &Node) {
    a.handle.dial(b.addr()).unwrap();
    a.wait_connected(b.peer());
    b.wait_connected(a.peer());
}

/// Lets subscriptions reach the peers and the gossip meshes form.
fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

#[test]
fn gossip_crosses_a_line_only_when_the_middle_accepts() {
    let (a, b, c) =
        (start(config(genesis()), 1), start(config(genesis()), 2), start(config(genesis()), 3));
    connect(&a, &b);
    connect(&c, &b);
    settle();

    // Accepted by B: reaches C, forwarded by B.
    let block = GossipMessage::NewBlock(block());
    a.handle.publish(block.clone()).unwrap();
    let (id, from) = b
        .wait(Duration::from_secs(5), |e| match e {
            NetEvent::Gossip { from, id, message } => {
                assert_eq!(message, block);
                Some((id, from))
            }
            _ => None,
        })
        .expect("B receives the block");
    assert_eq!(from, a.peer());
    b.handle.validate(id, from, Acceptance::Accept).unwrap();
    let at_c = c
        .wait(Duration::from_secs(5), |e| match e {
            NetEvent::Gossip { from, message, .. } => Some((from, message)),
            _ => None,
        })
        .expect("C receives the block");
    assert_eq!(at_c, (b.peer(), block));

    // Rejected by B: never reaches C.
    let tx = transaction();
    a.handle.publish(tx.clone()).unwrap();
    let (id, from) = b
        .wait(Duration::from_secs(5), |e| match e {
            NetEvent::Gossip { from, id, message } => {
                assert_eq!(message, tx);
                Some((id, from))
            }
            _ => None,
        })
        .expect("B receives the transaction");
    b.handle.validate(id, from, Acceptance::Reject).unwrap();
    let leaked = c.wait(Duration::from_secs(3), |e| match e {
        NetEvent::Gossip { message, .. } => Some(message),
        _ => None,
    });
    assert_eq!(leaked, None, "a rejected message was forwarded");
    assert!(a.handle.stats().messages_out >= 2);
    assert!(c.handle.stats().messages_in >= 1);
}

#[test]
fn requests_get_their_responses_or_time_out() {
    let mut slow = config(genesis());
    slow.request_timeout = Duration::from_secs(1);
    let (a, b) = (start(slow, 11), start(config(genesis()), 12));
    connect(&a, &b);

    // Status.
    let status = ChainStatus {
        genesis: genesis(),
        tip: Hash::digest(b"tip"),
        height: 7,
        total_work: [1; 32],
    };
    let id = a.handle.request(b.peer(), Request::Status).unwrap();
    let inbound = b
        .wait(Duration::from_secs(5), |e| match e {
            NetEvent::Request { from, id, request } => {
                assert_eq!((from, request), (a.peer(), Request::Status));
                Some(id)
            }
            _ => None,
        })
        .expect("B gets the request");
    b.handle.respond(inbound, Response::Status(status.clone())).unwrap();
    assert_eq!(a.response(id, Duration::from_secs(5)), Some(Ok(Response::Status(status))));

    // Blocks.
    let block = block();
    let id = a.handle.request(b.peer(), Request::Blocks(vec![block.hash()])).unwrap();
    let inbound = b
        .wait(Duration::from_secs(5), |e| match e {
            NetEvent::Request { id, request, .. } => {
                assert_eq!(request, Request::Blocks(vec![block.hash()]));
                Some(id)
            }
            _ => None,
        })
        .expect("B gets the request");
    let blocks = vec![BlockWithProof { block, proof: None }];
    b.handle.respond(inbound, Response::Blocks(blocks.clone())).unwrap();
    assert_eq!(a.response(id, Duration::from_secs(5)), Some(Ok(Response::Blocks(blocks))));

    // A tracked answer (a segment): B hears when it left, once; an answer to a request
    // already answered is reported done at once (nothing is in flight for it).
    let segment = vec![7u8; 3 << 20];
    let task = Hash::digest(b"task");
    let id = a.handle.request(b.peer(), Request::Segment { task, index: 2 }).unwrap();
    let inbound = b
        .wait(Duration::from_secs(5), |e| match e {
            NetEvent::Request { id, .. } => Some(id),
            _ => None,
        })
        .expect("B gets the request");
    b.handle.respond_tracked(inbound, Response::Segment(Some(segment.clone()))).unwrap();
    assert_eq!(a.response(id, Duration::from_secs(5)), Some(Ok(Response::Segment(Some(segment)))));
    let done = b.wait(Duration::from_secs(5), |e| match e {
        NetEvent::ResponseDone(id) => Some(id),
        _ => None,
    });
    assert_eq!(done, Some(inbound), "the sent answer is reported done");
    b.handle.respond_tracked(inbound, Response::Segment(None)).unwrap();
    let again = b.wait(Duration::from_secs(5), |e| match e {
        NetEvent::ResponseDone(id) => Some(id),
        _ => None,
    });
    assert_eq!(again, Some(inbound), "an expired request's answer is done at once");

    // B never answers: a timeout.
    let id = a.handle.request(b.peer(), Request::Status).unwrap();
    assert!(b
        .wait(Duration::from_secs(5), |e| matches!(e, NetEvent::Request { .. }).then_some(()))
        .is_some());
    assert_eq!(a.response(id, Duration::from_secs(5)), Some(Err(RequestFailure::Timeout)));

    // A peer we are not connected to.
    let stranger = start(config(genesis()), 13);
    let id = a.handle.request(stranger.peer(), Request::Status).unwrap();
    assert_eq!(a.response(id, Duration::from_secs(5)), Some(Err(RequestFailure::NotConnected)));
    assert!(a.handle.stats().bytes_in > 0 && b.handle.stats().bytes_out > 0);

    // The peers snapshot: B's agent (identify) and round trip (ping).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let info = a.handle.peers().into_iter().find(|p| p.peer_id == b.peer().to_string());
        let info = info.expect("B is listed");
        if info.rtt_ms.is_some() {
            assert!(info.connected && info.address.is_some(), "{info:?}");
            assert_eq!(
                info.agent.as_deref(),
                Some(NetConfig::new(genesis(), vec![]).agent.as_str())
            );
            break;
        }
        assert!(Instant::now() < deadline, "no ping round trip: {info:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(a.handle.stats().connected, 1);
}

#[test]
fn a_banned_peer_is_cut_off_until_the_ban_expires() {
    let mut banning = config(genesis());
    banning.ban_duration = Duration::from_secs(4);
    let (a, b) = (start(banning, 21), start(config(genesis()), 22));
    connect(&b, &a);

    a.handle.report(b.peer(), PeerVerdict::Ban { reason: "test".into() }).unwrap();
    a.wait_disconnected(b.peer());
    b.wait_disconnected(a.peer());
    assert_eq!(a.handle.stats().bans, 1);
    let info = a.handle.peers().into_iter().find(|p| p.peer_id == b.peer().to_string());
    let info = info.expect("the banned peer is listed");
    assert!(!info.connected && info.banned_for_secs > 0, "{info:?}");

    // B dials again (and keeps redialling by itself): refused while the ban lasts.
    b.handle.dial(a.addr()).unwrap();
    let back =
        b.wait(Duration::from_secs(2), |e| matches!(e, NetEvent::PeerConnected(_)).then_some(()));
    assert_eq!(back, None, "a banned peer reconnected");
    assert!(a.handle.peers().iter().all(|p| !p.connected));

    // After the ban, B's redial gets through.
    b.wait_connected(a.peer());
}

#[test]
fn undecodable_gossip_gets_its_sender_banned() {
    let (a, b) = (start(config(genesis()), 31), start(config(genesis()), 32));
    connect(&a, &b);
    settle();
    a.handle.publish_raw(Topic::Blocks, vec![0xde, 0xad, 0xbe, 0xef]).unwrap();
    let seen = b.wait(Duration::from_secs(5), |e| match e {
        NetEvent::Gossip { .. } => panic!("garbage reached the node"),
        NetEvent::PeerDisconnected(p) if p == a.peer() => Some(()),
        _ => None,
    });
    assert!(seen.is_some(), "the sender of garbage stays connected");
    assert_eq!(b.handle.stats().bans, 1);
    assert!(b
        .handle
        .peers()
        .iter()
        .any(|p| p.peer_id == a.peer().to_string() && p.banned_for_secs > 0));
}

#[test]
fn bootstrap_peers_are_retried_and_redialled() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let fixed: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let mut config_b = config(genesis());
    config_b.bootstrap = vec![fixed.clone()];
    let b = start(config_b, 42);
    // C knows A's peer id too (the id follows from A's key).
    let a_peer = libp2p::identity::Keypair::ed25519_from_bytes([41u8; 32])
        .expect("valid key")
        .public()
        .to_peer_id();
    let mut config_c = config(genesis());
    config_c.bootstrap = vec![format!("{fixed}/p2p/{a_peer}").parse().unwrap()];
    let c = start(config_c, 43);

    let start_a = || {
        let mut config_a = config(genesis());
        config_a.listen = vec![fixed.clone()];
        start(config_a, 41)
    };
    std::thread::sleep(Duration::from_secs(2));
    let a = start_a();
    assert_eq!(a.peer(), a_peer);
    b.wait_connected(a.peer());
    c.wait_connected(a.peer());

    // A goes away and comes back on the same port with the same key: B and C redial it.
    a.handle.shutdown();
    let stopped = a.wait(Duration::from_secs(5), |_| None::<()>);
    assert!(stopped.is_none());
    assert!(a.events.is_disconnected(), "A did not stop");
    b.wait_disconnected(a.peer());
    c.wait_disconnected(a.peer());
    let a = start_a();
    b.wait_connected(a.peer());
    c.wait_connected(a.peer());
}

#[test]
fn nodes_of_different_chains_do_not_talk() {
    let (a, b) = (start(config(genesis()), 51), start(config(Hash::digest(b"other")), 52));
    b.handle.dial(a.addr()).unwrap();
    let connected = |n: &Node| {
        n.wait(Duration::from_secs(2), |e| match e {
            NetEvent::PeerConnected(p) => Some(p),
            NetEvent::Gossip { .. } | NetEvent::Request { .. } => panic!("message across chains"),
            _ => None,
        })
    };
    assert_eq!(connected(&b), None);
    assert_eq!(connected(&a), None);
    a.handle.publish(transaction()).unwrap();
    let id = a.handle.request(b.peer(), Request::Status).unwrap();
    assert_eq!(a.response(id, Duration::from_secs(5)), Some(Err(RequestFailure::NotConnected)));
    assert_eq!(connected(&b), None);
    assert!(a.handle.peers().iter().all(|p| !p.connected));
    assert!(b.handle.peers().iter().all(|p| !p.connected));
    // Refused by identify (protocol version), not merely unlucky.
    assert!(a.handle.stats().bans + b.handle.stats().bans >= 1);
}

#[test]
fn penalties_add_up_to_a_ban() {
    let mut strict = config(genesis());
    strict.penalty_ban_threshold = 100;
    let (a, b) = (start(strict, 71), start(config(genesis()), 72));
    connect(&a, &b);
    let penalty = |points| PeerVerdict::Penalty { reason: "slow".into(), points };
    a.handle.report(b.peer(), penalty(60)).unwrap();
    let still = a.wait(Duration::from_millis(500), |e| {
        matches!(e, NetEvent::PeerDisconnected(_)).then_some(())
    });
    assert_eq!(still, None, "one penalty is not a ban");
    let info = a.handle.peers().into_iter().find(|p| p.peer_id == b.peer().to_string());
    assert!(info.is_some_and(|p| p.connected && p.score < 0.0));
    a.handle.report(b.peer(), penalty(60)).unwrap();
    a.wait_disconnected(b.peer());
    assert_eq!(a.handle.stats().bans, 1);
}

#[test]
fn listen_errors_are_reported() {
    let a = start(config(genesis()), 81);
    let taken = a.handle.listen_addrs()[0].clone();
    let mut same_port = config(genesis());
    same_port.listen = vec![taken];
    assert!(matches!(spawn(same_port, [82; 32]), Err(NetError::Bind { .. })));
    let mut udp = config(genesis());
    udp.listen = vec!["/ip4/127.0.0.1/udp/0".parse().unwrap()];
    assert!(matches!(spawn(udp, [83; 32]), Err(NetError::BadListenAddress { .. })));
}

#[test]
fn an_oversized_request_is_refused() {
    let (a, b) = (start(config(genesis()), 61), start(config(genesis()), 62));
    connect(&a, &b);
    let huge = Request::Blocks(vec![Hash::ZERO; 4096]);
    let id = a.handle.request(b.peer(), huge).unwrap();
    match a.response(id, Duration::from_secs(5)) {
        Some(Err(RequestFailure::Other(reason))) => assert!(reason.contains("limit"), "{reason}"),
        other => panic!("oversized request not refused: {other:?}"),
    }
    let too_many = Request::Blocks(vec![Hash::ZERO; 33]);
    let id = a.handle.request(b.peer(), too_many).unwrap();
    assert!(matches!(a.response(id, Duration::from_secs(5)), Some(Err(RequestFailure::Other(_)))));
    let leaked =
        b.wait(Duration::from_secs(1), |e| matches!(e, NetEvent::Request { .. }).then_some(()));
    assert_eq!(leaked, None, "the refused request reached the peer");
    // Nobody was banned for it; the peers still talk.
    assert_eq!(b.handle.stats().bans, 0);
    let id = a.handle.request(b.peer(), Request::Status).unwrap();
    let inbound = b
        .wait(Duration::from_secs(5), |e| match e {
            NetEvent::Request { id, .. } => Some(id),
            _ => None,
        })
        .expect("B gets the request");
    b.handle.respond(inbound, Response::Error("no chain".into())).unwrap();
    assert_eq!(
        a.response(id, Duration::from_secs(5)),
        Some(Ok(Response::Error("no chain".into())))
    );
}

#[test]
fn a_malformed_request_gets_its_sender_banned() {
    let (a, b) = (start(config(genesis()), 91), start(config(genesis()), 92));
    connect(&a, &b);
    // 33 hashes: encodes fine, but over the bound every node checks when decoding.
    let id = a.handle.request_unchecked(b.peer(), Request::Blocks(vec![Hash::ZERO; 33])).unwrap();
    let seen = b.wait(Duration::from_secs(5), |e| match e {
        NetEvent::Request { .. } => panic!("a malformed request reached the node"),
        NetEvent::PeerDisconnected(p) if p == a.peer() => Some(()),
        _ => None,
    });
    assert!(seen.is_some(), "the sender of a malformed request stays connected");
    assert_eq!(b.handle.stats().bans, 1);
    assert!(matches!(a.response(id, Duration::from_secs(5)), Some(Err(_))));
}

#[test]
fn bootstrap_addresses_may_be_dns_names() {
    let a = start(config(genesis()), 101);
    let port = a.handle.listen_addrs()[0]
        .to_string()
        .rsplit('/')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("a tcp port");
    let mut config_b = config(genesis());
    config_b.bootstrap = vec![format!("/dns4/localhost/tcp/{port}").parse().unwrap()];
    let b = start(config_b, 102);
    b.wait_connected(a.peer());
}

#[test]
fn gossip_beyond_a_full_event_queue_is_dropped_and_counted() {
    let (a, b) = (start(config(genesis()), 111), start(config(genesis()), 112));
    connect(&a, &b);
    settle();
    // B's node reads nothing: its queue (EVENT_QUEUE) fills, the rest is dropped.
    let total = pouw_net::EVENT_QUEUE as u64 + 100;
    for nonce in 0..total {
        let message = transaction_with_nonce(nonce);
        while let Err(pouw_net::HandleError::Full) = a.handle.publish(message.clone()) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    while b.handle.stats().messages_in < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = b.handle.stats();
    assert_eq!(stats.messages_in, total);
    assert_eq!(stats.dropped, total - pouw_net::EVENT_QUEUE as u64);
    assert_eq!(b.events.len(), pouw_net::EVENT_QUEUE);
}

#[test]
fn a_malformed_response_gets_its_sender_banned() {
    let (a, b) = (start(config(genesis()), 121), start(config(genesis()), 122));
    connect(&a, &b);
    let id = a.handle.request(b.peer(), Request::Status).unwrap();
    let inbound = b
        .wait(Duration::from_secs(5), |e| match e {
            NetEvent::Request { id, .. } => Some(id),
            _ => None,
        })
        .expect("B gets the request");
    b.handle.respond_raw(inbound, vec![0xff; 5]).unwrap();
    assert!(matches!(
        a.response(id, Duration::from_secs(5)),
        Some(Err(RequestFailure::BadResponse(_)))
    ));
    a.wait_disconnected(b.peer());
    assert_eq!(a.handle.stats().bans, 1);
}
