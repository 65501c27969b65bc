//! The supervisor's part in a task (design/007, design/008, design/013): each miner's
//! messages recorded by history slot and a root committed per slot, the screening fed (it runs
//! on its own thread, `screening::worker`) and what it flags raised as alerts and accusations.

use super::*;

impl Node {
    /// Supervisor: raises an alert for a flagged message (gossiped, and handled here too).
    pub(super) fn raise_alert(
        &mut self,
        task: TaskId,
        f: Finding,
        message: Option<IterationMessage>,
    ) {
        let mut detail = f.detail;
        if detail.len() > pouw_primitives::MAX_ALERT_DETAIL_BYTES {
            let mut cut = pouw_primitives::MAX_ALERT_DETAIL_BYTES;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        let first = !self.agent.flagged_miners.contains_key(&(task, f.miner));
        let kept = self.agent.flagged_miners.entry((task, f.miner)).or_default();
        if message
            .as_ref()
            .is_some_and(|m| kept.as_ref().is_none_or(|k| m.body.map.len() < k.body.map.len()))
        {
            *kept = message;
        }
        if first {
            tracing::warn!(target: "supervisor", task = %task.short(), miner = %f.miner.short(), kind = ?f.kind, %detail, "iteration flagged (further ones are logged at debug level)");
        } else {
            tracing::debug!(target: "supervisor", task = %task.short(), miner = %f.miner.short(), kind = ?f.kind, %detail, "iteration flagged");
        }
        let alert = SecurityAlertBody {
            chain_id: self.config.spec.chain_id,
            task_id: task,
            reporter: self.me(),
            accused: f.miner,
            kind: f.kind,
            evidence: vec![f.message],
            detail,
        }
        .sign(&self.config.key);
        self.agent.security.alerts_raised.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.agent_on_alert(&alert);
        if let Err(e) = self.net.publish(pouw_net::GossipMessage::SecurityAlert(alert)) {
            tracing::debug!(target: "supervisor", error = %e, "alert not gossiped");
        }
    }

    /// Supervisor: a second variant of one iteration was recorded: the first one per miner is
    /// kept as the evidence of an AccuseMiner (design/013).
    pub(super) fn note_equivocation(
        &mut self,
        task: TaskId,
        pair: Option<(IterationMessage, IterationMessage)>,
    ) {
        let Some((first, second)) = pair else { return };
        let miner = first.body.miner;
        if let std::collections::hash_map::Entry::Vacant(e) =
            self.agent.equivocations.entry((task, miner))
        {
            tracing::warn!(target: "supervisor", task = %task.short(), miner = %miner.short(), iteration = first.body.iteration, "miner signed two different messages for one iteration (equivocation)");
            e.insert((first, second));
        }
    }

    /// Supervisor: accuses on chain (AccuseMiner) every miner of `record` it flagged or saw
    /// equivocate, until the accusation is recorded or the miner convicted (design/009): a
    /// strict majority of the supervisors convicts it there (an equivocation alone does,
    /// design/013), and its batches go to the honest miners. The evidence is the miner's own
    /// signed messages (an equivocation's two variants when there is one). Re-sent after
    /// [`ACCUSE_RETRY`] while not recorded (a transaction can be dropped). Accusations are
    /// open while the task trains and, once it finalises, until the first verdict vote
    /// (design/009, "Late accusations").
    pub(super) fn accuse_on_chain(&mut self, id: TaskId, record: &TaskRecord) {
        if !self.accusations_open(&id) {
            return;
        }
        let due: Vec<(Address, MinerEvidence)> = self
            .accusations_owed(id, record)
            .into_iter()
            .filter(|(m, _)| {
                self.agent.accused.get(&(id, *m)).is_none_or(|at| at.elapsed() >= ACCUSE_RETRY)
            })
            .collect();
        // After training (a late accusation, open until the first vote).
        let late = record.status != TaskStatus::Training;
        for (miner, evidence) in due {
            self.agent.accused.insert((id, miner), Instant::now());
            match self.submit_own(TxKind::AccuseMiner { task_id: id, miner, evidence }) {
                Ok(_) => {
                    tracing::info!(target: "supervisor", task = %id.short(), miner = %miner.short(), late, "miner accused on chain")
                }
                Err(e) => {
                    tracing::warn!(target: "supervisor", error = %e, "AccuseMiner refused")
                }
            }
        }
    }

    /// Whether an AccuseMiner for `id` can apply at our tip.
    fn accusations_open(&self, id: &TaskId) -> bool {
        let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        pouw_consensus::accusations_open(chain.state(), id)
    }

    /// Supervisor: the accusations of task `id` it owes: every miner it flagged (with a
    /// flagged message kept) or saw equivocate, not convicted and not accused by it on chain
    /// yet, with the evidence (one too large for a transaction is logged once and left out).
    fn accusations_owed(
        &mut self,
        id: TaskId,
        record: &TaskRecord,
    ) -> Vec<(Address, MinerEvidence)> {
        let me = self.me();
        let equivocated = self.agent.equivocations.iter().filter(|((t, _), _)| *t == id).map(
            |((_, m), (first, second))| {
                let (first, second) = (Box::new(first.clone()), Box::new(second.clone()));
                (*m, MinerEvidence::Equivocation { first, second })
            },
        );
        let flagged = self
            .agent
            .flagged_miners
            .iter()
            .filter(|((t, m), _)| *t == id && !self.agent.equivocations.contains_key(&(id, *m)))
            .filter_map(|((_, m), message)| {
                Some((*m, MinerEvidence::Flagged { message: Box::new(message.clone()?) }))
            });
        let owed: Vec<(Address, MinerEvidence)> = equivocated
            .chain(flagged)
            .filter(|(m, _)| {
                !record.is_convicted(m)
                    && !record.accusations.iter().any(|a| a.miner == *m && a.supervisor == me)
            })
            .collect();
        owed.into_iter()
            .filter(|(miner, evidence)| {
                let size = pouw_primitives::codec::encode(evidence).len();
                let fits = size <= EVIDENCE_MAX_BYTES;
                if !fits && self.agent.too_large_evidence.insert((id, *miner)) {
                    tracing::warn!(target: "supervisor", task = %id.short(), miner = %miner.short(), size, "evidence too large for a transaction: miner not accused on chain");
                }
                fits
            })
            .collect()
    }

    /// Supervisor: whether it still owes task `id` an accusation the chain can take: its
    /// screening is not reported done until then, so the evaluators vote knowing the
    /// conviction (design/009, "Late accusations").
    pub(super) fn owes_accusation(&mut self, id: TaskId) -> bool {
        if !self.accusations_open(&id) {
            return false;
        }
        let record = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            task_record(chain.state(), &id)
        };
        record.is_some_and(|r| !self.accusations_owed(id, &r).is_empty())
    }

