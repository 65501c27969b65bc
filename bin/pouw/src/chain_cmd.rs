//! `pouw chain tip|block|account|task|verify`: chain queries, either offline on a stopped
//! node's data directory (`--datadir`) or against a running node over JSON-RPC (`--rpc`), and
//! re-verification of a stored chain.
//!
//! Both sources give the same JSON (the shapes of `docs/rpc.md`: `pouw_tip`, `pouw_block`,
//! `pouw_account`, `pouw_task`); the default output is a readable form of it.

use crate::rpc_client::RpcClient;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pouw_chain::Chain;
use pouw_ml::Exec;
use pouw_primitives::{Address, ChainSpec, Hash, TaskId};
use pouw_rpc::{BlockView, TipView};
use pouw_storage::ProofStore;
use serde_json::{json, Value};
use std::{path::PathBuf, sync::Arc};

/// `pouw chain`.
#[derive(Debug, Args)]
pub(crate) struct ChainArgs {
    #[command(subcommand)]
    command: ChainCommand,
}

/// Where a query reads: a data directory or a running node.
#[derive(Debug, Args)]
struct Source {
    /// Data directory of a stopped node (read offline; fails while a node holds it).
    #[arg(long, conflicts_with = "rpc")]
    datadir: Option<PathBuf>,
    /// JSON-RPC endpoint of a running node, e.g. `http://127.0.0.1:8645`.
    #[arg(long)]
    rpc: Option<String>,
    /// Chain spec of the data directory: `devnet` or a TOML file (ignored with `--rpc`).
    /// Default: the spec the node recorded in the data directory (`chainspec.toml`), else
    /// `devnet`.
    #[arg(long)]
    chain: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// `chain verify`: needs the data directory (the proof data).
#[derive(Debug, Args)]
struct VerifyArgs {
    /// Data directory of a stopped node.
    #[arg(long)]
    datadir: PathBuf,
    /// Chain spec: `devnet` or a TOML file. Default: the spec the node recorded in the data
    /// directory (`chainspec.toml`), else `devnet`.
    #[arg(long)]
    chain: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Replay threads (the results never depend on it).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Subcommand)]
enum ChainCommand {
    /// Height and hash of the tip.
    Tip(Source),
    /// A block by height, by hash (64 hex characters) or `latest`.
    Block {
        /// Height, hash or `latest`.
        block: String,
        #[command(flatten)]
        source: Source,
    },
    /// An account's balance, next nonce and locked stake (zeros when unknown).
    Account {
        /// Address (64 hex characters).
        address: String,
        #[command(flatten)]
        source: Source,
    },
    /// A client task (the id of its PayForTask transaction).
    Task {
        /// Task id (64 hex characters).
        id: String,
        #[command(flatten)]
        source: Source,
    },
    /// Re-verify the stored chain from genesis, PoUW replays included.
    Verify(VerifyArgs),
}

/// Whether a chain-open error is the database lock a running node holds.
fn is_locked(e: &pouw_chain::ChainError) -> bool {
    matches!(e, pouw_chain::ChainError::Storage(s) if s.is_locked())
}

/// The spec of a data directory: `chain` when given, else the one the node recorded there,
/// else the devnet.
pub(crate) fn datadir_spec(datadir: &std::path::Path, chain: Option<&str>) -> Result<ChainSpec> {
    if let Some(c) = chain {
        return Ok(ChainSpec::load(c)?);
    }
    let recorded = datadir.join(crate::node::CHAIN_SPEC_FILE);
    if recorded.exists() {
        let path = recorded.display().to_string();
        return ChainSpec::load(&path)
            .with_context(|| format!("reading the chain spec the node recorded in {path}"));
    }
    Ok(ChainSpec::devnet())
}

fn open_chain(datadir: &std::path::Path, chain: Option<&str>) -> Result<Chain> {
    let spec = datadir_spec(datadir, chain)?;
    anyhow::ensure!(
        datadir.join(pouw_storage::DB_FILE).exists(),
        "no chain database in {}",
        datadir.display()
    );
    match Chain::open(datadir, spec) {
        Ok(c) => Ok(c),
        Err(e) if is_locked(&e) => bail!(
            "the chain database in {} is locked: a running node holds it. Query that node \
             instead with --rpc http://<its --rpc address> (e.g. --rpc http://127.0.0.1:8645), \
             or stop it first",
            datadir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("opening {}", datadir.display())),
    }
}

