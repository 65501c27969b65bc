//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4), written by hand.

use crate::{
    api::{NodeStatus, TipView},
    monitor::{ProcessSample, RpcTimes},
};
use std::fmt::Write;

/// The content type of the exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric, as `(name, type, help)`, in output order (the docs list the same).
pub(crate) const METRICS: &[(&str, &str, &str)] = &[
    ("pouw_height", "gauge", "Height of the canonical tip."),
    ("pouw_tip_timestamp_seconds", "gauge", "Block time of the canonical tip (Unix seconds)."),
    ("pouw_peers", "gauge", "Connected peers."),
    ("pouw_syncing", "gauge", "1 while the node catches up with its peers."),
    ("pouw_mempool_size", "gauge", "Transactions in the mempool."),
    (
        "pouw_pending_own_transactions",
        "gauge",
        "The node's own transactions waiting for a canonical block.",
    ),
    ("pouw_iterations_per_second", "gauge", "Training iterations per second of the local miner."),
    (
        "pouw_block_verification_seconds",
        "gauge",
        "Time the last imported block took to verify (checks, proof replay, execution).",
    ),
    ("pouw_blocks_mined_total", "counter", "Blocks mined by this node."),
    ("pouw_blocks_verified_total", "counter", "Blocks verified and imported."),
    ("pouw_blocks_attested_total", "counter", "Blocks accepted on attestations (light mode)."),
    ("pouw_attestations_sent_total", "counter", "Attestations gossiped as a verifier."),
    ("pouw_blocks_rejected_total", "counter", "Blocks rejected as invalid."),
    ("pouw_tasks_completed_total", "counter", "Tasks this node worked on that completed."),
    ("pouw_rewards_earned_units_total", "counter", "Rewards and fees earned, in base units."),
    ("pouw_security_alerts_total", "counter", "Security alerts raised or received."),
    ("pouw_bans_total", "counter", "Peers banned."),
    ("pouw_network_messages_in_total", "counter", "Network messages received."),
    ("pouw_network_messages_out_total", "counter", "Network messages sent."),
    ("pouw_network_bytes_in_total", "counter", "Network payload bytes received."),
    ("pouw_network_bytes_out_total", "counter", "Network payload bytes sent."),
    ("pouw_uptime_seconds", "gauge", "Seconds since the node started."),
    ("pouw_rpc_requests_total", "counter", "JSON-RPC HTTP requests served."),
    ("pouw_rpc_errors_total", "counter", "JSON-RPC HTTP requests answered with an error."),
    ("pouw_rpc_request_duration_seconds_total", "counter", "Time spent answering JSON-RPC."),
    ("process_cpu_seconds_total", "counter", "User and system CPU time of the process."),
    ("process_resident_memory_bytes", "gauge", "Resident memory of the process."),
    ("process_virtual_memory_bytes", "gauge", "Virtual memory of the process."),
    ("process_threads", "gauge", "Threads of the process."),
];

/// Renders every metric. Process metrics are left out where `/proc` cannot be read.
pub(crate) fn render(
    tip: &TipView,
    status: &NodeStatus,
    process: Option<ProcessSample>,
    rpc: &RpcTimes,
) -> String {
    let value = |name: &str| -> Option<f64> {
        let s = status;
        Some(match name {
            "pouw_height" => tip.height as f64,
            "pouw_tip_timestamp_seconds" => tip.timestamp.millis() as f64 / 1000.0,
            "pouw_peers" => s.peer_count as f64,
            "pouw_syncing" => f64::from(u8::from(s.syncing)),
            "pouw_mempool_size" => s.mempool_size as f64,
            "pouw_pending_own_transactions" => s.pending_own_txs as f64,
            "pouw_iterations_per_second" => s.iterations_per_second,
            "pouw_block_verification_seconds" => s.last_block_verification_ms? / 1000.0,
            "pouw_blocks_mined_total" => s.blocks_mined as f64,
            "pouw_blocks_verified_total" => s.blocks_verified as f64,
            "pouw_blocks_attested_total" => s.blocks_attested as f64,
            "pouw_attestations_sent_total" => s.attestations_sent as f64,
            "pouw_blocks_rejected_total" => s.blocks_rejected as f64,
            "pouw_tasks_completed_total" => s.tasks_completed as f64,
            "pouw_rewards_earned_units_total" => s.rewards_earned.units() as f64,
            "pouw_security_alerts_total" => s.security_alerts as f64,
            "pouw_bans_total" => s.bans as f64,
            "pouw_network_messages_in_total" => s.messages_in as f64,
            "pouw_network_messages_out_total" => s.messages_out as f64,
            "pouw_network_bytes_in_total" => s.bytes_in as f64,
            "pouw_network_bytes_out_total" => s.bytes_out as f64,
            "pouw_uptime_seconds" => s.uptime_secs as f64,
            "pouw_rpc_requests_total" => rpc.requests as f64,
            "pouw_rpc_errors_total" => rpc.errors as f64,
            "pouw_rpc_request_duration_seconds_total" => rpc.total_seconds,
            "process_cpu_seconds_total" => process?.cpu_seconds,
            "process_resident_memory_bytes" => process?.resident_bytes as f64,
            "process_virtual_memory_bytes" => process?.virtual_bytes as f64,
            "process_threads" => process?.threads as f64,
            _ => return None,
        })
    };
    let mut out = String::with_capacity(4096);
    for (name, kind, help) in METRICS {
        // A metric without a value (no block verified yet, no /proc) is left out entirely.
        let Some(v) = value(name) else { continue };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {}", fmt_value(v));
    }
    out
}

/// A sample value: integers without a fraction, non-finite values as Prometheus spells them.
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pouw_primitives::{CompactTarget, Hash, Timestamp};

    #[test]
    fn renders_help_type_and_value() {
        let tip = TipView {
            height: 7,
            hash: Hash::ZERO,
            timestamp: Timestamp(1500),
            target: CompactTarget(0x2100_ffff),
            state_root: Hash::ZERO,
            total_work: "8".into(),
        };
        let status = NodeStatus {
            last_block_verification_ms: Some(12.5),
            iterations_per_second: 3.25,
            ..NodeStatus::default()
        };
        let text = render(&tip, &status, Some(ProcessSample::default()), &RpcTimes::default());
        assert!(text.contains("# HELP pouw_height Height of the canonical tip.\n"));
        assert!(text.contains("# TYPE pouw_height gauge\npouw_height 7\n"));
        assert!(text.contains("pouw_block_verification_seconds 0.0125\n"));
        assert!(text.contains("pouw_tip_timestamp_seconds 1.5\n"));
        assert!(text.contains("pouw_iterations_per_second 3.25\n"));
        let no_verify = NodeStatus::default();
        let text = render(&tip, &no_verify, None, &RpcTimes::default());
        assert!(!text.contains("pouw_block_verification_seconds"));
        assert!(!text.contains("process_cpu_seconds_total"));
        assert_eq!(fmt_value(f64::NAN), "NaN");
        assert_eq!(fmt_value(f64::INFINITY), "+Inf");
    }
}
