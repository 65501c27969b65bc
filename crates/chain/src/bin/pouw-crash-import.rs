//! Helper for the crash test (`tests/crash.rs`): imports the deterministic
//! [`CrashScenario`](pouw_chain::test_utils::CrashScenario) for a seed into a data directory,
//! block by block, printing progress, so the test can SIGKILL it at any moment.
//!
//! Usage: `pouw-crash-import <datadir> <seed>`. Prints `opening`, `opened <height>`, then
//! `imported <index>` after each import returned (the block is durable), then `done`.
//! Only built with the `test-utils` feature (enabled for this crate's tests).

#[cfg(feature = "test-utils")]
fn main() -> std::process::ExitCode {
    use pouw_chain::{test_utils::CrashScenario, Chain};
    use std::io::Write;

    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(seed)) = (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok()))
    else {
        eprintln!("usage: pouw-crash-import <datadir> <seed>");
        return std::process::ExitCode::from(2);
    };
    let mut out = std::io::stdout().lock();
    let scenario = CrashScenario::new(seed);
    let spec = scenario.factory.spec.clone();
    let _ = writeln!(out, "opening");
    let _ = out.flush();
    let mut chain = match Chain::open(std::path::Path::new(dir), spec) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("open failed: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    let _ = writeln!(out, "opened {}", chain.height());
    let _ = out.flush();
    for (i, block) in scenario.blocks.into_iter().enumerate() {
        let now = block.header.timestamp;
        if let Err(e) = chain.import_block(block, now) {
            eprintln!("import {i} failed: {e}");
            return std::process::ExitCode::from(1);
        }
        let _ = writeln!(out, "imported {i}");
        let _ = out.flush();
    }
    let _ = writeln!(out, "done");
    std::process::ExitCode::SUCCESS
}

#[cfg(not(feature = "test-utils"))]
fn main() -> std::process::ExitCode {
    eprintln!("pouw-crash-import needs the test-utils feature");
    std::process::ExitCode::from(2)
}
