//! `pouw devnet`: a whole network of separate node processes on loopback, one real client
//! task (or `--tasks N`, one after the other) from submission to the delivered model, and a
//! report.
//!
//! Default layout (10 processes; only the 3 miners train, so it fits 2 cores):
//!
//! | node | roles | mines |
//! |---|---|---|
//! | client | client (submits the task, serves its dataset) | no |
//! | miner-1..3 | miner | yes (filler task until selected) |
//! | supervisor-1..3 | supervisor | no |
//! | evaluator-1..3 | evaluator, verifier (attests blocks, design/006) | no |
//!
//! Every node keeps its own data directory under `--dir`, verifies every block (replay
//! included) and serves JSON-RPC (and the dashboard) on its own port.
//!
//! `--tasks N` runs `N` tasks one after the other on the same network: each is submitted
//! through the client node's `client_submitTask` (as `pouw client submit` does) once the
//! previous one completed and the workers hold tickets again. The report lists every task
//! (`tasks`, `tasks_completed`); its other keys describe the last one.
//!
//! `--miners N` runs `N` honest miners instead of 3 (the task file's `workers.miners` is set to
//! match, in the copy written to `--dir`).
//!
//! `--attack NAME` adds one hostile worker (docs/attacks.md): `sign-flip`, `late-sign-flip`
//! and `end-sign-flip` (poisoning from iteration 100, or in the walk's last 24 iterations),
//! `noise` and `stale` add one more miner (`miner-4` with 3 honest ones) that poisons the iteration
//! messages it gossips (the task then wants one more miner); `bad-model` adds such a miner that
//! trains honestly but submits a final model of another shape (on a second task, one full of
//! NaN); `lying-supervisor` makes `supervisor-3` commit wrong history
//! roots; `lying-evaluator` makes `evaluator-3` vote a wrong verdict; `evaluator-theft` makes
//! `evaluator-2` and `evaluator-3` (a majority) vote to confiscate an honest miner's stake. The
//! report then says who the attacker was, how many of its rounds were flagged, whether its
//! stake was confiscated, what it was paid, and `honest_confiscated`: the stake taken from the
//! seats of nodes that run no attack (0 unless a rule failed).

use crate::rpc_client::call_at as call;
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pouw_primitives::{ChainSpec, CompactTarget, Uint256};
use serde_json::{json, Value};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

#[path = "devnet_sim.rs"]
mod sim;

/// `pouw devnet`.
#[derive(Debug, Args)]
pub(crate) struct DevnetArgs {
    /// Directory for the nodes' data directories, logs and the report (wiped at start).
    #[arg(long, default_value = "target/devnet")]
    dir: PathBuf,
    /// The client task file.
    #[arg(long, default_value = "tasks/devnet.toml")]
    task: PathBuf,
    /// Print the JSON report on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// Leave the network running after the report, until Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Tasks to run, one after the other (each submitted once the previous one completed).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    tasks: u16,
    /// Honest miners (the task file's `workers.miners` is set to match).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=6))]
    miners: u16,
    /// Run with one hostile worker: sign-flip, late-sign-flip, end-sign-flip, noise, stale,
    /// bad-model (one more miner, hostile), grind (one more node mining the filler task),
    /// lying-supervisor, lying-evaluator or evaluator-theft; or withhold-test, a client that
    /// never reveals its test set, or tiny-task, a client paying for a self-dealt task
    /// (docs/attacks.md).
    #[arg(long)]
    attack: Option<pouw_node::Attack>,
    /// The network simulator: more nodes, a bootstrap topology, emulated links, a partition,
    /// a late joiner (docs/devnet.md).
    #[command(flatten)]
    sim: sim::SimArgs,
}

/// How long a submission is retried while the task cannot be staffed (the workers' tickets
/// are not on chain yet, or are being bought again after the previous task).
const STAFF_TIMEOUT: Duration = Duration::from_secs(180);

/// One task of the run, for the report's `tasks`: the delivered model's accuracy beside the
/// in-order reference (`reference_accuracy`) and the gap in points (reference minus networked).
fn task_entry(
    task_id: &str,
    test_accuracy: f64,
    reference: Option<f64>,
    completed: bool,
    wall: Duration,
) -> Value {
    json!({
        "task_id": task_id,
        "test_accuracy": test_accuracy,
        "reference_accuracy": reference,
        "reference_gap": reference.map(|r| reference_gap(r, test_accuracy)),
        "completed": completed,
        "wall_seconds": (wall.as_secs_f64() * 10.0).round() / 10.0,
    })
}

/// Reference minus networked accuracy, in points, to two decimals.
fn reference_gap(reference: f64, networked: f64) -> f64 {
    ((reference - networked) * 10_000.0).round() / 100.0
}

/// How many of the report's `tasks` completed.
fn tasks_completed(tasks: &[Value]) -> usize {
    tasks.iter().filter(|t| t["completed"] == json!(true)).count()
}

/// One node's line of the report: its counters, balance and network bytes (`pouw_health`).
#[allow(clippy::too_many_arguments)]
fn node_entry(
    name: &str,
    roles: &str,
    address: &pouw_primitives::Address,
    rpc: SocketAddr,
    health: &Value,
    account: &Value,
    genesis_balance: u64,
    height: u64,
) -> Value {
    let c = &health["node"];
    let balance: u64 = account["balance"]
        .as_str()
        .and_then(|b| b.parse::<pouw_primitives::Amount>().ok())
        .map_or(0, |a| a.units());
    let verified = c["blocks_verified"].as_u64().unwrap_or(0);
    json!({
        "name": name,
        "roles": roles,
        "address": address,
        "rpc": format!("http://{rpc}/"),
        "height": health["height"],
        "blocks_mined": c["blocks_mined"],
        "blocks_verified": verified,
        "blocks_rejected": c["blocks_rejected"],
        "attestations_sent": c["attestations_sent"],
        "every_block_checked": verified + c["blocks_mined"].as_u64().unwrap_or(0) >= height,
        "balance": account["balance"],
        "balance_change": format_signed(i128::from(balance) - i128::from(genesis_balance)),
        "bytes_out": c["bytes_out"],
        "bytes_in": c["bytes_in"],
    })
}

/// A node's resources: `resident_mib` now (`pouw_health`), `peak_resident_mib` (the process's
/// high-water mark, Linux `VmHWM`), the CPU seconds it spent screening (`supervisor_cpu_seconds`,
/// a supervisor) and following its own stream for its supervisors (`own_states_cpu_seconds`, a
/// miner; design/020), from `pouw_security`.
fn resource_keys(n: &Node, health: &Value) -> serde_json::Map<String, Value> {
    let mib = |bytes: u64| (bytes as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0;
    let peak = std::fs::read_to_string(format!("/proc/{}/status", n.child.id()))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kib| mib(kib.saturating_mul(1024)));
    let security = call(n.rpc, "pouw_security", json!([])).unwrap_or(Value::Null);
    let mut m = serde_json::Map::new();
    m.insert("resident_mib".into(), json!(health["process"]["memory_bytes"].as_u64().map(mib)));
    m.insert("peak_resident_mib".into(), json!(peak));
    for key in ["supervisor_cpu_seconds", "own_states_cpu_seconds"] {
        let secs = security[key].as_f64().map(|s| (s * 1000.0).round() / 1000.0);
        m.insert(key.into(), json!(secs));
    }
    m
}

