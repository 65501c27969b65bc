//! A supervisor's record of one task's iteration messages, by history slot (design/007): the
//! messages of each slot until its root is committed, the other supervisors' copies merged
//! into a closed slot, and the variants of an iteration kept as evidence (design/013).

use super::{MERGE_ROUNDS, MERGE_WAIT, SLOT_SETTLE, SLOT_SETTLE_ITERATIONS};
use pouw_consensus::{history_slot, TaskRecord, HISTORY_SLOT_ITERATIONS, MAX_HISTORY_SLOTS};
use pouw_primitives::{Address, Hash, IterationMessage};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

/// A supervisor's record of one task's iteration messages, by history slot.
#[derive(Debug, Default)]
pub(super) struct History {
    /// Slots not committed yet: their messages by id (shared with the screening: one copy
    /// of each message in memory).
    pub(super) open: BTreeMap<u32, BTreeMap<Hash, Arc<IterationMessage>>>,
    /// Committed slots: the messages under the root committed.
    pub(super) committed: BTreeMap<u32, Vec<Arc<IterationMessage>>>,
    /// The highest iteration seen per miner.
    pub(super) highest: HashMap<Address, u64>,
    /// Closed slots being completed from the other supervisors' copies.
    pub(super) merging: HashMap<u32, Merge>,
    /// The ids of the variants kept per (miner, iteration): at most [`MAX_VARIANTS`]; a
    /// second one is an equivocation, the miner's provable fault (design/013).
    pub(super) variants: HashMap<(Address, u64), Vec<Hash>>,
}

/// Variants of one iteration a supervisor keeps: the first, and a second as the evidence of
/// an equivocation; any further one is dropped.
pub(super) const MAX_VARIANTS: usize = 2;

/// A closed slot waiting for the other supervisors' copies before its commit.
#[derive(Debug)]
pub(super) struct Merge {
    /// When the slot closed, then when the last round of requests went out.
    pub(super) since: Instant,
    /// Rounds of requests sent.
    pub(super) rounds: u32,
    /// Answers to the last round.
    pub(super) answers: usize,
    /// Messages of the slot when the last round went out.
    pub(super) had: usize,
}

/// What a supervisor does next with a closed slot.
pub(super) enum SlotStep {
    Wait,
    Ask,
    Commit,
}

impl History {
    /// Records a message (signature and miner already checked); late messages of a committed
    /// slot are dropped (the slot's root is on chain), and so are iterations beyond the last
    /// slot a task can have, and variants of an iteration beyond [`MAX_VARIANTS`]. Returns
    /// the two variants when `msg` is the second one of its iteration (an equivocation).
    pub(super) fn record(
        &mut self,
        msg: impl Into<Arc<IterationMessage>>,
    ) -> Option<(IterationMessage, IterationMessage)> {
        let msg: Arc<IterationMessage> = msg.into();
        let slot = history_slot(msg.body.iteration);
        if slot >= MAX_HISTORY_SLOTS {
            return None;
        }
        let id = msg.id();
        let ids = self.variants.entry((msg.body.miner, msg.body.iteration)).or_default();
        if ids.contains(&id) || ids.len() >= MAX_VARIANTS {
            return None;
        }
        let first = ids.first().copied();
        ids.push(id);
        let equivocation =
            first.and_then(|f| self.message(slot, &f)).map(|f| (f, IterationMessage::clone(&msg)));
        if !self.committed.contains_key(&slot) {
            let highest = self.highest.entry(msg.body.miner).or_insert(0);
            *highest = (*highest).max(msg.body.iteration);
            self.open.entry(slot).or_default().insert(id, msg);
        }
        equivocation
    }

    /// The message `id` of slot `slot`, open or committed.
    pub(super) fn message(&self, slot: u32, id: &Hash) -> Option<IterationMessage> {
        if let Some(m) = self.open.get(&slot).and_then(|m| m.get(id)) {
            return Some(IterationMessage::clone(m));
        }
        self.committed
            .get(&slot)?
            .iter()
            .find(|m| m.id() == *id)
            .map(|m| IterationMessage::clone(m))
    }

    /// Whether slot `slot` can be committed: every selected miner either sent an iteration
    /// [`SLOT_SETTLE_ITERATIONS`] past the slot's end or submitted its model.
    pub(super) fn slot_closed(&self, record: &TaskRecord, slot: u32) -> bool {
        let end = u64::from(slot).saturating_add(1).saturating_mul(HISTORY_SLOT_ITERATIONS);
        record.participants.miners.iter().all(|m| {
            record.models.contains(&m.worker)
                || self
                    .highest
                    .get(&m.worker)
                    .is_some_and(|&i| i >= end.saturating_add(SLOT_SETTLE_ITERATIONS))
        })
    }

    /// Whether slot `slot` misses an iteration of some miner below the highest one seen from
    /// it (iteration numbers of a miner are consecutive; a gap at the very end is invisible).
    pub(super) fn has_gap(&self, slot: u32) -> bool {
        let start = u64::from(slot).saturating_mul(HISTORY_SLOT_ITERATIONS);
        let mut seen: HashMap<Address, HashSet<u64>> = HashMap::new();
        for m in self.open.get(&slot).into_iter().flat_map(|m| m.values()) {
            seen.entry(m.body.miner).or_default().insert(m.body.iteration);
        }
        self.highest.iter().any(|(miner, &highest)| {
            let end = start.saturating_add(HISTORY_SLOT_ITERATIONS).min(highest.saturating_add(1));
            let have = seen.get(miner);
            (start..end).any(|i| !have.is_some_and(|h| h.contains(&i)))
        })
    }

    /// The next step for closed slot `slot`, with `others` other supervisors to ask: after
    /// [`SLOT_SETTLE`], commit unless a miner's iterations have a gap (or, for the last slot
    /// of a finalising task, whose gaps at the end are invisible, always), else ask for copies.
    pub(super) fn slot_step(&self, slot: u32, others: usize, last: bool) -> SlotStep {
        let Some(m) = self.merging.get(&slot) else { return SlotStep::Wait };
        if m.rounds == 0 {
            if m.since.elapsed() < SLOT_SETTLE {
                return SlotStep::Wait;
            }
            return if others > 0 && (last || self.has_gap(slot)) {
                SlotStep::Ask
            } else {
                SlotStep::Commit
            };
        }
        if m.answers < others && m.since.elapsed() < MERGE_WAIT {
            return SlotStep::Wait;
        }
        let has = self.open.get(&slot).map_or(0, BTreeMap::len);
        if m.rounds < MERGE_ROUNDS && others > 0 && has > m.had && self.has_gap(slot) {
            return SlotStep::Ask;
        }
        SlotStep::Commit
    }
}

impl super::Agent {
    /// Supervisor: the messages of one slot (those under the committed root once committed,
    /// else those seen so far).
    pub(super) fn history_slot(
        &self,
        task: &pouw_primitives::TaskId,
        slot: u64,
    ) -> Vec<IterationMessage> {
        let Some(h) = self.history.get(task) else { return Vec::new() };
        let Ok(slot) = u32::try_from(slot) else { return Vec::new() };
        match h.committed.get(&slot) {
            Some(msgs) => msgs.iter().map(|m| IterationMessage::clone(m)).collect(),
            None => h
                .open
                .get(&slot)
                .map(|m| m.values().map(|m| IterationMessage::clone(m)).collect())
                .unwrap_or_default(),
        }
    }
}
