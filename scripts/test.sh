#!/usr/bin/env bash
# Every check: install what is missing, formatting, lints, then all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