/// The node that plays the attacker in `--attack` runs, with `miners` honest miners.
fn attacker_name(attack: pouw_node::Attack, miners: u16) -> String {
    match attack.role() {
        Some(pouw_primitives::Role::Supervisor) => "supervisor-3".into(),
        Some(pouw_primitives::Role::Evaluator) => "evaluator-3".into(),
        None if attack == pouw_node::Attack::TinyTask => "tiny-client".into(),
        None => "client".into(),
        _ if attack == pouw_node::Attack::Grind => "grinder".into(),
        _ => format!("miner-{}", miners + 1),
    }
}

/// The task file with `workers.miners` set to `miners` and the dataset paths made absolute,
/// written to `dir/task.toml`.
fn task_with_miners(task: &Path, miners: u16, dir: &Path) -> Result<PathBuf> {
    let text =
        std::fs::read_to_string(task).with_context(|| format!("reading {}", task.display()))?;
    let mut value: toml::Value =
        toml::from_str(&text).with_context(|| format!("parsing {}", task.display()))?;
    let base = task.parent().unwrap_or_else(|| Path::new("."));
    if let Some(ds) = value.get_mut("dataset").and_then(|d| d.as_table_mut()) {
        for key in ["images", "labels", "path"] {
            if let Some(toml::Value::String(p)) = ds.get(key) {
                let abs = base.join(p).display().to_string();
                ds.insert(key.into(), toml::Value::String(abs));
            }
        }
    }
    // `[model] init = { file = "..." }`: the client's start weights, beside the task file.
    let init = value.get_mut("model").and_then(|m| m.get_mut("init"));
    if let Some(init) = init.and_then(|i| i.as_table_mut()) {
        if let Some(toml::Value::String(p)) = init.get("file") {
            let abs = base.join(p).display().to_string();
            init.insert("file".into(), toml::Value::String(abs));
        }
    }
    let workers = value
        .get_mut("workers")
        .and_then(|w| w.as_table_mut())
        .context("the task file has no [workers] table")?;
    workers.insert("miners".into(), toml::Value::Integer(i64::from(miners)));
    let out = dir.join("task.toml");
    std::fs::write(&out, toml::to_string(&value)?)?;
    Ok(out)
}

