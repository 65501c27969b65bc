//! The replay of one message against the miner's shadow: the schedule's batch from the claimed
//! start, then the map, loss and accuracy bit for bit (what any node can check), with the
//! figures quoted in a flag.

use super::{figures::cosine, figures::signs, Finding, TaskScreen};
use pouw_ml::Exec;
use pouw_primitives::{map_hash, Address, AlertKind, Hash, IterationMessage};
use std::time::Instant;

impl TaskScreen {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn replay(
        &mut self,
        miner: &Address,
        msg: &IterationMessage,
        peer_maps: &[Vec<u32>],
        foreign: Option<Address>,
        (direction, magnitude): (Option<f64>, Option<f64>),
        exec: Exec,
        now: Instant,
    ) -> Option<Finding> {
        let b = &msg.body;
        let it = b.iteration;
        let stats = format!(
            "direction vs the other miners {}, magnitude {}",
            direction.map_or("n/a".into(), |d| format!("{d:.2}")),
            magnitude.map_or("n/a".into(), |m| format!("{m:.2}")),
        );
        let flag =
            |kind, detail: String| Some(Finding { miner: *miner, message: msg.id(), kind, detail });
        if let Some(other) = foreign {
            return flag(
                AlertKind::InvalidIteration,
                format!(
                    "iteration {it} applies a message of {} (not another miner of the task)",
                    other.short()
                ),
            );
        }
        let (dataset, _) = self.dataset.as_ref()?;
        let shadow = self.shadows.get_mut(miner)?;
        if shadow.broken {
            // Not replayable: nothing any node could check, so nothing is flagged. The
            // direction against the others is no evidence (an honest stream measured -0.50
            // against an aggregate that held a sign-flipping miner's maps).
            if let Some(log) = self.logs.get_mut(miner) {
                log.view.unverifiable += 1;
            }
            return None;
        }
        // Leaving the schedule is suspect, not flagged: the miner may hold another view of
        // the task's selection (module docs).
        let scheduled =
            shadow.walk.next_batch().map(|(epoch, indices)| (epoch, dataset.gather(&indices)));
        let (m, r) = shadow.state.start_hashes();
        let left = match &scheduled {
            None => Some(format!("iteration {it} is beyond the task's batch schedule")),
            Some(_) if Hash(m.0) != b.start_model_hash || Hash(r.0) != b.start_residual_hash => {
                Some(format!(
                    "iteration {it} does not start where the miner's previous iteration ended"
                ))
            }
            Some((epoch, batch)) if Hash(batch.hash().0) != b.batch_hash || *epoch != b.epoch => {
                Some(format!(
                    "iteration {it} trains a batch the schedule does not assign (epoch {} vs {epoch})",
                    b.epoch
                ))
            }
            Some(_) => None,
        };
        let batch = match (left, scheduled) {
            (None, Some((_, batch))) => batch,
            (left, _) => {
                // The walk stays where the miner's last replayed iteration left it.
                shadow.walk.seek(shadow.next);
                if shadow.suspect.is_none() {
                    let detail = left.unwrap_or_default();
                    let finding = Finding {
                        miner: *miner,
                        message: msg.id(),
                        kind: AlertKind::InvalidIteration,
                        detail,
                    };
                    shadow.suspect = Some((finding, now));
                }
                if let Some(log) = self.logs.get_mut(miner) {
                    log.view.unverifiable += 1;
                }
                return None;
            }
        };
        let maps: Vec<&[u32]> = peer_maps.iter().map(Vec::as_slice).collect();
        // With the order seed the message names (the header it mined, or zero): any seed is
        // honest training; only a block's winning message must name its header's.
        let out = match shadow.state.iterate_bound(exec, &batch, &maps, &b.order_seed.0) {
            Ok(out) => out,
            Err(e) => {
                shadow.broken = true;
                return flag(
                    AlertKind::InvalidIteration,
                    format!("iteration {it} cannot be replayed: {e}"),
                );
            }
        };
        shadow.next = it.saturating_add(1);
        // Training that diverged (a NaN or an infinity, which shows in the loss) is no
        // fault, but its bits (NaN payloads) may differ between CPUs: the stream is no longer
        // replayed bit for bit.
        if !f32::from_bits(out.loss_bits).is_finite() {
            shadow.broken = true;
            if let Some(log) = self.logs.get_mut(miner) {
                log.view.unverifiable += 1;
            }
            return None;
        }
        let replayed = map_hash(&out.map);
        let log = self.logs.get_mut(miner)?;
        log.view.replayed += 1;
        let claimed = map_hash(&b.map);
        // An earlier iteration's (a stream replayed again holds its own maps too).
        let stale = log.maps_seen.get(&claimed).copied().filter(|old| *old < it);
        log.maps_seen.insert(replayed, it);
        if b.map != out.map {
            let agreement = cosine(&signs(&b.map), &signs(&out.map)).unwrap_or(0.0);
            let sizes =
                format!("replay emits {} entries, the message {}", out.map.len(), b.map.len());
            return match stale {
                Some(old) => flag(
                    AlertKind::StaleUpdate,
                    format!("iteration {it} re-sends the map of iteration {old}; {sizes}; {stats}"),
                ),
                None => flag(
                    AlertKind::GradientPoisoning,
                    format!("iteration {it}: map differs from its replay (agreement {agreement:.2}); {sizes}; {stats}"),
                ),
            };
        }
        if b.loss != out.loss_bits || b.accuracy != out.accuracy_bits {
            return flag(
                AlertKind::InvalidIteration,
                format!("iteration {it}: loss or accuracy differ from the replay"),
            );
        }
        None
    }
}
