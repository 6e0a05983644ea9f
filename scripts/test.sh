#!/usr/bin/env bash
# Every check: install what is missing, formatting, lints, then all tests (GLib warnings and
# criticals abort: G_DEBUG=fatal_warnings).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/install-deps.sh
# playwright-core for the browser test, exactly as locked (no browser download: Debian's chromium)
npm ci --prefix tests/browser --silent --no-audit --no-fund
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# the plugin's cdylib (target/debug/libgstpunch.so) is loaded by gst-launch-1.0 in a test
cargo build --workspace
G_DEBUG=fatal_warnings cargo test --workspace
