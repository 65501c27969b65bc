//! `pouw chain tip|verify`: queries and re-verification of a stopped node's data directory.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pouw_chain::Chain;
use pouw_ml::Exec;
use pouw_primitives::ChainSpec;
use pouw_storage::ProofStore;
use std::{path::PathBuf, sync::Arc};

/// `pouw chain`.
#[derive(Debug, Args)]
pub(crate) struct ChainArgs {
    #[command(subcommand)]
    command: ChainCommand,
}

#[derive(Debug, Args)]
struct Common {
    /// Data directory of a stopped node.
    #[arg(long)]
    datadir: PathBuf,
    /// Chain spec: `devnet` or a TOML file.
    #[arg(long, default_value = "devnet")]
    chain: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ChainCommand {
    /// Height and hash of the stored tip.
    Tip(Common),
    /// Re-verify the stored chain from genesis, PoUW replays included.
    Verify {
        #[command(flatten)]
        common: Common,
        /// Replay threads (the results never depend on it).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

fn open(c: &Common) -> Result<Chain> {
    let spec = ChainSpec::load(&c.chain)?;
    anyhow::ensure!(
        c.datadir.join(pouw_storage::DB_FILE).exists(),
        "no chain database in {}",
        c.datadir.display()
    );
    Chain::open(&c.datadir, spec).with_context(|| format!("opening {}", c.datadir.display()))
}

pub(crate) fn run(args: ChainArgs) -> Result<()> {
    match args.command {
        ChainCommand::Tip(c) => {
            let chain = open(&c)?;
            if c.json {
                println!(
                    "{}",
                    serde_json::json!({ "height": chain.height(), "hash": chain.tip().to_string() })
                );
            } else {
                println!("{} {}", chain.height(), chain.tip());
            }
            Ok(())
        }
        ChainCommand::Verify { common: c, threads } => {
            let chain = open(&c)?;
            let proofs = Arc::new(ProofStore::open(&c.datadir)?);
            let bar = ProgressBar::new(chain.height());
            bar.set_style(
                ProgressStyle::with_template("verifying {bar:40} {pos}/{len} blocks ({per_sec})")
                    .expect("a valid template"),
            );
            let report = pouw_work::verify_chain(&chain, proofs, Exec::new(threads), |h| {
                bar.set_position(h)
            });
            bar.finish_and_clear();
            let failures: Vec<_> = report
                .failed
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "height": f.height, "hash": f.hash.to_string(), "error": f.error
                    })
                })
                .collect();
            if c.json {
                println!(
                    "{}",
                    serde_json::json!({
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
    }
}
