//! One PoUW training iteration (SPEC section 4) and the plain SGD step it is compared with.
//!
//! [`TrainState::iterate`] runs, on the state `(model w, residual R, velocity v)`:
//! 1. check the batch and every peer-map index (an error leaves the state untouched);
//! 2. apply the peer maps in the order given, each entry in order, as a plain SGD step:
//!    `w_j = w_j - lr * s` with `s = +tau` if bit 31 is set, `-tau` if not (`j` = bits 0–30);
//! 3. forward and backward on the batch: gradient `g` of the batch-mean loss (the first layer's
//!    forward product in the input order of the iteration's order seed, `crate::order`);
//! 4. `R_j = R_j + g_j` for every `j`;
//! 5. message map, ascending `j`: `R_j > tau` emits `j | 1<<31` (delta `+tau`), `R_j < -tau`
//!    emits `j` (delta `-tau`); NaN never emits;
//! 6. `R_j = R_j - delta_j` for each emitted `j`;
//! 7. local update with the deltas `d` (`d_j = ±tau` if emitted, `0` otherwise) as the gradient
//!    of SGD with momentum: `v_j = mu * v_j + d_j; w_j = w_j - lr * v_j` for every `j` (each
//!    product and sum rounded separately, never fused). With `mu = 0` the velocity is not state
//!    (empty vector) and only emitted coordinates change: `w_j = w_j - lr * d_j`, the same bits
//!    as the dense rule (`0 * v + 0 = +0` and `w - lr * +0 = w`);
//! 8. loss and accuracy: from the forward pass of step 3, i.e. of the model after the peer
//!    updates and before the local update. (The paper's code ran a second forward pass after
//!    the update; measuring on the pass we already have saves a third of the iteration's work
//!    and reports the loss of the model the gradient was taken on.)
//!
//! The sign convention of step 2/5 follows the paper's code: bit 31 set = `+tau` = the
//! residual (accumulated gradient) was positive, so the parameter *decreases*.

use crate::{
    batch::{Batch, BatchError},
    hash::{self, Digest},
    kernels::Exec,
    model::{Metrics, Model},
    order::InputOrder,
    spec::{AdamSpec, OptimizerSpec, SpecError, UpdateRule},
};

/// Bit 31 of a map entry: the sign (set = `+tau`).
pub const MAP_SIGN_BIT: u32 = 1 << 31;
/// Bits 0–30 of a map entry: the flat parameter index.
pub const MAP_INDEX_MASK: u32 = MAP_SIGN_BIT - 1;

/// Packs a map entry.
pub fn pack_entry(index: u32, positive: bool) -> u32 {
    debug_assert!(index <= MAP_INDEX_MASK);
    index | if positive { MAP_SIGN_BIT } else { 0 }
}

/// Unpacks a map entry into `(index, positive)`.
pub fn unpack_entry(entry: u32) -> (u32, bool) {
    (entry & MAP_INDEX_MASK, entry & MAP_SIGN_BIT != 0)
}

/// Why an iteration could not run. The state is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IterationError {
    /// The batch does not fit the model.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A peer map addresses a parameter that does not exist.
    #[error("peer map {map}, entry {entry}: index {index} out of range ({params} parameters)")]
    PeerIndex {
        /// Position of the map in the list given.
        map: usize,
        /// Position of the entry in that map.
        entry: usize,
        /// The index.
        index: u32,
        /// The model's parameter count.
        params: usize,
    },
    /// State vectors of the wrong length or a bad optimizer.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// What one iteration produced: the fields of IT_RES the engine computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IterationOutput {
    /// Hash of the model before step 2.
    pub start_model_hash: Digest,
    /// Hash of residual and velocity before step 2.
    pub start_residual_hash: Digest,
    /// [`Batch::hash`].
    pub batch_hash: Digest,
    /// The message map: packed entries in ascending index order.
    pub map: Vec<u32>,
    /// [`hash::map_hash`] of `map`.
    pub map_hash: Digest,
    /// Batch loss, `f32` bits.
    pub loss_bits: u32,
    /// Batch accuracy, `f32` bits.
    pub accuracy_bits: u32,
    /// Hash of the model after step 7.
    pub end_model_hash: Digest,
    /// Hash of residual and velocity after step 7 (the next iteration's start).
    pub end_residual_hash: Digest,
}

impl IterationOutput {
    /// The loss as `f32`.
    pub fn loss(&self) -> f32 {
        f32::from_bits(self.loss_bits)
    }

    /// The accuracy as `f32`.
    pub fn accuracy(&self) -> f32 {
        f32::from_bits(self.accuracy_bits)
    }
}

/// The hashes an iteration computes once its end state is known.
struct OutputHashes {
    end_model: Digest,
    end_residual: Digest,
    batch: Digest,
    map: Digest,
}

impl OutputHashes {
    /// On one thread, one after the other. On more, as two halves of about equal size on the
    /// kernels' thread pool (model hash and map hash on one side, residual hash and batch hash
    /// on the other; rayon balances them by work stealing): the model and the residual are the
    /// same length, so this halves the time of the iteration's largest cost after the gradient.
    fn compute(exec: Exec, state: &TrainState, batch: &Batch, map: &[u32]) -> Self {
        let model_side = || (state.model.hash(), hash::map_hash(map));
        let residual_side = || (state.residual_hash(), batch.hash());
        let ((end_model, map), (end_residual, batch)) = if exec.threads > 1 {
            rayon::join(model_side, residual_side)
        } else {
            (model_side(), residual_side())
        };
        Self { end_model, end_residual, batch, map }
    }
}

/// The constants of one Adam step, computed once per iteration from the step count `t`
/// (`t` = the state's stored count + 1): `c1 = 1 - beta1`, `c2 = 1 - beta2`,
/// `bc1 = 1 - powf(beta1, t)`, `bc2 = 1 - powf(beta2, t)` (libm `powf`, all in `f32`), and
/// `decay = lr * weight_decay` for AdamW.
#[derive(Debug, Clone, Copy)]
struct AdamStep {
    b1: f32,
    b2: f32,
    c1: f32,
    c2: f32,
    bc1: f32,
    bc2: f32,
    eps: f32,
    lr: f32,
    decay: Option<f32>,
}

