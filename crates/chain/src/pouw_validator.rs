//! The PoUW proof check a node runs on every block (design/003, SPEC section 4).

use crate::validator::{Ancestors, BlockValidator};
use crate::FillerStates;
use pouw_consensus::pouw::{
    check_peer_senders, check_proof_cheap, filler_epoch, filler_epoch_opening_height, filler_task,
    proof_of, replay_end, Handover, PouwError, ProofData, TaskSchedule,
};
use pouw_consensus::{
    pouw::ml_specs, task_split_of, State, StateKey, StateValue, TaskRecord, TaskStatus,
};
use pouw_ml::Exec;
use pouw_primitives::{
    Address, Block, ChainSpec, Hash, Header, IterationBody, PouwProof, PublicKey, TaskDefinition,
    TaskId,
};
use pouw_storage::{ProofStore, StorageError};
use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::{Arc, Mutex, RwLock},
};

/// Attested blocks remembered for a light import at most (oldest forgotten first).
const MAX_ATTESTED: usize = 1024;

/// Why a block's proof could not be checked or was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProofCheckError {
    /// The proof is invalid (a provable fault of whoever sent the block).
    #[error(transparent)]
    Invalid(#[from] PouwError),
    /// The block trains a task this node cannot resolve on the block's branch.
    #[error("block trains task {task}, which is neither the filler task {filler} of its epoch nor a known client task")]
    UnknownTask {
        /// The header's task.
        task: TaskId,
        /// The filler task of the block's epoch.
        filler: TaskId,
    },
    /// The proof data (start model, residual, batch, peer messages) is not in the local store:
    /// the block cannot be checked yet (not a fault: fetch the data, then import again).
    #[error("proof data of iteration message {0} is not in the proof store")]
    MissingData(Hash),
    /// The proof store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The block trains a client task that is not in its Training phase in the parent state.
    #[error("block trains task {task}, which is {phase}, not training")]
    TaskNotTraining {
        /// The header's task.
        task: TaskId,
        /// The task's phase.
        phase: &'static str,
    },
    /// The block's miner was not selected as a miner of the client task it trains.
    #[error("block miner {miner} was not selected as a miner of task {task}")]
    MinerNotSelected {
        /// The header's task.
        task: TaskId,
        /// The header's miner.
        miner: PublicKey,
    },
    /// The block trains a task other than the filler task, and the validator does not know
    /// the client tasks of the state the block builds on (its parent is not the tip the
    /// validator was last told about, see [`PouwValidator::update_tasks`]). Not a fault: the
    /// block can be checked once its parent is the known tip.
    #[error(
        "block trains task {task}; the client tasks at its parent {parent} are not known here"
    )]
    TaskStateUnavailable {
        /// The header's task.
        task: TaskId,
        /// The block's parent.
        parent: Hash,
    },
    /// A filler-task block's iteration did not start from the chain's filler state at its
    /// parent (design/016): a free start would let a miner make new iterations of one gradient
    /// by changing only the start residual (design/019).
    #[error(
        "block {block} trains the filler task from another start than the chain's filler state \
         at its parent (start model {model}, start residual {residual})"
    )]
    FillerStart {
        /// The block.
        block: Hash,
        /// The start model hash its winning message names.
        model: Hash,
        /// The start residual hash its winning message names.
        residual: Hash,
    },
}

/// The client tasks in Training of one state: the tip's, as last given to
/// [`PouwValidator::update_tasks`].
#[derive(Debug, Default)]
struct TaskSnapshot {
    /// Hash of the block whose post-state this is (`None` until the first update).
    tip: Option<Hash>,
    /// Every task record of that state that is in Training.
    training: BTreeMap<TaskId, TaskRecord>,
    /// The definition of every task registered in that state (a task id is the hash of the
    /// PayForTask that carries the definition, so it names the same definition on every
    /// branch).
    definitions: BTreeMap<TaskId, TaskDefinition>,
    /// The selection seed and selected miners of every task selected in that state (the
    /// selection depends only on the blocks up to the task's selection block, so it is the
    /// same on every branch holding the task), with the handovers of its convictions so far
    /// (design/009; a later conviction only appends to the miners' walks).
    selected: BTreeMap<TaskId, Selected>,
}

/// A selected task's seed, miners and handovers, as the tip state holds them.
#[derive(Debug, Clone)]
struct Selected {
    seed: Hash,
    miners: Vec<Address>,
    handovers: Vec<Handover>,
}

