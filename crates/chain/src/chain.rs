//! The block tree, fork choice and import pipeline.

use crate::{Ancestors, BlockError, BlockValidator, ChainError, NoProofCheck};
use pouw_consensus::{
    apply_block, check_block_body, check_header, median_time_past, next_target,
    retarget_window_len, Account, ConsensusError, HeaderContext, State, StateKey, StateValue,
    MEDIAN_TIME_SPAN,
};
use pouw_primitives::{Address, Block, ChainSpec, CompactTarget, Hash, Header, Timestamp, Uint256};
use pouw_storage::{BlockStatus, Durability, HeaderEntry, Store, StoreWriter, Table};
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
};

/// What importing a block did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    /// The block extends the tip and is the new tip.
    Extended,
    /// The block's branch became the heaviest: `depth` blocks were undone.
    Reorged {
        /// Number of blocks taken off the canonical chain.
        depth: u64,
    },
    /// Stored on a branch that is not (yet) the heaviest; not executed.
    SideChain,
    /// The block was already stored.
    AlreadyKnown,
}

/// How the canonical chain changed in the last import (for the mempool).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TipChange {
    /// Blocks taken off the canonical chain, old tip first.
    pub reverted: Vec<Hash>,
    /// Blocks added to it, lowest first.
    pub applied: Vec<Hash>,
}

impl TipChange {
    /// Appends a later change, cancelling blocks applied then reverted (or the reverse).
    pub fn merge(&mut self, later: &Self) {
        for r in &later.reverted {
            if let Some(i) = self.applied.iter().position(|a| a == r) {
                self.applied.remove(i);
            } else {
                self.reverted.push(*r);
            }
        }
        for a in &later.applied {
            if let Some(i) = self.reverted.iter().position(|r| r == a) {
                self.reverted.remove(i);
            } else {
                self.applied.push(*a);
            }
        }
    }

    /// True if nothing changed.
    pub fn is_empty(&self) -> bool {
        self.reverted.is_empty() && self.applied.is_empty()
    }
}

/// Chain settings (not consensus: those are in the [`ChainSpec`]).
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// Commit durability (default: fsync on commit).
    pub durability: Durability,
    /// Most blocks with an unknown parent kept for later.
    pub max_orphans: usize,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self { durability: Durability::Immediate, max_orphans: 64 }
    }
}

/// A block past stage 1 of an import ([`Chain::admit`]): new, its parent stored and valid, its
/// header and body rules checked. Only the chain makes one.
#[derive(Debug)]
pub struct HeaderChecked {
    block: Block,
    hash: Hash,
}

/// A block past stage 2 ([`Chain::verify`]): its proof checked by the chain's validator. The
/// only form [`Chain::commit`] takes.
#[derive(Debug)]
pub struct ProofChecked {
    block: Block,
    hash: Hash,
}

impl HeaderChecked {
    /// The block.
    pub fn block(&self) -> &Block {
        &self.block
    }
}

impl ProofChecked {
    /// The block.
    pub fn block(&self) -> &Block {
        &self.block
    }
}

/// The local view of the chain: a block tree in a [`Store`], the heaviest valid branch as
/// the canonical chain, and the state at its tip.
///
/// ```text
/// import_block ─► known? ─► parent known? ─► header rules ─► body rules ─► BlockValidator
///      ─► not heavier than tip: store (Unvalidated)            ─► SideChain
///      ─► heavier: undo to the fork, execute the new branch, one commit ─► Extended / Reorged
///                  (a failing block and its descendants are marked Invalid and the node
///                   settles on the heaviest valid branch)
/// ```
#[derive(Debug)]
pub struct Chain {
    spec: ChainSpec,
    store: Store,
    /// Every stored header (the block tree), by hash.
    index: HashMap<Hash, HeaderEntry>,
    /// Children of each block, to mark descendants invalid.
    children: HashMap<Hash, Vec<Hash>>,
    /// Canonical chain, by height.
    canonical: Vec<Hash>,
    /// State at the tip.
    state: State,
    next_seen: u64,
    validator: Arc<dyn BlockValidator>,
    /// Blocks whose parent is unknown, bounded by `config.max_orphans`.
    orphans: BTreeMap<Hash, Block>,
    config: ChainConfig,
    last_change: TipChange,
    /// Net change since the last [`Chain::take_tip_changes`].
    pending_changes: TipChange,
    /// A block accepted by the cheap checks but not yet written: the next commit includes it,
    /// so a block and the reorg it causes land in one transaction.
    unwritten: Option<(Hash, Block)>,
}

