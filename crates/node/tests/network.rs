//! Several nodes on real loopback sockets: convergence, late sync, partitions, hostile peers.

mod support;

use pouw_net::{GossipMessage, NetConfig};
use pouw_node::{local_spec, NodeConfig, NodeHandle};
use pouw_primitives::{ChainSpec, Hash, Keypair};
use std::{path::Path, time::Duration};
use support::{init_logs, wait_until};

fn node(
    dir: &Path,
    name: &str,
    spec: &ChainSpec,
    bootstrap: &[&NodeHandle],
    mine: bool,
) -> NodeHandle {
    let mut cfg = NodeConfig::new(dir.join(name), spec.clone(), Keypair::from_label(name));
    cfg.bootstrap = bootstrap.iter().flat_map(|n| n.p2p_addrs()).collect();
    cfg.mine = mine;
    cfg.durable = false;
    cfg.mining_pause = Duration::from_millis(2);
    cfg.status_interval = Duration::from_millis(500);
    NodeHandle::start(cfg).expect("node starts")
}

/// Stops every miner but the first, lets it mine two more blocks (so blocks of equal work
/// mined at the same moment cannot leave the network split on a tie), then stops it and waits
/// for one tip.
fn settle(nodes: &[&NodeHandle]) {
    for n in &nodes[1..] {
        n.set_mining(false);
    }
    let top = nodes.iter().map(|n| n.tip().0).max().unwrap_or(0);
    wait_until("two more blocks", Duration::from_secs(90), || nodes[0].tip().0 >= top + 2);
    nodes[0].set_mining(false);
    // A block found in the mining turn under way when mining stopped still comes after the
    // command: one tip that holds for a second.
    wait_until("one tip that holds", Duration::from_secs(60), || {
        let before = nodes[0].tip();
        if !converged(nodes) {
            return false;
        }
        std::thread::sleep(Duration::from_secs(1));
        converged(nodes) && nodes[0].tip() == before
    });
}

fn converged(nodes: &[&NodeHandle]) -> bool {
    let tips: Vec<(u64, Hash)> = nodes.iter().map(|n| n.tip()).collect();
    tips.windows(2).all(|w| w[0] == w[1])
}

fn assert_same_state(nodes: &[&NodeHandle]) {
    let tip = nodes[0].tip();
    let root = nodes[0].state_root();
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n.tip(), tip, "node {i} tip");
        assert_eq!(n.state_root(), root, "node {i} state root");
    }
}

#[test]
fn five_mining_nodes_converge_on_one_tip_and_state_root() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(400);
    let a = node(dir.path(), "n0", &spec, &[], true);
    let b = node(dir.path(), "n1", &spec, &[&a], true);
    let c = node(dir.path(), "n2", &spec, &[&b], true);
    let d = node(dir.path(), "n3", &spec, &[&c], true);
    let e = node(dir.path(), "n4", &spec, &[&d, &a], true);
    let all = [&a, &b, &c, &d, &e];
    wait_until("every node past height 12", Duration::from_secs(120), || {
        all.iter().all(|n| n.tip().0 >= 12)
    });
    settle(&all);
    assert_same_state(&all);
    let mined: u64 = all.iter().map(|n| n.stats().snapshot().blocks_mined).sum();
    let miners = all.iter().filter(|n| n.stats().snapshot().blocks_mined > 0).count();
    assert!(mined >= 12, "{mined} blocks mined");
    assert!(miners >= 2, "blocks came from {miners} miner(s) only");
    for n in all {
        let s = n.stats().snapshot();
        assert_eq!(s.blocks_rejected, 0, "an honest network rejects nothing");
        assert_eq!(s.bans, 0);
    }
}

#[test]
fn a_node_started_after_200_blocks_syncs_to_the_tip() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(3);
    let mut cfg = NodeConfig::new(dir.path().join("a"), spec.clone(), Keypair::from_label("a"));
    cfg.durable = false;
    cfg.max_blocks = Some(200);
    let a = NodeHandle::start(cfg).unwrap();
    wait_until("200 blocks", Duration::from_secs(180), || a.tip().0 >= 200);
    let late = node(dir.path(), "late", &spec, &[&a], false);
    wait_until("the late node at the tip", Duration::from_secs(120), || late.tip() == a.tip());
    assert_same_state(&[&a, &late]);
    let s = late.stats().snapshot();
    assert_eq!(s.blocks_verified, a.tip().0, "every block verified (replayed) on import");
    assert_eq!(s.blocks_rejected, 0);
}

