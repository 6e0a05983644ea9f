#!/usr/bin/env bash
# The main job: install what is missing, build, and run the Punch server with a demo session
# on the embedded default database (./punch.db). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/install-deps.sh
cargo build --release --bin punch
exec target/release/punch serve --demo "$@"
