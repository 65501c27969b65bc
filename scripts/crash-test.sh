#!/usr/bin/env bash
# Kill-9 crash test of the node's storage: start a mining dev node, kill it with SIGKILL at a
# random moment, restart, and check that nothing durable was lost or rewritten.
#
# Usage: scripts/crash-test.sh [ROUNDS]        (default 50; ROUNDS=5 for CI)
# Environment:
#   PROFILE=debug|release  which build of `pouw` to use (default debug)
#   POUW_BIN=path          use this binary instead of building one
#   CARGO_TARGET_DIR       build directory (default /var/tmp/pouw-target)
#   KEEP=1                 keep the data directory and logs (always kept on failure)
#   SEED=n                 seed bash's RANDOM (the kill times), to replay a run
#
# Each round:
#   1. `pouw node --dev --datadir D --chain scripts/crash-test-spec.toml --rpc 127.0.0.1:0`
#      (the devnet with no retargeting and the easiest target: a block per iteration);
#   2. while it runs, as soon as its JSON-RPC answers, every tip recorded so far must still be
#      on its chain (`pouw_block` at the recorded height has the recorded hash): the chain
#      only ever grows as a prefix-extension;
#   3. `kill -9` at a random moment 0.2-3 s after the start (so some kills land during start-up
#      and recovery, the others while mining);
#   4. with the node dead, `pouw chain tip --json` must open the database, and its height must
#      not be below the last recorded tip (same height: same hash). The tip is recorded.
# At the end the node is started once more for a final prefix check, killed, and
# `pouw chain verify --json` must replay every block with no failure.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${1:-${ROUNDS:-50}}"
PROFILE="${PROFILE:-debug}"
SPEC="${CRASH_SPEC:-$PWD/scripts/crash-test-spec.toml}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pouw-target}"
export NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}"
[[ -n "${SEED:-}" ]] && RANDOM="$SEED"

if [[ -n "${POUW_BIN:-}" ]]; then
  BIN="$POUW_BIN"
else
  flag=()
  [[ "$PROFILE" == release ]] && flag=(--release)
  echo "== building pouw ($PROFILE)"
  cargo build --locked -p pouw "${flag[@]}"
  BIN="$CARGO_TARGET_DIR/$PROFILE/pouw"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pouw-crash.XXXXXX")"
