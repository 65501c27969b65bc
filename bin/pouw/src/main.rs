//! `pouw`: one binary for the node, the devnet, the client and the operator tools.

use clap::{Parser, Subcommand};

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
enum Command {}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {}
}
