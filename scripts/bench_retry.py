#!/usr/bin/env python3
"""Retry samples (BENCHMARKS.md, "Retry samples"): how far sampled rewrites drift from the source,
for a few temperature / top-p settings, against the greedy rewrite of the same adapter.

  python3 scripts/bench_retry.py ADAPTER PAIRS [--from K] [--limit N] [--lambda L]

Rewrites sources K..K+N of PAIRS (JSON lines with "source" and "target"; pick pairs the adapter
was not trained on) with `pema rewrite --adapter ADAPTER --mode fixed --lambda L`, greedy and
sampled, and prints chrF against the source (meaning kept) and the reference, how many outputs
fall below chrF 35 against their source, and how many differ from the greedy text. chrF here is
a plain character 6-gram F-score (beta 2, spaces removed). Standard library only.
"""
import argparse, json, os, subprocess, sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEMA = os.environ.get("PEMA_BIN", os.path.join(ROOT, "target/release/pema"))
CONFIGS = [(0.8, 1.0), (0.8, 0.8), (0.6, 0.9), (0.8, 0.6)]


def ngrams(s, n):
    s = s.replace(" ", "")
    return Counter(s[i:i + n] for i in range(len(s) - n + 1))


def chrf(h, r, order=6, beta=2):
    ps, rs = [], []
    for n in range(1, order + 1):
        hn, rn = ngrams(h, n), ngrams(r, n)
        m = sum((hn & rn).values())
        if hn:
            ps.append(m / sum(hn.values()))
        if rn:
            rs.append(m / sum(rn.values()))
    p = sum(ps) / len(ps) if ps else 0
    r = sum(rs) / len(rs) if rs else 0
    return 0 if p + r == 0 else 100 * (1 + beta**2) * p * r / (beta**2 * p + r)


def rewrite(adapter, lam, sources, extra):
    out = subprocess.run(
        [PEMA, "rewrite", "--adapter", adapter, "--mode", "fixed", "--lambda", str(lam), *extra],
        input="\n".join(sources) + "\n", capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert len(out) == len(sources), f"{len(out)} outputs for {len(sources)} sources"
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("adapter")
    ap.add_argument("pairs")
    ap.add_argument("--from", dest="start", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--lambda", dest="lam", type=float, default=0.9)
    a = ap.parse_args()
    with open(a.pairs) as f:
        pairs = [json.loads(l) for l in f if l.strip()][a.start:a.start + a.limit]
    src, ref = [p["source"] for p in pairs], [p["target"] for p in pairs]
    greedy = rewrite(a.adapter, a.lam, src, [])
    rows = [("greedy", greedy)] + [
        (f"T {t}, top-p {p}", rewrite(a.adapter, a.lam, src, ["--temperature", str(t), "--top-p", str(p)]))
        for t, p in CONFIGS
    ]
    print("| sampling | chrF vs source | chrF vs reference | below 35 vs source | differ from greedy |")
    print("| --- | --- | --- | --- | --- |")
    for name, out in rows:
        cs = [chrf(o, s) for o, s in zip(out, src)]
        cr = [chrf(o, r) for o, r in zip(out, ref)]
        far = sum(c < 35 for c in cs)
        diff = sum(o != g for o, g in zip(out, greedy))
        print(f"| {name} | {sum(cs) / len(cs):.1f} | {sum(cr) / len(cr):.1f} | {far}/{len(out)} | {diff}/{len(out)} |")


if __name__ == "__main__":
    sys.exit(main())
