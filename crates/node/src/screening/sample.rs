//! Sampled screening (design/020): which of a miner's iteration messages a supervisor replays,
//! and the start states it fetches from the miner to replay one it did not replay up to.
//!
//! A supervisor starts a run of replays at a message when a draw keyed by its own secret and
//! the message id falls below its replay fraction over the run length ([`RUN`]): it replays
//! that message from the start state the miner serves, and the next `RUN - 1` messages of the
//! miner's stream from its own replay's end state (no state to fetch), so about the replay
//! fraction of the messages is replayed for one start state fetched per run (design/020,
//! "Runs"). The miner signs its message before it can know the draw (it knows neither the key
//! nor, for a key it could guess, which of its messages a draw picks before the id exists), so
//! it cannot steer which of its messages are replayed; every supervisor draws with its own key,
//! so the picks of the committee are independent.

use pouw_consensus::pouw::{model_hash_of, residual_hash_of, ProofData};
use pouw_ml::{Model, TrainState};
use pouw_primitives::{Hash, IterationMessage};

/// Domain tag of the key a supervisor draws its samples with.
const KEY_TAG: &[u8] = b"pouw/screening/sample-key/v1";

/// Replay streams a supervisor spends per task when no fraction is configured: it replays
/// `AUTO_STREAMS / miners` of each miner's messages, about one miner's training in all.
pub(crate) const AUTO_STREAMS: f64 = 1.0;

/// Messages a run replays: a drawn message and the next `RUN - 1` of its miner's stream. A
/// start state is about 0.8 MB for the devnet's model; fetched once per message drawn, the
/// states made a supervisor receive 10-13x the task's training data, once per run 3-4 % of
/// that (design/020, "Runs").
pub(crate) const RUN: u32 = 32;

/// Which messages a supervisor replays.
#[derive(Clone, Copy)]
pub(crate) struct Sampling {
    key: Hash,
    /// The configured fraction (`None`: [`AUTO_STREAMS`] over the task's miners).
    fraction: Option<f64>,
    /// Messages a run replays ([`RUN`]).
    run: u32,
}

impl std::fmt::Debug for Sampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Sampling")
            .field("fraction", &self.fraction)
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl Sampling {
    /// Every message replayed (the screening before sampling; tests).
    #[cfg(test)]
    pub(crate) fn full() -> Self {
        Self { key: Hash::ZERO, fraction: Some(1.0), run: 1 }
    }

    /// The same draws with runs of `run` messages (tests: 1 draws each message on its own).
    #[cfg(test)]
    pub(crate) fn with_run(self, run: u32) -> Self {
        Self { run: run.max(1), ..self }
    }

    /// Messages a run replays.
    pub(crate) fn run(&self) -> u32 {
        self.run
    }

    /// Draws keyed by `secret` (the supervisor's secret key: nobody else can predict them),
    /// replaying `fraction` of each miner's messages (`None`: automatic).
    pub(crate) fn new(secret: &[u8; 32], fraction: Option<f64>) -> Self {
        let mut bytes = KEY_TAG.to_vec();
        bytes.extend_from_slice(secret);
        Self { key: Hash::digest(&bytes), fraction, run: RUN }
    }

    /// The fraction of each miner's messages replayed in a task of `miners` miners, in
    /// `(0, 1]`.
    pub(crate) fn fraction(&self, miners: usize) -> f64 {
        let f = self.fraction.unwrap_or(AUTO_STREAMS / miners.max(1) as f64);
        if f.is_nan() {
            1.0
        } else {
            f.clamp(1e-6, 1.0)
        }
    }

    /// Whether every message is replayed in a task of `miners` miners.
    pub(crate) fn is_full(&self, miners: usize) -> bool {
        self.fraction(miners) >= 1.0
    }

    /// Whether the message `id` is drawn (starts a run of replays) in a task of `miners` miners.
    pub(crate) fn draws(&self, id: &Hash, miners: usize) -> bool {
        if self.is_full(miners) {
            return true;
        }
        let mut bytes = [0u8; 64];
        let (k, m) = bytes.split_at_mut(32);
        k.copy_from_slice(&self.key.0);
        m.copy_from_slice(&id.0);
        let digest = Hash::digest(&bytes);
        let mut draw = [0u8; 8];
        draw.copy_from_slice(&digest.0[..8]);
        // A draw below fraction * 2^64 (exact enough: the fraction is a setting, not money).
        let draw = u64::from_le_bytes(draw) as f64 / 18_446_744_073_709_551_616.0;
        draw < self.fraction(miners) / f64::from(self.run.max(1))
    }
}

/// The probability that `supervisors` supervisors, each replaying a fraction `p` of a miner's
/// messages independently, replay none of `k` poisoned ones: `(1 - p)^(supervisors * k)`.
/// A replayed poisoned message is flagged; the flag makes every supervisor replay that miner's
/// whole stream (design/020), so this bounds the chance that its poisoning goes unflagged.
#[cfg(test)]
pub(crate) fn escape_probability(p: f64, supervisors: u32, k: u32) -> f64 {
    let n = i32::try_from(u64::from(supervisors).saturating_mul(u64::from(k))).unwrap_or(i32::MAX);
    (1.0 - p.clamp(0.0, 1.0)).powi(n)
}