    /// Supervisor: a task ended: its screening data goes (the figures stay).
    pub(super) fn release_screen(&mut self, id: &TaskId) {
        if self.agent.screening.release(*id) {
            super::memory::give_freed_pages_back_soon();
        }
    }

    /// Supervisor: fetches the training data, then screens what arrived.
    /// (The screening itself runs on its own thread, `screening::worker`: what it flags comes
    /// back through [`Node::agent_poll_screening`].)
    pub(super) fn screen_task_now(&mut self, id: TaskId, record: &TaskRecord, height: u64) {
        let split = task_split_of(&record.definition, &record.seed);
        self.screen_of(id, record);
        if !self.agent.screening.has_dataset(&id) {
            let Some(dataset) = self.task_dataset(id, record, SegmentUse::Screen) else { return };
            let Some(start) = self.task_start_model(id, record, SegmentUse::Screen) else { return };
            self.agent.screening.set_dataset(id, dataset, split.to_ml(), start);
        }
        let settled = view_settled(record, height);
        self.agent.screening.chain(id, settled, Handover::of_task(record));
        self.accuse_on_chain(id, record);
    }

    /// Supervisor: what the screening thread flagged (alerts raised) and the start states it
    /// wants (asked of the miners), taken at every turn of the loop.
    pub(crate) fn agent_poll_screening(&mut self) {
        use crate::screening::worker::Output;
        for output in self.agent.screening.outputs() {
            match output {
                Output::Found { task, finding, message } => {
                    self.raise_alert(task, finding, message.map(|m| *m));
                }
                Output::Wants { task, wants } => self.ask_states(task, wants),
            }
        }
    }

