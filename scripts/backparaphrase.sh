#!/usr/bin/env bash
# Measures learning from a plain corpus (prose with no pairs): the targets of a pairs file are
# treated as the user's own writing with no sources. One memory per way of making pseudo-pairs
# from the same N targets, each scored on the dev pairs with `pema eval` (copy-source, plain,
# default), the style classifier trained on the set's real training pairs:
#   true      the real pairs (source → target): the upper bound
#   backpara  the base model's plain paraphrase of each target → the target (an option)
#   identity  target → target (what a unit whose pseudo-source is not ready gives)
#   style     the target with its style words taken out → the target (the daemon's default)
#   neutral   the target neutralised by the model's own expectations → the target (an option)
#   bash scripts/backparaphrase.sh DATA_SET_DIR [N] [DEV_LIMIT] [OUT_DIR]
# $VARIANTS picks the variants (default: all five); extra `pema paraphrase --neutralise` options
# go in $PEMA_NEUTRAL_ARGS. Results: OUT_DIR/VARIANT/{build,train,eval}.json and a table.
set -euo pipefail
dir=${1:?usage: backparaphrase.sh DATA_SET_DIR [N] [DEV_LIMIT] [OUT_DIR]}
n=${2:-600}
dev=${3:-80}
out=${4:-target/backparaphrase}
pema=${PEMA_BIN:-target/release/pema}
variants=${VARIANTS:-true style backpara identity neutral}
mkdir -p "$out"
head -n "$n" "$dir/train.jsonl" > "$out/true.jsonl"
for v in $variants; do
  case $v in
    backpara) [ -f "$out/backpara.jsonl" ] || $pema paraphrase --pairs "$out/true.jsonl" --out "$out/backpara.jsonl" ;;
    style) $pema paraphrase --style-words --pairs "$out/true.jsonl" --out "$out/style.jsonl" ;;
    identity) $pema paraphrase --identity --pairs "$out/true.jsonl" --out "$out/identity.jsonl" ;;
    neutral) $pema paraphrase --neutralise ${PEMA_NEUTRAL_ARGS:-} --pairs "$out/true.jsonl" --out "$out/neutral.jsonl" ;;
  esac
done
for v in $variants; do
  echo "== $v" >&2
  mkdir -p "$out/$v"
  $pema memory build --pairs "$out/$v.jsonl" --out "$out/$v/memory" --replace --json > "$out/$v/build.json"
  $pema train --memory "$out/$v/memory" --out "$out/$v/adapter.safetensors" --json > "$out/$v/train.json"
  $pema eval --adapter "$out/$v/adapter.safetensors" --pairs "$dir/dev.jsonl" --limit "$dev" \
    --style-pairs "$dir/train.jsonl" --systems copy-source,plain,default --outputs --json > "$out/$v/eval.json"
done
python3 - "$out" $variants <<'PY'
import json, os, re, sys
ARCHAIC = re.compile(r"\b(thou|thee|thy|thine|unto|hath|doth|saith|ye|shalt|cometh|spake|art|wilt|hast|didst|verily|behold|jehovah)\b", re.I)
out = sys.argv[1]
print("| memory from | changed sources | default chosen | copy BLEU | plain BLEU | default BLEU | default chrF | chrF vs source | style acc. | archaic form | degenerate |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for v in sys.argv[2:]:
    e = json.load(open(os.path.join(out, v, "eval.json")))
    t = json.load(open(os.path.join(out, v, "train.json")))
    pairs = [json.loads(l) for l in open(os.path.join(out, v + ".jsonl"))]
    changed = sum(p["source"] != p["target"] for p in pairs) / len(pairs)
    d = t.get("decoding") or {}
    chosen = f"fixed {d['lambda']}" if d.get("mode") == "fixed" else f"{d.get('mode')} {d.get('lambda_max')}/{d.get('lambda_floor')}"
    s = {x["system"]: x for x in e["systems"]}
    dd = s["default"]
    arch = sum(bool(ARCHAIC.search(o)) for o in dd["outputs"]) / len(dd["outputs"])
    print(f"| {v} | {changed:.2f} | {chosen} | {s['copy-source']['bleu']:.2f} | {s['plain']['bleu']:.2f} | {dd['bleu']:.2f} | {dd['chrf']:.2f} | {dd['chrf_source']:.2f} | {dd['style_accuracy']:.2f} | {arch:.2f} | {dd['degenerate']} |")
PY
