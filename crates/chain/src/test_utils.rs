//! Test harness: an easy-target chain spec, a builder of valid blocks and [`ChainHarness`].

use crate::{Chain, ChainError, ImportOutcome};
use pouw_consensus::{
    apply_block, genesis_block, genesis_state, next_target, retarget_window_len, ConsensusError,
    State,
};
use pouw_primitives::{
    meets_target, Address, Amount, Block, ChainSpec, CompactTarget, Hash, Header, Keypair,
    Signature, Timestamp, Transaction, TxBody, TxKind, HEADER_VERSION,
};
use std::collections::HashMap;

/// The easiest target: almost every nonce meets it.
pub const EASY_TARGET: CompactTarget = CompactTarget(0x2100_ffff);

/// The devnet spec with `initial_target = max_target = EASY_TARGET` (the 16 devnet keys are
/// funded in genesis).
pub fn test_spec() -> ChainSpec {
    let mut spec = ChainSpec::devnet();
    spec.name = "test".into();
    spec.initial_target = EASY_TARGET;
    spec.max_target = EASY_TARGET;
    spec
}

/// Devnet key `i` (funded in genesis).
pub fn devnet_key(i: usize) -> Keypair {
    ChainSpec::devnet_key(i)
}

/// A signed transfer.
pub fn transfer(
    spec: &ChainSpec,
    from: &Keypair,
    nonce: u64,
    to: Address,
    amount: u64,
    fee: u64,
) -> Transaction {
    TxBody {
        chain_id: spec.chain_id,
        sender: from.public(),
        nonce,
        fee: Amount(fee),
        kind: TxKind::Transfer { to, amount: Amount(amount) },
    }
    .sign(from)
}

/// Builds a valid block on a parent: header fields, tx root, state root (via `apply_block`),
/// a nonce meeting the target, and the miner signature.
#[derive(Debug)]
pub struct BlockBuilder<'a> {
    spec: &'a ChainSpec,
    parent: &'a Header,
    parent_state: &'a State,
    timestamp: Timestamp,
    target: CompactTarget,
    txs: Vec<Transaction>,
    miner: Keypair,
}

impl<'a> BlockBuilder<'a> {
    /// A block on `parent` (whose post-state is `parent_state`), one block time later, with the
    /// parent's target, mined by devnet key 0.
    pub fn new(spec: &'a ChainSpec, parent: &'a Header, parent_state: &'a State) -> Self {
        Self {
            spec,
            parent,
            parent_state,
            timestamp: Timestamp(parent.timestamp.0 + spec.block_time_ms),
            target: parent.target,
            txs: Vec::new(),
            miner: devnet_key(0),
        }
    }

    /// Sets the timestamp.
    pub fn timestamp(mut self, ts: Timestamp) -> Self {
        self.timestamp = ts;
        self
    }

    /// Sets the target.
    pub fn target(mut self, target: CompactTarget) -> Self {
        self.target = target;
        self
    }

    /// Sets the transactions.
    pub fn txs(mut self, txs: Vec<Transaction>) -> Self {
        self.txs = txs;
        self
    }

    /// Sets the miner.
    pub fn miner(mut self, miner: Keypair) -> Self {
        self.miner = miner;
        self
    }

    /// The block and its post-state.
    pub fn build(self) -> Result<(Block, State), ConsensusError> {
        let header = Header {
            version: HEADER_VERSION,
            height: self.parent.height + 1,
            prev_hash: self.parent.hash(),
            tx_root: Block::compute_tx_root(&self.txs),
            attestation_root: Block::compute_attestation_root(&[]),
            state_root: Hash::ZERO,
            timestamp: self.timestamp,
            target: self.target,
            miner: self.miner.public(),
            task_id: Hash::ZERO,
            msg_hash: Hash::ZERO,
            msg_history_root: Hash::ZERO,
            nonce: Hash::ZERO,
        };
        let mut block = Block {
            header,
            signature: Signature::default(),
            proof: None,
            transactions: self.txs,
            attestations: vec![],
        };
        let diff = apply_block(self.parent_state, &block, self.spec)?;
        block.header.state_root = diff.state_root;
        grind(&mut block.header);
        block.sign(&self.miner);
        let mut state = self.parent_state.clone();
        state.apply_diff(&diff);
        Ok((block, state))
    }
}