    /// Supervisor: commits every history slot that is closed (every miner past it, or the task
    /// finalising: then every slot left), after [`SLOT_SETTLE`]; a slot with a gap in a miner's
    /// iterations (and the last slot) is first completed from the other selected supervisors'
    /// copies (waiting at most [`MERGE_WAIT`] a round, up to [`MERGE_ROUNDS`] rounds while the
    /// gap shrinks).
    pub(super) fn commit_history(&mut self, id: TaskId, record: &TaskRecord, closing: bool) {
        let me = self.me();
        let others: Vec<Address> =
            record.participants.supervisors.iter().map(|s| s.worker).filter(|w| *w != me).collect();
        let Some(h) = self.agent.history.get_mut(&id) else { return };
        let mut ask = Vec::new();
        let mut commit = Vec::new();
        let open: Vec<u32> = h.open.keys().copied().collect();
        let last_slot = open.iter().chain(h.committed.keys()).max().copied();
        for slot in open {
            if !closing && !h.slot_closed(record, slot) {
                continue;
            }
            h.merging.entry(slot).or_insert(Merge {
                since: Instant::now(),
                rounds: 0,
                answers: 0,
                had: 0,
            });
            match h.slot_step(slot, others.len(), closing && Some(slot) == last_slot) {
                SlotStep::Wait => {}
                SlotStep::Ask => ask.push(slot),
                SlotStep::Commit => commit.push(slot),
            }
        }
        for slot in ask {
            if let Some(h) = self.agent.history.get_mut(&id) {
                let had = h.open.get(&slot).map_or(0, BTreeMap::len);
                if let Some(m) = h.merging.get_mut(&slot) {
                    m.since = Instant::now();
                    m.rounds = m.rounds.saturating_add(1);
                    m.answers = 0;
                    m.had = had;
                    tracing::debug!(target: "supervisor", task = %id.short(), slot, had, round = m.rounds, "asking the other supervisors for their copies");
                }
            }
            for peer in others.iter().filter_map(peer_id_of) {
                self.request(
                    peer,
                    Request::History { task: id, slot: u64::from(slot) },
                    Pending::History { task: id, slot },
                );
            }
        }
        for slot in commit {
            let Some(h) = self.agent.history.get_mut(&id) else { return };
            let messages: Vec<Arc<IterationMessage>> =
                h.open.remove(&slot).map(|m| m.into_values().collect()).unwrap_or_default();
            h.merging.remove(&slot);
            let ids: Vec<Hash> = messages.iter().map(|m| m.id()).collect();
            h.committed.insert(slot, messages);
            let mut root = history_root(&ids);
            if self.config.attack == Some(Attack::LyingSupervisor) {
                root = Hash::tagged("pouw/attack/lying-supervisor", root.as_bytes());
                tracing::warn!(target: "supervisor", task = %id.short(), slot, root = %root.short(), "deliberately committing a wrong message-history root (attack lying-supervisor)");
            }
            match self.submit_own(TxKind::MessageHistory { task_id: id, slot, root }) {
                Ok(_) => {
                    tracing::info!(target: "supervisor", task = %id.short(), slot, messages = ids.len(), root = %root.short(), "message history committed")
                }
                Err(e) => {
                    tracing::warn!(target: "supervisor", error = %e, "MessageHistory refused")
                }
            }
        }
    }

    /// Supervisor: another supervisor's copy of a slot. Messages signed by a selected miner of
    /// the task and of that slot are merged (they are the miners' own words, whoever relays
    /// them); anything else is dropped and costs the peer a little score.
    pub(crate) fn agent_on_history(
        &mut self,
        peer: pouw_net::PeerId,
        task: TaskId,
        slot: u32,
        messages: Vec<IterationMessage>,
    ) {
        let record = {
            let chain = self.chain.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            task_record(chain.state(), &task)
        };
        let Some(record) = record else { return };
        let Some(h) = self.agent.history.get_mut(&task) else { return };
        let mut bad = 0usize;
        let mut equivocations = Vec::new();
        for msg in messages {
            let ok = msg.body.task_id == task
                && history_slot(msg.body.iteration) == slot
                && record.participants.miners.iter().any(|s| s.worker == msg.body.miner)
                && msg.verify_signature().is_ok();
            if ok {
                let equivocation = h.record(msg);
                if let Some((first, second)) = equivocation {
                    equivocations.push((first, second));
                }
            } else {
                bad = bad.saturating_add(1);
            }
        }
        if let Some(m) = h.merging.get_mut(&slot) {
            m.answers = m.answers.saturating_add(1);
        }
        let has = h.open.get(&slot).map_or(0, BTreeMap::len);
        tracing::debug!(target: "supervisor", task = %task.short(), slot, has, %peer, "history copy merged");
        for pair in equivocations {
            self.note_equivocation(task, Some(pair));
        }
        if bad > 0 {
            tracing::debug!(target: "supervisor", %peer, bad, "history copy with foreign messages");
            self.penalise(peer, "served foreign messages in a history slot", 10);
        }
    }
}