/// Blocks whose proof a quorum of their verifiers attested (light mode, design/006).
#[derive(Debug, Default)]
struct Attested {
    set: HashSet<Hash>,
    order: VecDeque<Hash>,
}

impl ProofCheckError {
    /// True if the block (or whoever sent it) is wrong; false for what only says "not checkable
    /// here now": missing proof data, a failing proof store, client tasks unknown at the parent.
    pub fn is_fault(&self) -> bool {
        !matches!(self, Self::MissingData(_) | Self::Storage(_) | Self::TaskStateUnavailable { .. })
    }
}

/// Verifies the PoUW proof of every block: the cheap checks, then the bit-exact replay of the
/// training iteration from the proof data in the node's [`ProofStore`].
///
/// Tasks: a block at height `h` trains the filler task of the epoch its parent is in (epoch
/// `(h - 1) / filler_epoch_blocks`, opened by the ancestor at `epoch * filler_epoch_blocks`,
/// so a block never depends on its own hash), or a client task: a task in Training in the
/// parent's state, whose definition is read from that state, and only by one of the task's
/// selected miners (design/005). The validator runs before execution and has no access to the
/// chain's state, so the owner tells it the client tasks of the tip after every tip change
/// ([`PouwValidator::update_tasks`]); a client-task block whose parent is not that tip is
/// refused with [`ProofCheckError::TaskStateUnavailable`] (not a fault). The same task rule is
/// also enforced by `apply_block` ([`pouw_consensus::check_block_task`]) against the exact
/// parent state, so a side-branch block can never slip through.
#[derive(Debug)]
pub struct PouwValidator {
    proofs: Arc<ProofStore>,
    exec: Exec,
    tasks: RwLock<TaskSnapshot>,
    /// Light mode: blocks accepted on their verifiers' attestations, without replay.
    attested: Mutex<Attested>,
    /// End states of replayed filler-task blocks (design/016).
    filler: FillerStates,
}

impl PouwValidator {
    /// A validator replaying with `exec` (the result never depends on the thread count).
    pub fn new(proofs: Arc<ProofStore>, exec: Exec) -> Self {
        Self {
            filler: FillerStates::new(proofs.clone(), exec),
            proofs,
            exec,
            tasks: RwLock::new(TaskSnapshot::default()),
            attested: Mutex::new(Attested::default()),
        }
    }

    /// Light mode: `block`'s proof was attested valid by a quorum of its verifiers; its import
    /// skips the proof data and the replay (the cheap proof checks and execution still run).
    pub fn trust_attested(&self, block: Hash) {
        let mut a = self.attested.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if a.set.insert(block) {
            a.order.push_back(block);
        }
        while a.order.len() > MAX_ATTESTED {
            if let Some(old) = a.order.pop_front() {
                a.set.remove(&old);
            }
        }
    }

    /// Whether `block` was marked attested ([`PouwValidator::trust_attested`]).
    pub fn is_attested(&self, block: &Hash) -> bool {
        self.attested.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set.contains(block)
    }

    /// Records the client tasks in Training of `state`, the post-state of block `tip`; blocks
    /// built on `tip` that train one of them can then be checked. Call after every tip change
    /// (cost: one range scan of the task records).
    pub fn update_tasks(&self, tip: Hash, state: &State) {
        let mut training = BTreeMap::new();
        let mut definitions = BTreeMap::new();
        let mut selected = BTreeMap::new();
        for (k, v) in state.range(StateKey::Task(Hash([0; 32]))..=StateKey::Task(Hash([0xff; 32])))
        {
            if let (StateKey::Task(id), StateValue::Task(r)) = (k, v) {
                definitions.insert(*id, r.definition.clone());
                if !r.participants.miners.is_empty() {
                    let miners = r.participants.miners.iter().map(|s| s.worker).collect();
                    let handovers = Handover::of_task(r);
                    selected.insert(*id, Selected { seed: r.seed, miners, handovers });
                }
                if r.status == TaskStatus::Training {
                    training.insert(*id, (**r).clone());
                }
            }
        }
        if let Ok(mut t) = self.tasks.write() {
            *t = TaskSnapshot { tip: Some(tip), training, definitions, selected };
        }
    }

