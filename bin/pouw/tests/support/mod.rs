//! What the `pouw` binary's tests share.
// Each test binary uses its own part of it.
#![allow(dead_code)]

use std::process::Command;

/// The `pouw` binary, without the caller's `POUW_*` settings (they would change what it does)
/// and without colours (tests read its text).
pub(crate) fn pouw() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pouw"));
    for (name, _) in std::env::vars() {
        if name.starts_with("POUW_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// A free loopback port below the ephemeral range: other nodes' outgoing connections cannot
/// take it meanwhile.
pub(crate) fn free_port() -> u16 {
    pouw_net::free_loopback_port().unwrap()
}

/// A child process (a node) killed and reaped when the test ends, even on a panic.
pub(crate) struct Killed(pub(crate) std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
