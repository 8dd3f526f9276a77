#!/usr/bin/env bash
# Command (2) of README.md: install what the tests need, then run the whole test suite: unit
# tests and integration tests against the real llama.cpp build and the default model (the daemon
# included), then the plugins (plugins/test.sh: OpenAI HTTP, Python client, pipe, MCP) and the
# editor clients in the real editors against the real daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --release -- --test-threads 2
# The clients drive target/release/pema, which the cargo tests above built.
# The plugins (plugins/): OpenAI-compatible HTTP, the Python client, the pipe, MCP; one daemon
# trained once for the whole suite (plugins/conftest.py).
bash plugins/test.sh
bash editors/nvim/test/run.sh
if [ -x editors/vscode/test/run.sh ] || [ -f editors/vscode/test/run.sh ]; then
  bash editors/vscode/test/run.sh
fi