impl AdamStep {
    fn new(a: &AdamSpec, decoupled: bool, lr: f32, t: f32) -> Self {
        Self {
            b1: a.beta1,
            b2: a.beta2,
            c1: 1.0 - a.beta1,
            c2: 1.0 - a.beta2,
            bc1: 1.0 - libm::powf(a.beta1, t),
            bc2: 1.0 - libm::powf(a.beta2, t),
            eps: a.epsilon,
            lr,
            decay: decoupled.then_some(lr * a.weight_decay),
        }
    }

    /// One coordinate, fed with `d` (each operation rounded on its own, in this order):
    /// `m = b1*m + c1*d; v = b2*v + c2*(d*d); mh = m / bc1; vh = v / bc2;`
    /// `u = mh / (sqrtf(vh) + eps);` AdamW first `w = w - decay*w`; then `w = w - lr*u`.
    #[inline]
    fn apply(&self, w: &mut f32, m: &mut f32, v: &mut f32, d: f32) {
        *m = self.b1 * *m + self.c1 * d;
        let dd = d * d;
        *v = self.b2 * *v + self.c2 * dd;
        let mh = *m / self.bc1;
        let vh = *v / self.bc2;
        let u = mh / (libm::sqrtf(vh) + self.eps);
        if let Some(decay) = self.decay {
            *w -= decay * *w;
        }
        *w -= self.lr * u;
    }
}

/// Steps 4–6 on one block of coordinates: `v = r + g`; `+tau` emitted if `v > tau` (flag 1),
/// `-tau` if `v < -tau` (flag 2), nothing otherwise (flag 0, also for NaN); `r = v - delta`.
/// Branch-free selects the compiler vectorises; additions, subtractions and comparisons are
/// exact IEEE operations, so every instruction set gives the same bits (no product, so nothing
/// to fuse).
#[inline(always)]
fn residual_flags_body(rs: &mut [f32], gs: &[f32], flags: &mut [u8], tau: f32) {
    let neg_tau = -tau;
    for ((r, &gj), f) in rs.iter_mut().zip(gs).zip(flags) {
        let v = *r + gj;
        let positive = v > tau;
        let negative = !positive & (v < neg_tau);
        let down = if negative { v - neg_tau } else { v };
        *r = if positive { v - tau } else { down };
        *f = u8::from(positive) | (u8::from(negative) << 1);
    }
}

/// [`residual_flags_body`] compiled for AVX2 (eight lanes instead of SSE2's four).
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn residual_flags_avx2(rs: &mut [f32], gs: &[f32], flags: &mut [u8], tau: f32) {
    residual_flags_body(rs, gs, flags, tau);
}

/// [`residual_flags_body`] compiled for AVX-512 (sixteen lanes, mask registers).
///
/// # Safety
/// The CPU supports AVX-512 F and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn residual_flags_avx512(rs: &mut [f32], gs: &[f32], flags: &mut [u8], tau: f32) {
    residual_flags_body(rs, gs, flags, tau);
}

/// Which build of [`residual_flags_body`] runs: speed only, the same bits.
#[derive(Debug, Clone, Copy)]
enum ResidualIsa {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl ResidualIsa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Self::Avx2;
            }
        }
        Self::Baseline
    }

    #[inline]
    fn residual_flags(self, rs: &mut [f32], gs: &[f32], flags: &mut [u8], tau: f32) {
        match self {
            Self::Baseline => residual_flags_body(rs, gs, flags, tau),
            // SAFETY: `Avx2` is only built after the CPU reported AVX2 (`detect`, the tests).
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { residual_flags_avx2(rs, gs, flags, tau) },
            // SAFETY: `Avx512` is only built after the CPU reported AVX-512 F and BW.
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { residual_flags_avx512(rs, gs, flags, tau) },
        }
    }
}

/// Coordinates per block of the residual pass: its flags stay in L1.
const PASS_BLOCK: usize = 64;

/// The fewest parameters for which the residual pass runs as two halves on two threads (about
/// 10 us of work per half on one AVX-512 core, several times a worker's wake-up).
const SPLIT_PASS_MIN: usize = 1 << 16;

/// What every coordinate of steps 4–7 shares.
struct PassConsts {
    lr: f32,
    tau: f32,
    mu: f32,
    /// SGD with momentum: the velocity is state and every coordinate is updated.
    dense: bool,
    adam: Option<AdamStep>,
    isa: ResidualIsa,
}

/// The state of the coordinates `base..base + w.len()` for steps 4–7: model, residual,
/// gradient, and the optimizer state of those coordinates (each either empty or as long as
/// `w`: `vel` for SGD with momentum, `ms` and `vs` for Adam).
struct PassRange<'a> {
    base: usize,
    w: &'a mut [f32],
    r: &'a mut [f32],
    g: &'a [f32],
    vel: &'a mut [f32],
    ms: &'a mut [f32],
    vs: &'a mut [f32],
}

/// `s` cut at `mid` (an empty `s` gives two empty halves).
fn split_state(s: &mut [f32], mid: usize) -> (&mut [f32], &mut [f32]) {
    if s.is_empty() {
        (Default::default(), Default::default())
    } else {
        s.split_at_mut(mid)
    }
}

