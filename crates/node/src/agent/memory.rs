//! The allocator's handling of large buffers (docs/performance.md, "Memory").
//!
//! A node allocates and frees buffers of megabytes: a task's segments (a few MB each, read
//! from disk, fetched, served), its training dataset (tens of MB) and the decoded shipped
//! subset. glibc's malloc serves such a buffer with its own mapping and returns it to the
//! system when it is freed, but it raises its threshold for that (up to 32 MiB) each time one
//! is freed: from then on buffers of that size come from the heap of the thread's arena, and
//! freeing them leaves the pages resident there (with seven to nine threads, several arenas of up to
//! 64 MiB each stay resident). A fixed threshold keeps every buffer of at least
//! [`MMAP_THRESHOLD`] in a mapping of its own, given back when it is freed. It changes where
//! memory comes from, never what is computed.

/// Buffers of at least this many bytes get a mapping of their own (glibc's initial threshold
/// is 128 KiB; a training state of the devnet's model, about 400 KB, stays on the heap).
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD`] for the whole process (once; a no-op on
/// other C libraries).
pub(super) fn give_large_buffers_back() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only changes a malloc tunable; any value is accepted or refused
            // (return value 0), and the setting applies to later allocations only.
            let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
            if ok == 0 {
                tracing::debug!(target: "node", "the allocator refused a fixed mmap threshold");
            }
        }
    });
}

/// How long after a task's data was dropped the heaps' free pages are given back: the
/// screening thread drops its copy when it takes the release from its queue, and several
/// drops of one task end are handled by one trim.
const TRIM_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// Gives the free pages of every malloc heap back to the system, [`TRIM_DELAY`] from now, on
/// a short-lived thread of its own (never the event loop: the trim walks every arena under its
/// lock). Calls made while one is pending are that trim. Buffers under [`MMAP_THRESHOLD`]
/// (training states, decoded messages, a task's per-miner logs) live on the heaps, and once
/// freed their pages stay resident until trimmed. It changes where memory comes from, never
/// what is computed; a no-op on other C libraries.
pub(super) fn give_freed_pages_back_soon() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static PENDING: AtomicBool = AtomicBool::new(false);
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let trim = || {
        crate::priority::background();
        std::thread::sleep(TRIM_DELAY);
        PENDING.store(false, Ordering::Release);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: malloc_trim only returns free memory of the allocator's heaps to the
            // system; it is thread-safe and touches no allocated block.
            unsafe { libc::malloc_trim(0) };
        }
    };
    if let Err(e) = std::thread::Builder::new().name("pouw-trim".into()).spawn(trim) {
        PENDING.store(false, Ordering::Release);
        tracing::debug!(target: "node", error = %e, "cannot start the heap trim");
    }
}

impl super::Agent {
    /// Drops what this node kept of task `id` for its roles once nothing of it is needed any
    /// more (completed with no late vote of ours due and the screening drained, or expired,
    /// or refused): a supervisor's message log and evidence, a miner's peer bookkeeping and
    /// inbox, an evaluator's evaluation and fetched models. Once per task; the small markers
    /// that later ticks read (completed, faulted, trained, the committee size, the client's
    /// delivery) stay.
    pub(super) fn forget_task(&mut self, id: &pouw_primitives::TaskId) {
        if !self.forgotten.insert(*id) {
            return;
        }
        self.history.remove(id);
        self.evaluations.remove(id);
        self.scoring.remove(id);
        self.inbox.remove(id);
        self.own_progress.remove(id);
        self.start_wait.remove(id);
        self.staleness_wait.remove(id);
        self.hold_since.remove(id);
        self.peer_miners.remove(id);
        self.first_seen.retain(|(t, _), _| t != id);
        self.peer_progress.retain(|(t, _), _| t != id);
        self.excused.retain(|(t, _)| t != id);
        self.flagged_miners.retain(|(t, _), _| t != id);
        self.equivocations.retain(|(t, _), _| t != id);
        self.accused.retain(|(t, _), _| t != id);
        self.too_large_evidence.retain(|(t, _)| t != id);
        give_freed_pages_back_soon();
    }
}