/// Sets `header.nonce` to the first counter value whose header hash meets the target.
pub fn grind(header: &mut Header) {
    let target = header.target.to_target().expect("a valid target");
    for i in 0u64.. {
        let mut n = [0u8; 32];
        n[..8].copy_from_slice(&i.to_le_bytes());
        header.nonce = Hash(n);
        if meets_target(&header.hash(), target) {
            return;
        }
    }
}

/// Blocks built for a chain, independent of what a [`Chain`] imported: every built block's
/// header and post-state, so forks can be built from any ancestor.
#[derive(Debug)]
pub struct BlockFactory {
    /// The spec.
    pub spec: ChainSpec,
    headers: HashMap<Hash, Header>,
    states: HashMap<Hash, State>,
    blocks: HashMap<Hash, Block>,
    /// The genesis hash.
    pub genesis: Hash,
    miner_counter: usize,
}

impl BlockFactory {
    /// A factory for `spec`'s chain.
    pub fn new(spec: ChainSpec) -> Self {
        let g = genesis_block(&spec).expect("genesis");
        let gs = genesis_state(&spec).expect("genesis state");
        let genesis = g.hash();
        Self {
            spec,
            headers: HashMap::from([(genesis, g.header.clone())]),
            states: HashMap::from([(genesis, gs)]),
            blocks: HashMap::from([(genesis, g)]),
            genesis,
            miner_counter: 0,
        }
    }

    /// Header of a built block.
    pub fn header(&self, hash: &Hash) -> &Header {
        &self.headers[hash]
    }

    /// Post-state of a built block.
    pub fn state(&self, hash: &Hash) -> &State {
        &self.states[hash]
    }

    /// A built block.
    pub fn block(&self, hash: &Hash) -> &Block {
        &self.blocks[hash]
    }

    /// The next nonce of devnet key `i` after block `at`.
    pub fn nonce(&self, at: &Hash, i: usize) -> u64 {
        self.states[at].account(&devnet_key(i).public()).nonce
    }

    /// The target a child of `parent` must carry (the consensus retarget rule,
    /// [`pouw_consensus::next_target`], over built headers).
    pub fn next_target(&self, parent: &Hash) -> CompactTarget {
        let p = &self.headers[parent];
        let height = p.height + 1;
        let n = retarget_window_len(&self.spec, height).expect("valid test spec");
        let mut ts = Vec::with_capacity(n);
        let mut cur = Some(p);
        while let Some(h) = cur {
            if ts.len() >= n {
                break;
            }
            ts.push(h.timestamp);
            cur = if h.height == 0 { None } else { self.headers.get(&h.prev_hash) };
        }
        ts.reverse();
        next_target(&self.spec, height, p.target, &ts).expect("window of the right length")
    }

    /// Builds (and records) a child of `parent` with `txs`, one block time later, mined by a
    /// fresh miner key (so two children of one parent always differ).
    pub fn build(&mut self, parent: &Hash, txs: Vec<Transaction>) -> Block {
        self.miner_counter += 1;
        let miner = Keypair::from_label(&format!("test-miner-{}", self.miner_counter));
        let target = self.next_target(parent);
        let (block, state) =
            BlockBuilder::new(&self.spec, &self.headers[parent], &self.states[parent])
                .txs(txs)
                .miner(miner)
                .target(target)
                .build()
                .expect("a valid block");
        self.record(block.clone(), state);
        block
    }

    /// Builds a child with a few transfers between devnet accounts chosen by `salt`.
    pub fn build_with_transfers(&mut self, parent: &Hash, count: usize, salt: u64) -> Block {
        let mut txs = Vec::with_capacity(count);
        let mut nonces: HashMap<usize, u64> = HashMap::new();
        for k in 0..count {
            let from = ((salt as usize).wrapping_add(k * 7)) % 16;
            let to = (from + 1 + (salt as usize + k) % 15) % 16;
            let nonce = *nonces.entry(from).or_insert_with(|| self.nonce(parent, from));
            nonces.insert(from, nonce + 1);
            let amount = 1 + (salt.wrapping_mul(31).wrapping_add(k as u64)) % 10_000;
            txs.push(transfer(
                &self.spec,
                &devnet_key(from),
                nonce,
                devnet_key(to).public(),
                amount,
                10,
            ));
        }
        self.build(parent, txs)
    }

    /// Records an externally built block and its post-state.
    pub fn record(&mut self, block: Block, state: State) {
        let h = block.hash();
        self.headers.insert(h, block.header.clone());
        self.states.insert(h, state);
        self.blocks.insert(h, block);
    }

