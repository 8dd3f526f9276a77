#!/usr/bin/env bash
# The main job on the default model: learn a style from the shipped example pairs (plain modern
# English -> the archaic English of the 1901 American Standard Version), then rewrite a few
# sentences it has not seen, printing the plain model's rewrite and pema's side by side.
# The memory and adapter persist under ~/.cache/pema/example: a second run reuses them.
set -euo pipefail
cd "$(dirname "$0")/.."
pema=target/release/pema
out=${PEMA_EXAMPLE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pema/example}
mkdir -p "$out"
$pema memory build --pairs examples/bible_bbe_asv/train.jsonl --out "$out/memory" --replace
$pema memory stats "$out/memory"
if [ ! -f "$out/adapter.safetensors" ] || [ "$out/memory/memory.pema" -nt "$out/adapter.safetensors" ]; then
  $pema train --memory "$out/memory" --out "$out/adapter.safetensors"
fi
echo
$pema rewrite --adapter "$out/adapter.safetensors" --compare < examples/bible_bbe_asv/samples.txt