impl PassRange<'_> {
    /// The coordinates below `mid` (relative to `base`) and the rest.
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (w0, w1) = self.w.split_at_mut(mid);
        let (r0, r1) = self.r.split_at_mut(mid);
        let (g0, g1) = self.g.split_at(mid);
        let (vel0, vel1) = split_state(self.vel, mid);
        let (ms0, ms1) = split_state(self.ms, mid);
        let (vs0, vs1) = split_state(self.vs, mid);
        (
            Self { base: self.base, w: w0, r: r0, g: g0, vel: vel0, ms: ms0, vs: vs0 },
            Self { base: self.base + mid, w: w1, r: r1, g: g1, vel: vel1, ms: ms1, vs: vs1 },
        )
    }

    /// Steps 4–7 on these coordinates, [`PASS_BLOCK`] at a time; returns their map entries in
    /// ascending order.
    fn run(self, c: &PassConsts) -> Vec<u32> {
        let Self { base, w, r, g, mut vel, mut ms, mut vs } = self;
        let (lr, tau, mu, dense) = (c.lr, c.tau, c.mu, c.dense);
        let mut map = Vec::with_capacity(g.len() / 16);
        let mut flags = [0u8; PASS_BLOCK];
        for (block, (rs, gs)) in r.chunks_mut(PASS_BLOCK).zip(g.chunks(PASS_BLOCK)).enumerate() {
            let offset = block * PASS_BLOCK;
            c.isa.residual_flags(rs, gs, &mut flags, tau);
            let n = rs.len();
            let ws = &mut w[offset..offset + n];
            if let Some(step) = &c.adam {
                // Every coordinate, emitted or not: d_j = ±tau or 0.
                let (m, rest_m) = std::mem::take(&mut ms).split_at_mut(n);
                let (v, rest_v) = std::mem::take(&mut vs).split_at_mut(n);
                (ms, vs) = (rest_m, rest_v);
                for (((wj, mj), vj), &f) in ws.iter_mut().zip(m).zip(v).zip(&flags[..n]) {
                    let d = match f {
                        1 => tau,
                        2 => -tau,
                        _ => 0.0,
                    };
                    step.apply(wj, mj, vj, d);
                }
            }
            if dense {
                // v_j = mu * v_j + d_j; w_j = w_j - lr * v_j for every j.
                let (vb, rest) = std::mem::take(&mut vel).split_at_mut(n);
                vel = rest;
                for ((wj, vj), &f) in ws.iter_mut().zip(vb).zip(&flags[..n]) {
                    let d = match f {
                        1 => tau,
                        2 => -tau,
                        _ => 0.0,
                    };
                    *vj = mu * *vj + d;
                    *wj -= lr * *vj;
                }
            }
            for (word, eight) in flags[..n].chunks(8).enumerate() {
                // Most coordinates emit nothing: skip eight of them with one comparison.
                if let Ok(bytes) = <[u8; 8]>::try_from(eight) {
                    if u64::from_ne_bytes(bytes) == 0 {
                        continue;
                    }
                }
                for (k, &f) in eight.iter().enumerate() {
                    if f == 0 {
                        continue;
                    }
                    let k = word * 8 + k;
                    let positive = f == 1;
                    if !dense && c.adam.is_none() {
                        // mu = 0: only emitted coordinates change, w_j = w_j - lr * d_j.
                        let d = if positive { tau } else { -tau };
                        ws[k] -= lr * d;
                    }
                    map.push(pack_entry((base + offset + k) as u32, positive));
                }
            }
        }
        map
    }
}

/// A miner's training state: model, gradient residual and optimizer state.
#[derive(Debug, Clone)]
pub struct TrainState {
    model: Model,
    optimizer: OptimizerSpec,
    /// The local update rule (SGD with the optimizer's momentum, Adam or AdamW).
    rule: UpdateRule,
    residual: Vec<f32>,
    /// Optimizer state ([`UpdateRule::state_len`]): SGD the momentum buffer (empty when
    /// `optimizer.momentum == 0`, then it is not state); Adam `m ‖ v ‖ [t]`.
    velocity: Vec<f32>,
    /// (model hash, residual hash) of the current state, when known: set by `iterate` (its end
    /// hashes are the next start hashes), cleared by anything else that changes the state.
    hashes: Option<(Digest, Digest)>,
    /// The gradient buffer, kept between iterations (every element is overwritten by each
    /// gradient, `Model::gradient`), so an iteration neither allocates nor zeroes it.
    grad: Scratch,
}

/// A buffer that is no part of the value: a clone starts empty, equality ignores it.
#[derive(Debug, Default)]
struct Scratch(Vec<f32>);

impl Clone for Scratch {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for TrainState {
    /// Equal model, optimizer, residual and velocity (the hash cache does not count).
    fn eq(&self, other: &Self) -> bool {
        self.model == other.model
            && self.optimizer == other.optimizer
            && self.rule == other.rule
            && self.residual == other.residual
            && self.velocity == other.velocity
    }
}

impl TrainState {
    /// Fresh state: residual and velocity `+0.0` (SGD with the optimizer's momentum).
    pub fn new(model: Model, optimizer: OptimizerSpec) -> Result<Self, SpecError> {
        Self::with_rule(model, optimizer, UpdateRule::Sgd)
    }

    /// Fresh state for `rule`: residual and optimizer state `+0.0` (Adam's step count 0).
    pub fn with_rule(
        model: Model,
        optimizer: OptimizerSpec,
        rule: UpdateRule,
    ) -> Result<Self, SpecError> {
        let n = model.param_count();
        let state = vec![0.0; rule.state_len(n, optimizer.momentum)];
        Self::from_parts_with_rule(model, optimizer, rule, vec![0.0; n], state)
    }

    /// State from its parts (e.g. a verifier's start model and residual), SGD.
    pub fn from_parts(
        model: Model,
        optimizer: OptimizerSpec,
        residual: Vec<f32>,
        velocity: Vec<f32>,
    ) -> Result<Self, SpecError> {
        Self::from_parts_with_rule(model, optimizer, UpdateRule::Sgd, residual, velocity)
    }

    /// State from its parts for `rule`; `state` as [`UpdateRule::state_len`] lays it out.
    pub fn from_parts_with_rule(
        model: Model,
        optimizer: OptimizerSpec,
        rule: UpdateRule,
        residual: Vec<f32>,
        state: Vec<f32>,
    ) -> Result<Self, SpecError> {
        optimizer.validate()?;
        rule.validate()?;
        if rule.adam().is_some() && optimizer.momentum != 0.0 {
            return Err(SpecError::Optimizer("momentum must be 0 with adam (use beta1)"));
        }
        let n = model.param_count();
        let vn = rule.state_len(n, optimizer.momentum);
        if residual.len() != n {
            return Err(SpecError::ParamCount { expected: n, actual: residual.len() });
        }
        if state.len() != vn {
            return Err(SpecError::ParamCount { expected: vn, actual: state.len() });
        }
        Ok(Self {
            model,
            optimizer,
            rule,
            residual,
            velocity: state,
            hashes: None,
            grad: Scratch::default(),
        })
    }

