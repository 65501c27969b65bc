//! A grinding miner among honest nodes (design/010): its one forged block (an iteration reused
//! for a re-rolled header) is refused by every honest node, which bans it; its bound variants,
//! each a whole iteration, are valid blocks the honest chain may hold. What it gains in attempts
//! per CPU-second is measured by `pouw devnet --attack grind`, never asserted on timings here.

mod support;

use pouw_node::{local_spec, Attack, NodeConfig, NodeHandle};
use pouw_primitives::{ChainSpec, Hash, Keypair};
use std::{path::Path, time::Duration};
use support::{init_logs, wait_until};

fn node(
    dir: &Path,
    name: &str,
    spec: &ChainSpec,
    bootstrap: &[&NodeHandle],
    mine: bool,
    attack: Option<Attack>,
) -> NodeHandle {
    let mut cfg = NodeConfig::new(dir.join(name), spec.clone(), Keypair::from_label(name));
    cfg.bootstrap = bootstrap.iter().flat_map(|n| n.p2p_addrs()).collect();
    cfg.mine = mine;
    cfg.durable = false;
    cfg.attack = attack;
    cfg.mining_pause = Duration::from_millis(1);
    cfg.status_interval = Duration::from_millis(500);
    NodeHandle::start(cfg).expect("node starts")
}

#[test]
fn a_grinders_forged_block_is_refused_by_every_honest_node() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(300);
    let honest = node(dir.path(), "honest", &spec, &[], true, None);
    let grinder = node(dir.path(), "grinder", &spec, &[&honest], true, Some(Attack::Grind));
    let watcher = node(dir.path(), "watcher", &spec, &[&honest, &grinder], false, None);
    let forged = || grinder.security().forged_blocks.lock().unwrap().clone();
    wait_until("the grinder forges a block", Duration::from_secs(240), || !forged().is_empty());
    let forged: Vec<Hash> = forged();
    assert_eq!(forged.len(), 1, "one forgery");
    // The honest nodes go on; the forged block is in neither chain.
    let top = honest.tip().0;
    wait_until("three more honest blocks", Duration::from_secs(180), || {
        honest.tip().0 >= top + 3 && watcher.tip() == honest.tip()
    });
    for n in [&honest, &watcher] {
        let chain = n.chain();
        for h in 1..=chain.height() {
            assert_ne!(chain.hash_at(h), Some(forged[0]), "the forged block is on a chain");
        }
    }
    // Whoever received it refused it and banned the grinder.
    wait_until("the forgery refused", Duration::from_secs(60), || {
        [&honest, &watcher].iter().any(|n| n.stats().snapshot().blocks_rejected >= 1)
    });
    let mining = *grinder.security().mining.lock().unwrap();
    assert_eq!(mining.forged_sent, 1);
    assert!(mining.blocks_found >= 2, "it forged after two valid blocks: {mining:?}");
    assert!(mining.attempts > 0 && mining.cpu_ns > 0);
    // Its valid blocks are valid: the honest chain may hold some; none was refused.
    let me = Keypair::from_label("grinder").public();
    let chain = honest.chain();
    let held =
        (1..=chain.height()).filter_map(|h| chain.header_at(h)).filter(|h| h.miner == me).count();
    let rejected: u64 =
        [&honest, &watcher].iter().map(|n| n.stats().snapshot().blocks_rejected).sum();
    assert!(rejected <= 2, "only the forged block is refused (once per node): {rejected}");
    eprintln!("grinder: {held} blocks on the honest chain, {mining:?}");
}
