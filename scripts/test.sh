#!/usr/bin/env bash
# Command (2) of README.md: install what the tests need, then run the whole test suite: unit
# tests and integration tests against the real llama.cpp build and the default model (the daemon
# included), then the plugins (plugins/test.sh: OpenAI HTTP, Python client, pipe, MCP) and the
# editor clients in the real editors against the real daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
# What a reading of the source can check (ARCHITECTURE.md's invariants), and formatting: instant.
python3 scripts/check_invariants.py
cargo fmt --check
bash scripts/install-deps.sh
# One 8-bit copy of the model (src/model/cpu_copy.rs) for every test, daemon and editor run below,
# whatever cache folder each points at.
export PEMA_MODEL_CACHE="${PEMA_MODEL_CACHE:-$PWD/target/pema-models}"
cargo test --release -- --test-threads 2
# The clients drive target/release/pema, which the cargo tests above built.
# The plugins (plugins/): OpenAI-compatible HTTP, the Python client, the pipe, MCP; one daemon
# trained once for the whole suite (plugins/conftest.py).
bash plugins/test.sh
bash editors/nvim/test/run.sh
if [ -x editors/vscode/test/run.sh ] || [ -f editors/vscode/test/run.sh ]; then
  bash editors/vscode/test/run.sh
fi
# Lints (missing_docs included), on the release build the tests made: nothing compiles twice.
cargo clippy --release --all-targets -- -D warnings
