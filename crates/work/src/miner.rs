//! The miner: one PoUW training iteration per step, mining with every iteration.

use crate::grind::{forge_unbound, grind_bound, thread_cpu_ns, Grinder, Iteration, MiningStats};
use pouw_chain::{Ancestors, Chain, FillerStart, PouwValidator};
use pouw_consensus::{
    payable_attestations,
    pouw::{
        iteration_body, mine_iteration, ml_specs, nonce_budget, Handover, IterationCost, PouwError,
        ProofData, TaskSchedule,
    },
    ConsensusError, StateKey, TemplateRoot,
};
use pouw_ml::{Dataset, Exec, Model, Split, TrainState};
use pouw_primitives::{
    Attestation, Block, ChainSpec, Hash, Header, IterationBody, IterationMessage, Keypair,
    PouwProof, Signature, TaskDefinition, TaskId, Timestamp, Transaction, HEADER_VERSION,
};
use std::{collections::VecDeque, sync::Arc};

/// Why a miner step failed (a local fault: the node's own data or configuration).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MinerError {
    /// The task cannot be trained.
    #[error(transparent)]
    Task(#[from] PouwError),
    /// Building the block template failed.
    #[error("cannot build a block template: {0}")]
    Template(#[from] ConsensusError),
    /// The training step failed.
    #[error("training step failed: {0}")]
    Training(String),
    /// The task's start weights are missing or do not fit its model (design/021).
    #[error("start weights: {0}")]
    StartWeights(String),
    /// The epoch-opening block of the filler epoch is not on the canonical chain.
    #[error("the filler epoch of height {0} has no opening block on the canonical chain")]
    NoFillerTask(u64),
}

/// A zero-nonce block a miner committed to: the header (with `msg_hash` and `nonce` zero)
/// and the transactions it commits to.
#[derive(Debug, Clone)]
pub struct Template {
    /// The header, `msg_hash` and `nonce` zero.
    pub header: Header,
    /// The transactions.
    pub transactions: Vec<Transaction>,
    /// The parent's attestations it carries (design/011).
    pub attestations: Vec<Attestation>,
}

/// A block the miner found, with the proof data every verifier needs to replay it.
#[derive(Debug, Clone)]
pub struct MinedBlock {
    /// The block.
    pub block: Block,
    /// Its proof data (start model, residual, batch, peer messages).
    pub data: ProofData,
}

/// A client task this miner was selected for: what to train and which batches are its own.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The task.
    pub task_id: TaskId,
    /// Its definition.
    pub definition: TaskDefinition,
    /// The dataset; only the training segments need to be filled in.
    pub dataset: Arc<Dataset>,
    /// The split fixed by the chain (`pouw_consensus::task_split_of(...).to_ml()`).
    pub split: Split,
    /// This miner's position among the task's selected miners.
    pub miner_index: usize,
    /// Number of selected miners (batch `b` is trained by miner `b mod miners`).
    pub miners: usize,
    /// The model of the client's start weights, when the definition names them (checked
    /// against their hash and the task's shapes, [`crate::start_model`]); `None` otherwise.
    pub start_model: Option<Arc<Model>>,
    /// The task's training deadline (a height): the walk ends with the model it has once the
    /// tip is [`SUBMIT_BEFORE_DEADLINE`] blocks short of it ([`Miner::finish_early`]).
    pub training_deadline: u64,
}

/// A walk that has not ended when the tip is this many blocks short of its task's training
/// deadline ends there with the model it has: deadlines run before a block's transactions, so
/// the miner's SubmitModel must be in a block below the deadline's height, and this leaves the
/// next block and one more for it to get there.
pub const SUBMIT_BEFORE_DEADLINE: u64 = 3;

/// A client task's final model, once the miner trained every epoch.
#[derive(Debug, Clone)]
pub struct FinishedModel {
    /// The task.
    pub task_id: TaskId,
    /// The trained model.
    pub model: Model,
    /// Its model hash (what SubmitModel carries).
    pub model_hash: Hash,
}

/// What one miner step produced.
#[derive(Debug, Default)]
pub struct StepOutput {
    /// A block found with this iteration.
    pub block: Option<MinedBlock>,
    /// The iteration message (to gossip on the task's topic).
    pub message: Option<IterationMessage>,
    /// Batch loss.
    pub loss: f32,
    /// The final model, when this step ended a client task's training.
    pub finished: Option<FinishedModel>,
    /// Pooled transactions the block template refused (each no longer applies to the tip:
    /// the id and why), left out of the template so the iteration still commits and its
    /// message is still sent; the node drops them from its pool.
    pub refused_txs: Vec<(Hash, String)>,
}

#[derive(Debug, Clone)]
enum DataRef {
    Shipped(&'static Dataset),
    Shared(Arc<Dataset>),
}

impl std::ops::Deref for DataRef {
    type Target = Dataset;
    fn deref(&self) -> &Dataset {
        match self {
            Self::Shipped(d) => d,
            Self::Shared(d) => d,
        }
    }
}

/// A miner's walk through a task's mini-batches: iteration `n` trains the batch the task's
/// schedule gives it (`TaskSchedule::position`: batch `b` of each epoch's order is trained by
/// miner `b mod miners`), epoch after epoch. The miner and whoever replays its stream
/// (supervisors) walk it alike, and the validators check it (design/006).
///
/// A client task's walk ends after its epochs, unless the task's convictions hand another
/// miner's batches over to this one (design/009, [`BatchWalk::set_handovers`]); a filler
/// task's walk never ends.
#[derive(Debug, Clone)]
pub struct BatchWalk {
    schedule: TaskSchedule,
    /// The next iteration's index.
    next: u64,
    /// The order of the epoch last walked.
    order: Option<(u32, Vec<u32>)>,
}

impl BatchWalk {
    fn new(schedule: TaskSchedule) -> Self {
        Self { schedule, next: 0, order: None }
    }

