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
