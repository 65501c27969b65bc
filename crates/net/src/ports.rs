//! Picking loopback ports for local networks (the devnet, tests).

use std::{
    net::TcpListener,
    sync::atomic::{AtomicU16, Ordering},
};

/// First port tried; the range ends below the kernel's ephemeral ports (32768 and up on
/// Linux), so the nodes' own outgoing connections cannot take a port between this probe and
/// the node's bind.
const LOW: u16 = 20_000;
const SPAN: u16 = 12_000;

static NEXT: AtomicU16 = AtomicU16::new(0);

/// A loopback TCP port that was free a moment ago, below the ephemeral range: successive
/// calls in one process return different ports, and processes start at different offsets
/// (from their pid), so concurrent test binaries rarely probe the same ones.
pub fn free_loopback_port() -> std::io::Result<u16> {
    if NEXT.load(Ordering::Relaxed) == 0 {
        let seed = ((std::process::id() % u32::from(SPAN)) as u16).wrapping_mul(7919) % SPAN;
        let _ = NEXT.compare_exchange(0, LOW + seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + n.wrapping_sub(LOW) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let a = super::free_loopback_port().unwrap();
        let b = super::free_loopback_port().unwrap();
        assert_ne!(a, b);
        for p in [a, b] {
            assert!((super::LOW..super::LOW + super::SPAN).contains(&p), "{p}");
            assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        }
    }
}
