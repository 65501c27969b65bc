#!/usr/bin/env bash
# Cross-CPU determinism check: the golden test and a short `pouw train` run must give the same
# bits natively and under `qemu-x86_64 -cpu Nehalem` (x86-64 without AVX/AVX2/FMA, so the
# kernels' portable fallback path runs).
#
# Usage: scripts/qemu-golden.sh            (from anywhere; installs qemu-user if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pouw-target}"
export CARGO_TERM_COLOR=never
QEMU=(qemu-x86_64 -cpu Nehalem)

if ! command -v qemu-x86_64 >/dev/null 2>&1; then
  echo "== installing qemu-user" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-user >/dev/null
fi

echo "== building the golden test" >&2
golden=$(cargo test -p pouw-ml --test golden --no-run --message-format=json 2>/dev/null \
  | grep '"name":"golden"' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n1)
[ -x "$golden" ] || { echo "golden test executable not found" >&2; exit 1; }

echo "== golden test, native" >&2
"$golden" --test-threads=1 -q
echo "== golden test, ${QEMU[*]}" >&2
"${QEMU[@]}" "$golden" --test-threads=1 -q

echo "== building pouw" >&2
cargo build -p pouw -q
pouw="$CARGO_TARGET_DIR/debug/pouw"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

model_hash() { grep -o '"model_hash": *"[0-9a-f]*"' "$1" | grep -o '[0-9a-f]\{64\}'; }

for task in mnist-mlp mnist-cnn; do
  echo "== pouw train tasks/$task.toml --iterations 20, native (2 threads)" >&2
  "$pouw" train "tasks/$task.toml" --iterations 20 --json --threads 2 \
    --out "$tmp/$task-native.safetensors" >"$tmp/$task-native.json"
  echo "== pouw train tasks/$task.toml --iterations 20, ${QEMU[*]} (1 thread)" >&2
  "${QEMU[@]}" "$pouw" train "tasks/$task.toml" --iterations 20 --json --threads 1 \
    --out "$tmp/$task-qemu.safetensors" >"$tmp/$task-qemu.json"

  native=$(model_hash "$tmp/$task-native.json")
  emulated=$(model_hash "$tmp/$task-qemu.json")
  echo "$task native   model_hash $native"
  echo "$task Nehalem  model_hash $emulated"
  if [ -z "$native" ] || [ "$native" != "$emulated" ]; then
    echo "FAIL: $task model hashes differ" >&2
    exit 1
  fi
  cmp "$tmp/$task-native.safetensors" "$tmp/$task-qemu.safetensors"
done
echo "OK: identical bits natively and on Nehalem"
