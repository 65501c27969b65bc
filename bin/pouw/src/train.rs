//! `pouw train TASK.toml`: train a task in one process with the deterministic engine.
//!
//! The task's `workers.miners` miners are simulated round-robin: batch `b` of each epoch goes to
//! miner `b mod miners`, which first applies, as peer updates, the message maps the other miners
//! produced since its own last iteration (in the order they were produced), then runs the real
//! PoUW iteration. At the end every miner's model is evaluated on the test segments and the best
//! one (highest accuracy, lowest miner index on ties) is written as safetensors.

use std::{
    io::Write,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use pouw_ml::{BatchSchedule, Exec, Metrics, Model, Split, TaskFile, TrainState};
use serde::Serialize;

/// Exit code of a failed `pouw train` (clap uses 2 for usage errors).
pub(crate) const EXIT_TRAIN_FAILED: u8 = 3;

/// Arguments of `pouw train`.
#[derive(Debug, clap::Args)]
pub(crate) struct TrainArgs {
    /// The task file (TOML; see docs/task-file.md).
    task: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Stop after this many iterations in total (all miners together).
    #[arg(long)]
    iterations: Option<u64>,
    /// Kernel threads (default: all cores). The result does not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Where to write the best model (default: the task file with extension .safetensors).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The 32-byte split seed in hex (on chain: the hash of the block holding the task;
    /// default: 32 zero bytes).
    #[arg(long, value_parser = parse_seed)]
    seed: Option<[u8; 32]>,
}

fn parse_seed(s: &str) -> Result<[u8; 32], String> {
    pouw_ml::Digest::from_hex(s)
        .map(|d| d.0)
        .ok_or_else(|| "expected 64 hex characters (32 bytes)".to_string())
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct TrainReport {
    task: String,
    model_path: PathBuf,
    model_hash: String,
    test_accuracy: f32,
    test_loss: f32,
    /// Accuracy of the written model on the validation segments (absent without any).
    #[serde(skip_serializing_if = "Option::is_none")]
    validation_accuracy: Option<f32>,
    final_loss: f32,
    iterations: u64,
    epochs_completed: u32,
    miners: usize,
    best_miner: usize,
    miner_test_accuracy: Vec<f32>,
    params: usize,
    train_samples: usize,
    test_samples: usize,
    /// Training samples per class (index = label).
    train_class_counts: Vec<u64>,
    /// Test samples per class (index = label).
    test_class_counts: Vec<u64>,
    coordinates_sent_fraction: f64,
    split_seed: String,
    threads: usize,
    wall_seconds: f64,
    train_seconds: f64,
    iterations_per_second: f64,
}

pub(crate) fn run(args: TrainArgs) -> Result<()> {
    let started = Instant::now();
    let threads = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let exec = Exec::new(threads);
    let task = TaskFile::load(&args.task).context("cannot load the task")?;
    let data = task.load_dataset().context("cannot load the dataset")?;
    let seed = args.seed.unwrap_or([0; 32]);
    let segments =
        data.segments(task.dataset.segments as usize).context("cannot split the dataset")?;
    let split = Split::new(
        &seed,
        segments.len(),
        task.dataset.test_fraction,
        task.dataset.validation_fraction,
    )
    .with_context(|| format!("{}: cannot split the dataset", args.task.display()))?;
    let train_class_counts = data.class_counts(&segments, &split.train);
    let test_class_counts = data.class_counts(&segments, &split.test);
    if !args.json {
        eprintln!("samples per class: training split {train_class_counts:?}, test split {test_class_counts:?}");
    }
    task.check_classes(&data, &train_class_counts, "training split")
        .context("the dataset is not usable")?;
    let opt = task.optimizer;
    let schedule = BatchSchedule::new(&segments, &split, opt.batch_size as usize, seed);
    let per_epoch = schedule.batches_per_epoch();
    if per_epoch == 0 {
        bail!(
            "{}: {} training samples do not make one batch of {}",
            args.task.display(),
            schedule.train_samples().len(),
            opt.batch_size
        );
    }
    let miners = task.workers.miners as usize;
    // The initialiser's model, or the client's own start weights (`init = { file = ... }`).
    let model = task.start_model().context("cannot build the model")?;
    let params = model.param_count();
    let planned = u64::from(opt.epochs) * per_epoch as u64;
    let total = args.iterations.map_or(planned, |n| n.min(planned));

    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} train [{elapsed_precise}] {wide_bar} {pos}/{len} it ({per_sec}, eta {eta}) {msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));

    let train_started = Instant::now();
    let InOrder { mut states, done, sent, epochs_completed, final_loss } = train_in_order(
        exec,
        &data,
        &schedule,
        &model,
        opt,
        task.update,
        miners,
        total,
        |done, epoch, loss| {
            bar.inc(1);
            if done % 50 == 0 {
                bar.set_message(format!("epoch {epoch} loss {loss:.4}"));
            }
        },
    )?;
    let train_seconds = train_started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // Evaluate every miner's final model on the test segments; keep the best.
    let (test_x, test_y) = gather_segments(&data, &segments, &split.test);
    let results: Vec<Metrics> = states
        .iter()
        .map(|s| s.model().evaluate(exec, &test_x, &test_y, 500))
        .collect::<Result<_, _>>()
        .context("cannot evaluate the models on the test segments")?;
    let best = (0..miners)
        .max_by(|&a, &b| results[a].correct.cmp(&results[b].correct).then(b.cmp(&a)))
        .expect("at least one miner");
    let best_model = states.swap_remove(best).into_model();
    let validation_accuracy = if split.validation.is_empty() {
        None
    } else {
        let (x, y) = gather_segments(&data, &segments, &split.validation);
        let m = best_model.evaluate(exec, &x, &y, 500).context("cannot evaluate the model")?;
        Some(m.accuracy())
    };
    let model_hash = best_model.hash();
    let out_path = args.out.clone().unwrap_or_else(|| args.task.with_extension("safetensors"));
    pouw_ml::save_safetensors(&best_model, &out_path).context("cannot write the model")?;

    let report = TrainReport {
        task: task.name,
        model_path: out_path,
        model_hash: model_hash.to_hex(),
        test_accuracy: results[best].accuracy(),
        test_loss: results[best].loss,
        validation_accuracy,
        final_loss,
        iterations: done,
        epochs_completed,
        miners,
        best_miner: best,
        miner_test_accuracy: results.iter().map(Metrics::accuracy).collect(),
        params,
        train_samples: schedule.train_samples().len(),
        test_samples: test_y.len(),
        train_class_counts,
        test_class_counts,
        coordinates_sent_fraction: sent as f64 / (done.max(1) as f64 * params as f64),
        split_seed: pouw_ml::Digest(seed).to_hex(),
        threads,
        wall_seconds: started.elapsed().as_secs_f64(),
        train_seconds,
        iterations_per_second: done as f64 / train_seconds.max(1e-9),
    };
    if args.json {
        // stdout carries the command's result (STYLE section 7).
        let json = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        writeln!(std::io::stdout().lock(), "{json}").context("cannot write to stdout")?;
    } else {
        eprintln!(
            "trained {} iterations ({} epochs, {} miners) in {:.1}s: test accuracy {:.2}% (loss {:.4}), model {} -> {}",
            report.iterations,
            report.epochs_completed,
            miners,
            report.wall_seconds,
            report.test_accuracy * 100.0,
            report.test_loss,
            report.model_hash,
            report.model_path.display()
        );
    }
    Ok(())
}

