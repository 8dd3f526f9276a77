#!/usr/bin/env bash
# Command (2) of README.md: install what the tests need, then run the whole test suite
# (unit tests, and integration tests against the real llama.cpp build and the default model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --release -- --test-threads 2
