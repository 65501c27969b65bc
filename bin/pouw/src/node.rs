//! `pouw node --dev`: a single mining node on the devnet.

use anyhow::{Context, Result};
use clap::Args;
use pouw_chain::{Chain, ChainConfig, PouwValidator};
use pouw_ml::Exec;
use pouw_primitives::{ChainSpec, Timestamp};
use pouw_storage::ProofStore;
use pouw_work::Miner;
use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

/// `pouw node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Development mode: one node on its own, mining the chain's filler task.
    #[arg(long)]
    dev: bool,
    /// Data directory (chain and proof databases).
    #[arg(long)]
    datadir: PathBuf,
    /// Chain spec: `devnet` or a TOML file.
    #[arg(long, default_value = "devnet")]
    chain: String,
    /// Miner key file (`pouw keys new`); default in dev mode: devnet account 0.
    #[arg(long)]
    miner_key: Option<PathBuf>,
    /// Training threads (the results never depend on it).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Stop after mining this many blocks (default: run until Ctrl-C).
    #[arg(long)]
    blocks: Option<u64>,
}

pub(crate) fn run(args: NodeArgs) -> Result<()> {
    anyhow::ensure!(args.dev, "only `--dev` mode exists yet: pass `--dev`");
    let spec = ChainSpec::load(&args.chain)?;
    let key = match &args.miner_key {
        Some(path) => crate::keys::read_key(path)?,
        None => ChainSpec::devnet_key(0),
    };
    let proofs = Arc::new(ProofStore::open(&args.datadir).context("opening the proof store")?);
    let exec = Exec::new(args.threads);
    let validator = Arc::new(PouwValidator::new(proofs.clone(), exec));
    let mut chain =
        Chain::open_with(&args.datadir, spec.clone(), ChainConfig::default(), validator)
            .with_context(|| format!("opening the chain in {}", args.datadir.display()))?;
    mine(&mut chain, &proofs, Miner::new(spec, key, exec), args.blocks)
}

fn mine(
    chain: &mut Chain,
    proofs: &ProofStore,
    mut miner: Miner,
    limit: Option<u64>,
) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // SIGINT and SIGTERM both stop the loop after the current iteration; every block is
    // already committed when it is imported, so nothing is lost.
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    tracing::info!(
        target: "node",
        height = chain.height(),
        tip = %chain.tip().short(),
        miner = %miner.address().short(),
        "dev node started"
    );
    let (mut mined, mut iterations, started) = (0u64, 0u64, Instant::now());
    let mut last_log = Instant::now();
    while !stop.load(Ordering::SeqCst) && limit.is_none_or(|n| mined < n) {
        let (found, loss) = miner.step(chain, &[], Timestamp::now())?;
        iterations += 1;
        if let Some(m) = found {
            let proof = m.block.proof.as_ref().context("a mined block has a proof")?;
            proofs.put_proof(&proof.winning.body, &m.data).context("storing proof data")?;
            let hash = m.block.hash();
            let iteration = proof.winning.body.iteration;
            chain.import_block(m.block, Timestamp::now()).context("importing our own block")?;
            mined += 1;
            tracing::info!(
                target: "node",
                height = chain.height(),
                hash = %hash.short(),
                iteration,
                loss,
                "block mined and verified"
            );
        }
        if last_log.elapsed().as_secs() >= 10 {
            let rate = iterations as f64 / started.elapsed().as_secs_f64();
            tracing::info!(target: "node", iterations, rate = format!("{rate:.0}/s"), loss, "training");
            last_log = Instant::now();
        }
    }
    tracing::info!(target: "node", height = chain.height(), mined, iterations, "dev node stopped");
    Ok(())
}