enum Backend {
    Local(Box<Chain>),
    Remote(RpcClient),
}

impl Source {
    fn backend(&self) -> Result<Backend> {
        match (&self.datadir, &self.rpc) {
            (Some(d), None) => Ok(Backend::Local(Box::new(open_chain(d, self.chain.as_deref())?))),
            (None, Some(url)) => Ok(Backend::Remote(RpcClient::new(url)?)),
            _ => bail!(
                "say where to read: --datadir DIR (a stopped node) or --rpc URL (a running node, \
                 e.g. http://127.0.0.1:8645)"
            ),
        }
    }

    fn where_(&self) -> String {
        match (&self.datadir, &self.rpc) {
            (Some(d), _) => d.display().to_string(),
            (_, Some(u)) => u.clone(),
            _ => String::new(),
        }
    }
}

/// A `block` argument.
#[derive(Debug, Clone, Copy)]
enum BlockArg {
    Height(u64),
    Hash(Hash),
    Latest,
}

fn parse_block_arg(s: &str) -> Result<BlockArg> {
    let s = s.trim();
    if s == "latest" {
        return Ok(BlockArg::Latest);
    }
    if let Ok(h) = s.parse::<u64>() {
        return Ok(BlockArg::Height(h));
    }
    s.parse::<Hash>().map(BlockArg::Hash).map_err(|_| {
        anyhow!("`{s}` is not a block: give a height, a block hash (64 hex characters) or `latest`")
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).context("encoding the answer as JSON")
}

fn tip(source: &Source) -> Result<Value> {
    match source.backend()? {
        Backend::Local(chain) => to_json(&TipView::new(chain.tip_header(), chain.tip_work())),
        Backend::Remote(rpc) => rpc.call("pouw_tip", json!([])),
    }
}

fn block(source: &Source, at: BlockArg) -> Result<Value> {
    let found = match source.backend()? {
        Backend::Local(chain) => {
            let block = match at {
                BlockArg::Height(h) => chain.block_at(h)?,
                BlockArg::Hash(h) => chain.block(&h)?,
                BlockArg::Latest => chain.block(&chain.tip())?,
            };
            match block {
                Some(b) => to_json(&BlockView::new(&b))?,
                None => Value::Null,
            }
        }
        Backend::Remote(rpc) => {
            let param = match at {
                BlockArg::Height(h) => json!(h),
                BlockArg::Hash(h) => json!(h.to_string()),
                BlockArg::Latest => json!("latest"),
            };
            rpc.call("pouw_block", json!([param]))?
        }
    };
    if found.is_null() {
        match at {
            BlockArg::Height(h) => bail!("no block at height {h} in {}", source.where_()),
            BlockArg::Hash(h) => bail!("no block {h} in {}", source.where_()),
            BlockArg::Latest => bail!("no tip block in {}", source.where_()),
        }
    }
    Ok(found)
}

fn account(source: &Source, address: &str) -> Result<Value> {
    let address: Address = address.trim().parse().map_err(|_| {
        anyhow!("`{}` is not an address (64 hex characters, an ed25519 public key)", address.trim())
    })?;
    match source.backend()? {
        Backend::Local(chain) => to_json(&pouw_node::account_view(chain.state(), address)),
        Backend::Remote(rpc) => rpc.call("pouw_account", json!([address.to_string()])),
    }
}

fn task(source: &Source, id: &str) -> Result<Value> {
    let id: TaskId = id.trim().parse().map_err(|_| {
        anyhow!(
            "`{}` is not a task id (64 hex characters: the PayForTask transaction id)",
            id.trim()
        )
    })?;
    let found = match source.backend()? {
        Backend::Local(chain) => match pouw_consensus::task_view(chain.state(), &id) {
            Some(v) => to_json(&v)?,
            None => Value::Null,
        },
        Backend::Remote(rpc) => rpc.call("pouw_task", json!([id.to_string()]))?,
    };
    if found.is_null() {
        bail!("no task {id} in {}", source.where_());
    }
    Ok(found)
}

// ---- readable output ----

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS.mmm UTC`.
fn utc(ms: u64) -> String {
    let (days, rem) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, sec, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{sec:02}.{milli:03} UTC")
}

fn print_block(b: &Value) {
    println!("block {} {}", s(&b["height"]), s(&b["hash"]));
    match b["timestamp"].as_u64() {
        Some(ms) => println!("  {:<13} {} ({ms})", "time", utc(ms)),
        None => println!("  {:<13} {}", "time", s(&b["timestamp"])),
    }
    for (label, key) in [
        ("parent", "prev_hash"),
        ("target", "target"),
        ("miner", "miner"),
        ("state root", "state_root"),
        ("tx root", "tx_root"),
        ("task", "task_id"),
        ("size (bytes)", "size"),
    ] {
        println!("  {label:<13} {}", s(&b[key]));
    }
    match b.get("proof").filter(|p| !p.is_null()) {
        Some(p) => println!(
            "  {:<13} epoch {} iteration {} loss {} accuracy {}",
            "proof",
            s(&p["epoch"]),
            s(&p["iteration"]),
            s(&p["loss"]),
            s(&p["accuracy"])
        ),
        None => println!("  {:<13} none", "proof"),
    }
    let txs = b["transactions"].as_array().cloned().unwrap_or_default();
    println!("  {:<13} {}", "transactions", txs.len());
    for tx in &txs {
        println!(
            "    {} {} from {} nonce {} fee {}",
            s(&tx["hash"]),
            s(&tx["kind"]),
            s(&tx["sender"]),
            s(&tx["nonce"]),
            s(&tx["fee"])
        );
    }
}

fn print_object(v: &Value) {
    match v.as_object() {
        Some(map) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            for (k, val) in map {
                println!("{k:<width$} {}", s(val));
            }
        }
        None => println!("{}", s(v)),
    }
}

fn output(json: bool, v: &Value, readable: impl FnOnce(&Value)) {
    if json {
        println!("{v}");
    } else {
        readable(v);
    }
}

pub(crate) fn run(args: ChainArgs) -> Result<()> {
    match args.command {
        ChainCommand::Tip(src) => {
            let v = tip(&src)?;
            output(src.json, &v, |v| println!("{} {}", s(&v["height"]), s(&v["hash"])));
            Ok(())
        }
        ChainCommand::Block { block: at, source } => {
            let v = block(&source, parse_block_arg(&at)?)?;
            output(source.json, &v, print_block);
            Ok(())
        }
        ChainCommand::Account { address, source } => {
            let v = account(&source, &address)?;
            output(source.json, &v, print_object);
            Ok(())
        }
        ChainCommand::Task { id, source } => {
            let v = task(&source, &id)?;
            output(source.json, &v, print_object);
            Ok(())
        }
        ChainCommand::Verify(c) => verify(c),
    }
}

fn verify(c: VerifyArgs) -> Result<()> {
    let chain = open_chain(&c.datadir, c.chain.as_deref())?;
    let proofs = Arc::new(ProofStore::open(&c.datadir)?);
    let bar = ProgressBar::new(chain.height());
    bar.set_style(
        ProgressStyle::with_template("verifying {bar:40} {pos}/{len} blocks ({per_sec})")
            .expect("a valid template"),
    );
    let report =
        pouw_work::verify_chain(&chain, proofs, Exec::new(c.threads), |h| bar.set_position(h));
    bar.finish_and_clear();
    let failures: Vec<_> = report
        .failed
        .iter()
        .map(|f| json!({ "height": f.height, "hash": f.hash.to_string(), "error": f.error }))
        .collect();
    if c.json {
        println!(
            "{}",
            json!({
                "blocks": report.blocks,
                "verified": report.verified,
                "failed": report.failed.len(),
                "failures": failures,
            })
        );
    } else {
        println!(
            "{} blocks, {} verified, {} failed",
            report.blocks,
            report.verified,
            report.failed.len()
        );
        for f in &report.failed {
            println!("  height {} {}: {}", f.height, f.hash, f.error);
        }
    }
    anyhow::ensure!(report.failed.is_empty(), "the stored chain does not verify");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(super::utc(1_764_000_005_000), "2025-11-24 16:00:05.000 UTC");
        assert_eq!(super::utc(951_825_600_123), "2000-02-29 12:00:00.123 UTC");
    }
}