    /// The walk of miner `miner_index` of `miners` through a client task's training batches.
    pub fn for_client(
        task_id: TaskId,
        definition: &TaskDefinition,
        dataset: &Dataset,
        split: &Split,
        miner_index: usize,
        miners: usize,
    ) -> Result<Self, MinerError> {
        let schedule =
            TaskSchedule::with_split(&task_id, definition, split, dataset, miner_index, miners)?
                .with_walks(definition.optimizer.epochs.max(1), Vec::new());
        Ok(Self::new(schedule))
    }

    /// The handovers of the task's convictions so far (`Handover::of_task` of its record):
    /// an heir's walk goes on with the convicted miners' batches after its own.
    pub fn set_handovers(&mut self, handovers: Vec<Handover>) {
        self.schedule.set_handovers(handovers);
    }

    /// Whether the walk has a batch for iteration `iteration` (as the handovers set so far
    /// give it).
    pub fn has(&self, iteration: u64) -> bool {
        self.schedule.position(iteration).is_ok()
    }

    /// How many iterations the walk has (as the handovers set so far give it); `None` for a
    /// filler task's, which never ends.
    pub fn walk_len(&self) -> Option<u64> {
        self.schedule.walk_len()
    }

    /// Whether the walk is over (no batch for the next iteration).
    pub fn ended(&self) -> bool {
        !self.has(self.next)
    }

    /// Continues at iteration `iteration` (a restarted miner resumes after its last winning
    /// iteration).
    pub fn seek(&mut self, iteration: u64) {
        self.next = iteration;
    }

    /// The epoch and the sample indices of the next iteration's batch, or `None` once every
    /// epoch is done.
    pub fn next_batch(&mut self) -> Option<(u32, Vec<u32>)> {
        let (epoch, b) = self.schedule.position(self.next).ok()?;
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.order = Some((epoch, self.schedule.batches().epoch_order(epoch)));
        }
        let order = self.order.as_ref().map(|(_, o)| o.as_slice()).unwrap_or_default();
        let indices = self.schedule.batches().batch(order, b).to_vec();
        self.next = self.next.saturating_add(1);
        Some((epoch, indices))
    }
}

/// Whether every value of `state` (model, residual, velocity) is finite.
fn all_finite(state: &TrainState) -> bool {
    let s = state;
    s.model().params().iter().chain(s.residual()).chain(s.velocity()).all(|v| v.is_finite())
}

/// The training state a task starts from: its initial model, zero residual and optimizer state
/// (the task's update rule). A task whose definition names start weights cannot start here:
/// see [`initial_state_with`].
pub fn initial_state(definition: &TaskDefinition) -> Result<TrainState, MinerError> {
    initial_state_with(definition, None)
}

/// [`initial_state`] for any task: `start` is the model of the client's start weights
/// ([`crate::start_model`], checked against the file's hash, the task's shapes and for
/// finite values) when the definition names them (`Initializer::Weights`, design/021), else
/// `None`. A task with start weights given none, or one without given some, is an error,
/// never a silent fall back to an initialiser.
pub fn initial_state_with(
    definition: &TaskDefinition,
    start: Option<&Model>,
) -> Result<TrainState, MinerError> {
    let (model_spec, optimizer) = ml_specs(definition)?;
    let rule = pouw_consensus::pouw::ml_update_rule(definition);
    let model = match (definition.model.init.start_weights(), start) {
        (None, None) => Model::new(model_spec).map_err(|e| MinerError::Training(e.to_string()))?,
        (Some(_), Some(start)) => {
            start.check_fits(&model_spec).map_err(|e| {
                MinerError::StartWeights(format!("the start weights do not fit the model: {e}"))
            })?;
            Model::from_params(model_spec, start.params().to_vec())
                .map_err(|e| MinerError::StartWeights(e.to_string()))?
        }
        (Some(h), None) => {
            return Err(MinerError::StartWeights(format!(
                "the task starts from the client's start weights {h}, which are not loaded"
            )))
        }
        (None, Some(_)) => {
            return Err(MinerError::StartWeights(
                "start weights given for a task that names none".into(),
            ))
        }
    };
    TrainState::with_rule(model, optimizer, rule).map_err(|e| MinerError::Training(e.to_string()))
}

/// How a hostile miner corrupts the iteration messages it gossips (to test the supervisors'
/// screening; `pouw devnet --attack`). A poisoned message never wins a block: its replay
/// would fail, so such a miner only gossips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poison {
    /// Every entry of the message map with its sign flipped.
    SignFlip,
    /// As many entries as the honest map, at random coordinates with random signs.
    Noise,
    /// The miner's own map of [`STALE_LAG`] iterations earlier, sent again.
    Stale,
    /// Honest maps up to iteration [`LATE_POISON_FROM`], then every sign flipped: a poisoner
    /// that sampled screening must catch mid-stream (a stream's first messages are always
    /// replayed).
    LateSignFlip,
    /// Honest maps until the last [`END_POISON_LAST`] iterations of its walk, then every sign
    /// flipped: a poisoner whose first flag comes too late for the accusations to reach the
    /// chain before training ends (design/009, "Late accusations").
    EndSignFlip,
}

/// The first iteration a [`Poison::LateSignFlip`] miner poisons.
pub const LATE_POISON_FROM: u64 = 100;

/// How many of its walk's last iterations a [`Poison::EndSignFlip`] miner poisons.
pub const END_POISON_LAST: u64 = 24;

/// How many iterations old the map a [`Poison::Stale`] miner re-sends is.
pub const STALE_LAG: usize = 10;

