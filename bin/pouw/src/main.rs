//! `pouw`: one binary for the node, the devnet, the client and the operator tools.

use clap::{Parser, Subcommand};

mod train;

#[derive(Debug, Parser)]
#[command(
    name = "pouw",
    version,
    about = "A blockchain whose blocks are mined by useful ML training"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a task file locally with the deterministic engine (simulating its miners).
    /// Exit code 3 on failure.
    Train(train::TrainArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Train(args) => match train::run(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::from(train::EXIT_TRAIN_FAILED)
            }
        },
    }
}