    /// The definition a block trains on a client task with this record in the parent state:
    /// the task must be in Training and `header.miner` one of its selected miners.
    pub fn client_task_definition(
        record: &TaskRecord,
        header: &Header,
    ) -> Result<TaskDefinition, ProofCheckError> {
        let task = header.task_id;
        if record.status != TaskStatus::Training {
            return Err(ProofCheckError::TaskNotTraining { task, phase: record.status.name() });
        }
        if !record.participants.miners.iter().any(|s| s.worker == header.miner) {
            return Err(ProofCheckError::MinerNotSelected { task, miner: header.miner });
        }
        ml_specs(&record.definition)?;
        Ok(record.definition.clone())
    }

    /// Resolves a block's non-filler task from the recorded tip state.
    fn client_task(
        &self,
        header: &Header,
        filler: TaskId,
    ) -> Result<TaskDefinition, ProofCheckError> {
        let task = header.task_id;
        let snapshot = self.tasks.read().map_err(|_| ProofCheckError::TaskStateUnavailable {
            task,
            parent: header.prev_hash,
        })?;
        match snapshot.tip {
            Some(tip) if tip == header.prev_hash => {}
            // A block on another branch: the definition is the same on every branch (the task
            // id commits to it), so the replay can run; whether the task is in Training there
            // and the miner selected is checked by `apply_block` on that branch's own state.
            _ => {
                return match snapshot.definitions.get(&task) {
                    Some(d) => {
                        ml_specs(d)?;
                        Ok(d.clone())
                    }
                    None => Err(ProofCheckError::TaskStateUnavailable {
                        task,
                        parent: header.prev_hash,
                    }),
                }
            }
        }
        match snapshot.training.get(&task) {
            Some(record) => Self::client_task_definition(record, header),
            None => Err(ProofCheckError::UnknownTask { task, filler }),
        }
    }

    /// The filler task a block whose parent is `parent` trains, if its epoch-opening ancestor
    /// is known.
    pub fn filler_task_for(
        spec: &ChainSpec,
        parent: &Header,
        ancestors: &dyn Ancestors,
    ) -> Option<(TaskId, TaskDefinition)> {
        let epoch = filler_epoch(spec, parent.height);
        let opening = filler_epoch_opening_height(spec, epoch)?;
        let hash = ancestors.hash_at(opening)?;
        Some(filler_task(spec, &hash))
    }

    /// The canonical batch bytes of `block`'s winning iteration when the block trains the filler
    /// task of its epoch (`None` for a client-task block or a block without proof): the shipped
    /// digits gathered in the filler schedule's order, chain data only. A filler-task block's
    /// proof data travels without its batch and the receiver rebuilds it here; the rebuilt bytes
    /// still have to hash to the batch hash the winning message names (design/016).
    pub fn filler_batch(
        spec: &ChainSpec,
        parent: &Header,
        ancestors: &dyn Ancestors,
        block: &Block,
    ) -> Result<Option<Vec<u8>>, ProofCheckError> {
        let Some(proof) = proof_of(block)? else { return Ok(None) };
        let Some((id, task)) = Self::filler_task_for(spec, parent, ancestors) else {
            return Ok(None);
        };
        if block.header.task_id != id {
            return Ok(None);
        }
        let shipped = pouw_ml::shipped_mnist_ref();
        let schedule = TaskSchedule::new(&id, &task, &id, shipped, 0, 1)?;
        let (_, _, samples) = schedule.scheduled_samples(proof.winning.body.iteration)?;
        Ok(Some(shipped.gather(&samples).canonical_bytes()))
    }

    /// The filler-start rule (design/016, design/019): a filler-task block's winning
    /// iteration starts from the chain's filler state at its parent, the end state of the
    /// branch's last filler-task block (or the filler task's initial state). Attested blocks
    /// (light mode) are taken on their verifiers' word, as their replay is.
    fn check_filler_start(
        &self,
        block: &Block,
        parent: &Header,
        chain: &crate::Chain,
    ) -> Result<(), ProofCheckError> {
        let Some(proof) = proof_of(block)? else { return Ok(()) };
        let ancestors = chain.branch_ancestors(parent);
        let Some((filler_id, _)) = Self::filler_task_for(chain.spec(), parent, &ancestors) else {
            return Ok(());
        };
        if block.header.task_id != filler_id || self.is_attested(&block.hash()) {
            return Ok(());
        }
        // A node that cannot rebuild the state (a light node that imported the branch's last
        // filler-task block on its verifiers' attestations) skips the rule, as it skipped that
        // block's replay.
        let Some(start) = self.filler.start_for(chain, parent) else { return Ok(()) };
        let w = &proof.winning.body;
        if w.start_model_hash != start.model_hash || w.start_residual_hash != start.residual_hash {
            return Err(ProofCheckError::FillerStart {
                block: block.hash(),
                model: w.start_model_hash,
                residual: w.start_residual_hash,
            });
        }
        Ok(())
    }