#[test]
fn a_healed_partition_converges_on_the_heavier_side() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(300);
    let a = node(dir.path(), "p0", &spec, &[], true);
    let b = node(dir.path(), "p1", &spec, &[&a], true);
    let c = node(dir.path(), "p2", &spec, &[&a, &b], true);
    let d = node(dir.path(), "p3", &spec, &[], true);
    let e = node(dir.path(), "p4", &spec, &[&d], true);
    let (left, right) = ([&a, &b, &c], [&d, &e]);
    wait_until("both sides past height 6", Duration::from_secs(120), || {
        a.tip().0 >= 6 && d.tip().0 >= 6
    });
    // The right side stops first; the left mines on until it is strictly heavier.
    settle(&right);
    let right_height = d.tip().0;
    wait_until("the left side ahead", Duration::from_secs(90), || a.tip().0 >= right_height + 2);
    settle(&left);
    assert_ne!(a.tip(), d.tip(), "the sides mined different chains");
    let (wa, wd) = (a.chain().tip_work(), d.chain().tip_work());
    let heavier = if wa >= wd { a.tip() } else { d.tip() };
    // Heal: one connection across.
    for addr in d.p2p_addrs() {
        a.net().dial(addr).unwrap();
    }
    let all = [&a, &b, &c, &d, &e];
    wait_until("one tip after healing", Duration::from_secs(90), || converged(&all));
    assert_same_state(&all);
    assert_eq!(a.tip(), heavier, "the heavier chain wins");
}

#[test]
fn a_peer_sending_invalid_blocks_is_banned_after_the_first() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(300);
    let a = node(dir.path(), "h0", &spec, &[], true);
    let b = node(dir.path(), "h1", &spec, &[&a], true);
    wait_until("a few blocks", Duration::from_secs(60), || a.tip().0 >= 2 && b.tip().0 >= 2);
    // The hostile peer speaks the protocol but sends blocks that fail the cheap checks.
    let genesis = a.chain().genesis_hash();
    let mut net_cfg = NetConfig::new(genesis, vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
    net_cfg.bootstrap = a.p2p_addrs();
    let (hostile, _events) =
        pouw_net::spawn(net_cfg, Keypair::from_label("hostile").secret_bytes()).unwrap();
    wait_until("the hostile peer connected", Duration::from_secs(20), || {
        a.net()
            .peers()
            .iter()
            .any(|p| p.connected && p.peer_id == hostile.local_peer_id().to_string())
    });
    std::thread::sleep(Duration::from_secs(1)); // gossip subscriptions exchanged
    let tip = a.chain().block(&a.tip().1).unwrap().unwrap();
    for i in 0..1000u64 {
        let mut bad = tip.clone();
        bad.header.timestamp.0 += 1 + i; // breaks the proof of work and the miner signature
        let _ = hostile.publish(GossipMessage::NewBlock(bad));
    }
    wait_until("the ban", Duration::from_secs(20), || a.stats().snapshot().bans >= 1);
    let height = a.tip().0;
    wait_until("the honest chain advancing", Duration::from_secs(60), || a.tip().0 >= height + 3);
    let s = a.stats().snapshot();
    assert_eq!(s.blocks_rejected, 1, "only the first invalid block was looked at");
    assert_eq!(s.bans, 1);
    assert!(a
        .net()
        .peers()
        .iter()
        .filter(|p| p.peer_id == hostile.local_peer_id().to_string())
        .all(|p| !p.connected && p.banned_for_secs > 0));
    hostile.shutdown();
}