    /// The local update rule.
    pub fn rule(&self) -> &UpdateRule {
        &self.rule
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &OptimizerSpec {
        &self.optimizer
    }

    /// The gradient residual `R`.
    pub fn residual(&self) -> &[f32] {
        &self.residual
    }

    /// The optimizer state: the velocity (empty when momentum is 0), or Adam's `m ‖ v ‖ [t]`.
    pub fn velocity(&self) -> &[f32] {
        &self.velocity
    }

    /// Takes the model out.
    pub fn into_model(self) -> Model {
        self.model
    }

    /// The (model hash, residual hash) of the current state, computed once and kept for the next
    /// [`TrainState::iterate`], which reports them as its start hashes (a verifier checks them
    /// before replaying without hashing the same state twice).
    pub fn start_hashes(&mut self) -> (Digest, Digest) {
        let hashes = match self.hashes {
            Some(h) => h,
            None => (self.model.hash(), self.residual_hash()),
        };
        self.hashes = Some(hashes);
        hashes
    }

    /// [`hash::residual_hash`] of residual and velocity.
    pub fn residual_hash(&self) -> Digest {
        hash::residual_hash(&self.residual, &self.velocity)
    }

    /// One PoUW iteration (steps in the module docs). `peer_maps` are applied in the order given.
    ///
    /// A verifier replays a miner's iteration from its start state and compares every field:
    /// ```no_run
    /// # fn fetch() -> (pouw_ml::Model, pouw_ml::OptimizerSpec, Vec<f32>, Vec<f32>, pouw_ml::Batch, Vec<Vec<u32>>, pouw_ml::IterationOutput) { unimplemented!() }
    /// use pouw_ml::{Exec, TrainState};
    ///
    /// let (start_model, optimizer, residual, velocity, batch, peer_maps, claimed) = fetch();
    /// let mut state = TrainState::from_parts(start_model, optimizer, residual, velocity)?;
    /// let peers: Vec<&[u32]> = peer_maps.iter().map(Vec::as_slice).collect();
    /// let replayed = state.iterate(Exec::new(4), &batch, &peers)?;
    /// assert_eq!(replayed, claimed, "bit-for-bit, or the block is invalid");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iterate(
        &mut self,
        exec: Exec,
        batch: &Batch,
        peer_maps: &[&[u32]],
    ) -> Result<IterationOutput, IterationError> {
        self.iterate_bound(exec, batch, peer_maps, &[0; 32])
    }

    /// [`TrainState::iterate`] bound to the header it mines: the first layer's forward product
    /// reduces the input features in the order drawn from `order_seed` (the zero-nonce hash of
    /// that header; all zero = the natural order, what [`TrainState::iterate`] uses). See
    /// `crate::order`: another seed gives the same training up to rounding and other bits.
    pub fn iterate_bound(
        &mut self,
        exec: Exec,
        batch: &Batch,
        peer_maps: &[&[u32]],
        order_seed: &[u8; 32],
    ) -> Result<IterationOutput, IterationError> {
        self.check_inputs(batch, peer_maps)?;
        let (start_model_hash, start_residual_hash) =
            self.hashes.take().unwrap_or_else(|| (self.model.hash(), self.residual_hash()));
        let (map, metrics) = self.train(exec, batch, peer_maps, order_seed);

        // The four hashes of the outputs: independent of each other, so with more than one
        // thread they run side by side (the values do not depend on how they are computed).
        let hashes = OutputHashes::compute(exec, self, batch, &map);
        self.hashes = Some((hashes.end_model, hashes.end_residual));
        Ok(IterationOutput {
            start_model_hash,
            start_residual_hash,
            batch_hash: hashes.batch,
            map_hash: hashes.map,
            map,
            loss_bits: metrics.loss.to_bits(),
            accuracy_bits: metrics.accuracy().to_bits(),
            end_model_hash: hashes.end_model,
            end_residual_hash: hashes.end_residual,
        })
    }

    /// Steps 2–7 of [`TrainState::iterate_bound`] without any hash (the state's hash cache is
    /// cleared): the message map and the batch metrics. The same state changes and map, bit for
    /// bit. For benchmarks that price the iteration's hashing against its training; no message
    /// can be built from it.
    #[doc(hidden)]
    pub fn train_unhashed(
        &mut self,
        exec: Exec,
        batch: &Batch,
        peer_maps: &[&[u32]],
        order_seed: &[u8; 32],
    ) -> Result<(Vec<u32>, Metrics), IterationError> {
        self.check_inputs(batch, peer_maps)?;
        self.hashes = None;
        Ok(self.train(exec, batch, peer_maps, order_seed))
    }

    /// Step 1: the batch fits the model and every peer-map index is a parameter.
    fn check_inputs(&self, batch: &Batch, peer_maps: &[&[u32]]) -> Result<(), IterationError> {
        let layout = self.model.layout();
        batch.validate(layout.inputs, layout.classes as u32)?;
        let params = self.model.param_count();
        for (m, map) in peer_maps.iter().enumerate() {
            for (e, &entry) in map.iter().enumerate() {
                let (index, _) = unpack_entry(entry);
                if index as usize >= params {
                    return Err(IterationError::PeerIndex { map: m, entry: e, index, params });
                }
            }
        }
        Ok(())
    }