D="$WORK/data"
NODE_PID=""
cleanup() {
  if [[ -n "$NODE_PID" ]] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill -9 "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
violations=0
violation() {
  echo "VIOLATION (round $round): $*" >&2
  violations=$((violations + 1))
}

# Recorded durable tips, one "height hash" per line (distinct heights).
TIPS="$WORK/tips"
: >"$TIPS"
last_height=-1
last_hash=""

# `pouw chain tip --json` -> "height hash" (empty when there is no database yet).
chain_tip() {
  local out
  if ! out="$("$BIN" chain tip --datadir "$D" --chain "$SPEC" --json 2>"$WORK/tip.err")"; then
    if grep -q "no chain database" "$WORK/tip.err"; then
      return 0
    fi
    cat "$WORK/tip.err" >&2
    return 1
  fi
  local h x
  h="$(sed -n 's/.*"height":\([0-9]*\).*/\1/p' <<<"$out")"
  x="$(sed -n 's/.*"hash":"\([0-9a-f]*\)".*/\1/p' <<<"$out")"
  [[ -n "$h" && -n "$x" ]] || { echo "unexpected chain tip output: $out" >&2; return 1; }
  echo "$h $x"
}

# The JSON-RPC address the node's log announces (empty until it listens).
rpc_addr() {
  sed -n 's/\x1b\[[0-9;]*m//g; s/.*JSON-RPC listening.*addr=\([0-9.:]*\).*/\1/p' "$1" | tail -n1
}

# Checks every recorded tip (the last 100) against the running node's chain, in one JSON-RPC
# batch; sets CHECKED to how many were checked ("rpc-failed" if the node did not answer).
check_prefix() {
  local addr="$1" body="" n=0 h x reply obj
  CHECKED=0
  while read -r h x; do
    body+="${body:+,}{\"jsonrpc\":\"2.0\",\"id\":$h,\"method\":\"pouw_block\",\"params\":[$h]}"
    n=$((n + 1))
  done < <(tail -n 100 "$TIPS")
  [[ $n -gt 0 ]] || return 0
  if ! reply="$(curl -sS -m 10 -H 'content-type: application/json' -d "[$body]" "http://$addr/")"; then
    CHECKED=rpc-failed
    return 0
  fi
  while read -r h x; do
    if command -v jq >/dev/null; then
      obj="$(jq -c --argjson h "$h" '.[] | select(.id == $h) | (.result.hash // .)' <<<"$reply")"
      [[ "$obj" == "\"$x\"" ]] && continue
    else
      obj="$(sed 's/},{"id"/}\n{"id"/g' <<<"$reply" | grep -E "^\[?\{\"id\":$h[,}]" || true)"
      grep -q "\"hash\":\"$x\"" <<<"$obj" && continue
    fi
    violation "block at recorded height $h is not $x any more: ${obj:0:300}"
  done < <(tail -n 100 "$TIPS")
  CHECKED=$n
}

start_node() {
  local log="$1"
  "$BIN" node --dev --datadir "$D" --chain "$SPEC" --rpc 127.0.0.1:0 >"$log" 2>&1 &
  NODE_PID=$!
}

kill_node() {
  kill -9 "$NODE_PID" 2>/dev/null || true
  wait "$NODE_PID" 2>/dev/null || true
  NODE_PID=""
}

# After a kill: the durable tip must not have gone back.
record_tip() {
  local t h x
  if ! t="$(chain_tip)"; then
    violation "pouw chain tip failed after the kill"
    return
  fi
  if [[ -z "$t" ]]; then
    [[ $last_height -lt 0 ]] || violation "the chain database disappeared"
    return
  fi
  read -r h x <<<"$t"
  if [[ $h -lt $last_height ]]; then
    violation "tip went back from $last_height ($last_hash) to $h ($x)"
  elif [[ $h -eq $last_height && "$x" != "$last_hash" ]]; then
    violation "tip at height $h changed from $last_hash to $x"
  fi
  if [[ $h -ne $last_height ]]; then
    echo "$h $x" >>"$TIPS"
  fi
  last_height=$h
  last_hash=$x
}

start_time=$(now_ms)
startup_kills=0
running_kills=0
prefix_checks=0
echo "== crash test: $ROUNDS rounds, binary $BIN, data $D"
printf '%-6s %-8s %-10s %-8s %-8s\n' round kill_ms node_state checked tip
for ((round = 1; round <= ROUNDS; round++)); do
  log="$WORK/node-$round.log"
  delay=$((200 + RANDOM % 2801))
  start_node "$log"
  t0=$(now_ms)
  checked="-"
  state=startup
  while (($(now_ms) - t0 < delay)); do
    if ! kill -0 "$NODE_PID" 2>/dev/null; then
      wait "$NODE_PID" && rc=0 || rc=$?
      NODE_PID=""
      violation "the node exited by itself (status $rc); log: $log"
      tail -n 20 "$log" >&2
      state=exited
      break
    fi
    addr="$(rpc_addr "$log")"
    if [[ -n "$addr" ]]; then
      state=running
      if [[ "$checked" == "-" ]]; then
        check_prefix "$addr"
        checked="$CHECKED"
        [[ "$checked" == rpc-failed ]] || prefix_checks=$((prefix_checks + 1))
      fi
    fi
    sleep 0.05
  done
  if [[ -n "$NODE_PID" ]]; then
    kill_node
    if [[ $state == running ]]; then running_kills=$((running_kills + 1)); else startup_kills=$((startup_kills + 1)); fi
  fi
  record_tip
  printf '%-6s %-8s %-10s %-8s %-8s\n' "$round" "$delay" "$state" "$checked" "$last_height"
done

echo "== final start: prefix check of every recorded tip"
round=final
start_node "$WORK/node-final.log"
t0=$(now_ms)
final_checked=""
while (($(now_ms) - t0 < 120000)); do
  kill -0 "$NODE_PID" 2>/dev/null || { violation "the node exited by itself"; break; }
  addr="$(rpc_addr "$WORK/node-final.log")"
  if [[ -n "$addr" ]]; then
    check_prefix "$addr"
    final_checked="$CHECKED"
    [[ "$final_checked" != rpc-failed ]] && break
  fi
  sleep 0.1
done
[[ -n "$final_checked" && "$final_checked" != rpc-failed ]] \
  || violation "the final node never answered on JSON-RPC"
[[ -z "$NODE_PID" ]] || kill_node
record_tip

echo "== pouw chain verify"
verify_start=$(now_ms)
if out="$("$BIN" chain verify --datadir "$D" --chain "$SPEC" --json)"; then
  echo "$out"
  blocks="$(sed -n 's/.*"blocks":\([0-9]*\).*/\1/p' <<<"$out")"
  verified="$(sed -n 's/.*"verified":\([0-9]*\).*/\1/p' <<<"$out")"
  failed="$(sed -n 's/.*"failed":\([0-9]*\).*/\1/p' <<<"$out")"
  [[ "$failed" == 0 && "$blocks" == "$verified" ]] \
    || violation "chain verify: $verified of $blocks blocks verified, $failed failed"
  [[ "$blocks" == "$last_height" ]] || violation "chain verify saw $blocks blocks, tip is $last_height"
else
  echo "$out"
  violation "pouw chain verify failed"
fi
verify_ms=$(($(now_ms) - verify_start))

elapsed=$(($(now_ms) - start_time))
echo "== summary"
echo "rounds:          $ROUNDS ($running_kills kills while mining, $startup_kills during start-up)"
echo "prefix checks:   $prefix_checks while running + final ($final_checked tips)"
echo "final height:    $last_height ($last_hash)"
echo "verify:          ${verify_ms} ms"
echo "wall time:       $((elapsed / 1000)) s"
echo "violations:      $violations"
if [[ $violations -ne 0 ]]; then
  echo "FAILED: data and logs kept in $WORK" >&2
  exit 1
fi
if [[ "${KEEP:-0}" == 1 ]]; then
  echo "data and logs kept in $WORK"
else
  rm -rf "$WORK"
fi
echo "OK"
