#!/usr/bin/env bash
# The side-by-side figures of docs/performance.md, "Training step and PoUW iteration", in one
# run on one machine: the engine's plain SGD step and PoUW iteration (with the breakdown of an
# iteration and the prototypes of docs/design/019-iteration-overhead.md), PyTorch's SGD step on
# the same model and batches, and a block's cheap checks and replay.
#
# Usage: scripts/bench_overhead.sh [--no-torch]     (from anywhere; PyTorch: `pip install torch`)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pouw-target}"

echo "== $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
grep -m1 'model name' /proc/cpuinfo || true

echo "== building"
cargo bench -q -p pouw-ml --bench iteration --no-run 2>/dev/null
cargo bench -q -p pouw-consensus --bench pouw --no-run 2>/dev/null

echo "== pouw-ml: plain SGD step against PoUW iteration (POUW_BENCH_TABLE=1)"
POUW_BENCH_TABLE=1 cargo bench -q -p pouw-ml --bench iteration 2>/dev/null

if [ "${1:-}" != "--no-torch" ]; then
  echo "== PyTorch: the same SGD step (scripts/bench_torch_matmul.py --step-only)"
  python3 scripts/bench_torch_matmul.py --threads 1 2 --step-only
fi

echo "== pouw-consensus: a block's cheap checks and replay, the filler task (784-64-10, b32)"
cargo bench -q -p pouw-consensus --bench pouw -- --warm-up-time 1 --measurement-time 3 \
  'verify/|train/' 2>/dev/null | grep -E '^[a-z_/]+ +time:|^verify|^train' || true
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