    fn check(
        &self,
        block: &Block,
        parent: &Header,
        spec: &ChainSpec,
        ancestors: &dyn Ancestors,
    ) -> Result<(), ProofCheckError> {
        let Some(proof) = proof_of(block)? else {
            return Ok(()); // genesis, which the chain builds itself
        };
        let (task, filler) = match Self::filler_task_for(spec, parent, ancestors) {
            Some((filler_id, task)) if block.header.task_id == filler_id => (task, true),
            Some((filler_id, _)) => (self.client_task(&block.header, filler_id)?, false),
            None => (self.client_task(&block.header, Hash::ZERO)?, false),
        };
        check_proof_cheap(spec, &block.header, proof, &task)?;
        if self.is_attested(&block.hash()) {
            return Ok(());
        }
        let data = self
            .proofs
            .get_proof(&proof.winning.body)?
            .ok_or_else(|| ProofCheckError::MissingData(proof.winning.id()))?;
        if filler {
            let id = block.header.task_id;
            let shipped = pouw_ml::shipped_mnist_ref();
            if !data.sample_proofs.is_empty() {
                return Err(PouwError::BatchProof {
                    iteration: proof.winning.body.iteration,
                    reason: "a filler-task block carries no sample proofs".into(),
                }
                .into());
            }
            TaskSchedule::new(&id, &task, &id, shipped, 0, 1)?
                .check(shipped, &proof.winning.body)?;
        } else {
            self.check_client_iteration(&block.header, proof, &task, &data)?;
        }
        let end = replay_end(spec, &block.header, proof, &task, &data, self.exec)?;
        if filler {
            self.filler.record(block.hash(), block.header.task_id, end);
        }
        Ok(())
    }

    /// The two client-task checks beyond the replay (design/006, design/010): every peer
    /// message is from another selected miner of the task, once; and the iteration trained the
    /// batch the schedule gives the block's miner, proven sample by sample against the task's
    /// segment hashes ([`check_client_batch`]). Chain data and proof data alone decide both,
    /// so every node, holding the task's data or not, reaches the same verdict.
    fn check_client_iteration(
        &self,
        header: &Header,
        proof: &PouwProof,
        task: &TaskDefinition,
        data: &ProofData,
    ) -> Result<(), ProofCheckError> {
        let id = header.task_id;
        let (tip, selected) = match self.tasks.read() {
            Ok(t) => (t.tip, t.selected.get(&id).cloned()),
            Err(_) => (None, None),
        };
        let Some(Selected { seed, miners, handovers }) = selected else {
            // Not selected in the known state: `apply_block` refuses the block on its branch.
            return Ok(());
        };
        check_peer_senders(&header.miner, &data.peers, &miners)?;
        let at_tip = tip == Some(header.prev_hash);
        check_client_batch(
            header,
            task,
            &seed,
            &miners,
            handovers,
            &proof.winning.body,
            data,
            at_tip,
        )
    }
}

/// The batch rule of a client-task block (design/010), from chain data and proof data alone:
/// the winning iteration `body` of `header.miner` trained exactly the samples the task's
/// schedule (split from `seed`, walks of the selected `miners` with the conviction
/// `handovers`) gives it, each proven against the task's segment hashes by the proof data's
/// sample proofs ([`TaskSchedule::check_batch_proofs`]). `at_tip`: the selection and handovers
/// are those of the block's parent state; otherwise an iteration past the known walk is not a
/// fault here ([`ProofCheckError::TaskStateUnavailable`]: a conviction on that branch may have
/// extended the walk).
#[allow(clippy::too_many_arguments)]
pub fn check_client_batch(
    header: &Header,
    task: &TaskDefinition,
    seed: &Hash,
    miners: &[Address],
    handovers: Vec<Handover>,
    body: &IterationBody,
    data: &ProofData,
    at_tip: bool,
) -> Result<(), ProofCheckError> {
    let id = header.task_id;
    let index = miners
        .iter()
        .position(|m| *m == header.miner)
        .ok_or(ProofCheckError::MinerNotSelected { task: id, miner: header.miner })?;
    let split = task_split_of(task, seed).to_ml();
    let schedule = TaskSchedule::of_split(&id, task, &split, index, miners.len())
        .with_walks(task.optimizer.epochs.max(1), handovers);
    match schedule.check_batch_proofs(task, body, &data.batch, &data.sample_proofs) {
        Err(PouwError::Schedule(_)) if !at_tip => {
            Err(ProofCheckError::TaskStateUnavailable { task: id, parent: header.prev_hash })
        }
        r => Ok(r?),
    }
}