/// What [`train_in_order`] leaves: every miner's state and the run's counters.
pub(crate) struct InOrder {
    /// Every miner's final state, by miner index.
    pub(crate) states: Vec<TrainState>,
    /// Iterations run (all miners together).
    pub(crate) done: u64,
    /// Coordinates sent in all the message maps.
    pub(crate) sent: u64,
    pub(crate) epochs_completed: u32,
    /// Mean loss of the last epoch's batches.
    pub(crate) final_loss: f32,
}

/// The task's training in one process, messages exchanged in order: `miners` miners
/// round-robin over `schedule` (batch `b` of each epoch goes to miner `b mod miners`), each first
/// applying the maps the others produced since its own last iteration, in production order;
/// every miner runs the task's local update rule (SGD, Adam or AdamW); `total` iterations at
/// most. `progress(done, epoch, recent loss)` after each iteration. `pouw devnet` runs it for
/// its in-order reference.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_in_order(
    exec: Exec,
    data: &pouw_ml::Dataset,
    schedule: &BatchSchedule,
    model: &Model,
    opt: pouw_ml::OptimizerSpec,
    rule: pouw_ml::UpdateRule,
    miners: usize,
    total: u64,
    mut progress: impl FnMut(u64, u32, f32),
) -> Result<InOrder> {
    let per_epoch = schedule.batches_per_epoch();
    let mut states = (0..miners.max(1))
        .map(|_| TrainState::with_rule(model.clone(), opt, rule))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot build the training state")?;
    let miners = states.len();
    // inbox[m]: maps of the other miners since m's last iteration, in production order.
    let mut inbox: Vec<Vec<Rc<Vec<u32>>>> = vec![Vec::new(); miners];
    let mut recent_losses: Vec<f32> = Vec::with_capacity(per_epoch);
    let mut sent = 0u64;
    let mut done = 0u64;
    let mut epochs_completed = 0;
    'epochs: for epoch in 0..opt.epochs {
        let order = schedule.epoch_order(epoch);
        for b in 0..per_epoch {
            if done == total {
                break 'epochs;
            }
            let m = BatchSchedule::miner_of(b, miners);
            let batch = data.gather(schedule.batch(&order, b));
            let peers: Vec<&[u32]> = inbox[m].iter().map(|v| v.as_slice()).collect();
            let out = states[m].iterate(exec, &batch, &peers).with_context(|| {
                format!("iteration {done} (epoch {epoch}, batch {b}, miner {m})")
            })?;
            inbox[m].clear();
            sent += out.map.len() as u64;
            if recent_losses.len() == per_epoch {
                recent_losses.remove(0);
            }
            recent_losses.push(out.loss());
            let map = Rc::new(out.map);
            for (other, queue) in inbox.iter_mut().enumerate() {
                if other != m {
                    queue.push(Rc::clone(&map));
                }
            }
            done += 1;
            progress(done, epoch, out_loss_mean(&recent_losses));
        }
        epochs_completed = epoch + 1;
    }
    Ok(InOrder { states, done, sent, epochs_completed, final_loss: out_loss_mean(&recent_losses) })
}

/// Mean of the recent batch losses (reporting only).
fn out_loss_mean(losses: &[f32]) -> f32 {
    if losses.is_empty() {
        return f32::NAN;
    }
    (losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len() as f64) as f32
}

/// Features and labels of the given segments, concatenated in that order.
fn gather_segments(
    data: &pouw_ml::Dataset,
    segments: &[pouw_ml::Segment],
    which: &[usize],
) -> (Vec<f32>, Vec<u32>) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for &s in which {
        let (fx, fy) = data.range(segments[s].start, segments[s].len);
        x.extend_from_slice(&fx);
        y.extend_from_slice(fy);
    }
    (x, y)
}
