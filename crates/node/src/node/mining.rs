//! The node's miner step: a block template for the tip from the pool, the peer messages a
//! client task's iteration applies (bounded staleness, design/012), one PoUW iteration, and
//! what it produced (a block imported and gossiped, an iteration message, a final model).

use super::*;

impl Node {
    pub(super) fn mine_step(&mut self) -> Result<(), NodeError> {
        let Some(miner) = self.miner.as_mut() else { return Ok(()) };
        let max_txs = self.config.spec.max_block_txs as usize;
        let max_bytes = usize::try_from(self.config.spec.max_block_bytes / 2).unwrap_or(usize::MAX);
        let txs = self.mempool.select(max_txs, max_bytes);
        let assigned = miner.assignment().map(|a| a.task_id);
        // Near the training deadline a miner trains without waiting for its peers: a model
        // trained by the deadline is worth more than one more peer message in it (design/012).
        // Read only when the miner would wait (not on every step).
        let deadline_near = |miner: &Miner, chain: &RwLock<Chain>| {
            miner.assignment().is_some_and(|a| {
                let height = read(chain).height();
                height.saturating_add(2 * pouw_work::SUBMIT_BEFORE_DEADLINE) >= a.training_deadline
            })
        };
        let peers = match assigned {
            Some(task) if !miner.is_holding() => {
                let next = self.agent.own_next(&task);
                if !self.agent.peers_caught_up(&task, next, Instant::now())
                    && !deadline_near(miner, &self.chain)
                {
                    // Bounded staleness (design/012): not this turn; the loop waits for events
                    // (the peers' messages) instead of mining, and never sleeps.
                    self.mining_retry_at = Some(Instant::now() + STALENESS_POLL);
                    return Ok(());
                }
                self.agent.take_inbox(&task)
            }
            _ => Vec::new(),
        };
        let out = {
            let chain = read(&self.chain);
            // The tip's attestations this node heard: the template pays them (design/011).
            miner.offer_attestations(self.verification.attestations_of(&chain.tip()));
            miner.step_with(&chain, &txs, Timestamp::now(), &peers)
        };
        let out = match out {
            Ok(out) => out,
            Err(MinerError::Template(ConsensusError::TxInBlock { id, source, .. })) => {
                // A pooled transaction no longer applies (e.g. a verdict on a task that closed
                // meanwhile): drop it, train on.
                tracing::debug!(target: "node", tx = %id.short(), error = %source, "dropping a transaction that no longer applies");
                self.mempool.remove(&id);
                // The iteration ran but its message is not sent: the miner's own start states
                // follow it all the same (design/020).
                if let Some(task) = assigned {
                    self.agent_own_lost_step(task, &peers);
                }
                let dropped = self.own_txs.invalid(&id, source.to_string(), Instant::now());
                if let Some(event) = dropped {
                    self.own_tx_event(event);
                }
                return Ok(());
            }
            Err(e) => {
                // One task that cannot be mined (its miner convicted, the task expired or
                // moved on, a template refused) never stops the node: a client task is
                // dropped and the filler task mined instead; a failed filler step is retried.
                match assigned {
                    Some(task) => self.agent_drop_task(task, &e),
                    None => {
                        tracing::warn!(target: "node", error = %e, "mining step failed: retrying");
                        self.mining_retry_at = Some(Instant::now() + Duration::from_millis(200));
                    }
                }
                return Ok(());
            }
        };
        // Transactions the template refused (they no longer apply): left out of it by the
        // miner, so the iteration's message went out all the same; dropped here.
        for (id, reason) in &out.refused_txs {
            tracing::debug!(target: "node", tx = %id.short(), error = %reason, "dropping a transaction that no longer applies");
            self.mempool.remove(id);
            if let Some(event) = self.own_txs.invalid(id, reason.clone(), Instant::now()) {
                self.own_tx_event(event);
            }
        }
        let (found, loss) = (out.block, out.loss);
        if let Some(finished) = out.finished {
            self.agent_on_finished(finished);
            return Ok(());
        }
        if let Some(m) = self.miner.as_ref() {
            self.agent.security.poisoned_sent.store(m.poisoned_messages(), Ordering::Relaxed);
            self.agent.security.set_mining(m.stats());
        }
        if let (Some(task), Some(msg)) = (assigned, out.message) {
            self.agent.note_own_iteration(task, msg.body.iteration);
            self.agent_own_message(task, &msg, &peers);
            if let Err(e) = self.net.publish(GossipMessage::MlIteration(msg)) {
                tracing::debug!(target: "node", error = %e, "iteration message not gossiped");
            }
        }
        let Some(miner) = self.miner.as_mut() else { return Ok(()) };
        let iterations = self.stats.iterations.fetch_add(1, Ordering::Relaxed);
        if iterations % crate::stats::TRAINING_EVERY == 0 {
            if let Some(m) = miner.last_step() {
                self.stats.record_training(TrainingPoint {
                    seq: 0,
                    miner: miner.address(),
                    task_id: m.task_id,
                    iteration: m.iteration,
                    loss: m.loss,
                    accuracy: m.accuracy,
                    time: Timestamp::now(),
                });
            }
        }
        let Some(mined) = found else { return Ok(()) };
        let block = mined.block;
        let Some(proof) = block.proof.as_ref() else { return Ok(()) };
        self.proofs.put_proof(&proof.winning.body, &mined.data)?;
        let hash = block.hash();
        let iteration = proof.winning.body.iteration;
        let started = Instant::now();
        // Imported here, not on the verification thread: the next mining step builds on it.
        let result = self.import_into_chain(block.clone())?;
        match result {
            Ok(outcome @ (ImportOutcome::Extended | ImportOutcome::Reorged { .. })) => {
                self.mined = self.mined.saturating_add(1);
                NodeStats::add(&self.stats.blocks_mined, 1);
                let fees =
                    block.transactions.iter().fold(0u64, |a, t| a.saturating_add(t.body.fee.0));
                NodeStats::add(
                    &self.stats.rewards_earned,
                    self.config.spec.block_reward.0.saturating_add(fees),
                );
                let height = block.header.height;
                self.after_import(hash, height, started, true);
                tracing::info!(
                    target: "node",
                    height,
                    hash = %hash.short(),
                    iteration,
                    loss,
                    ?outcome,
                    "block mined"
                );
                self.request_verification(&block);
                if let Err(e) = self.net.publish(GossipMessage::NewBlock(block)) {
                    tracing::warn!(target: "node", error = %e, "could not gossip our block");
                }
            }
            Ok(outcome) => {
                tracing::debug!(target: "node", hash = %hash.short(), ?outcome, "mined block not on the tip")
            }
            Err(e) if self.config.attack == Some(crate::Attack::Grind) => {
                // The grinding attacker sends its forged block although its own node refused
                // it: the honest nodes must refuse it too (design/010).
                tracing::warn!(target: "node", hash = %hash.short(), error = %e, "attack: sending a block our own node refused");
                self.agent.security.note_forged(hash);
                self.forged.push(block.clone());
                if let Err(e) = self.net.publish(GossipMessage::NewBlock(block)) {
                    tracing::warn!(target: "node", error = %e, "could not gossip the forged block");
                }
            }
            Err(e) => tracing::warn!(target: "node", error = %e, "our own block was refused"),
        }
        Ok(())
    }
}
