#!/usr/bin/env bash
# Runs the task-lifecycle tests (an honest task, a silent miner, a poisoning miner, a lying
# supervisor and a lying evaluator; crates/node/tests/lifecycle.rs) N times in a row in
# release mode and counts the failures. Each run asserts that no honest miner was flagged,
# accused or convicted. Optional load: LOAD=2 keeps two busy loops running beside the tests
# (the races behind false convictions needed a loaded machine to show).
#
#   scripts/stress-lifecycle.sh 20           # 20 runs
#   LOAD=2 scripts/stress-lifecycle.sh 5     # 5 runs with both cores busy
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pouw-target}"
runs="${1:-20}"
logs="${STRESS_LOGS:-target/stress}"
mkdir -p "$logs"
cargo nextest run --release --locked -p pouw-node --test lifecycle --no-run >/dev/null 2>&1 \
  || { echo "build failed"; exit 2; }
loaders=()
for _ in $(seq 1 "${LOAD:-0}"); do
  (while :; do :; done) &
  loaders+=($!)
done
trap '[ ${#loaders[@]} -gt 0 ] && kill "${loaders[@]}" 2>/dev/null' EXIT
failed=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if cargo nextest run --release --locked -p pouw-node --test lifecycle --retries 0 \
      >"$logs/run-$i.log" 2>&1; then
    echo "run $i/$runs: passed in $(( $(date +%s) - start )) s"
  else
    failed=$((failed + 1))
    echo "run $i/$runs: FAILED in $(( $(date +%s) - start )) s (log: $logs/run-$i.log)"
    grep -E "FAIL \[|panicked at|flagged" "$logs/run-$i.log" | head -5
  fi
done
echo "$((runs - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
