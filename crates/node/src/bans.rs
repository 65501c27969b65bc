//! The node's own ban list: a peer banned for a fault is ignored for [`BAN_DURATION`], the
//! same hour the network layer disconnects it for (`NetConfig::ban_duration`), then heard
//! again like any peer (its next fault bans it again).

use pouw_net::PeerId;
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// How long a ban lasts: the network's default ban (`pouw_net::NetConfig::ban_duration`).
pub(crate) const BAN_DURATION: Duration = Duration::from_secs(3600);

/// Banned peers and when each ban ends.
#[derive(Debug, Default)]
pub(crate) struct Bans {
    until: HashMap<PeerId, Instant>,
}

impl Bans {
    /// Bans `peer` from `now` for [`BAN_DURATION`]; true if it was not banned already.
    pub(crate) fn insert_at(&mut self, peer: PeerId, now: Instant) -> bool {
        let fresh = !self.contains_at(&peer, now);
        self.until.insert(peer, now + BAN_DURATION);
        // Forget ended bans, so the map stays as small as the set of current bans.
        self.until.retain(|_, end| *end > now);
        fresh
    }

    /// Bans `peer` from now; true if it was not banned already.
    pub(crate) fn insert(&mut self, peer: PeerId) -> bool {
        self.insert_at(peer, Instant::now())
    }

    /// Whether `peer` is banned at `now`.
    pub(crate) fn contains_at(&self, peer: &PeerId, now: Instant) -> bool {
        self.until.get(peer).is_some_and(|end| *end > now)
    }

    /// Whether `peer` is banned now.
    pub(crate) fn contains(&self, peer: &PeerId) -> bool {
        self.contains_at(peer, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_ends_after_the_networks_hour() {
        let mut bans = Bans::default();
        let peer = PeerId::random();
        let other = PeerId::random();
        let t0 = Instant::now();
        assert!(bans.insert_at(peer, t0));
        assert!(!bans.insert_at(peer, t0 + Duration::from_secs(1)), "already banned");
        assert!(bans.contains_at(&peer, t0 + Duration::from_secs(3599)));
        assert!(!bans.contains_at(&other, t0));
        let later = t0 + Duration::from_secs(1) + BAN_DURATION;
        assert!(!bans.contains_at(&peer, later));
        // Banned again after it ended: a new ban, and the old entries are gone.
        assert!(bans.insert_at(other, later));
        assert!(bans.insert_at(peer, later));
        assert_eq!(bans.until.len(), 2);
    }
}