/// A transaction whose first gossip reached only a peer that swallowed it (so the same bytes
/// can never be published again: gossip ids are hashes of the data) still lands once a miner
/// is reachable: the sender announces it again by hash and the miner fetches it.
#[test]
fn a_swallowed_transaction_still_lands_once_a_miner_is_connected() {
    use pouw_net::NetEvent;
    use pouw_primitives::{Amount, TxBody, TxKind};
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(100);
    let miner = node(dir.path(), "m0", &spec, &[], true);
    // A peer that takes gossip and never validates or forwards it.
    let genesis = miner.chain().genesis_hash();
    let net_cfg = NetConfig::new(genesis, vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
    let (sink, sink_events) =
        pouw_net::spawn(net_cfg, Keypair::from_label("sink").secret_bytes()).unwrap();
    let sink_id = sink.local_peer_id();
    let mut cfg =
        NodeConfig::new(dir.path().join("sender"), spec.clone(), ChainSpec::devnet_key(0));
    cfg.mine = false;
    cfg.durable = false;
    cfg.status_interval = Duration::from_millis(500);
    cfg.bootstrap = sink
        .listen_addrs()
        .iter()
        .filter_map(|a| format!("{a}/p2p/{sink_id}").parse().ok())
        .collect();
    let sender = NodeHandle::start(cfg).unwrap();
    wait_until("the sender connected to the sink", Duration::from_secs(20), || {
        sender.net().peers().iter().any(|p| p.connected)
    });
    std::thread::sleep(Duration::from_secs(1)); // gossip subscriptions exchanged
    let key = ChainSpec::devnet_key(0);
    let tx = TxBody {
        chain_id: spec.chain_id,
        sender: key.public(),
        nonce: 0,
        fee: Amount(1_000),
        kind: TxKind::Transfer { to: ChainSpec::devnet_key(1).public(), amount: Amount(5_000) },
    }
    .sign(&key);
    let hash = sender.submit_transaction(tx).unwrap();
    // The sink got it: from now on gossip drops a re-publication of the same bytes.
    let sink_saw = |what: &str, f: &dyn Fn(&GossipMessage) -> bool| {
        let seen = std::iter::from_fn(|| sink_events.recv_timeout(Duration::from_secs(10)).ok())
            .any(|ev| matches!(&ev, NetEvent::Gossip { message, .. } if f(message)));
        assert!(seen, "the sink never got {what}");
    };
    sink_saw(
        "the transaction",
        &|m| matches!(m, GossipMessage::NewTransaction(t) if t.hash() == hash),
    );
    let pending = sender.pending_own_transactions();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].hash, pending[0].nonce), (hash, 0));
    assert_eq!(pending[0].kind, "transfer");
    // About 5 s later it is announced again by hash (long enough for gossip to have stopped
    // advertising the first message to newcomers).
    sink_saw("an announcement", &|m| matches!(m, GossipMessage::TxAnnounce(a) if a.hash == hash));
    assert_eq!(sender.pending_own_transactions()[0].announces, 1);

    let connected = std::time::Instant::now();
    for addr in miner.p2p_addrs() {
        sender.net().dial(addr).unwrap();
    }
    let me = key.public();
    wait_until("the transaction in a block of the miner", Duration::from_secs(30), || {
        miner.chain().account(&me).nonce == 1
    });
    wait_until("the sender seeing it in a block", Duration::from_secs(20), || {
        sender.pending_own_transactions().is_empty()
    });
    assert_eq!(sender.chain().account(&me).nonce, 1);
    assert!(connected.elapsed() < Duration::from_secs(40), "landed in {:?}", connected.elapsed());
    assert!(miner.stats().snapshot().txs_accepted >= 1, "the miner fetched it by hash");
    sink.shutdown();
}

#[test]
fn a_flooding_peer_is_refused_then_banned_while_an_honest_peer_is_served() {
    use pouw_net::{NetEvent, Request, Response};
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(300);
    let mut cfg = NodeConfig::new(dir.path().join("r0"), spec, Keypair::from_label("r0"));
    cfg.mine = false;
    cfg.durable = false;
    cfg.requests = pouw_node::RequestLimits { per_second: 5, burst: 10, ban_after: 40 };
    let a = NodeHandle::start(cfg).expect("node starts");
    let genesis = a.chain().genesis_hash();
    let peer = |label: &str| {
        let mut c = NetConfig::new(genesis, vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
        c.bootstrap = a.p2p_addrs();
        pouw_net::spawn(c, Keypair::from_label(label).secret_bytes()).unwrap()
    };
    let (flooder, flood_events) = peer("flooder");
    let (honest, honest_events) = peer("honest");
    wait_until("both peers connected", Duration::from_secs(20), || {
        let peers = a.net().peers();
        [&flooder, &honest].iter().all(|n| {
            peers.iter().any(|p| p.connected && p.peer_id == n.local_peer_id().to_string())
        })
    });
    let target = a.peer_id();
    // The flooder asks for the status 20 times every 100 ms (200 a second, the limit is 5);
    // the honest peer twice a second.
    let (mut refused, mut served_flood, mut failed) = (0, 0, 0);
    let mut honest_served = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut round = 0u32;
    while std::time::Instant::now() < deadline && (honest_served < 4 || refused < 30) {
        for _ in 0..20 {
            let _ = flooder.request(target, Request::Status);
        }
        if round % 5 == 0 {
            let _ = honest.request(target, Request::Status);
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(100));
        for ev in flood_events.try_iter() {
            match ev {
                NetEvent::Response { result: Ok(Response::Error(e)), .. } => {
                    assert!(e.contains("rate limit"), "{e}");
                    refused += 1;
                }
                NetEvent::Response { result: Ok(Response::Status(_)), .. } => served_flood += 1,
                NetEvent::Response { result: Err(_), .. } => failed += 1,
                _ => {}
            }
        }
        for ev in honest_events.try_iter() {
            if let NetEvent::Response { result: Ok(Response::Status(_)), .. } = ev {
                honest_served += 1;
            }
        }
    }
    eprintln!("flooder: {served_flood} served, {refused} refused, {failed} failed; honest: {honest_served} served");
    assert!(served_flood <= 12, "the flooder got its burst and little more: {served_flood}");
    assert!(refused > 0, "the flooder heard that it is over the limit");
    assert!(honest_served >= 4, "the honest peer is still served: {honest_served}");
    wait_until("the flooder banned", Duration::from_secs(20), || a.stats().snapshot().bans >= 1);
    let s = a.stats().snapshot();
    assert!(s.requests_refused >= 40, "refused {}", s.requests_refused);
    assert_eq!(s.bans, 1, "only the flooder");
    flooder.shutdown();
    honest.shutdown();
}
