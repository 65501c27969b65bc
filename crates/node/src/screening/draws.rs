//! The screening's draws (design/020): the start states asked of the miners, their answers,
//! what a drawn or skipped message becomes, and the switch to replaying a miner's whole stream.

use super::{sample, TaskScreen, ASK_LATE, FETCH_RETRY, FETCH_WAIT, UNSERVED_RUN};
use pouw_consensus::pouw::ProofData;
use pouw_ml::TrainState;
use pouw_primitives::{Address, Hash, IterationMessage};
use std::{collections::BTreeMap, time::Instant};

/// A start state asked of a miner.
pub(super) struct Fetch {
    pub(super) asked: Instant,
    /// Ask (again) from this instant (`None`: asked, no answer yet).
    pub(super) ask_at: Option<Instant>,
    pub(super) state: Option<Result<TrainState, String>>,
}

/// A start state to ask of a miner (`TaskScreen::take_wants`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateWant {
    pub(crate) miner: Address,
    pub(crate) iteration: u64,
}

/// A start state asked of a miner, as it stands.
pub(super) enum Fetched {
    Ready(Box<TrainState>),
    Wait,
    /// Not served: why, and when it was first asked.
    Failed(String, Instant),
}

/// What sampling makes of a miner's next message.
pub(super) enum Sampled {
    /// Not replayed (counted).
    Skipped,
    /// Waits (for its start state).
    Wait,
    /// The shadow starts where the message does: replay it.
    Replay,
}

impl TaskScreen {
    /// The start states to ask of the miners now (each once; again after an empty answer).
    pub(crate) fn take_wants(&mut self, now: Instant) -> Vec<StateWant> {
        let mut wants = Vec::new();
        for (miner, log) in &mut self.logs {
            for (iteration, fetch) in &mut log.fetches {
                if fetch.state.is_none() && fetch.ask_at.is_some_and(|at| at <= now) {
                    fetch.ask_at = None;
                    wants.push(StateWant { miner: *miner, iteration: *iteration });
                }
            }
        }
        wants
    }

    /// A miner's answer to a start-state request (`None`: it did not hold it, or the request
    /// failed): checked against the start hashes its message signed.
    pub(crate) fn on_state(
        &mut self,
        miner: &Address,
        iteration: u64,
        data: Option<ProofData>,
        now: Instant,
    ) {
        let msg = self
            .logs
            .get(miner)
            .and_then(|l| l.ids.get(&iteration))
            .and_then(|id| self.known.get(id))
            .cloned();
        let initial = self.initial_state();
        let Some(fetch) = self.logs.get_mut(miner).and_then(|l| l.fetches.get_mut(&iteration))
        else {
            return;
        };
        match (data, msg, initial) {
            (Some(data), Some(msg), Some(initial)) => {
                fetch.state =
                    Some(sample::start_state(&initial, &data, &msg).map_err(|e| e.to_string()));
            }
            _ if now.saturating_duration_since(fetch.asked) < FETCH_WAIT => {
                fetch.ask_at = Some(now + FETCH_RETRY);
            }
            _ => fetch.state = Some(Err("not served".into())),
        }
    }

    /// Replays every message of `miner` from now on, from the task's initial state, the
    /// messages screened already too: it was flagged here, accused by another supervisor or did
    /// not serve a start state it committed to (design/020). Its earlier poisoned messages are
    /// flagged then as well (each once).
    pub(crate) fn replay_all(&mut self, miner: &Address, now: Instant) {
        let Some(log) = self.logs.get_mut(miner) else { return };
        if log.replay_all {
            return;
        }
        log.replay_all = true;
        log.view.replays_all = true;
        log.fetches = BTreeMap::new();
        // `screened` counts each message once; the others count the whole replay from here.
        log.view.replayed = 0;
        log.view.unverifiable = 0;
        log.view.skipped = 0;
        log.queue = log.ids.iter().map(|(it, id)| (*it, (*id, now))).collect();
        self.shadows.remove(miner);
    }