    /// Steps 2–7 on checked inputs ([`TrainState::check_inputs`]).
    fn train(
        &mut self,
        exec: Exec,
        batch: &Batch,
        peer_maps: &[&[u32]],
        order_seed: &[u8; 32],
    ) -> (Vec<u32>, Metrics) {
        let order = self
            .model
            .layout()
            .first_reduction()
            .and_then(|(width, run)| InputOrder::from_seed_runs(order_seed, width, run));

        // 2. peer updates (Adam and AdamW: a step of `lr` in the entry's direction, the size of
        // the sender's own normalised step, instead of `lr * tau`).
        let lr = self.optimizer.learning_rate;
        let tau = self.optimizer.tau;
        let size = if self.rule.adam().is_some() { 1.0 } else { tau };
        let w = self.model.params_mut();
        for map in peer_maps {
            for &entry in *map {
                let (j, positive) = unpack_entry(entry);
                let d = if positive { size } else { -size };
                let j = j as usize;
                w[j] -= lr * d;
            }
        }

        // 3. gradient (and step-8 metrics from the same forward pass), into the kept buffer.
        let mut g = std::mem::take(&mut self.grad.0);
        g.resize(self.model.param_count(), 0.0);
        let metrics = self.model.gradient_in_order(exec, batch, &mut g, order.as_ref());

        // 4–7 in one pass: residual, message map, residual minus emitted, local update.
        let map = self.residual_map_update(&g, exec);
        self.grad.0 = g;
        (map, metrics)
    }

    /// Steps 4–7 fused into one pass over the coordinates, 64 at a time: the residual update
    /// and the emission test are branch-free selects the compiler vectorises, built for the
    /// widest vectors the CPU has ([`ResidualIsa`]; each coordinate's
    /// outcome goes to a flag byte: 1 = `+tau`, 2 = `-tau`), then the flags are scanned eight at
    /// a time for the few emitted coordinates, which are pushed in ascending order and applied
    /// (the local update). Every value is computed by the same operations as the step-by-step
    /// definition in the module docs: the same bits. On two or more threads a large state runs
    /// as two halves side by side ([`SPLIT_PASS_MIN`]; each coordinate on its own, so the same
    /// bits and the same map).
    fn residual_map_update(&mut self, g: &[f32], exec: Exec) -> Vec<u32> {
        let lr = self.optimizer.learning_rate;
        let tau = self.optimizer.tau;
        let mu = self.optimizer.momentum;
        let w = self.model.params_mut();
        let params = w.len();
        let dense = !self.velocity.is_empty() && self.rule.adam().is_none();
        // Adam: the step count `t` is the state's last element; this iteration is step `t + 1`.
        // `vel` is the momentum buffer (SGD), `ms` and `vs` Adam's moments.
        let (adam, ms, vs, vel): (Option<AdamStep>, &mut [f32], &mut [f32], &mut [f32]) =
            match self.rule {
                UpdateRule::Sgd => (None, &mut [], &mut [], &mut self.velocity[..]),
                UpdateRule::Adam(a) | UpdateRule::AdamW(a) => {
                    let decoupled = matches!(self.rule, UpdateRule::AdamW(_));
                    let (mv, t) = self.velocity.split_at_mut(params.saturating_mul(2));
                    let t = match t.first_mut() {
                        Some(t) => {
                            *t += 1.0;
                            *t
                        }
                        None => 1.0,
                    };
                    let (m, v) = mv.split_at_mut(params);
                    (Some(AdamStep::new(&a, decoupled, lr, t)), m, v, &mut [])
                }
            };
        let c = PassConsts { lr, tau, mu, dense, adam, isa: ResidualIsa::detect() };
        let whole = PassRange { base: 0, w, r: &mut self.residual[..], g, vel, ms, vs };
        // Every coordinate is computed on its own, so two halves on two threads give the same
        // bits; the second half's entries follow the first's, so the map stays ascending. Only
        // for a state large enough to repay waking a worker (speed only).
        if exec.threads > 1 && params >= SPLIT_PASS_MIN {
            let mid = params / 2 / PASS_BLOCK * PASS_BLOCK;
            let (low, high) = whole.split_at(mid);
            let (mut map, upper) = rayon::join(|| low.run(&c), || high.run(&c));
            map.extend_from_slice(&upper);
            map
        } else {
            whole.run(&c)
        }
    }

    /// A plain (non-PoUW) SGD-with-momentum step on the batch gradient, for comparison:
    /// `v = mu * v + g; w = w - lr * v` (with `mu = 0`: `w = w - lr * g`); with Adam or AdamW
    /// their step on `g`. The residual is untouched. Returns the batch metrics of the forward pass.
    pub fn sgd_step(&mut self, exec: Exec, batch: &Batch) -> Result<Metrics, IterationError> {
        let layout = self.model.layout();
        batch.validate(layout.inputs, layout.classes as u32)?;
        self.hashes = None;
        let mut g = std::mem::take(&mut self.grad.0);
        g.resize(self.model.param_count(), 0.0);
        let metrics = self.model.gradient(exec, batch, &mut g);
        let lr = self.optimizer.learning_rate;
        let mu = self.optimizer.momentum;
        let w = self.model.params_mut();
        if let Some(a) = self.rule.adam() {
            // The same Adam step as the iteration's, fed with the raw gradient.
            let params = w.len();
            let (mv, t) = self.velocity.split_at_mut(params * 2);
            let t = t.first_mut().map_or(1.0, |t| {
                *t += 1.0;
                *t
            });
            let step = AdamStep::new(a, matches!(self.rule, UpdateRule::AdamW(_)), lr, t);
            let (m, v) = mv.split_at_mut(params);
            for (((wj, mj), vj), &gj) in w.iter_mut().zip(m).zip(v).zip(&g) {
                step.apply(wj, mj, vj, gj);
            }
        } else if self.velocity.is_empty() {
            for (wj, &gj) in w.iter_mut().zip(&g) {
                *wj -= lr * gj;
            }
        } else {
            for ((wj, vj), &gj) in w.iter_mut().zip(&mut self.velocity).zip(&g) {
                *vj = mu * *vj + gj;
                *wj -= lr * *vj;
            }
        }
        self.grad.0 = g;
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        rng::Rng,
        spec::{Activation, ModelSpec},
    };

    fn setup(momentum: f32) -> (TrainState, Batch) {
        let spec = ModelSpec::mlp(12, &[8], 3, Activation::Tanh, 5);
        let opt =
            OptimizerSpec { learning_rate: 0.5, momentum, tau: 0.01, batch_size: 4, epochs: 1 };
        let mut rng = Rng::from_u64(9);
        let x: Vec<f32> = (0..4 * 12).map(|_| rng.next_f32()).collect();
        let batch = Batch::new(x, vec![0, 1, 2, 1], 12).unwrap();
        (TrainState::new(Model::new(spec).unwrap(), opt).unwrap(), batch)
    }

