#!/usr/bin/env bash
# Command (1) of README.md: install everything, build pema, and run the main job on the
# default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release
bash scripts/main-job.sh
