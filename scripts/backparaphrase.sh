#!/usr/bin/env bash
# Measures training from a plain corpus (issue 4): the targets of a pairs file are treated as the
# user's own writing with no sources. Three memories from the same N targets, each scored on the
# dev pairs with `pema eval` (copy / plain / fixed λ / GU):
#   true      the real pairs (source → target): the upper bound
#   backpara  the base model's plain paraphrase of each target → the target (what the daemon does)
#   identity  target → target (what a unit whose paraphrase is not ready would give)
#   bash scripts/backparaphrase.sh DATA_SET_DIR [N] [DEV_LIMIT] [OUT_DIR]
set -euo pipefail
dir=${1:?usage: backparaphrase.sh DATA_SET_DIR [N] [DEV_LIMIT] [OUT_DIR]}
n=${2:-600}
dev=${3:-80}
out=${4:-target/backparaphrase}
pema=${PEMA_BIN:-target/release/pema}
mkdir -p "$out"
head -n "$n" "$dir/train.jsonl" > "$out/true.jsonl"
[ -f "$out/backpara.jsonl" ] || $pema paraphrase --pairs "$out/true.jsonl" --out "$out/backpara.jsonl"
$pema paraphrase --identity --pairs "$out/true.jsonl" --out "$out/identity.jsonl"
for v in true backpara identity; do
  echo "== $v" >&2
  mkdir -p "$out/$v"
  $pema memory build --pairs "$out/$v.jsonl" --out "$out/$v/memory" --replace --json > "$out/$v/build.json"
  $pema train --memory "$out/$v/memory" --out "$out/$v/adapter.safetensors" --json > "$out/$v/train.json"
  $pema eval --adapter "$out/$v/adapter.safetensors" --pairs "$dir/dev.jsonl" --limit "$dev" --json > "$out/$v/eval.json"
done
python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
print("| memory from | copy BLEU | plain BLEU | fixed λ BLEU | GU BLEU | GU chrF |")
print("|---|---|---|---|---|---|")
for v in ["true", "backpara", "identity"]:
    e = json.load(open(os.path.join(out, v, "eval.json")))
    s = {x["system"]: x for x in e["systems"]}
    print(f"| {v} | {s['copy-source']['bleu']:.2f} | {s['plain']['bleu']:.2f} | {s['fixed']['bleu']:.2f} | {s['gu']['bleu']:.2f} | {s['gu']['chrf']:.2f} |")
PY
