#!/usr/bin/env bash
# Idle traffic after a devnet task (issue 16, docs/design/016-idle-traffic.md).
#
# Runs `pouw devnet --keep --json` (extra arguments are passed on), waits for its report, then
# reads every node's `pouw_health` byte counters at the start and the end of a window
# (IDLE_SECS, default 30) and prints, per node: bytes per second in and out over the window,
# the bytes over the whole task (the report's figures) and, for supervisors, their receive
# against the task's training data. Stops the devnet at the end.
#
# Usage: scripts/idle-traffic.sh [devnet args...]
#   POUW=path/to/pouw     binary (default: built with cargo build --release -p pouw)
#   DIR=target/idle-net   devnet directory (default)
#   IDLE_SECS=30          window
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DIR:-target/idle-net}
IDLE_SECS=${IDLE_SECS:-30}
if [[ -z "${POUW:-}" ]]; then
    cargo build --release -q -p pouw
    POUW="$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/pouw"
fi
command -v jq >/dev/null || { echo "idle-traffic: needs jq" >&2; exit 1; }

rm -rf "$DIR"
"$POUW" devnet --keep --json --dir "$DIR" "$@" >/dev/null 2>"${DIR}.stderr" &
devnet=$!
stop() { kill -INT "$devnet" 2>/dev/null || true; wait "$devnet" 2>/dev/null || true; }
trap stop EXIT

report="$DIR/report.json"
until [[ -s "$report" ]]; do
    if ! kill -0 "$devnet" 2>/dev/null; then
        echo "idle-traffic: devnet stopped before its report (see ${DIR}.stderr)" >&2
        exit 1
    fi
    sleep 1
done
sleep 1 # the report is written whole; give the writer a moment to close it

health() {
    curl -s -m 5 -H 'content-type: application/json' \
        -d '{"jsonrpc":"2.0","id":1,"method":"pouw_health","params":[]}' "$1" |
        jq -c '{i: .result.node.bytes_in, o: .result.node.bytes_out, h: .result.height}'
}

mapfile -t names < <(jq -r '.nodes[].name' "$report")
mapfile -t rpcs < <(jq -r '.nodes[].rpc' "$report")
mapfile -t roles < <(jq -r '.nodes[].roles' "$report")
declare -a first
for i in "${!rpcs[@]}"; do first[i]=$(health "${rpcs[i]}"); done
t0=$(date +%s.%N)
sleep "$IDLE_SECS"
declare -a last
for i in "${!rpcs[@]}"; do last[i]=$(health "${rpcs[i]}"); done
t1=$(date +%s.%N)
wall=$(echo "$t1 - $t0" | bc -l)

# The task's training data: its training segments (the split, from `pouw_task`) of an IDX
# dataset (the task file in the devnet directory), 4 * (width + 1) bytes a sample as a segment
# is sent (`Dataset::segment_bytes`). A CSV task leaves the ratio out.
train_bytes=0
task_id=$(jq -r .task_id "$report")
train_segs=$(curl -s -m 5 -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pouw_task\",\"params\":[\"$task_id\"]}" \
    "${rpcs[0]}" | jq -r '.result.split.train | length')
images=$(sed -n 's/^images *= *"\(.*\)"/\1/p' "$DIR/task.toml" | head -1)
segments=$(sed -n 's/^segments *= *\([0-9]*\)/\1/p' "$DIR/task.toml" | head -1)
if [[ -f "$images" && -n "$segments" && "$train_segs" -gt 0 ]]; then
    read -r -a head < <( (gzip -dcf "$images" 2>/dev/null || true) | head -c 16 | od -An -v -tu1 | tr -s ' \n' ' ') || true
    be() { echo $(((${head[$1]} << 24) | (${head[$1 + 1]} << 16) | (${head[$1 + 2]} << 8) | ${head[$1 + 3]})); }
    if [[ ${#head[@]} -ge 16 ]]; then
        count=$(be 4) width=$(($(be 8) * $(be 12)))
        train_bytes=$((count / segments * train_segs * 4 * (width + 1)))
    fi
fi

h0=$(jq -r .h <<<"${first[0]}")
h1=$(jq -r .h <<<"${last[0]}")
echo "idle window: ${wall%.*} s, blocks ${h0} -> ${h1} (tasks completed: $(jq -r '.tasks_completed // "?"' "$report"))"
blocks=$((h1 - h0))
printf '%-14s %-20s %9s %9s %11s %11s %11s %9s\n' node roles "in kB/s" "out kB/s" "in kB/blk" \
    "task in MB" "task out MB" "in/train"
max=0
for i in "${!rpcs[@]}"; do
    a=${first[i]} b=${last[i]}
    din=$(($(jq -r .i <<<"$b") - $(jq -r .i <<<"$a")))
    dout=$(($(jq -r .o <<<"$b") - $(jq -r .o <<<"$a")))
    rin=$(echo "$din / $wall / 1000" | bc -l)
    rout=$(echo "$dout / $wall / 1000" | bc -l)
    tin=$(jq -r ".nodes[$i].bytes_in" "$report")
    tout=$(jq -r ".nodes[$i].bytes_out" "$report")
    ratio="-"
    if [[ "${roles[i]}" == *supervisor* && "$train_bytes" -gt 0 ]]; then
        ratio=$(printf '%.2f' "$(echo "$tin / $train_bytes" | bc -l)")
    fi
    per_block=$(echo "$din / 1000 / ($blocks + ($blocks == 0))" | bc -l)
    printf '%-14s %-20s %9.1f %9.1f %11.1f %11.1f %11.1f %9s\n' "${names[i]}" "${roles[i]}" \
        "$rin" "$rout" "$per_block" "$(echo "$tin / 1000000" | bc -l)" \
        "$(echo "$tout / 1000000" | bc -l)" "$ratio"
    for r in "$rin" "$rout"; do
        if (($(echo "$r > $max" | bc -l))); then max=$r; fi
    done
done
printf 'highest idle rate: %.1f kB/s (goal: under 100); training data %.1f MB\n' "$max" \
    "$(echo "$train_bytes / 1000000" | bc -l)"