    /// Builds `n` empty blocks on `from`, returning them in order.
    pub fn chain_on(&mut self, from: &Hash, n: usize) -> Vec<Block> {
        let mut out = Vec::with_capacity(n);
        let mut parent = *from;
        for _ in 0..n {
            let b = self.build(&parent, vec![]);
            parent = b.hash();
            out.push(b);
        }
        out
    }
}

/// A [`Chain`] in a temporary directory plus a [`BlockFactory`] for its spec.
#[derive(Debug)]
pub struct ChainHarness {
    /// The chain under test.
    pub chain: Chain,
    /// Block builder with every built block's state.
    pub factory: BlockFactory,
    dir: tempfile::TempDir,
}

impl Default for ChainHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainHarness {
    /// A fresh chain with [`test_spec`].
    pub fn new() -> Self {
        Self::with_spec(test_spec())
    }

    /// A fresh chain with `spec`.
    pub fn with_spec(spec: ChainSpec) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = Chain::open(dir.path(), spec.clone()).expect("open chain");
        Self { chain, factory: BlockFactory::new(spec), dir }
    }

    /// The data directory.
    pub fn datadir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Closes the chain and opens it again from disk.
    pub fn reopen(self) -> Result<Self, ChainError> {
        let Self { chain, factory, dir } = self;
        drop(chain); // releases the database lock
        let chain = Chain::open(dir.path(), factory.spec.clone())?;
        Ok(Self { chain, factory, dir })
    }

    /// The chain, the factory and the data directory (deleted when dropped).
    pub fn into_parts(self) -> (Chain, BlockFactory, tempfile::TempDir) {
        (self.chain, self.factory, self.dir)
    }

    /// A local clock far enough ahead for every built block.
    pub fn now(&self) -> Timestamp {
        Timestamp(u64::MAX / 2)
    }

    /// Imports a block.
    pub fn import(&mut self, block: Block) -> Result<ImportOutcome, ChainError> {
        let now = Timestamp(block.header.timestamp.0);
        self.chain.import_block(block, now)
    }

    /// Builds and imports `n` blocks on the tip (each with a couple of transfers), asserting
    /// each extends the chain. Returns their hashes.
    pub fn extend_chain(&mut self, n: usize) -> Vec<Hash> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let tip = self.chain.tip();
            let b = self.factory.build_with_transfers(&tip, 2, self.chain.height() * 3 + i as u64);
            let h = b.hash();
            assert_eq!(self.import(b).expect("import"), ImportOutcome::Extended);
            out.push(h);
        }
        out
    }

    /// Builds `n` empty blocks on `ancestor` (not imported).
    pub fn fork(&mut self, ancestor: &Hash, n: usize) -> Vec<Block> {
        self.factory.chain_on(ancestor, n)
    }
}

/// The deterministic block sequence of the crash test: branch A (120 blocks with transfers),
/// branch B forking from A40 that overtakes A (an 80-block reorg at B121), then A growing
/// again until it wins back (a 90-block reorg at A131). Blocks are listed in import order.
#[derive(Debug)]
pub struct CrashScenario {
    /// Every block built (with post-states), for checking a reopened chain.
    pub factory: BlockFactory,
    /// Blocks in import order.
    pub blocks: Vec<Block>,
    /// The final tip once every block is imported.
    pub final_tip: Hash,
}

impl CrashScenario {
    /// Builds the scenario for `seed` (the seed varies the transfers).
    pub fn new(seed: u64) -> Self {
        let mut factory = BlockFactory::new(test_spec());
        let mut blocks = Vec::new();
        let mut salt = seed;
        let mut next_salt = || {
            salt = salt
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            salt >> 33
        };
        let mut extend =
            |factory: &mut BlockFactory, from: Hash, n: usize, out: &mut Vec<Block>| {
                let mut parent = from;
                let mut hashes = Vec::with_capacity(n);
                for _ in 0..n {
                    let s = next_salt();
                    let b = factory.build_with_transfers(&parent, 1 + (s % 4) as usize, s);
                    parent = b.hash();
                    hashes.push(parent);
                    out.push(b);
                }
                hashes
            };
        let genesis = factory.genesis;
        let a = extend(&mut factory, genesis, 120, &mut blocks);
        let _b = extend(&mut factory, a[39], 90, &mut blocks);
        let a2 = extend(&mut factory, a[119], 20, &mut blocks);
        let final_tip = *a2.last().expect("twenty blocks");
        Self { factory, blocks, final_tip }
    }
}
