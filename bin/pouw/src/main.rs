//! `pouw`: one binary for the node, the devnet, the client and the operator tools.
//!
//! Thin by design: parse the command line, set up tracing (stderr), call into the crates, and
//! turn errors into a message and an exit code. Results go to stdout (JSON with `--json`).

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

mod chain_cmd;
mod client;
mod config;
mod devnet;
mod keys;
mod node;
mod rpc_client;
mod train;
mod wallet;

#[derive(Debug, Parser)]
#[command(
    name = "pouw",
    version,
    about = "A blockchain whose blocks are mined by useful ML training"
)]
struct Cli {
    /// Log format on stderr: `text` (default) or `json` (one JSON object a line, for log
    /// collectors). The level comes from `RUST_LOG` (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "POUW_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (chain, mempool, miner and worker roles, P2P network, JSON-RPC); settings
    /// from `--config FILE.toml`, `POUW_*` variables and flags.
    Node(node::NodeArgs),
    /// Start a whole local network of node processes, train the default task end to end and
    /// print a report.
    Devnet(devnet::DevnetArgs),
    /// Client commands: submit a task, follow it, fetch its model (through a node's RPC).
    Client(client::ClientArgs),
    /// Query a chain (a stopped node's data directory or a running node's RPC) and
    /// re-verify a stored chain.
    Chain(chain_cmd::ChainArgs),
    /// Make and show ed25519 key files.
    Keys(keys::KeysArgs),
    /// Train a task file locally with the deterministic engine (simulating its miners).
    /// Exit code 3 on failure.
    Train(train::TrainArgs),
    /// An account's coins: balance, transfer, stake, unstake, history (signed with a local
    /// key file, sent through a node's RPC).
    Wallet(wallet::WalletArgs),
    /// Print a shell completion script: `pouw completions bash > /etc/bash_completion.d/pouw`
    /// (also zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => fmt.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "pouw", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    init_tracing(cli.log_format);
    let (result, failure_code) = match cli.command {
        Command::Node(args) => (node::run(args), 1),
        Command::Devnet(args) => (devnet::run(args), 1),
        Command::Client(args) => (client::run(args), 1),
        Command::Chain(args) => (chain_cmd::run(args), 1),
        Command::Keys(args) => (keys::run(args), 1),
        Command::Train(args) => (train::run(args), train::EXIT_TRAIN_FAILED),
        Command::Wallet(args) => (wallet::run(args), 1),
        Command::Completions { .. } => (Ok(()), 1),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(failure_code)
        }
    }
}
