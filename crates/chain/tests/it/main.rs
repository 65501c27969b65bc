//! pouw-chain integration tests (one binary, modules by topic).

mod import;
mod mempool;
mod rules;
mod storage;

use pouw_chain::test_utils::{devnet_key, grind};
use pouw_primitives::{Block, Header, Keypair};

/// Applies `f` to the header, then re-grinds the nonce and re-signs with devnet key 0 as the
/// miner (so only the rule under test is broken).
pub(crate) fn remine(mut block: Block, f: impl FnOnce(&mut Header)) -> Block {
    let key = devnet_key(0);
    block.header.miner = key.public();
    f(&mut block.header);
    grind(&mut block.header);
    block.sign(&key);
    block
}

/// Re-signs with `key` (also the header's miner).
pub(crate) fn resign(mut block: Block, key: &Keypair) -> Block {
    block.header.miner = key.public();
    grind(&mut block.header);
    block.sign(key);
    block
}
