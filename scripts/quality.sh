#!/usr/bin/env bash
# Reproduces the quality table of BENCHMARKS.md: for each data set, build a memory from its
# train split, train an adapter, and score copy / plain / 3-shot / fixed λ / GU / default on its
# dev split (BLEU, chrF, chrF against the source, style accuracy, degenerate outputs).
# Extra options for `pema memory build` go in $PEMA_BUILD_ARGS (e.g. "--shots 0").
#   bash scripts/quality.sh DATA_DIR [LIMIT] [OUT_DIR] [SET ...]
# DATA_DIR holds one folder per set with train.jsonl and dev.jsonl (e.g. ../shared/data);
# naming SETs runs only those. Results: OUT_DIR/SET/{build,train,eval}.json.
set -euo pipefail
data=${1:?usage: quality.sh DATA_DIR [LIMIT] [OUT_DIR]}
limit=${2:-200}
out=${3:-target/quality}
shift $(( $# < 3 ? $# : 3 ))
only=" $* "
pema=${PEMA_BIN:-target/release/pema}
mkdir -p "$out"
template_for() {
  case "$1" in
    ntrex_en_de) echo translate-de ;;
    cocoa_de_formal) echo formal ;;
    *) echo rewrite ;;
  esac
}
for dir in "$data"/*/; do
  set_name=$(basename "$dir")
  [ -f "$dir/train.jsonl" ] && [ -f "$dir/dev.jsonl" ] || continue
  [ "$only" = "  " ] || [[ "$only" == *" $set_name "* ]] || continue
  echo "== $set_name" >&2
  mkdir -p "$out/$set_name"
  $pema memory build --pairs "$dir/train.jsonl" --template "$(template_for "$set_name")" \
    --out "$out/$set_name/memory" --replace ${PEMA_BUILD_ARGS:-} --json > "$out/$set_name/build.json"
  $pema train --memory "$out/$set_name/memory" --out "$out/$set_name/adapter.safetensors" --json \
    > "$out/$set_name/train.json"
  $pema eval --adapter "$out/$set_name/adapter.safetensors" --pairs "$dir/dev.jsonl" \
    --shots "$dir/train.jsonl" --few-shot-template "$(template_for "$set_name")" \
    --limit "$limit" --outputs --json > "$out/$set_name/eval.json"
done
python3 "$(dirname "$0")/quality_table.py" "$out"
