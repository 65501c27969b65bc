//! Per-peer request rate limit: a token bucket per peer for every request it sends (status,
//! headers, blocks, proof data, segments, models, histories, screenings, transactions).
//!
//! A request finds a token (served) or none: it is refused with `Response::Error` naming the
//! limit, and the peer gets a strike and a small score penalty. Strikes are forgiven once the
//! peer's bucket is full again (it slowed down); a peer that reaches
//! [`RequestLimits::ban_after`] strikes without slowing down is banned for the node's ban
//! duration (`bans.rs`: bans expire).

use pouw_net::PeerId;
use std::{collections::HashMap, time::Instant};

/// Peers whose buckets are remembered at most; beyond it, the buckets of peers that are idle
/// (full, no strikes) are forgotten first.
const MAX_TRACKED_PEERS: usize = 4096;

/// The limits of [`RequestLimiter`] (`[requests]` in the node config, docs/node-config.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Requests a peer may send per second, on average (tokens added per second); 0 turns the
    /// limit off.
    pub per_second: u32,
    /// Requests a peer may send at once (the bucket's size).
    pub burst: u32,
    /// A peer refused this many times without slowing down is banned (0: never banned, only
    /// refused).
    pub ban_after: u32,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self { per_second: 50, burst: 200, ban_after: 200 }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Serve it.
    Serve,
    /// Refuse it (not served): the peer is over its limit.
    Refuse,
    /// Refuse it and ban the peer: it kept exceeding its limit.
    Ban,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in thousandths of a request (integer arithmetic).
    milli: u64,
    last: Instant,
    strikes: u32,
}

/// A token bucket per peer.
#[derive(Debug)]
pub(crate) struct RequestLimiter {
    limits: RequestLimits,
    buckets: HashMap<PeerId, Bucket>,
}

impl RequestLimiter {
    pub(crate) fn new(limits: RequestLimits) -> Self {
        Self { limits, buckets: HashMap::new() }
    }

    fn capacity(&self) -> u64 {
        u64::from(self.limits.burst.max(1)).saturating_mul(1000)
    }

    /// Admits one request of `peer` at `now`.
    pub(crate) fn admit_at(&mut self, peer: PeerId, now: Instant) -> Admission {
        if self.limits.per_second == 0 {
            return Admission::Serve;
        }
        let capacity = self.capacity();
        if self.buckets.len() >= MAX_TRACKED_PEERS && !self.buckets.contains_key(&peer) {
            self.forget_idle(now);
        }
        let per_second = u64::from(self.limits.per_second);
        let bucket =
            self.buckets.entry(peer).or_insert(Bucket { milli: capacity, last: now, strikes: 0 });
        let elapsed_ms = u64::try_from(now.saturating_duration_since(bucket.last).as_millis())
            .unwrap_or(u64::MAX);
        // per_second tokens a second = per_second thousandths a millisecond.
        bucket.milli =
            bucket.milli.saturating_add(elapsed_ms.saturating_mul(per_second)).min(capacity);
        bucket.last = now;
        if bucket.milli == capacity {
            bucket.strikes = 0;
        }
        if bucket.milli >= 1000 {
            bucket.milli -= 1000;
            return Admission::Serve;
        }
        bucket.strikes = bucket.strikes.saturating_add(1);
        if self.limits.ban_after > 0 && bucket.strikes >= self.limits.ban_after {
            // Heard again with a fresh bucket once the ban ended.
            self.buckets.remove(&peer);
            return Admission::Ban;
        }
        Admission::Refuse
    }

    /// Admits one request of `peer` now.
    pub(crate) fn admit(&mut self, peer: PeerId) -> Admission {
        self.admit_at(peer, Instant::now())
    }

    /// Forgets the buckets that would be full by `now` and hold no strike (a new bucket starts
    /// full, so nothing is lost), or, if none is, every bucket.
    fn forget_idle(&mut self, now: Instant) {
        let capacity = self.capacity();
        let per_second = u64::from(self.limits.per_second);
        self.buckets.retain(|_, b| {
            let elapsed_ms = u64::try_from(now.saturating_duration_since(b.last).as_millis())
                .unwrap_or(u64::MAX);
            let full = b.milli.saturating_add(elapsed_ms.saturating_mul(per_second)) >= capacity;
            b.strikes > 0 || !full
        });
        if self.buckets.len() >= MAX_TRACKED_PEERS {
            self.buckets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flooding_peer_is_refused_then_banned_while_an_honest_peer_is_served() {
        let limits = RequestLimits { per_second: 10, burst: 20, ban_after: 50 };
        let mut lim = RequestLimiter::new(limits);
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let (mut served, mut refused, mut banned_at) = (0, 0, None);
        // The flooder sends 1,000 requests a second; the honest peer 10 a second.
        for ms in 0..2_000u64 {
            let now = t0 + Duration::from_millis(ms);
            if ms % 100 == 0 {
                assert_eq!(lim.admit_at(honest, now), Admission::Serve, "honest peer at {ms} ms");
            }
            if banned_at.is_some() {
                // Banned: the node no longer hears it (bans.rs), so it is not admitted either.
                continue;
            }
            match lim.admit_at(flooder, now) {
                Admission::Serve => served += 1,
                Admission::Refuse => refused += 1,
                Admission::Ban => {
                    banned_at.get_or_insert(ms);
                }
            }
        }
        // The burst, then about 10 a second until the ban.
        assert!((20..=25).contains(&served), "served {served}");
        assert!(refused >= 49, "refused {refused}");
        let banned_at = banned_at.expect("the flooder is banned");
        assert!(banned_at < 100, "banned after {banned_at} ms");
    }

    #[test]
    fn a_peer_that_slows_down_is_forgiven_and_the_limit_can_be_off() {
        let limits = RequestLimits { per_second: 10, burst: 5, ban_after: 10 };
        let mut lim = RequestLimiter::new(limits);
        let peer = PeerId::random();
        let t0 = Instant::now();
        for round in 0..5u64 {
            let start = t0 + Duration::from_secs(round * 2);
            for i in 0..14u64 {
                let a = lim.admit_at(peer, start + Duration::from_micros(i));
                assert_eq!(a == Admission::Serve, i < 5, "request {i} of round {round}");
                assert_ne!(a, Admission::Ban, "9 strikes a round, forgiven in between");
            }
        }
        let mut off = RequestLimiter::new(RequestLimits { per_second: 0, ..limits });
        assert!((0..10_000).all(|_| off.admit_at(peer, t0) == Admission::Serve));
    }
}