impl BlockValidator for PouwValidator {
    fn validate(
        &self,
        block: &Block,
        parent: &Header,
        spec: &ChainSpec,
        ancestors: &dyn Ancestors,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.check(block, parent, spec, ancestors).map_err(|e| Box::new(e) as _)
    }

    fn filler_states(&self) -> Option<&FillerStates> {
        Some(&self.filler)
    }

    fn validate_in_chain(
        &self,
        block: &Block,
        parent: &Header,
        chain: &crate::Chain,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.check_filler_start(block, parent, chain).map_err(|e| Box::new(e) as _)
    }
}

/// A task in `status` with `miners` selected (the other fields fixed), for the tests below.
#[cfg(test)]
fn task_record_for_tests(
    definition: pouw_primitives::TaskDefinition,
    miners: Vec<pouw_consensus::Seat>,
    status: TaskStatus,
) -> TaskRecord {
    use pouw_primitives::{Amount, Keypair};
    TaskRecord {
        client: Keypair::from_label("client").public(),
        definition,
        fee: Amount(100),
        escrow: Amount(100),
        bond: Amount::ZERO,
        created_at: 1,
        created_in: Hash::ZERO,
        seed: Hash::digest(b"seed"),
        training_deadline: 10,
        finalisation_deadline: 20,
        participants: pouw_consensus::Participants { miners, ..Default::default() },
        models: vec![],
        history_committers: vec![],
        accusations: vec![],
        convictions: vec![],
        status,
        settlement: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_consensus::Seat;
    use pouw_primitives::Keypair;

    fn valid_task(_: u16) -> TaskDefinition {
        filler_task(&ChainSpec::devnet(), &Hash::digest(b"opening")).1
    }

    fn record(status: TaskStatus, miner: PublicKey) -> TaskRecord {
        let miners = vec![Seat { worker: miner, ticket: Hash::digest(b"t") }];
        task_record_for_tests(valid_task(1), miners, status)
    }

    fn header(task: TaskId, miner: PublicKey, parent: Hash) -> Header {
        Header {
            version: pouw_primitives::HEADER_VERSION,
            height: 5,
            prev_hash: parent,
            tx_root: Hash::ZERO,
            attestation_root: Hash::ZERO,
            state_root: Hash::ZERO,
            timestamp: pouw_primitives::Timestamp(5),
            target: pouw_primitives::CompactTarget(0x2000_ffff),
            miner,
            task_id: task,
            msg_hash: Hash::ZERO,
            msg_history_root: Hash::ZERO,
            nonce: Hash::ZERO,
        }
    }

    #[test]
    fn client_tasks_resolve_from_the_tip_state_for_selected_miners_only() {
        let dir = tempfile::tempdir().unwrap();
        let proofs = Arc::new(ProofStore::open(dir.path()).unwrap());
        let v = PouwValidator::new(proofs, Exec::new(1));
        let miner = Keypair::from_label("miner").public();
        let other = Keypair::from_label("other").public();
        let (training, done) = (Hash::digest(b"training"), Hash::digest(b"done"));
        let tip = Hash::digest(b"tip");
        let state = State::from_entries([
            (
                StateKey::Task(training),
                StateValue::Task(Box::new(record(TaskStatus::Training, miner))),
            ),
            (
                StateKey::Task(done),
                StateValue::Task(Box::new(record(TaskStatus::Expired { at: 3 }, miner))),
            ),
        ]);
        // Nothing known yet: not a fault, try later.
        let e = v.client_task(&header(training, miner, tip), Hash::ZERO).unwrap_err();
        assert!(matches!(e, ProofCheckError::TaskStateUnavailable { .. }), "{e}");
        v.update_tasks(tip, &state);
        let def = v.client_task(&header(training, miner, tip), Hash::ZERO).unwrap();
        assert_eq!(def, valid_task(1));
        let e = v.client_task(&header(training, other, tip), Hash::ZERO).unwrap_err();
        assert!(matches!(e, ProofCheckError::MinerNotSelected { .. }), "{e}");
        let e = v.client_task(&header(done, miner, tip), Hash::ZERO).unwrap_err();
        assert!(matches!(e, ProofCheckError::UnknownTask { .. }), "{e}");
        // On another branch: the definition (the same everywhere) is enough for the replay;
        // `apply_block` checks the phase and the selection on that branch.
        let def = v.client_task(&header(training, miner, Hash::digest(b"side")), Hash::ZERO);
        assert_eq!(def.unwrap(), valid_task(1));
        let unknown = Hash::digest(b"never registered");
        let e =
            v.client_task(&header(unknown, miner, Hash::digest(b"side")), Hash::ZERO).unwrap_err();
        assert!(matches!(e, ProofCheckError::TaskStateUnavailable { .. }), "{e}");
        // The pure rule on a record.
        let r = record(TaskStatus::Finalising { since: 4 }, miner);
        let e =
            PouwValidator::client_task_definition(&r, &header(training, miner, tip)).unwrap_err();
        assert!(matches!(e, ProofCheckError::TaskNotTraining { phase: "finalising", .. }), "{e}");
    }
}

#[cfg(test)]
mod peer_tests {
    use super::*;
    use pouw_consensus::Seat;
    use pouw_primitives::{IterationBody, IterationMessage, Keypair, Signature};

    fn message(key: &Keypair, task: TaskId, iteration: u64) -> IterationMessage {
        IterationBody::identity(task, key.public(), iteration).sign(key)
    }

    #[test]
    fn client_task_peer_messages_must_come_from_the_other_selected_miners_once() {
        let dir = tempfile::tempdir().unwrap();
        let v = PouwValidator::new(Arc::new(ProofStore::open(dir.path()).unwrap()), Exec::new(1));
        let [miner, peer, outsider] = ["miner", "peer", "outsider"].map(Keypair::from_label);
        let task = Hash::digest(b"task");
        let tip = Hash::digest(b"tip");
        let definition = filler_task(&ChainSpec::devnet(), &Hash::digest(b"opening")).1;
        let seat = |k: &Keypair| Seat { worker: k.public(), ticket: Hash::digest(&k.public().0) };
        let record = super::task_record_for_tests(
            definition.clone(),
            vec![seat(&miner), seat(&peer)],
            TaskStatus::Training,
        );
        v.update_tasks(
            tip,
            &State::from_entries([(StateKey::Task(task), StateValue::Task(Box::new(record)))]),
        );
        let header = Header {
            version: pouw_primitives::HEADER_VERSION,
            height: 5,
            prev_hash: tip,
            tx_root: Hash::ZERO,
            attestation_root: Hash::ZERO,
            state_root: Hash::ZERO,
            timestamp: pouw_primitives::Timestamp(5),
            target: pouw_primitives::CompactTarget(0x2000_ffff),
            miner: miner.public(),
            task_id: task,
            msg_hash: Hash::ZERO,
            msg_history_root: Hash::ZERO,
            nonce: Hash::ZERO,
        };
        let placeholder = IterationMessage {
            body: message(&miner, task, 9).body,
            signature: Signature::default(),
        };
        let proof = PouwProof { winning: placeholder.clone(), committing: placeholder };
        let data = |peers: Vec<IterationMessage>| ProofData {
            start_params: vec![],
            start_residual: vec![],
            start_velocity: vec![],
            batch: vec![],
            peers,
            sample_proofs: vec![],
        };
        let check = |peers| v.check_client_iteration(&header, &proof, &definition, &data(peers));
        // The peers pass; the batch rule comes next (this placeholder has no batch).
        let e = check(vec![message(&peer, task, 1), message(&peer, task, 2)]).unwrap_err();
        assert!(matches!(e, ProofCheckError::Invalid(PouwError::BatchProof { .. })), "{e}");
        let e = check(vec![message(&peer, task, 1), message(&outsider, task, 1)]).unwrap_err();
        assert!(
            matches!(e, ProofCheckError::Invalid(PouwError::PeerNotSelected { index: 1, signer }) if signer == outsider.public()),
            "{e}"
        );
        assert!(e.is_fault());
        assert!(e.to_string().contains("not a selected miner"), "{e}");
        let e = check(vec![message(&miner, task, 1)]).unwrap_err();
        assert!(
            matches!(e, ProofCheckError::Invalid(PouwError::PeerFromBlockMiner { index: 0 })),
            "{e}"
        );
        assert!(e.is_fault());
        let e = check(vec![message(&peer, task, 1), message(&peer, task, 1)]).unwrap_err();
        assert!(matches!(e, ProofCheckError::Invalid(PouwError::DuplicatePeer(_))), "{e}");
        assert!(e.is_fault());
        // A forged signature on a selected miner's name.
        let mut forged = message(&peer, task, 3);
        forged.body.iteration = 4;
        let e = check(vec![forged]).unwrap_err();
        assert!(matches!(e, ProofCheckError::Invalid(PouwError::PeerSignature { .. })), "{e}");
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use pouw_consensus::Seat;
    use pouw_primitives::{IterationBody, IterationMessage, Keypair, Signature};

    /// A client task on the shipped digits with two miners, its validator (which never holds
    /// the task's data), and what the first miner, which holds it, builds for an iteration.
    struct Setup {
        v: PouwValidator,
        _dir: tempfile::TempDir,
        id: TaskId,
        definition: TaskDefinition,
        miner: Keypair,
        tip: Hash,
        schedule: TaskSchedule,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let v = PouwValidator::new(Arc::new(ProofStore::open(dir.path()).unwrap()), Exec::new(1));
        let [miner, peer] = ["miner", "peer"].map(Keypair::from_label);
        let id = Hash::digest(b"client task");
        let mut definition = filler_task(&ChainSpec::devnet(), &Hash::digest(b"opening")).1;
        definition.optimizer.epochs = 2;
        definition.workers.miners = 2;
        let seat = |k: &Keypair| Seat { worker: k.public(), ticket: Hash::digest(&k.public().0) };
        let record = super::task_record_for_tests(
            definition.clone(),
            vec![seat(&miner), seat(&peer)],
            TaskStatus::Training,
        );
        let seed = record.seed;
        let tip = Hash::digest(b"tip");
        v.update_tasks(
            tip,
            &State::from_entries([(StateKey::Task(id), StateValue::Task(Box::new(record)))]),
        );
        let data = pouw_ml::shipped_mnist_ref();
        let schedule = TaskSchedule::new(&id, &definition, &seed, data, 0, 2)
            .unwrap()
            .with_walks(definition.optimizer.epochs, vec![]);
        Setup { v, _dir: dir, id, definition, miner, tip, schedule }
    }

    impl Setup {
        /// The winning body, header, proof and proof data the miner (holding the data) makes
        /// when it claims iteration `claimed` with the real batch of its iteration `trained`.
        fn block(&self, claimed: u64, trained: u64) -> (Header, PouwProof, ProofData) {
            let data = pouw_ml::shipped_mnist_ref();
            let (epoch, _, indices) = self.schedule.scheduled_samples(trained).unwrap();
            let batch = data.gather(&indices);
            let len = pouw_consensus::pouw::segment_len(&self.definition);
            let proofs = data.sample_proofs(len, &indices).unwrap();
            let mut body = IterationBody::identity(self.id, self.miner.public(), claimed);
            body.epoch = epoch;
            body.batch_hash = Hash(batch.hash().0);
            let header = Header {
                version: pouw_primitives::HEADER_VERSION,
                height: 5,
                prev_hash: self.tip,
                tx_root: Hash::ZERO,
                attestation_root: Hash::ZERO,
                state_root: Hash::ZERO,
                timestamp: pouw_primitives::Timestamp(5),
                target: pouw_primitives::CompactTarget(0x2000_ffff),
                miner: self.miner.public(),
                task_id: self.id,
                msg_hash: Hash::ZERO,
                msg_history_root: Hash::ZERO,
                nonce: Hash::ZERO,
            };
            let winning = body.sign(&self.miner);
            let committing =
                IterationMessage { body: winning.body.clone(), signature: Signature::default() };
            let pd = ProofData {
                start_params: vec![],
                start_residual: vec![],
                start_velocity: vec![],
                batch: batch.canonical_bytes(),
                peers: vec![],
                sample_proofs: proofs.into_iter().map(|d| Hash(d.0)).collect(),
            };
            (header, PouwProof { winning, committing }, pd)
        }

        /// The verdict of a node without the data (this validator: chain and proof data).
        fn without_data(&self, b: &(Header, PouwProof, ProofData)) -> Result<(), ProofCheckError> {
            self.v.check_client_iteration(&b.0, &b.1, &self.definition, &b.2)
        }

        /// What a node holding the data can check without any proof: the schedule's batch
        /// from its own copy of the samples.
        fn with_data(&self, b: &(Header, PouwProof, ProofData)) -> Result<(), PouwError> {
            self.schedule.check(pouw_ml::shipped_mnist_ref(), &b.1.winning.body)
        }
    }

    #[test]
    fn an_honest_client_batch_passes_with_and_without_the_data() {
        let s = setup();
        for n in [0, 1, 7, 40] {
            let b = s.block(n, n);
            s.without_data(&b).unwrap();
            s.with_data(&b).unwrap();
            // The proof size stays within its bound: batch * ceil(log2(segment samples)).
            let bound = pouw_consensus::pouw::max_sample_proofs(&s.definition);
            assert!(
                b.2.sample_proofs.len() as u64 <= bound,
                "{} > {bound}",
                b.2.sample_proofs.len()
            );
            assert!(!b.2.sample_proofs.is_empty());
        }
    }

    #[test]
    fn another_real_batch_under_the_wrong_index_is_refused_without_the_data() {
        let s = setup();
        // Iteration 6's real batch, with its valid proofs, claimed as iteration 5: same epoch,
        // another batch is due.
        let b = s.block(5, 6);
        let e = s.without_data(&b).unwrap_err();
        assert!(e.is_fault());
        assert!(
            matches!(
                e,
                ProofCheckError::Invalid(PouwError::SampleProof { iteration: 5, sample: 0, .. })
            ),
            "{e}"
        );
        assert!(e.to_string().contains("wrong Merkle proof for batch sample 0"), "{e}");
        // Same verdict as a node holding the data, which sees another batch is due.
        let d = s.with_data(&b).unwrap_err();
        assert!(matches!(d, PouwError::UnscheduledBatch { iteration: 5, .. }), "{d}");
        // Proofs re-made for the positions iteration 5 schedules do not help: the samples
        // there are other samples.
        let due = s.block(5, 5);
        let mut forged = b;
        forged.2.sample_proofs = due.2.sample_proofs;
        assert!(matches!(
            s.without_data(&forged).unwrap_err(),
            ProofCheckError::Invalid(PouwError::SampleProof { sample: 0, .. })
        ));
        // A batch of the next epoch: refused as well.
        let next_epoch = s.schedule.walk_len().unwrap() / 2 + 5;
        let late = s.block(5, next_epoch);
        assert!(s.without_data(&late).is_err());
        assert!(s.with_data(&late).is_err());
    }

    #[test]
    fn verdicts_are_the_same_on_nodes_with_and_without_the_data() {
        let s = setup();
        let cases = [(3, 3), (3, 4), (4, 3), (10, 2), (2, 10), (12, 12)];
        for (claimed, trained) in cases {
            let b = s.block(claimed, trained);
            assert_eq!(
                s.without_data(&b).is_ok(),
                s.with_data(&b).is_ok(),
                "claimed {claimed}, trained {trained}"
            );
            assert_eq!(s.without_data(&b).is_ok(), claimed == trained);
        }
    }

    #[test]
    fn a_wrong_merkle_proof_is_refused_and_named() {
        let s = setup();
        let b = s.block(9, 9);
        s.without_data(&b).unwrap();
        // One sibling hash of sample 2's proof changed.
        let depth = b.2.sample_proofs.len() / 32;
        let mut bad = b.clone();
        bad.2.sample_proofs[2 * depth].0[0] ^= 1;
        let e = s.without_data(&bad).unwrap_err();
        assert!(e.is_fault());
        let ProofCheckError::Invalid(PouwError::SampleProof { sample, segment, index, .. }) = e
        else {
            panic!("{e}")
        };
        assert!(sample <= 2, "the proofs of samples 0-1 are intact up to the changed hash");
        assert!(e.to_string().contains(&format!("batch sample {sample}")), "{e}");
        assert!(e.to_string().contains(&format!("index {index} of segment {segment}")), "{e}");
        // Missing or extra proof hashes.
        let mut short = b.clone();
        short.2.sample_proofs.pop();
        let e = s.without_data(&short).unwrap_err();
        assert!(matches!(e, ProofCheckError::Invalid(PouwError::BatchProof { .. })), "{e}");
        let mut long = b.clone();
        long.2.sample_proofs.push(Hash::ZERO);
        let e = s.without_data(&long).unwrap_err();
        assert!(e.to_string().contains("left over"), "{e}");
        // The batch bytes not those the message names.
        let mut other = b;
        other.2.batch = s.block(10, 10).2.batch;
        let e = s.without_data(&other).unwrap_err();
        assert!(e.to_string().contains("not the batch the message names"), "{e}");
    }
}