    #[test]
    fn sparse_update_matches_dense_definition() {
        let (mut s, batch) = setup(0.0);
        let (mut dense, _) = setup(0.0);
        for _ in 0..5 {
            let out = s.iterate(Exec::SINGLE, &batch, &[]).unwrap();
            // Dense reference: v = 0*v + d; w = w - lr*v over every coordinate.
            let mut g = vec![0.0; dense.model.param_count()];
            dense.model.gradient(Exec::SINGLE, &batch, &mut g);
            let (lr, tau) = (dense.optimizer.learning_rate, dense.optimizer.tau);
            let mut d = vec![0.0f32; g.len()];
            for (j, (r, gj)) in dense.residual.iter_mut().zip(&g).enumerate() {
                *r += gj;
                if *r > tau {
                    d[j] = tau;
                } else if *r < -tau {
                    d[j] = -tau;
                }
                *r -= d[j];
            }
            let v_old = 0.0f32;
            for (w, dj) in dense.model.params_mut().iter_mut().zip(&d) {
                let v = 0.0 * v_old + dj;
                *w -= lr * v;
            }
            assert_eq!(out.end_model_hash, dense.model.hash());
            assert_eq!(s.residual, dense.residual);
        }
    }

    #[test]
    fn map_is_sorted_and_residual_bounded() {
        let (mut s, batch) = setup(0.9);
        for _ in 0..5 {
            let out = s.iterate(Exec::SINGLE, &batch, &[]).unwrap();
            assert!(!out.map.is_empty());
            assert!(out.map.iter().all(|&e| unpack_entry(e).0 < s.model.param_count() as u32));
            let idx: Vec<u32> = out.map.iter().map(|&e| unpack_entry(e).0).collect();
            assert!(idx.windows(2).all(|p| p[0] < p[1]));
            let tau = s.optimizer.tau;
            for (j, &r) in s.residual.iter().enumerate() {
                if idx.binary_search(&(j as u32)).is_err() {
                    assert!(r.abs() <= tau, "unsent residual {r} above tau");
                }
            }
        }
    }

    #[test]
    fn hashes_are_the_same_on_one_and_two_threads_and_equal_the_definitions() {
        let (mut one, batch) = setup(0.9);
        let mut two = one.clone();
        let peer = [pack_entry(2, true), pack_entry(7, false)];
        for _ in 0..3 {
            let a = one.iterate(Exec::SINGLE, &batch, &[&peer]).unwrap();
            let b = two.iterate(Exec::new(2), &batch, &[&peer]).unwrap();
            assert_eq!(a, b);
            assert_eq!(a.end_model_hash, one.model.hash());
            assert_eq!(a.end_residual_hash, hash::residual_hash(&one.residual, &one.velocity));
            assert_eq!(a.batch_hash, batch.hash());
            assert_eq!(a.map_hash, hash::map_hash(&a.map));
            // The end hashes are the next iteration's start hashes.
            assert_eq!(one.start_hashes(), (a.end_model_hash, a.end_residual_hash));
        }
    }

    #[test]
    fn the_order_seed_changes_the_bits_not_the_training() {
        let spec = ModelSpec::mlp(100, &[8], 3, Activation::Relu, 5);
        let opt = OptimizerSpec {
            learning_rate: 0.5,
            momentum: 0.9,
            tau: 0.001,
            batch_size: 8,
            epochs: 1,
        };
        let mut rng = Rng::from_u64(3);
        let x: Vec<f32> = (0..8 * 100).map(|_| rng.next_f32()).collect();
        let batch = Batch::new(x, vec![0, 1, 2, 1, 0, 2, 2, 1], 100).unwrap();
        let start = TrainState::new(Model::new(spec).unwrap(), opt).unwrap();
        let run = |seed: [u8; 32], exec: Exec| {
            let mut s = start.clone();
            (s.iterate_bound(exec, &batch, &[], &seed).unwrap(), s)
        };
        let natural_runs: Vec<(usize, usize)> =
            (0..100).step_by(16).map(|s| (s, 16.min(100 - s))).collect();
        for seed in [[5; 32], [6; 32]] {
            assert_ne!(InputOrder::from_seed(&seed, 100).unwrap().runs(), natural_runs.as_slice());
        }
        let (natural, _) = run([0; 32], Exec::SINGLE);
        let mut plain = start.clone();
        assert_eq!(plain.iterate(Exec::SINGLE, &batch, &[]).unwrap(), natural);
        let (a, sa) = run([5; 32], Exec::SINGLE);
        let (b, _) = run([6; 32], Exec::SINGLE);
        // The end model moves by whole steps of `lr * tau` on the emitted coordinates, so
        // rounding rarely changes it; the residual keeps every bit of the gradient and always
        // does (which is why the nonce precursor covers the end residual hash).
        for other in [&natural, &b] {
            assert_ne!(a.end_residual_hash, other.end_residual_hash);
        }
        // Deterministic and the same on any thread count.
        assert_eq!(run([5; 32], Exec::new(3)).0, a);
        // The same training up to rounding: the losses agree closely.
        assert!((a.loss() - natural.loss()).abs() < 1e-5, "{} vs {}", a.loss(), natural.loss());
        let (mut ga, mut gn) =
            (vec![0.0; sa.model.param_count()], vec![0.0; sa.model.param_count()]);
        start.model.gradient(Exec::SINGLE, &batch, &mut gn);
        let order = InputOrder::from_seed(&[5; 32], 100);
        start.model.gradient_in_order(Exec::SINGLE, &batch, &mut ga, order.as_ref());
        assert_ne!(ga, gn);
        assert!(ga.iter().zip(&gn).all(|(p, q)| (p - q).abs() <= 1e-5 * (1.0 + q.abs())));
    }

