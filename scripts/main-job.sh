#!/usr/bin/env bash
# The main job on the default model: build an external memory from the shipped example pairs
# (plain English -> archaic Bible English) and print its figures.
set -euo pipefail
cd "$(dirname "$0")/.."
pema=target/release/pema
out=${PEMA_EXAMPLE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pema/example}
$pema memory build --pairs examples/bible_bbe_asv/dev.jsonl --out "$out/memory"
$pema memory stats "$out/memory"