/// The map a poisoned miner sends instead of `honest` (its `past` honest maps, newest last).
fn poison_map(
    poison: Poison,
    honest: &[u32],
    past: &mut VecDeque<Vec<u32>>,
    (iteration, walk_len): (u64, Option<u64>),
    params: usize,
) -> Vec<u32> {
    let near_end = walk_len.is_some_and(|n| iteration.saturating_add(END_POISON_LAST) >= n);
    match poison {
        Poison::LateSignFlip if iteration < LATE_POISON_FROM => honest.to_vec(),
        Poison::EndSignFlip if !near_end => honest.to_vec(),
        Poison::SignFlip | Poison::LateSignFlip | Poison::EndSignFlip => {
            honest.iter().map(|e| e ^ 0x8000_0000).collect()
        }
        Poison::Noise => {
            // splitmix64 seeded by the iteration: reproducible noise.
            let mut x = iteration ^ 0x9e37_79b9_7f4a_7c15;
            let mut next = || {
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            };
            let n = honest.len().max(1);
            let mut entries: Vec<(u32, bool)> = (0..n)
                .map(|_| {
                    let r = next();
                    ((r % params.max(1) as u64) as u32, r >> 63 == 1)
                })
                .collect();
            entries.sort_unstable();
            entries.dedup_by_key(|e| e.0);
            entries.into_iter().map(|(j, pos)| pouw_ml::pack_entry(j, pos)).collect()
        }
        Poison::Stale => {
            past.push_back(honest.to_vec());
            while past.len() > STALE_LAG + 1 {
                past.pop_front();
            }
            if past.len() > 1 {
                past.front().cloned().unwrap_or_default()
            } else {
                honest.to_vec()
            }
        }
    }
}

/// One task being trained.
#[derive(Debug)]
struct Job {
    task_id: TaskId,
    dataset: DataRef,
    walk: BatchWalk,
    state: TrainState,
    epoch: u32,
    iteration: u64,
    /// Iterations this job ran (a job started again after a reorganisation counts from 0).
    trained: u64,
    /// Messages of the last k iterations that committed to a template, oldest first.
    /// The bodies of the recent committing messages, unsigned: a filler task's message is
    /// signed only when a block needs it (nobody else sees it).
    commitments: VecDeque<(u64, IterationBody, Template)>,
    /// The task's definition (what an iteration's nonce budget prices).
    definition: TaskDefinition,
}

impl Job {
    /// Starts the walk at `iteration` (a restarted miner continues after its last winning
    /// iteration): the epoch and batch the task's schedule gives that iteration, so every
    /// iteration trains the batch validators expect of it (design/006).
    fn seek(&mut self, iteration: u64) {
        self.iteration = iteration;
        self.walk.seek(iteration);
    }
}

/// The miner of one node.
#[derive(Debug)]
pub struct Miner {
    spec: ChainSpec,
    key: Keypair,
    exec: Exec,
    job: Option<Job>,
    last: Option<StepMetrics>,
    assignment: Option<Assignment>,
    poison: Option<Poison>,
    /// A poisoning miner's recent honest maps ([`Poison::Stale`]).
    poison_past: VecDeque<Vec<u32>>,
    /// Iteration messages sent poisoned.
    poisoned: u64,
    /// Hold the client task's end: a conviction not yet on chain may hand this miner more
    /// batches (design/009); set by the node.
    hold: bool,
    /// The client task's job, parked at the end of its walk while `hold` is set (the filler
    /// task is mined meanwhile).
    parked: Option<Job>,
    /// The next iteration index of a client task whose job was dropped before its end (the
    /// chain changed the task's selection, [`Miner::assign`]): a new job on it starts there,
    /// so no index is sent twice with other content.
    resume: Option<(TaskId, u64)>,
    /// Attestations of recent blocks the node received ([`Miner::offer_attestations`]); a
    /// template carries those of its parent that the chain pays (design/011).
    attestations: Vec<Attestation>,
    /// A grinding miner's settings (`--attack grind`; hostile, design/010).
    grinder: Option<Grinder>,
    /// Nonce attempts and CPU time of the training steps.
    stats: MiningStats,
    /// Whether the last step trained a client task (else the filler task).
    last_on_client: bool,
    /// The last block template, executed once (see [`Miner::template_for`]).
    template_cache: std::cell::RefCell<Option<TemplateCache>>,
    /// The chain's filler state at the tip last looked up, by tip hash (design/016).
    filler_base: Option<(Hash, Option<Arc<FillerStart>>)>,
}

/// A block template and its state root at any iteration, with what it was built from.
#[derive(Debug)]
struct TemplateCache {
    tip: Hash,
    task_id: TaskId,
    /// The attestations offered when it was built.
    offered: Vec<Attestation>,
    template: Template,
    root: TemplateRoot,
}

/// What the last training iteration measured (for progress displays and training curves).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepMetrics {
    /// Task trained.
    pub task_id: TaskId,
    /// The miner's iteration index.
    pub iteration: u64,
    /// Mini-batch loss.
    pub loss: f32,
    /// Mini-batch accuracy (0..1).
    pub accuracy: f32,
}

struct Canonical<'a>(&'a Chain);

impl Ancestors for Canonical<'_> {
    fn hash_at(&self, height: u64) -> Option<Hash> {
        self.0.hash_at(height)
    }
}

impl Miner {
    /// A miner signing with `key`, training with `exec`.
    pub fn new(spec: ChainSpec, key: Keypair, exec: Exec) -> Self {
        Self {
            spec,
            key,
            exec,
            job: None,
            last: None,
            assignment: None,
            poison: None,
            poison_past: VecDeque::new(),
            poisoned: 0,
            hold: false,
            parked: None,
            resume: None,
            attestations: Vec::new(),
            grinder: None,
            stats: MiningStats::default(),
            last_on_client: false,
            template_cache: std::cell::RefCell::new(None),
            filler_base: None,
        }
    }

    /// Makes this miner grind headers (`--attack grind`, hostile; design/010).
    pub fn set_grinder(&mut self, grinder: Option<Grinder>) {
        self.grinder = grinder;
    }

    /// Nonce attempts and CPU time of the training steps so far.
    pub fn stats(&self) -> MiningStats {
        self.stats
    }

    /// The attestations the node received for recent blocks: every later template carries
    /// those of its parent that [`payable_attestations`] accepts.
    pub fn offer_attestations(&mut self, attestations: Vec<Attestation>) {
        self.attestations = attestations;
    }