    #[test]
    fn a_first_convolution_takes_the_order_seed_in_its_kernel_taps() {
        use crate::spec::{Init, LayerSpec};
        let spec = ModelSpec {
            input_shape: vec![1, 8, 8],
            layers: vec![
                LayerSpec::Conv2d {
                    filters: 4,
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                    activation: Activation::Relu,
                },
                LayerSpec::MaxPool2d { size: 2, stride: None },
                LayerSpec::Dense { units: 3, activation: Activation::None },
            ],
            classes: 3,
            init: Init::He,
            seed: 5,
        };
        let layout = spec.layout().unwrap();
        assert_eq!(layout.first_reduction(), Some((9, 1)), "the 9 taps, one by one");
        let opt = OptimizerSpec {
            learning_rate: 0.1,
            momentum: 0.0,
            tau: 0.001,
            batch_size: 8,
            epochs: 1,
        };
        let mut rng = Rng::from_u64(3);
        let x: Vec<f32> = (0..8 * 64).map(|_| rng.next_f32()).collect();
        let batch = Batch::new(x, vec![0, 1, 2, 1, 0, 2, 2, 1], 64).unwrap();
        let start = TrainState::new(Model::new(spec).unwrap(), opt).unwrap();
        let run = |seed: [u8; 32], exec: Exec| {
            let mut s = start.clone();
            s.iterate_bound(exec, &batch, &[], &seed).unwrap()
        };
        let natural = run([0; 32], Exec::SINGLE);
        let (a, b) = (run([5; 32], Exec::SINGLE), run([6; 32], Exec::SINGLE));
        for other in [&natural, &b] {
            assert_ne!(a.end_residual_hash, other.end_residual_hash);
        }
        assert_eq!(run([5; 32], Exec::new(3)), a);
        assert!((a.loss() - natural.loss()).abs() < 1e-5, "{} vs {}", a.loss(), natural.loss());
    }

    fn adam_setup(rule: UpdateRule) -> (TrainState, Batch) {
        let (s, batch) = setup(0.0);
        let (model, opt) = (s.model.clone(), OptimizerSpec { learning_rate: 0.01, ..s.optimizer });
        (TrainState::with_rule(model, opt, rule).unwrap(), batch)
    }

    const ADAM: AdamSpec = AdamSpec { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weight_decay: 0.05 };

    #[test]
    #[allow(clippy::needless_range_loop)] // the reference indexes four vectors by j
    fn adam_matches_its_step_by_step_definition() {
        for rule in [UpdateRule::Adam(ADAM), UpdateRule::AdamW(ADAM)] {
            let (mut s, batch) = adam_setup(rule);
            let mut r = s.clone();
            let n = s.model.param_count();
            assert_eq!(s.velocity.len(), 2 * n + 1);
            let peer = [pack_entry(4, true), pack_entry(9, false)];
            for step in 1..=4u8 {
                let out = s.iterate(Exec::SINGLE, &batch, &[&peer]).unwrap();
                // Reference: peer steps of lr, gradient, residual, map, then Adam on every j.
                let (lr, tau) = (r.optimizer.learning_rate, r.optimizer.tau);
                // lr * (+1) and lr * (-1): exact.
                r.model.params_mut()[4] -= lr;
                r.model.params_mut()[9] -= -lr;
                let mut g = vec![0.0; n];
                r.model.gradient(Exec::SINGLE, &batch, &mut g);
                let t = f32::from(step);
                assert_eq!(r.velocity[2 * n], t - 1.0);
                r.velocity[2 * n] = t;
                let (bc1, bc2) = (1.0 - libm::powf(0.9, t), 1.0 - libm::powf(0.999, t));
                let (c1, c2) = (1.0 - 0.9f32, 1.0 - 0.999f32);
                for j in 0..n {
                    r.residual[j] += g[j];
                    let d = if r.residual[j] > tau {
                        tau
                    } else if r.residual[j] < -tau {
                        -tau
                    } else {
                        0.0
                    };
                    r.residual[j] -= d;
                    let m = 0.9 * r.velocity[j] + c1 * d;
                    let v = 0.999 * r.velocity[n + j] + c2 * (d * d);
                    (r.velocity[j], r.velocity[n + j]) = (m, v);
                    let u = (m / bc1) / (libm::sqrtf(v / bc2) + 1e-8);
                    let w = &mut r.model.params_mut()[j];
                    if matches!(rule, UpdateRule::AdamW(_)) {
                        *w -= (lr * 0.05) * *w;
                    }
                    *w -= lr * u;
                }
                assert_eq!(out.end_model_hash, r.model.hash(), "{rule:?} step {step}");
                assert_eq!(out.end_residual_hash, r.residual_hash());
                assert_eq!(s, r);
            }
        }
    }

    #[test]
    fn adam_state_is_in_the_residual_hash_and_checked_on_the_way_in() {
        let (mut s, batch) = adam_setup(UpdateRule::Adam(ADAM));
        s.iterate(Exec::SINGLE, &batch, &[]).unwrap();
        let n = s.model.param_count();
        let base = s.residual_hash();
        for k in [0, n, 2 * n] {
            let mut t = s.clone();
            t.velocity[k] = f32::from_bits(t.velocity[k].to_bits() ^ 1);
            assert_ne!(t.residual_hash(), base, "state element {k}");
        }
        // AdamW decays: another end model than Adam's from the same start.
        let (mut w, _) = adam_setup(UpdateRule::AdamW(ADAM));
        let (mut a, _) = adam_setup(UpdateRule::Adam(ADAM));
        let (ow, oa) = (
            w.iterate(Exec::SINGLE, &batch, &[]).unwrap(),
            a.iterate(Exec::SINGLE, &batch, &[]).unwrap(),
        );
        assert_ne!(ow.end_model_hash, oa.end_model_hash);
        assert_eq!(ow.map, oa.map);
        // Parts of the wrong length, or momentum with Adam, are refused.
        let (m, opt) = (s.model.clone(), s.optimizer);
        let rule = UpdateRule::Adam(ADAM);
        assert!(TrainState::from_parts_with_rule(
            m.clone(),
            opt,
            rule,
            vec![0.0; n],
            vec![0.0; 2 * n]
        )
        .is_err());
        let with_momentum = OptimizerSpec { momentum: 0.5, ..opt };
        assert!(TrainState::with_rule(m.clone(), with_momentum, rule).is_err());
        let bad = UpdateRule::Adam(AdamSpec { beta2: 1.0, ..ADAM });
        assert!(TrainState::with_rule(m, opt, bad).is_err());
    }