impl Chain {
    /// Opens (or creates, with the genesis of `spec`) the chain in `datadir`, with default
    /// settings and the default [`NoProofCheck`] validator.
    pub fn open(datadir: &Path, spec: ChainSpec) -> Result<Self, ChainError> {
        Self::open_with(datadir, spec, ChainConfig::default(), Arc::new(NoProofCheck))
    }

    /// [`Chain::open`] with settings and a block validator.
    pub fn open_with(
        datadir: &Path,
        spec: ChainSpec,
        config: ChainConfig,
        validator: Arc<dyn BlockValidator>,
    ) -> Result<Self, ChainError> {
        let (store, state) = Store::open(datadir, &spec, config.durability)?;
        let canonical = store.canonical_chain()?;
        let mut index = HashMap::new();
        let mut children: HashMap<Hash, Vec<Hash>> = HashMap::new();
        let mut next_seen = 0;
        for (hash, entry) in store.header_entries()? {
            next_seen = next_seen.max(entry.seen.saturating_add(1));
            if entry.header.height > 0 {
                children.entry(entry.header.prev_hash).or_default().push(hash);
            }
            index.insert(hash, entry);
        }
        for (height, hash) in canonical.iter().enumerate() {
            let ok = index.get(hash).is_some_and(|e| {
                e.header.height == height as u64 && e.status == BlockStatus::Valid
            });
            if !ok {
                return Err(store
                    .corrupt(
                        Table::Canonical,
                        height,
                        format!("{hash} is not a valid indexed block at this height"),
                    )
                    .into());
            }
        }
        let mut chain = Self {
            spec,
            store,
            index,
            children,
            canonical,
            state,
            next_seen,
            validator,
            orphans: BTreeMap::new(),
            config,
            last_change: TipChange::default(),
            pending_changes: TipChange::default(),
            unwritten: None,
        };
        // A heavier stored branch (not possible with this import pipeline, but cheap to
        // check) is activated now.
        chain.activate_best_chain()?;
        Ok(chain)
    }

    // ---- queries ----

    /// The chain spec.
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// The tip hash.
    pub fn tip(&self) -> Hash {
        *self.canonical.last().expect("the canonical chain holds at least genesis")
    }

    /// The tip header.
    pub fn tip_header(&self) -> &Header {
        &self.entry(&self.tip()).header
    }

    /// The tip height.
    pub fn height(&self) -> u64 {
        self.canonical.len() as u64 - 1
    }

    /// Cumulative work of the tip.
    pub fn tip_work(&self) -> Uint256 {
        self.entry(&self.tip()).work()
    }

    /// The genesis hash.
    pub fn genesis_hash(&self) -> Hash {
        self.canonical[0]
    }

    /// The state at the tip.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// An account at the tip.
    pub fn account(&self, addr: &Address) -> Account {
        self.state.account(addr)
    }

    /// A header index record (any branch).
    pub fn header_entry(&self, hash: &Hash) -> Option<&HeaderEntry> {
        self.index.get(hash)
    }

    /// A header by hash (any branch).
    pub fn header(&self, hash: &Hash) -> Option<&Header> {
        self.index.get(hash).map(|e| &e.header)
    }

    /// The filler states of the chain's validator (design/016): where a filler-task iteration
    /// on top of a block starts. `None` for a validator that replays nothing.
    pub fn filler_states(&self) -> Option<&crate::FillerStates> {
        self.validator.filler_states()
    }

    /// A block by hash (any branch).
    pub fn block(&self, hash: &Hash) -> Result<Option<Block>, ChainError> {
        Ok(self.store.block(hash)?)
    }

    /// The canonical hash at `height`.
    pub fn hash_at(&self, height: u64) -> Option<Hash> {
        self.canonical.get(usize::try_from(height).ok()?).copied()
    }

    /// The canonical header at `height`.
    pub fn header_at(&self, height: u64) -> Option<&Header> {
        self.hash_at(height).and_then(|h| self.header(&h))
    }