/// Why a start state a miner served cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadState {
    /// Lengths that do not fit the task's model and optimizer.
    Shape(&'static str),
    /// A value that is NaN or infinite (a diverged stream cannot be replayed bit for bit).
    NotFinite,
    /// Not the state the message committed to.
    Hash(&'static str),
    /// The engine refused it.
    Engine(String),
}

impl std::fmt::Display for BadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shape(what) => write!(f, "{what} has the wrong length"),
            Self::NotFinite => write!(f, "a value is NaN or infinite"),
            Self::Hash(what) => write!(f, "the {what} hash is not the one the message names"),
            Self::Engine(e) => write!(f, "{e}"),
        }
    }
}

/// The training state `data` holds (start model, residual and optimizer state, as proof data
/// carries them), checked against what `msg` committed to: its start model and residual
/// hashes. `initial` is the task's initial state (the shapes, optimizer and update rule).
pub(crate) fn start_state(
    initial: &TrainState,
    data: &ProofData,
    msg: &IterationMessage,
) -> Result<TrainState, BadState> {
    let spec = initial.model().spec();
    if data.start_params.len() != initial.model().params().len() {
        return Err(BadState::Shape("start_params"));
    }
    if data.start_residual.len() != initial.residual().len() {
        return Err(BadState::Shape("start_residual"));
    }
    if data.start_velocity.len() != initial.velocity().len() {
        return Err(BadState::Shape("start_velocity"));
    }
    let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
    if !(finite(&data.start_params) && finite(&data.start_residual) && finite(&data.start_velocity))
    {
        return Err(BadState::NotFinite);
    }
    if model_hash_of(spec, &data.start_params) != msg.body.start_model_hash {
        return Err(BadState::Hash("start model"));
    }
    if residual_hash_of(&data.start_residual, &data.start_velocity) != msg.body.start_residual_hash
    {
        return Err(BadState::Hash("start residual"));
    }
    let model = Model::from_params(spec.clone(), data.start_params.clone())
        .map_err(|e| BadState::Engine(e.to_string()))?;
    TrainState::from_parts_with_rule(
        model,
        *initial.optimizer(),
        *initial.rule(),
        data.start_residual.clone(),
        data.start_velocity.clone(),
    )
    .map_err(|e| BadState::Engine(e.to_string()))
}

/// A training state as proof data (no batch, no peers): what a miner serves for a
/// `Request::StartState`.
pub(crate) fn as_proof_data(state: &TrainState) -> ProofData {
    ProofData {
        start_params: state.model().params().to_vec(),
        start_residual: state.residual().to_vec(),
        start_velocity: state.velocity().to_vec(),
        batch: Vec::new(),
        peers: Vec::new(),
        sample_proofs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_fraction_and_the_key() {
        let a = Sampling::new(&[1; 32], Some(0.25)).with_run(1);
        let b = Sampling::new(&[2; 32], Some(0.25)).with_run(1);
        let ids: Vec<Hash> = (0u32..4000).map(|i| Hash::digest(&i.to_le_bytes())).collect();
        let drawn_a: Vec<bool> = ids.iter().map(|id| a.draws(id, 4)).collect();
        let drawn_b: Vec<bool> = ids.iter().map(|id| b.draws(id, 4)).collect();
        let count = |v: &[bool]| v.iter().filter(|x| **x).count();
        // 4000 draws at 1/4: 1000 expected, sd about 27.
        assert!((880..1120).contains(&count(&drawn_a)), "{}", count(&drawn_a));
        assert!((880..1120).contains(&count(&drawn_b)), "{}", count(&drawn_b));
        // Two keys pick independently: about 1/16 of the ids both times.
        let both = drawn_a.iter().zip(&drawn_b).filter(|(x, y)| **x && **y).count();
        assert!((170..330).contains(&both), "{both}");
        // The same key draws the same way again.
        assert!(ids.iter().zip(&drawn_a).all(|(id, d)| a.draws(id, 4) == *d));
    }

    #[test]
    fn runs_start_at_the_fraction_over_the_run_length() {
        let s = Sampling::new(&[1; 32], Some(0.25));
        assert_eq!(s.run(), RUN);
        let ids: Vec<Hash> = (0u32..32_000).map(|i| Hash::digest(&i.to_le_bytes())).collect();
        let starts = ids.iter().filter(|id| s.draws(id, 4)).count();
        // 32,000 draws at 1/4 / 32: 250 expected, sd about 16.
        assert!((180..320).contains(&starts), "{starts}");
        // A full replay draws every message, runs or not.
        assert!(ids.iter().take(100).all(|id| Sampling::new(&[1; 32], Some(1.0)).draws(id, 4)));
    }

    #[test]
    fn the_automatic_fraction_spends_one_stream_and_one_replays_everything() {
        let auto = Sampling::new(&[1; 32], None);
        assert_eq!(auto.fraction(4), 0.25);
        assert_eq!(auto.fraction(1), 1.0);
        assert!(auto.is_full(1) && !auto.is_full(2));
        let full = Sampling::new(&[1; 32], Some(1.0));
        assert!((0u32..100).all(|i| full.draws(&Hash::digest(&i.to_le_bytes()), 50)));
        assert!(Sampling::full().is_full(1000));
        assert_eq!(Sampling::new(&[1; 32], Some(f64::NAN)).fraction(4), 1.0);
        assert!(!format!("{auto:?}").contains("key"));
    }

    #[test]
    fn the_escape_bound() {
        // Three supervisors at 1/4: one poisoned message escapes all with (3/4)^3.
        assert!((escape_probability(0.25, 3, 1) - 0.421_875).abs() < 1e-12);
        assert!(escape_probability(0.25, 3, 11) < 0.0001);
        assert_eq!(escape_probability(1.0, 3, 1), 0.0);
        assert_eq!(escape_probability(0.0, 3, 100), 1.0);
    }
}
