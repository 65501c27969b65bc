//! `pouw client`: submit a task file, follow its status, fetch the trained model, through the
//! JSON-RPC of the client's own node (the node that serves the task's dataset).

use crate::rpc_client::call_at as call;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use std::{net::SocketAddr, path::PathBuf};

/// `pouw client`.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The client node's JSON-RPC address.
    #[arg(long, default_value = "127.0.0.1:8645", env = "POUW_RPC")]
    rpc: SocketAddr,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Pay for the task in a task file (docs/task-file.md); the node serves its dataset.
    Submit {
        /// The task file.
        file: PathBuf,
    },
    /// The task's phase, participants, models, verdicts and payouts.
    Status {
        /// Task id (hex).
        task: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Writes the best model of a completed task (safetensors) once the node fetched it.
    Model {
        /// Task id (hex).
        task: String,
        /// Output file.
        #[arg(long, default_value = "model.safetensors")]
        out: PathBuf,
    },
}

pub(crate) fn run(args: ClientArgs) -> Result<()> {
    match args.command {
        ClientCommand::Submit { file } => {
            let path = std::fs::canonicalize(&file)
                .with_context(|| format!("task file {}", file.display()))?;
            check_dataset(&path)?;
            let v = call(args.rpc, "client_submitTask", json!([path.display().to_string()]))?;
            println!("{}", v["task_id"].as_str().unwrap_or_default());
        }
        ClientCommand::Status { task, json } => {
            let v = call(args.rpc, "pouw_task", json!([task]))?;
            if v.is_null() {
                bail!("no task {task} on chain");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("task    {task}");
                println!("phase   {}", v["phase"]);
                println!("fee     {}", v["fee"].as_str().unwrap_or(""));
                // The client's bond (design/014): locked until the verdict or the deadline.
                let settled = &v["settlement"];
                let nonzero = |k: &str| settled[k].as_str().filter(|a| *a != "0");
                let bond = match (nonzero("bond_confiscated"), nonzero("bond_returned")) {
                    (Some(a), _) => format!("{a} confiscated (test set withheld)"),
                    (None, Some(a)) => format!("{a} returned"),
                    (None, None) => format!("{} locked", v["bond"].as_str().unwrap_or("0")),
                };
                println!("bond    {bond}");
                for role in ["miners", "supervisors", "evaluators"] {
                    let n = v["participants"][role].as_array().map_or(0, Vec::len);
                    println!("{role:<11} {n}");
                }
                println!("models  {}", v["models"].as_array().map_or(0, Vec::len));
                if let Some(p) = v["settlement"]["payouts"].as_array() {
                    for p in p {
                        println!(
                            "paid    {}  {}",
                            p["to"].as_str().unwrap_or(""),
                            p["amount"].as_str().unwrap_or("")
                        );
                    }
                }
            }
        }
        ClientCommand::Model { task, out } => {
            let v = call(args.rpc, "client_model", json!([task]))?;
            let Some(hex_bytes) = v["safetensors_hex"].as_str() else {
                bail!("the model of task {task} is not here yet (the task must be completed)");
            };
            let bytes = hex::decode(hex_bytes).context("the node sent malformed hex")?;
            pouw_ml::from_safetensors(&bytes).context("the node sent an invalid model")?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!("{}", out.display());
        }
    }
    Ok(())
}

/// Before paying: the dataset's samples per class, printed (stderr), and a dataset that would
/// train on fewer than two classes, or lacks a declared class, refused. The train/test split
/// is drawn on chain once the task is paid for, so the counts are the whole dataset's.
fn check_dataset(path: &std::path::Path) -> Result<()> {
    let task = pouw_ml::TaskFile::load(path).context("cannot load the task")?;
    let data = task.load_dataset().context("cannot load the dataset")?;
    let segments = data.segments(pouw_primitives::DATASET_SEGMENTS)?;
    let all: Vec<usize> = (0..segments.len()).collect();
    let counts = data.class_counts(&segments, &all);
    eprintln!(
        "samples per class (the whole dataset; the train/test split is drawn on chain): {counts:?}"
    );
    task.check_classes(&data, &counts, "dataset").context("the dataset is not usable")?;
    Ok(())
}