    /// The canonical block at `height`.
    pub fn block_at(&self, height: u64) -> Result<Option<Block>, ChainError> {
        match self.hash_at(height) {
            Some(h) => self.block(&h),
            None => Ok(None),
        }
    }

    /// True if `hash` is on the canonical chain.
    pub fn is_canonical(&self, hash: &Hash) -> bool {
        self.index.get(hash).is_some_and(|e| self.hash_at(e.header.height) == Some(*hash))
    }

    /// The canonical chain, genesis first.
    pub fn canonical(&self) -> &[Hash] {
        &self.canonical
    }

    /// How the canonical chain changed in the last switch of the tip.
    pub fn last_tip_change(&self) -> &TipChange {
        &self.last_change
    }

    /// The net change of the canonical chain since the previous call (blocks applied and
    /// reverted in between cancel out), for the mempool.
    pub fn take_tip_changes(&mut self) -> TipChange {
        std::mem::take(&mut self.pending_changes)
    }

    /// A block locator: canonical hashes from the tip back, dense for 10 then doubling the
    /// step, always ending at genesis.
    pub fn locator(&self) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut height = self.height();
        let mut step = 1u64;
        loop {
            out.push(self.canonical[height as usize]);
            if height == 0 {
                break;
            }
            if out.len() >= 10 {
                step = step.saturating_mul(2);
            }
            height = height.saturating_sub(step);
        }
        out
    }

    /// Up to `max` canonical headers after the first locator hash that is canonical here
    /// (after genesis if none is).
    pub fn headers_after_locator(&self, locator: &[Hash], max: usize) -> Vec<Header> {
        let start = locator
            .iter()
            .find(|h| self.is_canonical(h))
            .and_then(|h| self.header(h))
            .map_or(0, |h| h.height);
        self.headers_range(start.saturating_add(1), max)
    }

    /// Up to `max` canonical headers from `from` on.
    pub fn headers_range(&self, from: u64, max: usize) -> Vec<Header> {
        (from..).take(max).map_while(|h| self.header_at(h).cloned()).collect()
    }

    /// Number of blocks in the orphan pool.
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    // ---- import ----

    /// Imports a block received at local time `now`: [`Chain::admit`], [`Chain::verify`] and
    /// [`Chain::commit`] in turn (a known block is [`ImportOutcome::AlreadyKnown`]; one whose
    /// parent is unknown is kept as an orphan).
    pub fn import_block(
        &mut self,
        block: Block,
        now: Timestamp,
    ) -> Result<ImportOutcome, ChainError> {
        let hash = block.hash();
        if let Some(e) = self.index.get(&hash) {
            return match e.status {
                BlockStatus::Invalid => Err(ChainError::KnownInvalid(hash)),
                _ => Ok(ImportOutcome::AlreadyKnown),
            };
        }
        let parent_hash = block.header.prev_hash;
        if !self.index.contains_key(&parent_hash) {
            if self.orphans.len() < self.config.max_orphans {
                self.orphans.insert(hash, block);
            }
            return Err(ChainError::UnknownParent { hash, parent: parent_hash });
        }
        let checked = self.admit(block, now)?;
        let proven = self.verify(checked)?;
        self.commit(proven)
    }

    /// Stage 1 of an import: `block` is new, its parent is stored and not invalid, and its
    /// header and body rules hold against that parent. Reads only, so it runs under a shared
    /// lock. A known block is [`ChainError::Known`] (or [`ChainError::KnownInvalid`]).
    pub fn admit(&self, block: Block, now: Timestamp) -> Result<HeaderChecked, ChainError> {
        let hash = block.hash();
        if let Some(e) = self.index.get(&hash) {
            return Err(match e.status {
                BlockStatus::Invalid => ChainError::KnownInvalid(hash),
                _ => ChainError::Known(hash),
            });
        }
        let parent_hash = block.header.prev_hash;
        let parent = self
            .index
            .get(&parent_hash)
            .ok_or(ChainError::UnknownParent { hash, parent: parent_hash })?;
        if parent.status == BlockStatus::Invalid {
            return Err(ChainError::invalid(hash, BlockError::InvalidAncestor(parent_hash)));
        }
        self.check_header_and_body(&block, &parent.header, now)
            .map_err(|e| ChainError::invalid(hash, e))?;
        Ok(HeaderChecked { block, hash })
    }

    /// Stage 2: the [`BlockValidator`] (the PoUW proof check: cheap checks and the replay, or
    /// a light node's attestations). Reads only: the replay runs under a shared lock, so
    /// readers of the chain are never held up by it.
    pub fn verify(&self, checked: HeaderChecked) -> Result<ProofChecked, ChainError> {
        let HeaderChecked { block, hash } = checked;
        let parent = self
            .header(&block.header.prev_hash)
            .ok_or(ChainError::UnknownParent { hash, parent: block.header.prev_hash })?;
        let ancestors = BranchAncestors { chain: self, parent };
        self.validator
            .validate_in_chain(&block, parent, self)
            .and_then(|()| self.validator.validate(&block, parent, &self.spec, &ancestors))
            .map_err(|e| ChainError::invalid(hash, BlockError::Proof(e)))?;
        Ok(ProofChecked { block, hash })
    }

    /// Stage 3: stores a block whose proof passed and, if its branch is now the heaviest,
    /// executes it (with any reorg) and moves the tip, in one write transaction. Takes only a
    /// [`ProofChecked`], so no path imports a block that skipped a stage.
    pub fn commit(&mut self, proven: ProofChecked) -> Result<ImportOutcome, ChainError> {
        let ProofChecked { block, hash } = proven;
        if let Some(e) = self.index.get(&hash) {
            return match e.status {
                BlockStatus::Invalid => Err(ChainError::KnownInvalid(hash)),
                _ => Ok(ImportOutcome::AlreadyKnown),
            };
        }
        let parent_hash = block.header.prev_hash;
        let Some(parent) = self.index.get(&parent_hash).cloned() else {
            return Err(ChainError::UnknownParent { hash, parent: parent_hash });
        };
        if parent.status == BlockStatus::Invalid {
            return Err(ChainError::invalid(hash, BlockError::InvalidAncestor(parent_hash)));
        }

        let mut entry = HeaderEntry {
            header: block.header.clone(),
            cumulative_work: [0; 32],
            status: BlockStatus::Unvalidated,
            seen: self.next_seen,
        };
        entry.set_work(parent.work().saturating_add(block.header.target.work()));
        self.next_seen += 1;

        if entry.work() <= self.tip_work() {
            let mut w = self.store.begin_write()?;
            w.put_block(&hash, &block)?;
            w.put_header(&hash, &entry)?;
            w.commit()?;
            self.insert_entry(hash, entry);
            return Ok(ImportOutcome::SideChain);
        }

        self.insert_entry(hash, entry);
        self.unwritten = Some((hash, block));
        let first_failure = match self.activate_best_chain() {
            Ok(f) => f,
            Err(e) => {
                // The database failed: forget the block so memory matches the disk.
                if self.unwritten.take().is_some() {
                    self.remove_entry(&hash);
                }
                return Err(e);
            }
        };
        if let Some((unwritten_hash, block)) = self.unwritten.take() {
            // Not included in any commit (its branch failed before any commit): store it now.
            let entry = self.entry(&unwritten_hash).clone();
            let mut w = self.store.begin_write()?;
            if entry.status != BlockStatus::Invalid {
                w.put_block(&unwritten_hash, &block)?;
            }
            w.put_header(&unwritten_hash, &entry)?;
            w.commit()?;
        }
        let status = self.entry(&hash).status;
        if status == BlockStatus::Invalid {
            let (bad, error) =
                first_failure.unwrap_or((hash, BlockError::InvalidAncestor(Hash::ZERO)));
            return Err(ChainError::Invalid { hash: bad, error: Box::new(error) });
        }
        if self.tip() == hash {
            let depth = self.last_change.reverted.len() as u64;
            return Ok(if depth == 0 {
                ImportOutcome::Extended
            } else {
                ImportOutcome::Reorged { depth }
            });
        }
        Ok(ImportOutcome::SideChain)
    }

    /// Imports every orphan whose parent is now known (repeating until none is).
    pub fn process_orphans(
        &mut self,
        now: Timestamp,
    ) -> Vec<(Hash, Result<ImportOutcome, ChainError>)> {
        let mut out = Vec::new();
        loop {
            let ready: Vec<Hash> = self
                .orphans
                .iter()
                .filter(|(_, b)| self.index.contains_key(&b.header.prev_hash))
                .map(|(h, _)| *h)
                .collect();
            if ready.is_empty() {
                return out;
            }
            for h in ready {
                if let Some(b) = self.orphans.remove(&h) {
                    out.push((h, self.import_block(b, now)));
                }
            }
        }
    }

    /// The target a child of `parent` must carry (the retarget rule).
    pub fn expected_target(&self, parent: &Header) -> Result<CompactTarget, ConsensusError> {
        let height = parent.height.saturating_add(1);
        let window = self.ancestor_timestamps(parent, retarget_window_len(&self.spec, height)?);
        next_target(&self.spec, height, parent.target, &window)
    }

    /// The earliest timestamp a child of `parent` may carry (one millisecond after the median
    /// of the last 11 timestamps).
    pub fn min_child_timestamp(&self, parent: &Header) -> Timestamp {
        let ancestors = self.ancestor_timestamps(parent, MEDIAN_TIME_SPAN);
        let median = median_time_past(&ancestors).unwrap_or(parent.timestamp);
        Timestamp(median.0.saturating_add(1))
    }

    /// The header and body rules of `block` against its stored parent, without the
    /// [`BlockValidator`] (so no proof data and no replay): what a node checks before it
    /// fetches anything else for a block it was sent.
    pub fn check_rules(&self, block: &Block, now: Timestamp) -> Result<(), ChainError> {
        let hash = block.hash();
        let parent = self
            .header(&block.header.prev_hash)
            .ok_or(ChainError::UnknownParent { hash, parent: block.header.prev_hash })?;
        self.check_header_and_body(block, parent, now).map_err(|e| ChainError::invalid(hash, e))
    }

    /// The ancestors of a block whose parent is `parent`, on that block's own branch.
    pub fn branch_ancestors<'a>(&'a self, parent: &'a Header) -> impl Ancestors + 'a {
        BranchAncestors { chain: self, parent }
    }

    fn check_header_and_body(
        &self,
        block: &Block,
        parent: &Header,
        now: Timestamp,
    ) -> Result<(), BlockError> {
        let height = parent.height.saturating_add(1);
        let window = self.ancestor_timestamps(parent, retarget_window_len(&self.spec, height)?);
        let expected_target = next_target(&self.spec, height, parent.target, &window)?;
        let ancestors = self.ancestor_timestamps(parent, MEDIAN_TIME_SPAN);
        let ctx = HeaderContext {
            spec: &self.spec,
            now,
            ancestor_timestamps: &ancestors,
            expected_target,
        };
        check_header(&block.header, parent, &ctx)?;
        check_block_body(block, &self.spec)?;
        Ok(())
    }

    /// Timestamps of up to `n` blocks ending at `from` (inclusive), oldest first.
    fn ancestor_timestamps(&self, from: &Header, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n);
        let mut cur = Some(from);
        while let Some(h) = cur {
            if out.len() >= n {
                break;
            }
            out.push(h.timestamp);
            cur = if h.height == 0 { None } else { self.header(&h.prev_hash) };
        }
        out.reverse();
        out
    }

    fn entry(&self, hash: &Hash) -> &HeaderEntry {
        self.index.get(hash).expect("hashes handled here are indexed")
    }

    fn insert_entry(&mut self, hash: Hash, entry: HeaderEntry) {
        self.children.entry(entry.header.prev_hash).or_default().push(hash);
        self.index.insert(hash, entry);
    }

    fn remove_entry(&mut self, hash: &Hash) {
        if let Some(e) = self.index.remove(hash) {
            if let Some(c) = self.children.get_mut(&e.header.prev_hash) {
                c.retain(|h| h != hash);
            }
        }
    }

    /// The heaviest block not known invalid (ties: first seen).
    fn best_candidate(&self) -> Hash {
        let mut best: Option<(&Hash, &HeaderEntry)> = None;
        for (h, e) in &self.index {
            if e.status == BlockStatus::Invalid {
                continue;
            }
            let better = match best {
                None => true,
                Some((_, b)) => e.work() > b.work() || (e.work() == b.work() && e.seen < b.seen),
            };
            if better {
                best = Some((h, e));
            }
        }
        // The current tip keeps its place against equal work seen later, and genesis is valid.
        let tip = self.tip();
        match best {
            Some((h, e)) if e.work() > self.tip_work() || *h == tip => *h,
            Some((h, e)) if e.work() == self.tip_work() && e.seen < self.entry(&tip).seen => *h,
            _ => tip,
        }
    }

    /// Moves to the heaviest valid branch, marking failing blocks (and their descendants)
    /// invalid on the way. Returns the first failure, if any.
    fn activate_best_chain(&mut self) -> Result<Option<(Hash, BlockError)>, ChainError> {
        let mut first_failure = None;
        loop {
            let best = self.best_candidate();
            if best == self.tip() {
                return Ok(first_failure);
            }
            match self.switch_to(best)? {
                None => {}
                Some((bad, error)) => {
                    tracing::warn!(target: "chain", %bad, %error, "invalid block on a heavier branch");
                    self.mark_invalid(&bad)?;
                    if first_failure.is_none() {
                        first_failure = Some((bad, error));
                    }
                }
            }
        }
    }

    /// Adds the unwritten block to `w`; the caller clears it once `w` is committed (so that
    /// after a failed commit the block is still known to be unwritten).
    fn flush_unwritten(&self, w: &mut StoreWriter) -> Result<(), ChainError> {
        if let Some((hash, block)) = &self.unwritten {
            let entry = self.entry(hash);
            if entry.status != BlockStatus::Invalid {
                w.put_block(hash, block)?;
            }
            w.put_header(hash, entry)?;
        }
        Ok(())
    }

    fn load_block(&self, hash: &Hash) -> Result<Block, ChainError> {
        if let Some((h, b)) = &self.unwritten {
            if h == hash {
                return Ok(b.clone());
            }
        }
        self.store.block(hash)?.ok_or_else(|| {
            self.store.corrupt(Table::Blocks, hash, "indexed block is missing").into()
        })
    }

    /// Marks `bad` and all its descendants invalid (one commit).
    fn mark_invalid(&mut self, bad: &Hash) -> Result<(), ChainError> {
        let mut stack = vec![*bad];
        let mut marked = Vec::new();
        while let Some(h) = stack.pop() {
            if let Some(e) = self.index.get_mut(&h) {
                e.status = BlockStatus::Invalid;
                marked.push(h);
            }
            if let Some(c) = self.children.get(&h) {
                stack.extend(c.iter().copied());
            }
        }
        let mut w = self.store.begin_write()?;
        self.flush_unwritten(&mut w)?;
        for h in &marked {
            w.put_header(h, self.entry(h))?;
        }
        w.commit()?;
        self.unwritten = None;
        Ok(())
    }

    /// Makes `target` the tip: undo to the fork point, execute the new branch, commit it all
    /// at once. Returns the first invalid block instead if one is found (nothing committed).
    fn switch_to(&mut self, target: Hash) -> Result<Option<(Hash, BlockError)>, ChainError> {
        // Path from target down to the canonical chain.
        let mut new_branch = Vec::new();
        let mut cur = target;
        while !self.is_canonical(&cur) {
            new_branch.push(cur);
            cur = self.entry(&cur).header.prev_hash;
        }
        new_branch.reverse();
        let fork_height = self.entry(&cur).header.height;
        let old_branch: Vec<Hash> =
            self.canonical[fork_height as usize + 1..].iter().rev().copied().collect();

        let simple_extension = old_branch.is_empty() && new_branch.len() == 1;
        let mut scratch = if simple_extension { None } else { Some(self.state.clone()) };
        let mut net: BTreeMap<StateKey, Option<StateValue>> = BTreeMap::new();
        for h in &old_branch {
            let undo = self.store.undo(h)?.ok_or_else(|| {
                self.store.corrupt(Table::Undo, h, "undo data of a canonical block is missing")
            })?;
            for (k, v) in &undo.entries {
                net.insert(k.clone(), v.clone());
            }
            scratch.as_mut().expect("reverts happen on the scratch state").revert(&undo);
        }
        if let Some(s) = &scratch {
            // Undo data that decodes but is wrong would make honest blocks look invalid:
            // check the reverted state against the fork block before executing anything.
            let fork_root = self.entry(&cur).header.state_root;
            if !old_branch.is_empty() && s.root() != fork_root {
                return Err(self
                    .store
                    .corrupt(
                        Table::Undo,
                        old_branch.iter().map(Hash::to_string).collect::<Vec<_>>().join(","),
                        format!(
                            "reverting to {cur} gives state root {}, expected {fork_root}",
                            s.root()
                        ),
                    )
                    .into());
            }
        }
        let mut executed = Vec::with_capacity(new_branch.len());
        let mut last_diff = None;
        for h in &new_branch {
            let block = self.load_block(h)?;
            let base = scratch.as_ref().unwrap_or(&self.state);
            let diff = match apply_block(base, &block, &self.spec) {
                Ok(d) => d,
                Err(e) => return Ok(Some((*h, e.into()))),
            };
            if diff.state_root != block.header.state_root {
                return Ok(Some((
                    *h,
                    BlockError::BadStateRoot {
                        expected: diff.state_root,
                        got: block.header.state_root,
                    },
                )));
            }
            for (k, v) in &diff.changes {
                net.insert(k.clone(), v.clone());
            }
            executed.push((*h, diff.undo.clone()));
            match scratch.as_mut() {
                Some(s) => s.apply_diff(&diff),
                None => last_diff = Some(diff),
            }
        }

        let mut w = self.store.begin_write()?;
        self.flush_unwritten(&mut w)?;
        w.write_state(&net)?;
        for (h, undo) in &executed {
            w.put_undo(h, undo)?;
            let mut e = self.entry(h).clone();
            e.status = BlockStatus::Valid;
            w.put_header(h, &e)?;
            w.set_canonical(e.header.height, h)?;
        }
        let target_height = self.entry(&target).header.height;
        w.truncate_canonical(target_height)?;
        w.set_tip(&target)?;
        w.commit()?;
        self.unwritten = None;

        match (scratch, last_diff) {
            (Some(s), _) => self.state = s,
            (None, Some(d)) => self.state.apply_diff(&d),
            (None, None) => {}
        }
        for (h, _) in &executed {
            if let Some(e) = self.index.get_mut(h) {
                e.status = BlockStatus::Valid;
            }
        }
        self.canonical.truncate(fork_height as usize + 1);
        self.canonical.extend(new_branch.iter().copied());
        debug_assert_eq!(self.state.root(), self.entry(&target).header.state_root);
        if !old_branch.is_empty() {
            tracing::info!(target: "chain", depth = old_branch.len(), tip = %target, height = target_height, "reorg");
        }
        self.last_change = TipChange { reverted: old_branch, applied: new_branch };
        self.pending_changes.merge(&self.last_change);
        Ok(None)
    }
}