    #[test]
    fn every_build_of_the_residual_pass_gives_the_same_bits() {
        let tau = 0.01f32;
        let edges = [
            0.0,
            -0.0,
            tau,
            -tau,
            f32::from_bits(tau.to_bits() + 1),
            f32::from_bits((-tau).to_bits() + 1),
            f32::MIN_POSITIVE / 2.0,
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            1e-9,
            -0.02,
        ];
        let mut rng = Rng::from_u64(11);
        // Every pair of edge values, then random ones; 200 + 100 values, not a multiple of a
        // vector's lanes.
        let mut r: Vec<f32> = Vec::new();
        let mut g: Vec<f32> = Vec::new();
        for &a in &edges {
            for &b in &edges {
                r.push(a);
                g.push(b);
            }
        }
        for _ in 0..104 {
            r.push((rng.next_f32() - 0.5) * 0.03);
            g.push((rng.next_f32() - 0.5) * 0.03);
        }
        let mut builds = vec![ResidualIsa::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                builds.push(ResidualIsa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                builds.push(ResidualIsa::Avx512);
            }
        }
        // The definition (module docs, steps 4-6), one coordinate at a time.
        let mut want_r = r.clone();
        let mut want_f = vec![0u8; r.len()];
        for ((rj, &gj), f) in want_r.iter_mut().zip(&g).zip(&mut want_f) {
            *rj += gj;
            if *rj > tau {
                *rj -= tau;
                *f = 1;
            } else if *rj < -tau {
                *rj -= -tau;
                *f = 2;
            }
        }
        // A NaN's sign and payload are not fixed by IEEE addition (the compiler may swap the
        // operands): non-finite values never reach a valid block (design/010), so a NaN counts
        // as one value here; every other value must match bit for bit.
        let bits = |v: &[f32]| {
            v.iter().map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() }).collect::<Vec<_>>()
        };
        for isa in builds {
            let mut got_r = r.clone();
            let mut got_f = vec![0u8; r.len()];
            for ((rs, gs), fs) in got_r.chunks_mut(64).zip(g.chunks(64)).zip(got_f.chunks_mut(64)) {
                isa.residual_flags(rs, gs, fs, tau);
            }
            assert_eq!(bits(&got_r), bits(&want_r), "{isa:?}");
            assert_eq!(got_f, want_f, "{isa:?}");
        }
    }

    #[test]
    fn a_large_state_runs_the_residual_pass_in_halves_with_the_same_bits() {
        let spec = ModelSpec::mlp(784, &[96], 10, Activation::Relu, 3);
        let model = Model::new(spec).unwrap();
        assert!(model.param_count() >= SPLIT_PASS_MIN);
        let mut rng = Rng::from_u64(21);
        let x: Vec<f32> = (0..4 * 784).map(|_| rng.next_f32()).collect();
        let batch = Batch::new(x, vec![3, 1, 4, 1], 784).unwrap();
        let peer = [pack_entry(5, true), pack_entry(70_000, false)];
        for (momentum, rule) in [
            (0.0, UpdateRule::Sgd),
            (0.9, UpdateRule::Sgd),
            (0.0, UpdateRule::Adam(ADAM)),
            (0.0, UpdateRule::AdamW(ADAM)),
        ] {
            let lr = if rule.adam().is_some() { 0.01 } else { 0.1 };
            let opt =
                OptimizerSpec { learning_rate: lr, momentum, tau: 1e-4, batch_size: 4, epochs: 1 };
            let mut one = TrainState::with_rule(model.clone(), opt, rule).unwrap();
            let (mut two, mut four) = (one.clone(), one.clone());
            for step in 0..3 {
                let a = one.iterate_bound(Exec::SINGLE, &batch, &[&peer], &[9; 32]).unwrap();
                let b = two.iterate_bound(Exec::new(2), &batch, &[&peer], &[9; 32]).unwrap();
                let c = four.iterate_bound(Exec::new(4), &batch, &[&peer], &[9; 32]).unwrap();
                // Entries on both sides of the cut, so both halves emitted.
                let mid = (model.param_count() / 2) as u32;
                assert!(a.map.iter().any(|&e| unpack_entry(e).0 < mid), "{rule:?} {step}");
                assert!(a.map.iter().any(|&e| unpack_entry(e).0 >= mid), "{rule:?} {step}");
                assert_eq!(a, b, "{rule:?} momentum {momentum} step {step}");
                assert_eq!(a, c, "{rule:?} momentum {momentum} step {step}");
                assert_eq!(one, two);
                assert_eq!(one, four);
            }
        }
    }

    #[test]
    fn bad_peer_index_is_an_error_and_changes_nothing() {
        let (mut s, batch) = setup(0.0);
        let before = s.clone();
        let bad = [pack_entry(s.model.param_count() as u32, true)];
        let err = s.iterate(Exec::SINGLE, &batch, &[&[1, 2], &bad]).unwrap_err();
        assert!(matches!(err, IterationError::PeerIndex { map: 1, entry: 0, .. }));
        assert_eq!(s, before);
    }

    #[test]
    fn peer_update_sign_convention() {
        let (mut s, batch) = setup(0.0);
        let w0 = s.model.params()[3];
        let mut t = s.clone();
        let (lr, tau) = (s.optimizer.learning_rate, s.optimizer.tau);
        // Apply the peer entry only (the gradient part is the same in both runs).
        s.iterate(Exec::SINGLE, &batch, &[&[pack_entry(3, true)]]).unwrap();
        t.model.params_mut()[3] = w0 - lr * tau;
        t.iterate(Exec::SINGLE, &batch, &[]).unwrap();
        assert_eq!(s.model.params(), t.model.params());
    }
}
