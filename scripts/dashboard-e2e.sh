#!/usr/bin/env bash
# Runs the dashboard's end-to-end test (headless Chromium against a dev node) and lists the
# screenshots it saved. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -p pouw --test dashboard "$@" -- --nocapture
target="${CARGO_TARGET_DIR:-target}"
ls -l "$target"/tmp/dashboard/*.png