    /// Holds the end of the client task (`true`): at the end of its walk the miner parks the
    /// task's training state and mines the filler task, until either the walk goes on (a
    /// conviction handed it more batches, design/009) or the hold is lifted (then the task
    /// finishes). The node sets it while a conviction it knows of has not reached the chain.
    pub fn hold_finish(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// Whether the client task is parked at the end of its walk ([`Miner::hold_finish`]).
    pub fn is_holding(&self) -> bool {
        self.parked.is_some()
    }

    /// Makes this miner hostile: the iteration messages of its client tasks are gossiped
    /// poisoned (defence tests only).
    pub fn set_poison(&mut self, poison: Option<Poison>) {
        self.poison = poison;
    }

    /// Iteration messages this miner sent poisoned.
    pub fn poisoned_messages(&self) -> u64 {
        self.poisoned
    }

    /// Trains `assignment` (a client task) from the next step on, instead of the filler task.
    /// Assigning a task again (the chain reorganised its selection: another split or seat)
    /// starts its training over from the initial state, at the iteration after the last one
    /// run, so every index keeps one message.
    pub fn assign(&mut self, assignment: Assignment) {
        self.drop_job_of(assignment.task_id);
        self.assignment = Some(assignment);
    }

    /// Drops the job (running or parked) of client task `id`, remembering where it stood.
    fn drop_job_of(&mut self, id: TaskId) {
        for slot in [&mut self.job, &mut self.parked] {
            if let Some(job) = slot.take_if(|j| j.task_id == id) {
                let at = self.resume.filter(|(t, _)| *t == id).map_or(0, |(_, n)| n);
                self.resume = Some((id, at.max(job.iteration)));
            }
        }
    }

    /// Ends the walk of client task `id` now, with the model trained so far: the node calls it
    /// when the task's training deadline is near and the walk has not ended (a miner that got
    /// its data late, or a slow one), so its work is submitted and ranked instead of cut off
    /// by the deadline with no model at all. The model is the end state of the last iteration
    /// message this miner sent. `None` when no job of `id` ran an iteration here.
    pub fn finish_early(&mut self, id: TaskId) -> Option<FinishedModel> {
        let slot = [&mut self.job, &mut self.parked]
            .into_iter()
            .find(|slot| slot.as_ref().is_some_and(|j| j.task_id == id && j.trained > 0))?;
        let job = slot.take()?;
        if self.assignment.as_ref().is_some_and(|a| a.task_id == id) {
            self.assignment = None;
        }
        let model = job.state.model().clone();
        let model_hash = Hash(model.hash().0);
        tracing::info!(target: "miner", task = %id.short(), model = %model_hash.short(), iterations = job.trained, "client task's training deadline near: its model so far is final");
        Some(FinishedModel { task_id: id, model, model_hash })
    }

    /// The client task being trained, if any.
    pub fn assignment(&self) -> Option<&Assignment> {
        self.assignment.as_ref()
    }

    /// Stops training the client task (e.g. its training phase ended on chain, or the chain
    /// changed the task's selection and it waits for the data of its new view).
    pub fn unassign(&mut self) {
        if let Some(id) = self.assignment.take().map(|a| a.task_id) {
            self.drop_job_of(id);
        }
        self.parked = None;
    }

    /// The miner's address.
    pub fn address(&self) -> pouw_primitives::PublicKey {
        self.key.public()
    }

    /// Metrics of the last iteration run.
    pub fn last_step(&self) -> Option<StepMetrics> {
        self.last
    }

    /// Iterations run on the current task.
    pub fn iterations(&self) -> u64 {
        self.job.as_ref().map_or(0, |j| j.iteration)
    }

    /// One training iteration on the task of the chain's next block, mining with it. Returns
    /// the block found, if any; the caller stores its proof data, then imports it.
    pub fn step(
        &mut self,
        chain: &Chain,
        transactions: &[Transaction],
        now: Timestamp,
    ) -> Result<(Option<MinedBlock>, f32), MinerError> {
        let out = self.step_with(chain, transactions, now, &[])?;
        Ok((out.block, out.loss))
    }

    /// One training iteration: on the assigned client task if any (applying `peers`, the
    /// other miners' messages received since the last step, in this order), else on the
    /// filler task of the chain's next block; mining with it either way.
    pub fn step_with(
        &mut self,
        chain: &Chain,
        transactions: &[Transaction],
        now: Timestamp,
        peers: &[IterationMessage],
    ) -> Result<StepOutput, MinerError> {
        let before = self.stats;
        let t0 = thread_cpu_ns();
        let out = self.step_inner(chain, transactions, now, peers);
        let spent = thread_cpu_ns().saturating_sub(t0);
        let forging = self.stats.forge_cpu_ns.saturating_sub(before.forge_cpu_ns);
        let cpu = spent.saturating_sub(forging);
        let s = &mut self.stats;
        s.cpu_ns = s.cpu_ns.saturating_add(cpu);
        if !self.last_on_client {
            s.filler_cpu_ns = s.filler_cpu_ns.saturating_add(cpu);
            let attempts = s.attempts.saturating_sub(before.attempts);
            s.filler_attempts = s.filler_attempts.saturating_add(attempts);
        }
        out
    }

    fn step_inner(
        &mut self,
        chain: &Chain,
        transactions: &[Transaction],
        now: Timestamp,
        peers: &[IterationMessage],
    ) -> Result<StepOutput, MinerError> {
        let tip = chain.tip_header().clone();
        let client = self.client_to_train(chain);
        let task_id = match client {
            Some(id) => id,
            None => {
                let (task_id, task) =
                    PouwValidator::filler_task_for(&self.spec, &tip, &Canonical(chain))
                        .ok_or(MinerError::NoFillerTask(tip.height))?;
                if self.job.as_ref().map(|j| j.task_id) != Some(task_id) {
                    let mut job = self.start_job(
                        task_id,
                        task,
                        DataRef::Shipped(pouw_ml::shipped_mnist_ref()),
                        None,
                    )?;
                    job.seek(self.next_unused_iteration(chain, task_id));
                    self.job = Some(job);
                }
                task_id
            }
        };
        if self.job.as_ref().map(|j| j.task_id) != Some(task_id) {
            if self.parked.as_ref().is_some_and(|j| j.task_id == task_id) {
                self.job = self.parked.take();
            } else {
                let a = self.assignment.clone().expect("client task: assigned");
                let mut job = self.start_job(
                    task_id,
                    a.definition.clone(),
                    DataRef::Shared(a.dataset.clone()),
                    Some(&a),
                )?;
                let resume = self.resume.filter(|(t, _)| *t == task_id).map_or(0, |(_, n)| n);
                job.seek(self.next_unused_iteration(chain, task_id).max(resume));
                self.job = Some(job);
            }
        }
        let on_client = client.is_some();
        self.last_on_client = on_client;
        // Too close to the training deadline to go on: the model so far is the final one.
        let deadline_near = self.assignment.as_ref().is_some_and(|a| {
            a.task_id == task_id
                && tip.height.saturating_add(SUBMIT_BEFORE_DEADLINE) >= a.training_deadline
        });
        if on_client && deadline_near {
            if let Some(finished) = self.finish_early(task_id) {
                return Ok(StepOutput { finished: Some(finished), ..StepOutput::default() });
            }
        }
        let peers: &[IterationMessage] = if on_client { peers } else { &[] };
        let k = u64::from(self.spec.commitment_depth);
        // A filler iteration starts from the chain's filler state at the tip (the end state of
        // the tip branch's last filler-task block), so its block's proof data travels without
        // its start state (design/016). Without it here (a light node), the walk goes on.
        let filler_start = if on_client { None } else { self.filler_start(chain, &tip) };
        let job = self.job.as_mut().expect("set above");
        if let Some(start) = filler_start.filter(|s| s.task_id == task_id) {
            job.state.clone_from(&start.state);
        }
        let i = job.iteration;

        // The mini-batch: this miner's batches of the epoch, `stride` apart, then those the
        // task's convictions hand over to it.
        let Some((epoch, indices)) = job.walk.next_batch() else {
            let model = job.state.model().clone();
            let model_hash = Hash(model.hash().0);
            let finished = FinishedModel { task_id, model, model_hash };
            tracing::info!(target: "miner", task = %task_id.short(), model = %model_hash.short(), "client task trained");
            self.job = None;
            self.assignment = None;
            return Ok(StepOutput { finished: Some(finished), ..StepOutput::default() });
        };
        job.epoch = epoch;
        let batch = job.dataset.gather(&indices);

        // The header committed k iterations ago, if it is still on the tip: only then can this
        // iteration mine, and only then is its start state (the proof data) worth copying.
        while job.commitments.front().is_some_and(|(at, _, _)| at.saturating_add(k) < i) {
            job.commitments.pop_front();
        }
        let committed = job
            .commitments
            .front()
            .filter(|(at, _, t)| at.saturating_add(k) == i && t.header.prev_hash == tip.hash())
            .cloned();
        let start = committed.as_ref().map(|_| job.state.clone());
        // Bound to the header it mines (design/010): its zero-nonce hash seeds the order of the
        // first layer's reduction; an iteration that mines nothing runs in the natural order.
        let order_seed = committed
            .as_ref()
            .map_or(Hash::ZERO, |(_, _, t)| Hash(pouw_consensus::pouw::order_seed(&t.header)));
        let maps: Vec<&[u32]> = peers.iter().map(|m| m.body.map.as_slice()).collect();
        let out = job
            .state
            .iterate_bound(self.exec, &batch, &maps, &order_seed.0)
            .map_err(|e| MinerError::Training(e.to_string()))?;
        job.iteration += 1;
        job.trained += 1;
        let loss = out.loss();
        let mut body = iteration_body(task_id, self.key.public(), job.epoch, i, &out);
        body.peer_msgs = peers.iter().map(IterationMessage::id).collect();
        body.order_seed = order_seed;
        if on_client {
            tracing::debug!(target: "miner", task = %task_id.short(), iteration = i, epoch = job.epoch, peers = peers.len(), loss = f32::from_bits(body.loss), accuracy = f32::from_bits(body.accuracy), "client iteration");
        }
        let metrics = StepMetrics {
            task_id,
            iteration: i,
            loss: f32::from_bits(body.loss),
            accuracy: f32::from_bits(body.accuracy),
        };
        self.last = Some(metrics);

        if let (Some(poison), true) = (self.poison, on_client) {
            let params = job.state.model().param_count();
            let honest = std::mem::take(&mut body.map);
            let at = (i, job.walk.walk_len());
            body.map = poison_map(poison, &honest, &mut self.poison_past, at, params);
            if body.map != honest {
                self.poisoned = self.poisoned.saturating_add(1);
            }
            let message = body.sign(&self.key);
            return Ok(StepOutput { message: Some(message), loss, ..StepOutput::default() });
        }

        if let (Some((_, committing, template)), Some(start)) = (committed, start) {
            let target = template.header.target.to_target().unwrap_or_default();
            let winning_id = body.id();
            let cost =
                IterationCost::of(&job.definition, batch.len() as u64, batch.byte_len() as u64);
            let a = nonce_budget(&self.spec, &cost);
            self.stats.attempts = self.stats.attempts.saturating_add(a);
            let found = mine_iteration(
                &template.header,
                winning_id,
                Hash(out.end_model_hash.0),
                // The engine's map hash: `pouw_primitives::map_hash` bit for bit (tested in
                // pouw-consensus), already computed by the iteration.
                Hash(out.map_hash.0),
                Hash(out.end_residual_hash.0),
                a,
                target,
            );
            // A start or end state with a NaN or an infinity (training that diverged) is
            // refused by every verifier (its bits may differ between CPUs): such a block
            // would only get this node banned, so it is not sent.
            let found = found.filter(|_| {
                let finite = loss.is_finite() && all_finite(&start) && all_finite(&job.state);
                if !finite {
                    tracing::warn!(target: "miner", task = %task_id.short(), iteration = i, "training diverged (a value is NaN or infinite): this iteration does not mine");
                }
                finite
            });
            // A grinding miner (`--attack grind`, design/010) tries more headers on a filler
            // iteration, each with its own iteration, and once forges an unbound block.
            let grind = match (&found, &mut self.grinder) {
                (None, Some(g)) if !on_client && all_finite(&start) => {
                    let it = Iteration {
                        budget: a,
                        exec: self.exec,
                        start: &start,
                        batch: &batch,
                        peer_maps: &maps,
                        body: &body,
                        target,
                    };
                    let max_future = self.spec.max_future_ms;
                    let ground = grind_bound(
                        &it,
                        &template.header,
                        g.variants,
                        now,
                        max_future,
                        &mut self.stats.attempts,
                    );
                    let forge_due = g.forge_after.is_some_and(|n| self.stats.blocks_found >= n)
                        && g.started.elapsed() >= g.forge_delay;
                    match ground {
                        Some(gb) => Some((gb.header, gb.body, Some(gb.end))),
                        None if forge_due && !g.forged => {
                            g.forged = true;
                            let t0 = thread_cpu_ns();
                            let forged = forge_unbound(
                                &template.header,
                                &body,
                                &out,
                                a,
                                target,
                                g.forge_budget,
                            );
                            self.stats.forge_cpu_ns = self
                                .stats
                                .forge_cpu_ns
                                .saturating_add(thread_cpu_ns().saturating_sub(t0));
                            if forged.is_some() {
                                self.stats.forged_sent = self.stats.forged_sent.saturating_add(1);
                                tracing::warn!(target: "miner", "attack: sending a block forged by unbound grinding (one iteration, header re-rolled)");
                            }
                            forged.map(|(h, b)| (h, b, None))
                        }
                        None => None,
                    }
                }
                _ => None,
            };
            let forged = matches!(grind, Some((_, _, None)));
            let (found, ground) = match grind {
                Some((header, ground, end)) => {
                    // The commitment is signed after the fact, for the variant that won.
                    let mut c = committing.clone();
                    c.commitment = header.zero_nonce_hash();
                    if let Some(end) = end {
                        job.state = end;
                        self.stats.variant_blocks = self.stats.variant_blocks.saturating_add(1);
                    }
                    let id = ground.id();
                    (Some(header), Some((ground, id, c)))
                }
                None => (found, None),
            };
            if let Some(header) = found {
                let (body, winning_id, committing) =
                    ground.unwrap_or((body, winning_id, committing));
                if !forged {
                    self.stats.blocks_found = self.stats.blocks_found.saturating_add(1);
                }
                // `body.sign` would hash the body again: its id is `winning_id`.
                let signature = self.key.sign(winning_id.as_bytes());
                let winning = IterationMessage { body, signature };
                let message = winning.clone();
                let mut block = Block {
                    header,
                    signature: Signature::default(),
                    proof: Some(PouwProof { winning, committing: committing.sign(&self.key) }),
                    transactions: template.transactions,
                    attestations: template.attestations,
                };
                block.sign(&self.key);
                let data = ProofData {
                    start_params: start.model().params().to_vec(),
                    start_residual: start.residual().to_vec(),
                    start_velocity: start.velocity().to_vec(),
                    batch: batch.canonical_bytes(),
                    peers: peers.to_vec(),
                    // A client task's batch is proven sample by sample against the task's
                    // segment hashes (design/010); the dataset holds exactly its 10 segments.
                    sample_proofs: if on_client {
                        let len = job.dataset.len() / pouw_primitives::DATASET_SEGMENTS;
                        let proofs = job.dataset.sample_proofs(len, &indices).unwrap_or_default();
                        proofs.into_iter().map(|d| Hash(d.0)).collect()
                    } else {
                        Vec::new()
                    },
                };
                job.commitments.clear();
                return Ok(StepOutput {
                    block: Some(MinedBlock { block, data }),
                    message: Some(message),
                    loss,
                    ..StepOutput::default()
                });
            }
        }

        // No block: this iteration commits to the header to be mined at i + k. A transaction
        // the template refuses is left out (and reported), so the iteration's message is sent
        // all the same: a client task's stream has no gap its supervisors cannot replay over.
        let mut refused_txs = Vec::new();
        let mut kept: Vec<Transaction> = transactions.to_vec();
        let built = loop {
            match self.template_for(chain, &tip, task_id, i + k, &kept, now) {
                Err(MinerError::Template(ConsensusError::TxInBlock { id, source, .. }))
                    if kept.iter().any(|t| t.hash() == id) =>
                {
                    kept.retain(|t| t.hash() != id);
                    refused_txs.push((id, source.to_string()));
                }
                other => break other,
            }
        };
        let template = match built {
            Ok(t) => t,
            Err(MinerError::Template(ConsensusError::Pouw(PouwError::IterationReused {
                iteration,
                ..
            }))) => {
                // One of our own blocks with a later iteration reached the chain after this
                // job picked its first iteration (a branch of ours became canonical): go on
                // past every iteration that won, this iteration's message unsent.
                let next = self.next_unused_iteration(chain, task_id);
                tracing::warn!(target: "miner", task = %task_id.short(), iteration, next, "iteration already won a block: skipping ahead");
                let job = self.job.as_mut().expect("set above");
                job.seek(next.max(job.iteration));
                job.commitments.clear();
                return Ok(StepOutput { loss, ..StepOutput::default() });
            }
            Err(e) => return Err(e),
        };
        body.commitment = template.header.zero_nonce_hash();
        // A client task's message is gossiped, so signed now; a filler task's is signed only if
        // a block is found with it.
        let msg = on_client.then(|| body.clone().sign(&self.key));
        let job = self.job.as_mut().expect("set above");
        job.commitments.push_back((i, body, template));
        Ok(StepOutput { block: None, message: msg, loss, finished: None, refused_txs })
    }

    /// The chain's filler state at `tip` ([`pouw_chain::FillerStates::start_for`]), looked up
    /// once per tip.
    fn filler_start(&mut self, chain: &Chain, tip: &Header) -> Option<Arc<FillerStart>> {
        let hash = tip.hash();
        match &self.filler_base {
            Some((at, start)) if *at == hash => start.clone(),
            _ => {
                let start = chain.filler_states().and_then(|f| f.start_for(chain, tip));
                self.filler_base = Some((hash, start.clone()));
                start
            }
        }
    }

    /// The client task to train this step: the assigned one, unless its walk is over while the
    /// node holds its end (then its job is parked and the filler task mined meanwhile). The
    /// task's convictions are read from the chain only once the walk is over: a handover only
    /// ever appends to a walk (design/009).
    fn client_to_train(&mut self, chain: &Chain) -> Option<TaskId> {
        let id = self.assignment.as_ref()?.task_id;
        let job = [self.job.as_mut(), self.parked.as_mut()]
            .into_iter()
            .flatten()
            .find(|j| j.task_id == id);
        let Some(job) = job else { return Some(id) };
        if job.walk.ended() {
            if let Some(record) = pouw_consensus::task_record(chain.state(), &id) {
                job.walk.set_handovers(Handover::of_task(&record));
            }
        }
        if !(self.hold && job.walk.ended()) {
            return Some(id);
        }
        if self.job.as_ref().is_some_and(|j| j.task_id == id) {
            tracing::info!(target: "miner", "client task walk done; holding it for a conviction to reach the chain, mining the filler task meanwhile");
            self.parked = self.job.take();
        }
        None
    }

    /// The first iteration index above every iteration of this miner that already won a block
    /// on `task_id` (a restarted miner must not reuse an index: each wins at most once).
    fn next_unused_iteration(&self, chain: &Chain, task_id: TaskId) -> u64 {
        let miner = self.key.public();
        let from = StateKey::UsedIteration { task: task_id, miner, iteration: 0 };
        let to = StateKey::UsedIteration { task: task_id, miner, iteration: u64::MAX };
        chain
            .state()
            .range(from..=to)
            .filter_map(|(k, _)| match k {
                StateKey::UsedIteration { iteration, .. } => iteration.checked_add(1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    fn start_job(
        &self,
        task_id: TaskId,
        task: TaskDefinition,
        dataset: DataRef,
        client: Option<&Assignment>,
    ) -> Result<Job, MinerError> {
        let state = initial_state_with(&task, client.and_then(|a| a.start_model.as_deref()))?;
        // The schedule the validators check (design/006): the filler task splits by its own id,
        // a client task by its selection seed.
        let walk = match client {
            Some(a) => {
                BatchWalk::for_client(task_id, &task, &dataset, &a.split, a.miner_index, a.miners)?
            }
            None => BatchWalk::new(TaskSchedule::new(&task_id, &task, &task_id, &dataset, 0, 1)?),
        };
        match client {
            Some(a) => {
                tracing::info!(target: "miner", task = %task_id.short(), miner_index = a.miner_index, miners = a.miners, "training a client task")
            }
            None => {
                tracing::info!(target: "miner", task = %task_id.short(), "training a new filler task")
            }
        }
        Ok(Job {
            task_id,
            dataset,
            walk,
            state,
            epoch: 0,
            iteration: 0,
            trained: 0,
            commitments: VecDeque::new(),
            definition: task,
        })
    }

    /// The zero-nonce template for the next block on `tip`, to be mined at `iteration` (its
    /// state root covers that iteration's marker, so there is one template per iteration).
    fn template_for(
        &self,
        chain: &Chain,
        tip: &Header,
        task_id: TaskId,
        iteration: u64,
        transactions: &[Transaction],
        now: Timestamp,
    ) -> Result<Template, MinerError> {
        let tip_hash = tip.hash();
        let timestamp = Timestamp(now.0.max(chain.min_child_timestamp(tip).0));
        let marker = StateKey::UsedIteration { task: task_id, miner: self.key.public(), iteration };
        // The same tip, task, transactions and attestations as the last template: only the
        // iteration's marker and the timestamp differ (the state root does not cover the
        // timestamp), so the block is not executed again (`TemplateRoot`).
        if let Some(cached) = self.template_cache.borrow().as_ref() {
            if cached.tip == tip_hash
                && cached.task_id == task_id
                && cached.template.transactions == transactions
                && cached.offered == self.attestations
            {
                let root = cached.root.root_with(chain.state(), &marker).ok_or_else(|| {
                    let miner = self.key.public();
                    let reused = PouwError::IterationReused { task: task_id, miner, iteration };
                    MinerError::Template(ConsensusError::Pouw(reused))
                })?;
                let mut template = cached.template.clone();
                template.header.timestamp = timestamp;
                template.header.state_root = root;
                return Ok(template);
            }
        }
        let attestations = payable_attestations(chain.state(), &self.spec, tip, &self.attestations);
        let mut header = Header {
            version: HEADER_VERSION,
            height: tip.height.saturating_add(1),
            prev_hash: tip_hash,
            tx_root: Block::compute_tx_root(transactions),
            attestation_root: Block::compute_attestation_root(&attestations),
            state_root: Hash::ZERO,
            timestamp,
            target: chain.expected_target(tip)?,
            miner: self.key.public(),
            task_id,
            msg_hash: Hash::ZERO,
            msg_history_root: Hash::ZERO,
            nonce: Hash::ZERO,
        };
        // The state root covers the (task, miner, iteration) marker of the block, so execute it
        // with a proof carrying that identity (the only proof fields the transition reads).
        let identity = IterationBody::identity(task_id, self.key.public(), iteration);
        let placeholder = IterationMessage { body: identity, signature: Signature::default() };
        let block = Block {
            header: header.clone(),
            signature: Signature::default(),
            proof: Some(PouwProof { winning: placeholder.clone(), committing: placeholder }),
            transactions: transactions.to_vec(),
            attestations,
        };
        let root = TemplateRoot::new(chain.state(), &block, &self.spec)?;
        header.state_root = root.root_with(chain.state(), &marker).unwrap_or_default();
        let template =
            Template { header, transactions: block.transactions, attestations: block.attestations };
        *self.template_cache.borrow_mut() = Some(TemplateCache {
            tip: tip_hash,
            task_id,
            offered: self.attestations.clone(),
            template: template.clone(),
            root,
        });
        Ok(template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_consensus::{pouw::filler_task, task_split_of};

    #[test]
    fn a_task_assigned_again_starts_over_past_the_iterations_already_run() {
        // A reorganisation changed the task's selection: the node assigns it again with the
        // new split and seat; the old job must go, and the new one must not reuse an index.
        let spec = ChainSpec::devnet();
        let (id, definition) = filler_task(&spec, &Hash::digest(b"reassigned"));
        let dataset = Arc::new(pouw_ml::shipped_mnist());
        let assignment = |seed: &[u8], miner_index| Assignment {
            task_id: id,
            definition: definition.clone(),
            dataset: dataset.clone(),
            split: task_split_of(&definition, &Hash::digest(seed)).to_ml(),
            miner_index,
            miners: 3,
            start_model: None,
            training_deadline: u64::MAX,
        };
        let mut miner = Miner::new(spec, ChainSpec::devnet_key(1), Exec::SINGLE);
        let first = assignment(b"branch a", 1);
        let mut job = miner
            .start_job(id, definition.clone(), DataRef::Shared(dataset.clone()), Some(&first))
            .unwrap();
        job.seek(7);
        miner.assign(first);
        miner.job = Some(job);
        miner.assign(assignment(b"branch b", 2));
        assert!(miner.job.is_none(), "the old view's job is dropped");
        assert_eq!(miner.resume, Some((id, 7)));
        assert_eq!(miner.assignment().map(|a| a.miner_index), Some(2));
        // Unassigning keeps the furthest index reached.
        miner.unassign();
        assert_eq!(miner.resume, Some((id, 7)));
    }

    #[test]
    fn a_late_sign_flipper_sends_honest_maps_until_its_start_then_flips_every_sign() {
        let honest = vec![3u32, 0x8000_0007, 42];
        let mut past = VecDeque::new();
        let map = |it, past: &mut VecDeque<Vec<u32>>| {
            poison_map(Poison::LateSignFlip, &honest, past, (it, Some(1_000)), 100)
        };
        assert_eq!(map(0, &mut past), honest);
        assert_eq!(map(LATE_POISON_FROM - 1, &mut past), honest);
        let flipped = map(LATE_POISON_FROM, &mut past);
        assert_eq!(flipped, vec![0x8000_0003, 7, 0x8000_002a]);
        assert_eq!(flipped, poison_map(Poison::SignFlip, &honest, &mut past, (0, None), 100));
        // The end poisoner: honest until the last END_POISON_LAST iterations of its walk.
        let end = |it, len, past: &mut VecDeque<Vec<u32>>| {
            poison_map(Poison::EndSignFlip, &honest, past, (it, len), 100)
        };
        let len = 500;
        assert_eq!(end(0, Some(len), &mut past), honest);
        assert_eq!(end(len - END_POISON_LAST - 1, Some(len), &mut past), honest);
        assert_eq!(end(len - END_POISON_LAST, Some(len), &mut past), flipped);
        assert_eq!(end(len - 1, Some(len), &mut past), flipped);
        assert_eq!(end(len - 1, None, &mut past), honest, "no walk length: nothing known to end");
    }

    /// A miner assigned task `label` (one of `miners`, seat 0, training deadline `deadline`)
    /// with its job started and not stepped yet.
    fn assigned(label: &[u8], miners: usize, deadline: u64) -> (Miner, TaskId, Job) {
        let spec = ChainSpec::devnet();
        let (id, definition) = filler_task(&spec, &Hash::digest(label));
        let dataset = Arc::new(pouw_ml::shipped_mnist());
        let assignment = Assignment {
            task_id: id,
            definition: definition.clone(),
            dataset: dataset.clone(),
            split: task_split_of(&definition, &Hash::digest(b"seed")).to_ml(),
            miner_index: 0,
            miners,
            start_model: None,
            training_deadline: deadline,
        };
        let mut miner = Miner::new(spec, ChainSpec::devnet_key(1), Exec::SINGLE);
        let job =
            miner.start_job(id, definition, DataRef::Shared(dataset), Some(&assignment)).unwrap();
        miner.assign(assignment);
        (miner, id, job)
    }

    /// Trains the job's next batch, as a step does; the end model's hash.
    fn train_one(job: &mut Job) -> Hash {
        let (_, indices) = job.walk.next_batch().unwrap();
        let batch = job.dataset.gather(&indices);
        job.state.iterate_bound(Exec::SINGLE, &batch, &[], &[0; 32]).unwrap();
        job.trained += 1;
        Hash(job.state.model().hash().0)
    }

    #[test]
    fn a_walk_ended_early_gives_the_model_of_its_last_iteration_and_only_once_one_ran() {
        let (mut miner, id, job) = assigned(b"deadline near", 3, u64::MAX);
        let initial = Hash(job.state.model().hash().0);
        miner.job = Some(job);
        assert!(miner.finish_early(id).is_none(), "no iteration ran: nothing to submit");
        assert!(miner.assignment().is_some(), "and the walk goes on");
        // One iteration trained: its end model is the final one.
        let mut job = miner.job.take().unwrap();
        let trained = train_one(&mut job);
        assert_ne!(trained, initial);
        miner.job = Some(job);
        let other: TaskId = Hash::digest(b"another task");
        assert!(miner.finish_early(other).is_none(), "only the task asked for");
        let f = miner.finish_early(id).expect("a model");
        assert_eq!((f.task_id, f.model_hash), (id, trained));
        assert!(miner.job.is_none() && miner.assignment().is_none(), "the walk is over");
        assert!(miner.finish_early(id).is_none(), "once");
    }

    #[test]
    fn a_step_at_the_training_deadline_ends_the_walk_with_the_model_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::open(dir.path(), ChainSpec::devnet()).unwrap();
        // The tip (genesis, height 0) is within SUBMIT_BEFORE_DEADLINE blocks of height 2.
        let (mut miner, id, mut job) = assigned(b"short deadline", 1, 2);
        let trained = train_one(&mut job);
        miner.job = Some(job);
        let out = miner.step_with(&chain, &[], Timestamp::now(), &[]).unwrap();
        let f = out.finished.expect("the walk ended at the deadline");
        assert_eq!((f.task_id, f.model_hash), (id, trained));
        assert!(out.block.is_none() && miner.assignment().is_none());
    }
}