/// The ancestors of a block (through its parent) in the header tree.
struct BranchAncestors<'a> {
    chain: &'a Chain,
    parent: &'a Header,
}

impl crate::validator::Ancestors for BranchAncestors<'_> {
    fn hash_at(&self, height: u64) -> Option<Hash> {
        if height > self.parent.height {
            return None;
        }
        let mut hash = self.parent.hash();
        let mut header = self.parent;
        while header.height > height {
            hash = header.prev_hash;
            header = self.chain.header(&hash)?;
        }
        Some(hash)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_utils::ChainHarness;

    #[test]
    fn locator_of_a_fresh_chain_is_genesis() {
        let h = ChainHarness::new();
        assert_eq!(h.chain.locator(), vec![h.chain.genesis_hash()]);
        assert_eq!(h.chain.height(), 0);
        assert_eq!(h.chain.tip(), h.chain.genesis_hash());
    }

    #[test]
    fn locator_is_dense_then_sparse() {
        let mut h = ChainHarness::new();
        h.extend_chain(40);
        let heights: Vec<u64> =
            h.chain.locator().iter().map(|x| h.chain.header(x).unwrap().height).collect();
        assert_eq!(heights, vec![40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 29, 25, 17, 1, 0]);
    }

    #[test]
    fn best_candidate_prefers_work_then_first_seen() {
        let mut h = ChainHarness::new();
        let g = h.chain.genesis_hash();
        let a = h.fork(&g, 2);
        let b = h.fork(&g, 2);
        for blk in a.iter().chain(b.iter()) {
            h.import(blk.clone()).unwrap();
        }
        assert_eq!(h.chain.best_candidate(), a[1].hash());
        assert_eq!(h.chain.tip(), a[1].hash());
    }
}
