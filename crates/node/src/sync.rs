//! Catching up with heavier peers: status, then headers (checked for linkage and proof of
//! work before anything else is fetched), then blocks with their proof data in small batches,
//! each block fully verified (replayed) at import.

use pouw_net::{
    messages::{MAX_BLOCKS_PER_RESPONSE, MAX_HEADERS_PER_RESPONSE},
    ChainStatus, PeerId, Request,
};
use pouw_primitives::{meets_target, Hash, Header, Uint256};
use std::{
    collections::{HashMap, VecDeque},
    time::Instant,
};

/// Blocks asked for in one request.
const BLOCKS_PER_REQUEST: usize = 16;
const _: () = assert!(BLOCKS_PER_REQUEST <= MAX_BLOCKS_PER_RESPONSE as usize);

/// Why a peer's headers are provably bad.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeaderFault {
    #[error("header {0} does not extend the header before it")]
    Unlinked(Hash),
    #[error("header {0} does not meet its own target")]
    InsufficientWork(Hash),
    #[error("first header {0} has an unknown parent although it answers our locator")]
    UnknownStart(Hash),
    #[error("{0} headers, more than asked")]
    TooMany(usize),
}

#[derive(Debug)]
enum Waiting {
    Headers,
    Blocks,
}

#[derive(Debug)]
struct Active {
    peer: PeerId,
    queue: VecDeque<Hash>,
    waiting: Waiting,
    since: Instant,
}

/// The sync state of one node.
#[derive(Debug, Default)]
pub(crate) struct Sync {
    statuses: HashMap<PeerId, ChainStatus>,
    active: Option<Active>,
    /// Blocks synced (for logs).
    pub(crate) synced: u64,
}

impl Sync {
    /// True while a sync with a heavier peer is running.
    pub(crate) fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The peer being synced from.
    pub(crate) fn peer(&self) -> Option<PeerId> {
        self.active.as_ref().map(|a| a.peer)
    }

    /// How far the best known peer is ahead of `height`.
    pub(crate) fn best_peer_height(&self) -> Option<u64> {
        self.statuses.values().map(|s| s.height).max()
    }

    /// A peer's status arrived. Starts a sync if the peer has more work than `our_work` and no
    /// sync is running; returns the request to send.
    pub(crate) fn on_status(
        &mut self,
        peer: PeerId,
        status: ChainStatus,
        our_work: Uint256,
        locator: impl FnOnce() -> Vec<Hash>,
    ) -> Option<(PeerId, Request)> {
        let heavier = status.work() > our_work;
        self.statuses.insert(peer, status);
        if !heavier || self.active.is_some() {
            return None;
        }
        self.active = Some(Active {
            peer,
            queue: VecDeque::new(),
            waiting: Waiting::Headers,
            since: Instant::now(),
        });
        Some((peer, headers_request(locator())))
    }

    /// Headers arrived from the sync peer: checks them, queues the unknown ones and asks for
    /// the first batch of blocks. An empty answer ends the sync.
    pub(crate) fn on_headers(
        &mut self,
        peer: PeerId,
        headers: &[Header],
        known: impl Fn(&Hash) -> bool,
    ) -> Result<Option<(PeerId, Request)>, HeaderFault> {
        let Some(active) = self.active.as_mut().filter(|a| a.peer == peer) else {
            return Ok(None);
        };
        if headers.len() > MAX_HEADERS_PER_RESPONSE as usize {
            self.active = None;
            return Err(HeaderFault::TooMany(headers.len()));
        }
        let mut prev: Option<&Header> = None;
        for h in headers {
            let hash = h.hash();
            match prev {
                None if !known(&h.prev_hash) => {
                    self.active = None;
                    return Err(HeaderFault::UnknownStart(hash));
                }
                Some(p) if h.prev_hash != p.hash() || h.height != p.height.saturating_add(1) => {
                    self.active = None;
                    return Err(HeaderFault::Unlinked(hash));
                }
                _ => {}
            }
            let Some(target) = h.target.to_target() else {
                self.active = None;
                return Err(HeaderFault::InsufficientWork(hash));
            };
            if !meets_target(&hash, target) {
                self.active = None;
                return Err(HeaderFault::InsufficientWork(hash));
            }
            prev = Some(h);
        }
        active.queue = headers.iter().map(Header::hash).filter(|h| !known(h)).collect();
        if active.queue.is_empty() {
            self.active = None;
            return Ok(None);
        }
        Ok(self.next_blocks())
    }

    /// The next batch of blocks to ask for, or, with the queue empty, the next headers.
    pub(crate) fn next_blocks(&mut self) -> Option<(PeerId, Request)> {
        let active = self.active.as_mut()?;
        active.since = Instant::now();
        if active.queue.is_empty() {
            active.waiting = Waiting::Headers;
            return None;
        }
        active.waiting = Waiting::Blocks;
        let n = active.queue.len().min(BLOCKS_PER_REQUEST);
        let batch: Vec<Hash> = active.queue.drain(..n).collect();
        Some((active.peer, Request::Blocks(batch)))
    }

    /// Blocks arrived and were imported; returns what to ask next (`locator` when the queue is
    /// drained: more headers).
    pub(crate) fn after_blocks(
        &mut self,
        peer: PeerId,
        count: usize,
        locator: impl FnOnce() -> Vec<Hash>,
    ) -> Option<(PeerId, Request)> {
        if self.peer() != Some(peer) {
            return None;
        }
        self.synced = self.synced.saturating_add(count as u64);
        if count == 0 {
            // The peer no longer has what it announced: give up on it for now.
            self.active = None;
            return None;
        }
        if let Some(next) = self.next_blocks() {
            return Some(next);
        }
        Some((peer, headers_request(locator())))
    }

    /// The sync peer failed (timeout, bad data, disconnect): stop; the next status round
    /// picks a peer again.
    pub(crate) fn abort(&mut self, peer: PeerId) {
        if self.peer() == Some(peer) {
            self.active = None;
        }
    }

    /// A peer went away.
    pub(crate) fn peer_gone(&mut self, peer: PeerId) {
        self.statuses.remove(&peer);
        self.abort(peer);
    }

    /// Seconds since the running sync last made progress.
    pub(crate) fn stalled_secs(&self) -> u64 {
        self.active.as_ref().map_or(0, |a| a.since.elapsed().as_secs())
    }
}

fn headers_request(locator: Vec<Hash>) -> Request {
    let mut locator = locator;
    locator.truncate(pouw_net::messages::MAX_LOCATOR);
    Request::HeadersAfter { locator, max: MAX_HEADERS_PER_RESPONSE }
}
