//! CPU priority of the node's background work.
//!
//! A node's latency-bound work (the event loop: gossip, requests, answers, block commits; a
//! block's verification) runs at the process's priority, and so does the work that races a
//! task's phases: a supervisor's screening (its accusations must land while the task trains), a
//! miner's own start states (they keep the miner's pace) and a task's dataset assembly (the
//! miner waits for it to train). An evaluator's model tests (their deadline is tens of blocks
//! away) and the allocator's trims run at a lower priority: on a machine whose cores are all
//! busy, they wait behind the rest.

/// The nice value background threads take (0 is the process's own, 19 the lowest).
pub(crate) const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`BACKGROUND_NICE`] (Linux: the nice value is
/// per thread; elsewhere, and when the system refuses, nothing changes).
pub(crate) fn background() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only changes the scheduling weight of the calling thread (`who`
        // 0 is the caller; Linux keeps a nice value per thread) and reads no memory.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
        if result != 0 {
            tracing::debug!(target: "node", error = %std::io::Error::last_os_error(), "background priority refused");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_background_thread_runs_at_the_background_nice_value_and_others_do_not() {
        // SAFETY: getpriority reads the calling thread's nice value.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = nice();
        let lowered = std::thread::spawn(move || {
            super::background();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, super::BACKGROUND_NICE.max(before));
        assert_eq!(nice(), before, "the calling thread's priority is its own");
    }
}
