#!/usr/bin/env bash
# kill -9 during memory builds and trainings (BENCHMARKS.md, "Reliability").
#
# Builds a memory from 60 shipped pairs and trains an adapter on it, then N times (default 20)
# starts a rebuild with 40 new pairs and SIGKILLs it at a random moment of its run, and N times
# starts a training and SIGKILLs it likewise. After every kill the memory must open
# (`pema memory stats`) and the adapter must load and rewrite (`pema rewrite`). At the end, one
# finished build and one finished training must leave no temporary file behind.
#
#   bash scripts/kill9.sh [N]        # PEMA=path/to/pema to use another binary
set -euo pipefail
cd "$(dirname "$0")/.."
PEMA=${PEMA:-target/release/pema}
N=${1:-20}
work=$(mktemp -d /tmp/pema-kill9-XXXXXX)
trap 'rm -rf "$work"' EXIT
data=examples/bible_bbe_asv/train.jsonl
head -n 60 "$data" > "$work/base.jsonl"

now() { date +%s.%N; }
rand_between() { python3 -c "import random,sys; print(round(random.uniform($1, $2), 2))"; }
entries() { "$PEMA" memory stats "$work/mem" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['entries'])"; }
check_adapter() { "$PEMA" rewrite --adapter "$work/ad.safetensors" --max-tokens 2 "Give ear to my words." > /dev/null 2>&1; }
temporaries() { find "$work" -name '*.tmp' | wc -l; }

t0=$(now)
"$PEMA" memory build --pairs "$work/base.jsonl" --out "$work/mem" > /dev/null 2>&1
t_build=$(python3 -c "print($(now) - $t0)")
t0=$(now)
"$PEMA" train --memory "$work/mem" --out "$work/ad.safetensors" > /dev/null 2>&1
t_train=$(python3 -c "print($(now) - $t0)")
base_entries=$(entries)
echo "baseline: memory of $base_entries entries built in ${t_build}s, adapter trained in ${t_train}s"

build_ok=0; build_finished=0
for i in $(seq 1 "$N"); do
  # 40 pairs never seen before, so the build runs the model (a killed build never lands).
  sed -n "$((100 + i * 40)),$((139 + i * 40))p" "$data" > "$work/new.jsonl"
  at=$(rand_between 0.3 "$t_build")
  "$PEMA" memory build --pairs "$work/base.jsonl" --pairs "$work/new.jsonl" --out "$work/mem" > /dev/null 2>&1 &
  pid=$!
  sleep "$at"
  if kill -9 "$pid" 2> /dev/null; then :; else build_finished=$((build_finished + 1)); fi
  wait "$pid" 2> /dev/null || true
  if e=$(entries); then
    build_ok=$((build_ok + 1))
    echo "build $i: killed at ${at}s; memory opens ($e entries)"
  else
    echo "build $i: killed at ${at}s; THE MEMORY DOES NOT OPEN"
  fi
done

train_ok=0; train_finished=0
for i in $(seq 1 "$N"); do
  at=$(rand_between 0.3 "$t_train")
  "$PEMA" train --memory "$work/mem" --out "$work/ad.safetensors" > /dev/null 2>&1 &
  pid=$!
  sleep "$at"
  if kill -9 "$pid" 2> /dev/null; then :; else train_finished=$((train_finished + 1)); fi
  wait "$pid" 2> /dev/null || true
  if check_adapter; then
    train_ok=$((train_ok + 1))
    echo "training $i: killed at ${at}s; adapter loads and rewrites"
  else
    echo "training $i: killed at ${at}s; THE ADAPTER DOES NOT LOAD"
  fi
done

left_after_kills=$(temporaries)
"$PEMA" memory build --pairs "$work/base.jsonl" --out "$work/mem" > /dev/null 2>&1
"$PEMA" train --memory "$work/mem" --out "$work/ad.safetensors" --max-epochs 1 > /dev/null 2>&1
left_after_clean_runs=$(temporaries)
echo "{\"kills\": $N, \"builds_memory_opens\": $build_ok, \"builds_finished_before_kill\": $build_finished," \
  "\"trainings_adapter_loads\": $train_ok, \"trainings_finished_before_kill\": $train_finished," \
  "\"temporaries_after_kills\": $left_after_kills, \"temporaries_after_one_clean_run\": $left_after_clean_runs}"
[ "$build_ok" = "$N" ] && [ "$train_ok" = "$N" ] && [ "$left_after_clean_runs" = 0 ]
