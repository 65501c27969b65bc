#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS each, starting from the committed
# seed corpus (fuzz/corpus/<target>/, copied: the run never writes into it).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     (default 60 s, every target; CI: 5)
# Environment:
#   SANITIZER=address|none   libFuzzer build sanitizer (default address)
#   FUZZ_TARGET_DIR          build directory (default /var/tmp/pouw-fuzz-target)
#   FUZZ_OUT                 where logs and crash artifacts go (default: a temp dir, kept
#                            on failure)
#
# Needs cargo-fuzz (installed from crates.io if missing) and libFuzzer's `-Z` flags, which the
# stable compiler accepts with RUSTC_BOOTSTRAP=1 (set here). Fails if any target finds a
# crash (panic), a hang (-timeout=10) or an out-of-memory (-rss_limit_mb=2048).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-60}"
shift || true
ALL=(block header transaction iteration_message proof_data gossip request response
  task_file chain_spec idx csv json_rpc safetensors)
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL[@]}")

# Largest input per target (bytes): a little over the largest useful input.
max_len() {
  case "$1" in
    header) echo 1024 ;;
    request) echo 4096 ;;
    task_file | chain_spec | csv | json_rpc) echo 8192 ;;
    idx) echo 16384 ;;
    *) echo 65536 ;;
  esac
}

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/pouw-fuzz-target}"
SANITIZER="${SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

start=$(date +%s)
echo "== building ${#TARGETS[@]} fuzz targets (sanitizer: $SANITIZER)"
for t in "${TARGETS[@]}"; do
  cargo fuzz build -O -s "$SANITIZER" "$t"
done
triple="$(rustc -vV | sed -n 's/^host: //p')"
bindir="$CARGO_TARGET_DIR/$triple/release"
built=$(date +%s)

OUT="${FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/pouw-fuzz.XXXXXX")}"
mkdir -p "$OUT"
failed=0
rows=()
for t in "${TARGETS[@]}"; do
  corpus="$OUT/corpus/$t"
  artifacts="$OUT/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  cp -r "fuzz/corpus/$t/." "$corpus/" 2>/dev/null || true
  log="$OUT/$t.log"
  echo "== $t: ${SECONDS_PER_TARGET}s"
  rc=0
  "$bindir/$t" "$corpus" \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$artifacts/" \
    >"$log" 2>&1 &
  pid=$!
  wait "$pid" || rc=$?
  # The targets that need files write them under a per-process scratch directory.
  rm -rf "${TMPDIR:-/tmp}/pouw-fuzz-$pid"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -n1 | cut -d' ' -f2)"
  found="$(ls "$artifacts")"
  if [[ $rc -eq 0 && -z "$found" ]]; then
    result=ok
  else
    failed=$((failed + 1))
    kind="$(grep -Eo 'ERROR: libFuzzer: [a-z-]+|panicked at' "$log" | head -n1 || true)"
    result="FAIL (exit $rc${kind:+, $kind}${found:+, $found})"
    echo "---- $t: last lines of $log" >&2
    tail -n 40 "$log" >&2
  fi
  rows+=("$(printf '%-18s %12s %8s  %s' "$t" "${runs:-?}" "${cov:-?}" "$result")")
done
end=$(date +%s)

echo
printf '%-18s %12s %8s  %s\n' target runs cov result
for r in "${rows[@]}"; do echo "$r"; done
echo "build $((built - start)) s, fuzzing $((end - built)) s, total $((end - start)) s"
if [[ $failed -ne 0 ]]; then
  echo "FAILED: $failed target(s); logs and artifacts in $OUT" >&2
  exit 1
fi
[[ -n "${FUZZ_OUT:-}" ]] || rm -rf "$OUT"
echo "OK: no crash, hang or out-of-memory"