struct Node {
    name: String,
    roles: &'static str,
    key_index: usize,
    rpc: SocketAddr,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port, below the ephemeral range (`pouw_net::free_loopback_port`).
fn free_port() -> Result<u16> {
    Ok(pouw_net::free_loopback_port()?)
}

/// The devnet chain: the built-in devnet with 2-second blocks.
fn devnet_spec() -> ChainSpec {
    let mut spec = ChainSpec::devnet();
    spec.name = "devnet-local".into();
    spec.block_time_ms = 2_000;
    let target = spec.initial_target.to_target().unwrap_or(Uint256::MAX);
    spec.initial_target = CompactTarget::from_target(
        target.saturating_mul(Uint256::from(5u64)) / Uint256::from(2u64),
    );
    spec
}

fn node_args(n: &str) -> (&'static str, bool) {
    match n {
        n if n.starts_with("miner") => ("miner", true),
        "grinder" => ("", true),
        "tiny-miner" => ("miner", true),
        n if n.starts_with("supervisor") => ("supervisor", false),
        n if n.starts_with("evaluator") => ("evaluator,verifier", false),
        n if n.starts_with("node-") => ("", false),
        _ => ("client", false),
    }
}

pub(crate) fn run(args: DevnetArgs) -> Result<()> {
    let started = Instant::now();
    let mut task_file = std::fs::canonicalize(&args.task)
        .with_context(|| format!("task file {}", args.task.display()))?;
    let grind = args.attack == Some(pouw_node::Attack::Grind);
    // The tiny-task client and its accomplice: one more client node, and one more miner whose
    // ticket alone offers a GPU (the tiny task needs one) and accepts no fee under 500 coins
    // (so the devnet's own task never selects it).
    let tiny = args.attack == Some(pouw_node::Attack::TinyTask);
    // A hostile miner trains the task as one more miner; the grinder mines the filler task
    // only, with no tickets (it is never selected for a client task).
    let hostile_miner =
        args.attack.is_some_and(|a| a.role() == Some(pouw_primitives::Role::Miner)) && !grind;
    let withhold = args.attack == Some(pouw_node::Attack::WithholdTest);
    let miners = args.miners + u16::from(hostile_miner);
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("clearing {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(args.dir.join("logs"))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let spec_path = dir.join("chain.toml");
    // This run's own chain (another devnet on the machine never meets it).
    std::fs::write(&spec_path, sim::isolated(devnet_spec()).to_toml())?;
    let exe = std::env::current_exe().context("locating the pouw binary")?;
    task_file = task_with_miners(&task_file, miners, &dir)?;
    if withhold {
        // Nobody can evaluate: the task ends at its finalisation deadline, kept short.
        set_evaluation_blocks(&task_file, WITHHOLD_EVALUATION_BLOCKS)?;
    }
    let test_data = load_test_data(&task_file)?;
    let attacker = args.attack.map(|a| attacker_name(a, args.miners));

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;

    let names: Vec<String> = std::iter::once("client".to_string())
        .chain((1..=miners).map(|i| format!("miner-{i}")))
        .chain((1..=3).map(|i| format!("supervisor-{i}")))
        .chain((1..=3).map(|i| format!("evaluator-{i}")))
        .chain(grind.then(|| "grinder".to_string()))
        .chain(tiny.then(|| "tiny-client".to_string()))
        .chain(tiny.then(|| "tiny-miner".to_string()))
        .collect();
    // The simulator's full nodes, up to `--nodes`.
    let usual = names.len();
    let names: Vec<String> = names
        .into_iter()
        .chain((usual + 1..=usual + args.sim.extra_nodes(usual)).map(|i| format!("node-{i}")))
        .collect();
    let mut sim = sim::Sim::new(&args.sim, &names)?;
    let mut nodes: Vec<Node> = Vec::new();
    let mut p2p: Vec<String> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let key = dir.join("keys").join(format!("{name}.key"));
        std::fs::create_dir_all(key.parent().unwrap_or(&dir))?;
        write_key(&key, &ChainSpec::devnet_key(i))?;
        let port = match sim.as_ref().and_then(|s| s.port(i)) {
            Some(port) => port,
            None => free_port()?,
        };
        let rpc: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let (roles, mine) = node_args(name);
        let log = std::fs::File::create(dir.join("logs").join(format!("{name}.log")))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("node")
            .arg("--datadir")
            .arg(dir.join(name))
            .arg("--chain")
            .arg(&spec_path)
            .arg("--key")
            .arg(&key)
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")])
            .args(["--rpc", &rpc.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        if !roles.is_empty() {
            cmd.args(["--roles", roles]);
        }
        if !mine {
            cmd.arg("--no-mine");
        }
        match sim.as_mut() {
            Some(s) => {
                cmd.args(s.node_args(i, names.len()));
            }
            None => {
                for b in &p2p {
                    cmd.args(["--bootstrap", b]);
                }
            }
        }
        let hostile = attacker.as_deref() == Some(name.as_str())
            || (args.attack == Some(pouw_node::Attack::EvaluatorTheft) && name == "evaluator-2");
        if let (Some(attack), true) = (args.attack, hostile) {
            cmd.args(["--attack", attack.name()]);
        }
        if name == "tiny-miner" {
            cmd.args(["--gpu", "--min-fee", "500"]);
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        if let Some(s) = &sim {
            s.register(i, child.id(), names.len());
        }
        p2p.push(format!("/ip4/127.0.0.1/tcp/{port}"));
        nodes.push(Node { name: name.clone(), roles, key_index: i, rpc, child });
    }
    let client = nodes[0].rpc;
    eprintln!(
        "devnet: {} nodes under {}; dashboard: http://{}/",
        nodes.len(),
        dir.display(),
        client
    );

    // Progress.
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>13} {spinner} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bars: Vec<ProgressBar> = nodes
        .iter()
        .map(|n| {
            let b = multi.add(ProgressBar::new_spinner());
            b.set_style(style.clone());
            b.set_prefix(n.name.clone());
            b
        })
        .collect();
    let task_bar = multi.add(ProgressBar::new_spinner());
    task_bar.set_style(style);
    task_bar.set_prefix("task");

    let deadline = started + Duration::from_secs(args.timeout);
    let wait = |what: &str| -> Result<()> {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted while {what}");
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {} s while {what} (logs in {})",
                args.timeout,
                dir.join("logs").display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    };
    // Wait for the RPC servers (a node that exits at start ends the run at once).
    for n in nodes.iter_mut() {
        while call(n.rpc, "pouw_tip", json!([])).is_err() {
            if let Ok(Some(status)) = n.child.try_wait() {
                bail!(
                    "{} exited at start ({status}); its log: {}",
                    n.name,
                    dir.join("logs").join(format!("{}.log", n.name)).display()
                );
            }
            wait(&format!("starting {}", n.name))?;
        }
    }
    let refresh = |phase: &str| {
        for (n, b) in nodes.iter().zip(&bars) {
            let h = call(n.rpc, "pouw_health", json!([])).unwrap_or(Value::Null);
            let c = &h["node"];
            let mut msg = format!(
                "height {} · mined {} · verified {} · rejected {} · peers {}",
                h["height"],
                c["blocks_mined"],
                c["blocks_verified"],
                c["blocks_rejected"],
                h["peers"]
            );
            if n.roles == "miner" {
                if let Ok(points) = call(n.rpc, "pouw_training", json!([0, 100000])) {
                    if let Some(last) = points.as_array().and_then(|a| a.last()) {
                        msg.push_str(&format!(
                            " · iteration {} loss {}",
                            last["iteration"], last["loss"]
                        ));
                    }
                }
            }
            b.set_message(msg);
            b.tick();
        }
        task_bar.set_message(phase.to_string());
        task_bar.tick();
    };

    let mut tasks = Vec::new();
    let mut last = None;
    for k in 1..=args.tasks {
        let label = if args.tasks > 1 { format!("task {k}/{}", args.tasks) } else { "task".into() };
        let task_started = Instant::now();
        let mut last_why = String::new();
        // Submit the task once the workers hold tickets (bought at start, and again once the
        // previous task released them).
        let task_id = loop {
            match call(client, "client_submitTask", json!([task_file.display().to_string()])) {
                Ok(v) => break v["task_id"].as_str().unwrap_or_default().to_string(),
                Err(e) if format!("{e:#}").contains("cannot be staffed") => {
                    let why = format!("{e:#}");
                    if task_started.elapsed() > STAFF_TIMEOUT {
                        bail!(
                            "{label} could not be staffed in {} s: {why} (logs in {})",
                            STAFF_TIMEOUT.as_secs(),
                            dir.join("logs").display()
                        );
                    }
                    if why != last_why {
                        multi.suspend(|| {
                            eprintln!("devnet: {label} not staffed yet ({why}); retrying")
                        });
                        last_why = why.clone();
                    }
                    refresh(&format!("{label}: waiting for the workers' tickets ({why})"));
                    wait("waiting for tickets")?
                }
                Err(e) => return Err(e.context(format!("submitting {label}"))),
            }
        };
        multi.suspend(|| eprintln!("devnet: {label} submitted: {task_id}"));
        // Follow the task.
        let view = loop {
            let v = call(client, "pouw_task", json!([task_id])).unwrap_or(Value::Null);
            let phase = phase_name(&v["phase"]);
            if let Some(s) = sim.as_mut() {
                s.tick(&nodes, &phase);
            }
            refresh(&format!("{label} {} · {phase}", &task_id[..8.min(task_id.len())]));
            match phase.as_str() {
                "completed" => break v,
                "expired" if withhold => {
                    multi.clear().ok();
                    return withheld_report(&mut nodes, &task_id, &v, &dir, started, args.json);
                }
                "refused" | "expired" => bail!("{label} ended {phase}: {}", v["phase"]),
                _ => wait("training the task")?,
            }
        };
        // The client fetches the best model over the network.
        let model = loop {
            if let Ok(v) = call(client, "client_model", json!([task_id])) {
                if let Some(hex_bytes) = v["safetensors_hex"].as_str() {
                    break hex::decode(hex_bytes)?;
                }
            }
            if let Some(s) = sim.as_mut() {
                s.tick(&nodes, "completed");
            }
            refresh(&format!("{label}: fetching the best model"));
            wait("fetching the best model")?;
        };
        let accuracy = test_accuracy(&model, &view, &test_data)?;
        let wall = task_started.elapsed();
        refresh(&format!("{label}: training the in-order reference"));
        let reference = reference_accuracy(&view, &task_id, &test_data)?;
        multi.suspend(|| {
            eprintln!(
                "devnet: {label} completed in {:.1} s, test accuracy {:.2} % (in-order reference {:.2} %)",
                wall.as_secs_f64(),
                accuracy * 100.0,
                reference * 100.0
            )
        });
        tasks.push(task_entry(&task_id, accuracy, Some(reference), true, wall));
        last = Some((task_id, view, model, accuracy, reference));
    }
    let Some((task_id, view, model, accuracy, reference)) = last else { bail!("no task ran") };
    let model_path = dir.join("model.safetensors");
    std::fs::write(&model_path, &model)?;
    // Every node on the same tip, having verified every block.
    let tip = call(client, "pouw_tip", json!([]))?;
    let height = tip["height"].as_u64().unwrap_or(0);
    let mut all_synced = false;
    while !all_synced {
        // The grinder is banned by every honest node once it sent its forged block: its chain
        // goes its own way.
        all_synced = nodes.iter().filter(|n| n.name != "grinder").all(|n| {
            call(n.rpc, "pouw_tip", json!([])).is_ok_and(|t| t["height"].as_u64() >= Some(height))
        });
        if let Some(s) = sim.as_mut() {
            s.tick(&nodes, "completed");
            // With a partition, until the two halves agree again.
            all_synced &= s.settled();
        }
        if !all_synced {
            wait("every node reaching the tip")?;
        }
    }
    if tiny {
        // The self-dealt task trains on: wait (at most 4 minutes) until its miner has trained
        // and stopped.
        wait_for_tiny_training(&nodes, Instant::now() + Duration::from_secs(240))?;
    }
    refresh("completed");
    let mut node_reports = Vec::new();
    let (mut mined, mut rejected) = (0u64, 0u64);
    let spec = devnet_spec();
    for n in &nodes {
        let h = call(n.rpc, "pouw_health", json!([]))?;
        let c = &h["node"];
        let address = ChainSpec::devnet_key(n.key_index).public();
        let account = call(n.rpc, "pouw_account", json!([address.to_string()]))?;
        let genesis = spec.genesis.allocations.get(n.key_index).map_or(0, |a| a.balance.units());
        mined += c["blocks_mined"].as_u64().unwrap_or(0);
        rejected += c["blocks_rejected"].as_u64().unwrap_or(0);
        let mut entry =
            node_entry(&n.name, n.roles, &address, n.rpc, &h, &account, genesis, height);
        if let Some(o) = entry.as_object_mut() {
            o.extend(resource_keys(n, &h));
        }
        node_reports.push(entry);
    }
    // Every node process still running (an attack must not have stopped any).
    let nodes_running =
        nodes.iter_mut().filter_map(|n| n.child.try_wait().ok()).filter(Option::is_none).count();
    let supply = call(client, "pouw_supply", json!([]))?;
    let sim_report = match sim.as_mut() {
        Some(s) => {
            let late = if args.sim.late_joiner() {
                Some(s.late_join(&nodes, &exe, &dir, &spec_path)?)
            } else {
                None
            };
            Some(s.report(&nodes, mined, height, late))
        }
        None => None,
    };
    let attack_report = match (args.attack, attacker) {
        (Some(attack), Some(name)) => {
            let node = nodes.iter().find(|n| n.name == name).context("the attacker node")?;
            let mut m = if attack == pouw_node::Attack::Grind {
                grind_summary(node, &nodes, client)?
            } else if attack == pouw_node::Attack::TinyTask {
                tiny_task_summary(node, &nodes)?
            } else {
                attack_summary(attack, node, &nodes, &task_id, &view)?
            };
            let hostile: Vec<String> = nodes
                .iter()
                .filter(|n| {
                    n.name == name
                        || (attack == pouw_node::Attack::EvaluatorTheft && n.name == "evaluator-2")
                })
                .map(|n| ChainSpec::devnet_key(n.key_index).public().to_string())
                .collect();
            m.insert("honest_confiscated".into(), json!(honest_confiscated(&view, &hostile)));
            Some(m)
        }
        _ => None,
    };
    let mut report = json!({
        "tasks_completed": tasks_completed(&tasks),
        "tasks": tasks,
        "task_id": task_id,
        "test_accuracy": accuracy,
        "reference_accuracy": reference,
        "reference_gap": reference_gap(reference, accuracy),
        "blocks": height,
        "blocks_mined": mined,
        "blocks_rejected": rejected,
        "nodes": node_reports,
        "nodes_running": nodes_running,
        "payouts": view["settlement"]["payouts"],
        "settlement": view["settlement"],
        "supply_check_ok": supply["ok"],
        "supply": supply,
        "model": model_path.display().to_string(),
        "dashboard": format!("http://{client}/"),
        "wall_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    for summary in [attack_report, sim_report].into_iter().flatten() {
        if let Some(obj) = report.as_object_mut() {
            obj.extend(summary);
        }
    }
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    multi.clear().ok();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if args.keep {
        eprintln!("devnet: still running (dashboard http://{client}/); Ctrl-C stops every node");
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(nodes);
    Ok(())
}

/// The stake (in base units) the task's settlement took from seats of nodes not in `hostile`:
/// their penalties, and the verdict's confiscated stake when it names any of them (the
/// settlement records one total for the verdict's confiscations).
fn honest_confiscated(view: &Value, hostile: &[String]) -> u64 {
    let settlement = &view["settlement"];
    let honest = |seat: &Value| {
        seat["worker"].as_str().is_some_and(|w| !hostile.iter().any(|h| h.as_str() == w))
    };
    let units = |v: &Value| {
        v.as_str().and_then(|a| a.parse::<pouw_primitives::Amount>().ok()).map_or(0, |a| a.units())
    };
    let penalties: u64 = settlement["penalties"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| honest(&p["seat"]))
        .map(|p| units(&p["stake"]))
        .sum();
    let by_verdict = if settlement["confiscated"].as_array().into_iter().flatten().any(honest) {
        units(&settlement["confiscated_stake"])
    } else {
        0
    };
    penalties.saturating_add(by_verdict)
}

/// Finalisation deadline (in blocks after training) of the task of a `withhold-test` run:
/// no evaluator can vote, so the run lasts until it.
const WITHHOLD_EVALUATION_BLOCKS: u64 = 20;

/// Sets `payment.evaluation_blocks` of the task file at `path`.
fn set_evaluation_blocks(path: &Path, blocks: u64) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut value: toml::Value = toml::from_str(&text)?;
    let payment = value
        .get_mut("payment")
        .and_then(|p| p.as_table_mut())
        .context("the task file has no [payment] section")?;
    let blocks = i64::try_from(blocks).context("evaluation blocks")?;
    payment.insert("evaluation_blocks".into(), toml::Value::Integer(blocks));
    std::fs::write(path, toml::to_string(&value)?)?;
    Ok(())
}

/// The report of a `withhold-test` run (the client never revealed its test set, the task
/// expired): `client_bond_confiscated`, the bond, the miners that submitted a model and what
/// each was paid from the escrow, the client's refund, every node still running, and the
/// supply check.
fn withheld_report(
    nodes: &mut [Node],
    task_id: &str,
    view: &Value,
    dir: &Path,
    started: Instant,
    json_out: bool,
) -> Result<()> {
    let client = nodes.first().context("the client node")?.rpc;
    let settlement = &view["settlement"];
    let units = |v: &Value| {
        v.as_str().and_then(|a| a.parse::<pouw_primitives::Amount>().ok()).map_or(0, |a| a.units())
    };
    let bond = units(&settlement["bond_confiscated"]);
    let submitted: Vec<Value> =
        view["models"].as_array().into_iter().flatten().map(|m| m["miner"].clone()).collect();
    let miners_paid: Vec<Value> = settlement["payouts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| submitted.contains(&p["to"]))
        .cloned()
        .collect();
    let nodes_running =
        nodes.iter_mut().filter_map(|n| n.child.try_wait().ok()).filter(Option::is_none).count();
    let supply = call(client, "pouw_supply", json!([]))?;
    let report = json!({
        "attack": pouw_node::Attack::WithholdTest.name(),
        "attacker": { "name": "client", "address": view["client"] },
        "task_id": task_id,
        "phase": view["phase"],
        "client_bond_confiscated": bond > 0,
        "client_bond_amount": settlement["bond_confiscated"],
        "client_refund_amount": settlement["refund"],
        "miners_submitted": submitted,
        "miners_paid": miners_paid,
        "settlement": settlement,
        "nodes": nodes.len(),
        "nodes_running": nodes_running,
        "supply_check_ok": supply["ok"],
        "wall_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("pouw devnet: withhold-test, task {task_id} {}", phase_name(&view["phase"]));
        println!(
            "  client bond     {} {}",
            settlement["bond_confiscated"].as_str().unwrap_or("0"),
            if bond > 0 { "confiscated" } else { "NOT confiscated" }
        );
        for p in &miners_paid {
            println!(
                "  miner paid      {} {}",
                p["to"].as_str().unwrap_or(""),
                p["amount"].as_str().unwrap_or("")
            );
        }
        println!("  nodes running   {nodes_running} of {}", nodes.len());
        println!("  supply check    {}", supply["ok"]);
    }
    Ok(())
}

/// The attack part of the report: `attack`, `attacker`, `attacker_rounds`, `flagged_rounds`,
/// `confiscated`, `attacker_paid`.
fn attack_summary(
    attack: pouw_node::Attack,
    attacker: &Node,
    nodes: &[Node],
    task_id: &str,
    view: &Value,
) -> Result<serde_json::Map<String, Value>> {
    let address = ChainSpec::devnet_key(attacker.key_index).public().to_string();
    let settlement = &view["settlement"];
    // Confiscated by the verdict (a convicted miner) or penalised at its execution (an
    // outvoted supervisor or evaluator).
    let is_attacker = |s: &Value| s["worker"].as_str() == Some(address.as_str());
    let confiscated = settlement["confiscated"].as_array().into_iter().flatten().any(is_attacker)
        || settlement["penalties"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| is_attacker(&p["seat"]));
    let paid: u64 = settlement["payouts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["to"].as_str() == Some(address.as_str()))
        .filter_map(|p| p["amount"].as_str()?.parse::<pouw_primitives::Amount>().ok())
        .map(|a| a.units())
        .sum();
    let (rounds, flagged) = match attack.role() {
        // Rounds: the final models it submitted; flagged: those left unpaid (the evaluators
        // refused them: another shape, or NaN).
        Some(pouw_primitives::Role::Miner) if attack == pouw_node::Attack::BadModel => {
            let submitted = view["models"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["miner"].as_str() == Some(address.as_str()))
                .count() as u64;
            (submitted, if paid == 0 { submitted } else { 0 })
        }
        Some(pouw_primitives::Role::Miner) => {
            // Rounds: the poisoned messages it sent; flagged: those a strict majority of the
            // supervisors raised an alert for (the largest count any node saw).
            let sent = call(attacker.rpc, "pouw_security", json!([]))?["poisoned_sent"]
                .as_u64()
                .unwrap_or(0);
            let confirmed = nodes
                .iter()
                .filter_map(|n| call(n.rpc, "pouw_security", json!([])).ok())
                .flat_map(|s| s["accusations"].as_array().cloned().unwrap_or_default())
                .filter(|a| a["task_id"].as_str() == Some(task_id))
                .filter(|a| a["accused"].as_str() == Some(address.as_str()))
                .filter_map(|a| a["messages_confirmed"].as_u64())
                .max()
                .unwrap_or(0);
            (sent, confirmed)
        }
        Some(role) => committee_rounds(view, &address, role),
        // The client's attack has no rounds (withhold-test reports on its own).
        None => (0, 0),
    };
    let mut m = serde_json::Map::new();
    m.insert("attack".into(), json!(attack.name()));
    m.insert(
        "attacker".into(),
        json!({ "name": attacker.name, "address": address, "role": attacker.roles }),
    );
    m.insert("attacker_rounds".into(), json!(rounds));
    m.insert("flagged_rounds".into(), json!(flagged));
    m.insert("confiscated".into(), json!(confiscated));
    m.insert("attacker_paid".into(), json!(format_signed(i128::from(paid))));
    // The first supervisor's screening figures per miner (direction and magnitude included).
    let screening: Vec<Value> = nodes
        .iter()
        .find(|n| n.roles == "supervisor")
        .and_then(|n| call(n.rpc, "pouw_security", json!([])).ok())
        .and_then(|s| s["screening"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v["task_id"].as_str() == Some(task_id))
        .collect();
    m.insert("screening".into(), json!(screening));
    Ok(m)
}

/// A committee member's rounds and how many of them the majority outvoted: a supervisor's
/// committed history roots (outvoted: a slot where a strict majority of the supervisors
/// committed another root), an evaluator's verdict (outvoted: not the executed one).
fn committee_rounds(view: &Value, address: &str, role: pouw_primitives::Role) -> (u64, u64) {
    let history = view["history"].as_array().cloned().unwrap_or_default();
    match role {
        pouw_primitives::Role::Supervisor => {
            let n = view["participants"]["supervisors"].as_array().map_or(0, Vec::len);
            let mine: Vec<&Value> =
                history.iter().filter(|h| h["supervisor"].as_str() == Some(address)).collect();
            let outvoted = mine
                .iter()
                .filter(|h| {
                    let slot = &h["slot"];
                    let same_slot: Vec<&Value> =
                        history.iter().filter(|o| &o["slot"] == slot).collect();
                    same_slot.iter().any(|o| {
                        o["root"] != h["root"]
                            && 2 * same_slot.iter().filter(|x| x["root"] == o["root"]).count() > n
                    })
                })
                .count();
            (mine.len() as u64, outvoted as u64)
        }
        _ => {
            let executed = &view["phase"]["Completed"]["verdict"];
            let mine: Vec<&Value> = view["verdicts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["evaluator"].as_str() == Some(address))
                .collect();
            let outvoted = mine.iter().filter(|v| &v["verdict"] != executed).count();
            (mine.len() as u64, outvoted as u64)
        }
    }
}

fn phase_name(phase: &Value) -> String {
    match phase {
        Value::String(s) => s.to_lowercase(),
        Value::Object(o) => o.keys().next().map(|k| k.to_lowercase()).unwrap_or_default(),
        _ => "pending".into(),
    }
}

fn format_signed(v: i128) -> String {
    let sign = if v < 0 { "-" } else { "+" };
    let a = v.unsigned_abs();
    let coin = u128::from(pouw_primitives::COIN);
    format!("{sign}{}.{:08}", a / coin, a % coin)
}

/// The task's own data, to measure the delivered model on its test segments and to train the
/// in-order reference.
struct TestData {
    data: pouw_ml::Dataset,
    segments: Vec<pouw_ml::Segment>,
    model: pouw_ml::ModelSpec,
    /// The model training starts from: the client's start weights, or the initialiser's.
    start_model: pouw_ml::Model,
    optimizer: pouw_ml::OptimizerSpec,
    rule: pouw_ml::UpdateRule,
    miners: usize,
}

/// Loads the dataset the task file names (IDX or CSV), cut into the chain's segments.
fn load_test_data(task_file: &Path) -> Result<TestData> {
    let task = pouw_ml::TaskFile::load(task_file).context("cannot load the task")?;
    let data = task.load_dataset().context("cannot load the task's dataset")?;
    let segments = data.segments(pouw_primitives::DATASET_SEGMENTS)?;
    let start_model = task.start_model().context("cannot build the task's start model")?;
    Ok(TestData {
        data,
        segments,
        start_model,
        model: task.model,
        optimizer: task.optimizer,
        rule: task.update,
        miners: task.workers.miners as usize,
    })
}

/// The segment indices of the task view's split part `part` (`train`, `validation`, `test`).
fn split_part(view: &Value, part: &str) -> Vec<usize> {
    view["split"][part]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_u64().map(|x| x as usize)).collect())
        .unwrap_or_default()
}

/// The in-order reference of a completed task: what `pouw train` gives for the same task on the
/// same split (the chain's, from the task view) and the same batch schedule (seeded by the task
/// id, as the miners' is): the task's miners round-robin in one process, each applying the
/// others' messages in production order; the best miner's test accuracy.
fn reference_accuracy(view: &Value, task_id: &str, t: &TestData) -> Result<f64> {
    let seed = pouw_ml::Digest::from_hex(task_id).context("the task id is not 32 bytes of hex")?.0;
    let split = pouw_ml::Split {
        order: split_part(view, "order"),
        train: split_part(view, "train"),
        validation: split_part(view, "validation"),
        test: split_part(view, "test"),
    };
    if split.train.iter().chain(&split.test).any(|&i| i >= t.segments.len()) {
        bail!("the task view's split names a segment the dataset does not have");
    }
    let opt = t.optimizer;
    let schedule = pouw_ml::BatchSchedule::new(&t.segments, &split, opt.batch_size as usize, seed);
    let model = t.start_model.clone();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let exec = pouw_ml::Exec::new(threads);
    let run = crate::train::train_in_order(
        exec,
        &t.data,
        &schedule,
        &model,
        opt,
        t.rule,
        t.miners,
        u64::MAX,
        |_, _, _| {},
    )
    .context("training the in-order reference")?;
    let mut best = 0.0f64;
    for state in &run.states {
        let bytes = pouw_ml::to_safetensors(state.model()).context("the reference model")?;
        best = best.max(test_accuracy(&bytes, view, t)?);
    }
    Ok(best)
}

/// Accuracy of the delivered model on the task's test segments (the task's own dataset).
fn test_accuracy(model: &[u8], view: &Value, t: &TestData) -> Result<f64> {
    let model = pouw_ml::from_safetensors(model).context("the delivered model")?;
    model.check_fits(&t.model).context("the delivered model")?;
    let test = split_part(view, "test");
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in test {
        let s = t.segments.get(i).context("test segment index")?;
        let (f, l) = t.data.range(s.start, s.len);
        x.extend_from_slice(&f);
        y.extend_from_slice(l);
    }
    if y.is_empty() {
        bail!("the task view has no test split");
    }
    Ok(f64::from(model.evaluate(pouw_ml::Exec::new(1), &x, &y, 256)?.accuracy()))
}

fn print_report(r: &Value) {
    println!("devnet report");
    println!("  task            {}", r["task_id"].as_str().unwrap_or(""));
    println!(
        "  test accuracy   {:.2} % (in-order reference {:.2} %, gap {:.2} points)",
        r["test_accuracy"].as_f64().unwrap_or(0.0) * 100.0,
        r["reference_accuracy"].as_f64().unwrap_or(0.0) * 100.0,
        r["reference_gap"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  blocks          {} on the chain (mined {} counting orphaned ones, rejected {})",
        r["blocks"], r["blocks_mined"], r["blocks_rejected"]
    );
    println!(
        "  supply check    {}",
        if r["supply_check_ok"] == json!(true) { "ok" } else { "FAILED" }
    );
    println!("  model           {}", r["model"].as_str().unwrap_or(""));
    println!("  dashboard       {}", r["dashboard"].as_str().unwrap_or(""));
    println!("  wall time       {} s", r["wall_seconds"]);
    sim::print(r);
    let tasks = r["tasks"].as_array().cloned().unwrap_or_default();
    if tasks.len() > 1 {
        println!("  tasks           {} of {} completed", r["tasks_completed"], tasks.len());
        for (i, t) in tasks.iter().enumerate() {
            println!(
                "    {:>2}. {}  accuracy {:.2} % (reference {:.2} %)  {} s",
                i + 1,
                t["task_id"].as_str().unwrap_or(""),
                t["test_accuracy"].as_f64().unwrap_or(0.0) * 100.0,
                t["reference_accuracy"].as_f64().unwrap_or(0.0) * 100.0,
                t["wall_seconds"]
            );
        }
    }
    if let Some(attack) = r["attack"].as_str() {
        println!(
            "  attack          {attack} by {} ({}): {} of {} rounds flagged, stake {}, paid {}",
            r["attacker"]["name"].as_str().unwrap_or(""),
            r["attacker"]["address"].as_str().unwrap_or(""),
            r["flagged_rounds"],
            r["attacker_rounds"],
            if r["confiscated"] == json!(true) { "confiscated" } else { "NOT confiscated" },
            r["attacker_paid"].as_str().unwrap_or("")
        );
    }
    println!();
    println!(
        "  {:<13} {:<18} {:>6} {:>6} {:>8} {:>8}  {:>16} {:>9} {:>9}",
        "node",
        "roles",
        "height",
        "mined",
        "verified",
        "rejected",
        "balance change",
        "MB out",
        "MB in"
    );
    let mb = |v: &Value| format!("{:.1}", v.as_u64().unwrap_or(0) as f64 / 1e6);
    for n in r["nodes"].as_array().into_iter().flatten() {
        println!(
            "  {:<13} {:<18} {:>6} {:>6} {:>8} {:>8}  {:>16} {:>9} {:>9}",
            n["name"].as_str().unwrap_or(""),
            n["roles"].as_str().unwrap_or(""),
            n["height"].to_string(),
            n["blocks_mined"].to_string(),
            n["blocks_verified"].to_string(),
            n["blocks_rejected"].to_string(),
            n["balance_change"].as_str().unwrap_or(""),
            mb(&n["bytes_out"]),
            mb(&n["bytes_in"])
        );
    }
    println!();
    println!("  payouts (by rank):");
    for p in r["payouts"].as_array().into_iter().flatten() {
        println!("    {}  {}", p["to"].as_str().unwrap_or(""), p["amount"].as_str().unwrap_or(""));
    }
}

fn write_key(path: &Path, key: &pouw_primitives::Keypair) -> Result<()> {
    crate::keys::write_key(path, key)
}

/// The client-task CPU time and attempts of a miner node (its steps on client tasks: all
/// minus the filler task's).
fn client_task_mining(rpc: SocketAddr) -> Result<(u64, f64)> {
    let m = &call(rpc, "pouw_security", json!([]))?["mining"];
    let (u, f) = (|k: &str| m[k].as_u64().unwrap_or(0), |k: &str| m[k].as_f64().unwrap_or(0.0));
    let attempts = u("attempts").saturating_sub(u("filler_attempts"));
    let cpu = (f("cpu_seconds") - f("filler_cpu_seconds")).max(0.0);
    Ok((attempts, cpu))
}

/// Waits until the tiny task's miner has trained on a client task and then stopped for 5 s,
/// or `until`.
fn wait_for_tiny_training(nodes: &[Node], until: Instant) -> Result<()> {
    let miner = nodes.iter().find(|n| n.name == "tiny-miner").context("the tiny-task miner")?;
    let (mut last, mut since) = ((0u64, 0.0f64), Instant::now());
    while Instant::now() < until {
        let now = client_task_mining(miner.rpc)?;
        if now != last {
            (last, since) = (now, Instant::now());
        } else if now.0 > 0 && since.elapsed() >= Duration::from_secs(5) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("devnet: the tiny task's miner was still training at the time limit");
    Ok(())
}

/// The report of a `tiny-task` run (design/010, attack 2): the self-dealt task's miner's
/// nonce attempts per CPU-second on it against the honest miners' on the devnet's task.
fn tiny_task_summary(attacker: &Node, nodes: &[Node]) -> Result<serde_json::Map<String, Value>> {
    let address = ChainSpec::devnet_key(attacker.key_index).public().to_string();
    let accomplice =
        nodes.iter().find(|n| n.name == "tiny-miner").context("the tiny-task miner")?;
    let (tiny_attempts, tiny_cpu) = client_task_mining(accomplice.rpc)?;
    let (mut attempts, mut cpu) = (0u64, 0.0f64);
    let mut honest = Vec::new();
    for n in nodes.iter().filter(|n| n.name.starts_with("miner")) {
        let (a, c) = client_task_mining(n.rpc)?;
        attempts += a;
        cpu += c;
        honest.push(
            json!({ "name": n.name, "client_task_attempts": a, "client_task_cpu_seconds": c }),
        );
    }
    let rate = |a: u64, c: f64| if c > 0.0 { a as f64 / c } else { 0.0 };
    let (attacker_rate, honest_rate) = (rate(tiny_attempts, tiny_cpu), rate(attempts, cpu));
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let gain = if honest_rate > 0.0 { attacker_rate / honest_rate } else { 0.0 };
    let mut m = serde_json::Map::new();
    m.insert("attack".into(), json!(pouw_node::Attack::TinyTask.name()));
    m.insert(
        "attacker".into(),
        json!({ "name": attacker.name, "address": address, "role": "client" }),
    );
    m.insert("accomplice".into(), json!({ "name": accomplice.name, "address": ChainSpec::devnet_key(accomplice.key_index).public().to_string() }));
    m.insert("attacker_attempts".into(), json!(tiny_attempts));
    m.insert("attacker_cpu_seconds".into(), json!(tiny_cpu));
    m.insert("attacker_attempts_per_cpu_second".into(), json!(round(attacker_rate)));
    m.insert("honest_attempts_per_cpu_second".into(), json!(round(honest_rate)));
    m.insert("honest_miners".into(), json!(honest));
    m.insert("grind_gain".into(), json!(round(gain)));
    Ok(m)
}

/// The report of a `grind` run (design/010): the grinding miner's valid nonce attempts per
/// CPU-second against the honest miners', the blocks it sent and how many the honest nodes
/// imported, and its forged (unbound) blocks, each of which must be refused.
fn grind_summary(
    attacker: &Node,
    nodes: &[Node],
    client: SocketAddr,
) -> Result<serde_json::Map<String, Value>> {
    let address = ChainSpec::devnet_key(attacker.key_index).public().to_string();
    let security = call(attacker.rpc, "pouw_security", json!([]))?;
    let mining = &security["mining"];
    let attacker_rate = mining["attempts_per_cpu_second"].as_f64().unwrap_or(0.0);
    // The honest reference: the honest miners on the same work as the grinder (the filler
    // task); their rate over all their work (client task included) is reported beside it.
    let (mut attempts, mut cpu, mut all_attempts, mut all_cpu) = (0u64, 0.0f64, 0u64, 0.0f64);
    let mut honest = Vec::new();
    for n in nodes.iter().filter(|n| n.name.starts_with("miner")) {
        let m = &call(n.rpc, "pouw_security", json!([]))?["mining"];
        attempts += m["filler_attempts"].as_u64().unwrap_or(0);
        cpu += m["filler_cpu_seconds"].as_f64().unwrap_or(0.0);
        all_attempts += m["attempts"].as_u64().unwrap_or(0);
        all_cpu += m["cpu_seconds"].as_f64().unwrap_or(0.0);
        honest.push(json!({ "name": n.name, "mining": m }));
    }
    let honest_rate = if cpu > 0.0 { attempts as f64 / cpu } else { 0.0 };
    let honest_all = if all_cpu > 0.0 { all_attempts as f64 / all_cpu } else { 0.0 };
    // The attacker's blocks on the honest chain (the client's canonical chain).
    let tip = call(client, "pouw_tip", json!([]))?["height"].as_u64().unwrap_or(0);
    let mut accepted = 0u64;
    for h in 1..=tip {
        if call(client, "pouw_block", json!([h]))?["miner"].as_str() == Some(address.as_str()) {
            accepted += 1;
        }
    }
    let forged: Vec<String> = security["forged_blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect();
    let mut forged_accepted = 0u64;
    for hash in &forged {
        if !call(client, "pouw_block", json!([hash]))?.is_null() {
            forged_accepted += 1;
        }
    }
    let mined =
        call(attacker.rpc, "pouw_health", json!([]))?["node"]["blocks_mined"].as_u64().unwrap_or(0);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let mut m = serde_json::Map::new();
    m.insert("attack".into(), json!(pouw_node::Attack::Grind.name()));
    m.insert("attacker".into(), json!({ "name": attacker.name, "address": address, "role": "miner (filler only, no tickets)" }));
    m.insert("attacker_blocks_sent".into(), json!(mined + forged.len() as u64));
    m.insert("attacker_blocks_accepted".into(), json!(accepted));
    m.insert("forged_blocks_sent".into(), json!(forged.len()));
    m.insert("forged_blocks_accepted".into(), json!(forged_accepted));
    m.insert("forged_blocks".into(), json!(forged));
    m.insert("attacker_attempts".into(), mining["attempts"].clone());
    m.insert("attacker_cpu_seconds".into(), mining["cpu_seconds"].clone());
    m.insert("attacker_attempts_per_cpu_second".into(), json!(round(attacker_rate)));
    m.insert("honest_attempts_per_cpu_second".into(), json!(round(honest_rate)));
    m.insert("honest_attempts_per_cpu_second_all_work".into(), json!(round(honest_all)));
    m.insert("honest_miners".into(), json!(honest));
    let gain = if honest_rate > 0.0 { attacker_rate / honest_rate } else { 0.0 };
    m.insert("grind_gain".into(), json!(round(gain)));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-class CSV task beside its data, with a relative `path` (features: the class's
    /// centre plus a small deterministic offset; label in the first column).
    fn csv_task(dir: &Path) -> PathBuf {
        let mut csv = String::from("label,a,b,c,d\n");
        for i in 0..300u32 {
            let class = i % 3;
            let jitter = |k: u32| f64::from((i * 7 + k * 13) % 10) / 50.0;
            let c = f64::from(class);
            csv.push_str(&format!(
                "{class},{},{},{},{}\n",
                c + jitter(1),
                1.0 - c + jitter(2),
                c * 0.5 + jitter(3),
                jitter(4)
            ));
        }
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("data/three.csv"), csv).unwrap();
        let task = r#"
name = "three"
[model]
input_shape = [4]
classes = 3
seed = 1
[[model.layers]]
type = "dense"
units = 8
activation = "relu"
[[model.layers]]
type = "dense"
units = 3
activation = "none"
[optimizer]
learning_rate = 0.3
momentum = 0.0
tau = 0.01
batch_size = 10
epochs = 2
[dataset]
format = "csv"
path = "data/three.csv"
[workers]
miners = 3
[payment]
fee = "1"
"#;
        let path = dir.join("three.toml");
        std::fs::write(&path, task).unwrap();
        path
    }

    #[test]
    fn a_csv_task_reads_its_data_beside_it_and_is_measured_on_its_own_test_split() {
        let home = tempfile::tempdir().unwrap();
        let task = csv_task(&home.path().join("tasks"));
        let net = tempfile::tempdir().unwrap();
        let written = task_with_miners(&task, 4, net.path()).unwrap();
        assert_eq!(written.parent(), Some(net.path()));
        let text = std::fs::read_to_string(&written).unwrap();
        assert!(text.contains("miners = 4"), "{text}");
        // The relative path is resolved against the task file, not the devnet directory.
        let t = load_test_data(&written).unwrap();
        assert_eq!((t.data.len(), t.data.width()), (300, 4));
        pouw_ml::load_client_task(&written, net.path()).unwrap();
        let view = json!({"split": {"test": [1, 4, 7]}});
        let model = pouw_ml::Model::new(t.model.clone()).unwrap();
        let bytes = pouw_ml::to_safetensors(&model).unwrap();
        let acc = test_accuracy(&bytes, &view, &t).unwrap();
        assert!((0.0..=1.0).contains(&acc), "{acc}");
        // A model of another shape (the shipped digits' MLP): an error, not a panic.
        let other = pouw_ml::ModelSpec::mlp(784, &[8], 10, pouw_ml::Activation::Relu, 1);
        let other = pouw_ml::to_safetensors(&pouw_ml::Model::new(other).unwrap()).unwrap();
        let e = test_accuracy(&other, &view, &t).unwrap_err();
        assert!(format!("{e:#}").contains("input width 784"), "{e:#}");
    }

    #[test]
    fn a_task_with_start_weights_finds_its_file_from_the_devnet_directory() {
        let home = tempfile::tempdir().unwrap();
        let task = csv_task(&home.path().join("tasks"));
        let text = std::fs::read_to_string(&task).unwrap();
        let text = text.replace("seed = 1\n", "init = { file = \"start.safetensors\" }\n");
        std::fs::write(&task, text).unwrap();
        // No file yet: a named error, not a panic.
        let Err(e) = load_test_data(&task) else { panic!("loaded without its start weights") };
        assert!(format!("{e:#}").contains("start.safetensors"), "{e:#}");
        let spec = pouw_ml::ModelSpec::mlp(4, &[8], 3, pouw_ml::Activation::Relu, 9);
        let start = pouw_ml::Model::new(spec).unwrap();
        pouw_ml::save_safetensors(&start, &home.path().join("tasks/start.safetensors")).unwrap();
        let net = tempfile::tempdir().unwrap();
        let written = task_with_miners(&task, 2, net.path()).unwrap();
        let t = load_test_data(&written).unwrap();
        assert_eq!(t.start_model.params(), start.params(), "the reference starts from them");
        let client = pouw_ml::load_client_task(&written, net.path()).unwrap();
        assert!(client.start_weights.is_some());
    }

    #[test]
    fn the_in_order_reference_trains_the_task_on_the_chains_split_and_is_deterministic() {
        let home = tempfile::tempdir().unwrap();
        let task = csv_task(&home.path().join("tasks"));
        let written = task_with_miners(&task, 3, home.path()).unwrap();
        let t = load_test_data(&written).unwrap();
        let split = pouw_ml::Split::new(&[5; 32], 10, 0.3, 0.0).unwrap();
        let view = json!({"split": {
            "order": split.order, "train": split.train,
            "validation": split.validation, "test": split.test}});
        let id = "ab".repeat(32);
        let a = reference_accuracy(&view, &id, &t).unwrap();
        // Three separated classes, 2 short epochs: well above chance (1/3).
        assert!(a > 0.5, "{a}");
        assert_eq!(reference_accuracy(&view, &id, &t).unwrap(), a);
        // A split naming a segment the dataset does not have is an error, not a panic.
        let bad = json!({"split": {"order": [], "train": [0, 10], "validation": [], "test": [1]}});
        assert!(reference_accuracy(&bad, &id, &t).is_err());
        assert!(reference_accuracy(&view, "not hex", &t).is_err());
    }

    #[test]
    fn the_report_lists_every_task_and_each_nodes_bytes() {
        let tasks = vec![
            task_entry("aa", 0.93, Some(0.9412), true, Duration::from_millis(61_240)),
            task_entry("bb", 0.0, None, false, Duration::from_secs(5)),
        ];
        assert_eq!(tasks[0]["task_id"], json!("aa"));
        assert_eq!(tasks[0]["wall_seconds"], json!(61.2));
        assert_eq!(tasks[0]["reference_accuracy"], json!(0.9412));
        assert_eq!(tasks[0]["reference_gap"], json!(1.12));
        assert_eq!(tasks[1]["completed"], json!(false));
        assert_eq!(tasks[1]["reference_gap"], Value::Null);
        assert_eq!(tasks_completed(&tasks), 1);
        let health = json!({"height": 40, "node": {
            "blocks_mined": 10, "blocks_verified": 30, "blocks_rejected": 0,
            "attestations_sent": 0, "bytes_in": 1234, "bytes_out": 5678}});
        let address = ChainSpec::devnet_key(1).public();
        let rpc: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let account = json!({"balance": "2.00000000"});
        let genesis = pouw_primitives::COIN;
        let n = node_entry("miner-1", "miner", &address, rpc, &health, &account, genesis, 40);
        assert_eq!(n["bytes_in"], json!(1234));
        assert_eq!(n["bytes_out"], json!(5678));
        assert_eq!(n["every_block_checked"], json!(true));
        assert_eq!(n["balance_change"], json!("+1.00000000"));
        assert_eq!(n["rpc"], json!("http://127.0.0.1:9000/"));
    }
}