    /// What sampling makes of `miner`'s next message `msg` (design/020): a message that
    /// starts from the task's initial state where the shadow does not (a restart) is replayed
    /// from it, drawn or not; a message the shadow stands at while a run lasts is replayed from
    /// it; another message the draw skips is counted and left; a drawn one starts a run: it is
    /// replayed from the shadow when the shadow starts where it does, else from the start
    /// state the miner served.
    pub(super) fn sample(
        &mut self,
        index: usize,
        miner: &Address,
        msg: &IterationMessage,
        now: Instant,
    ) -> Option<Sampled> {
        let it = msg.body.iteration;
        let starts = (msg.body.start_model_hash, msg.body.start_residual_hash);
        let drawn = self.sampling.draws(&msg.id(), self.miners.len());
        let run = self.sampling.run().saturating_sub(1);
        let shadow = self.shadows.get_mut(miner)?;
        let positioned = shadow.next == it && !shadow.broken && shadow.suspect.is_none();
        if positioned {
            let (m, r) = shadow.state.start_hashes();
            // A start that is not where the last replay ended goes the full way (a suspect,
            // or a restart from the initial state).
            if drawn || shadow.run_left > 0 || (Hash(m.0), Hash(r.0)) != starts {
                shadow.run_left = if drawn { run } else { shadow.run_left.saturating_sub(1) };
                self.logs.get_mut(miner)?.fetches.remove(&it);
                return Some(Sampled::Replay);
            }
        }
        // A start from the task's initial state off the shadow's position (a restart, after a
        // crash or a switch of view) is replayed whatever the draw: it is what clears a
        // suspicion on the miner's earlier messages, and it needs no start state.
        if self.initial == Some(starts) && (drawn || !positioned) {
            let mut fresh = self.fresh_shadow(index)?;
            fresh.next = it;
            fresh.walk.seek(it);
            self.shadows.insert(*miner, fresh);
            self.logs.get_mut(miner)?.fetches.remove(&it);
            return Some(Sampled::Replay);
        }
        if !drawn {
            let log = self.logs.get_mut(miner)?;
            log.queue.remove(&it);
            log.fetches.remove(&it);
            log.view.skipped += 1;
            if !log.counted.contains(&it) {
                log.view.screened += 1;
                self.count_figures(miner, msg, None, None);
            }
            return Some(Sampled::Skipped);
        }
        match self.fetched(miner, it, now)? {
            Fetched::Ready(state) => {
                let shadow = self.shadows.get_mut(miner)?;
                shadow.state = *state;
                shadow.next = it;
                shadow.walk.seek(it);
                shadow.broken = false;
                shadow.run_left = run;
                Some(Sampled::Replay)
            }
            Fetched::Failed(why, asked) => {
                let log = self.logs.get_mut(miner)?;
                let arrived = log.queue.remove(&it).map_or(asked, |(_, at)| at);
                if log.counted.insert(it) {
                    log.view.screened += 1;
                }
                if asked.saturating_duration_since(arrived) > ASK_LATE {
                    // Asked long after the message came (this supervisor was behind): the miner
                    // need not hold the state any more.
                    log.view.unverifiable += 1;
                    return Some(Sampled::Skipped);
                }
                // Never flagged for it. A miner that keeps not serving (its states may have
                // moved on before a slower supervisor asked) has its whole stream replayed.
                log.view.unserved += 1;
                log.view.unverifiable += 1;
                log.unserved_run = log.unserved_run.saturating_add(1);
                if log.unserved_run >= UNSERVED_RUN {
                    tracing::info!(target: "supervisor", task = %self.task_id.short(), miner = %miner.short(), iteration = it, why, "a miner did not serve the start states it committed to: replaying its whole stream");
                    self.replay_all(miner, now);
                }
                Some(Sampled::Skipped)
            }
            Fetched::Wait => Some(Sampled::Wait),
        }
    }

    /// The start state of `miner`'s iteration `it`, asked of the miner (once; again after an
    /// empty answer) until it is served or [`FETCH_WAIT`] passed.
    pub(super) fn fetched(&mut self, miner: &Address, it: u64, now: Instant) -> Option<Fetched> {
        let log = self.logs.get_mut(miner)?;
        let fetch =
            log.fetches.entry(it).or_insert(Fetch { asked: now, ask_at: Some(now), state: None });
        Some(match fetch.state.take() {
            Some(Ok(state)) => {
                log.fetches.remove(&it);
                log.view.fetched += 1;
                log.unserved_run = 0;
                Fetched::Ready(Box::new(state))
            }
            Some(Err(why)) => {
                let asked = fetch.asked;
                log.fetches.remove(&it);
                Fetched::Failed(why, asked)
            }
            None if now.saturating_duration_since(fetch.asked) >= FETCH_WAIT => {
                fetch.state = Some(Err("not served in time".into()));
                Fetched::Wait
            }
            None => Fetched::Wait,
        })
    }
}
