#!/usr/bin/env python3
"""Runs a command and prints its peak anonymous RSS (its own heap, sampled every 0.1 s) and its
VmHWM (which also counts mapped files: the model and the memory, pages the kernel can drop).
The command's stdout goes to --out (default: discarded). BENCHMARKS.md, "RSS bounded".

  python3 scripts/peak_rss.py [--out FILE] -- pema train --memory DIR --out A --json
"""
import argparse, subprocess, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/dev/null")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    with open(a.out, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        anon = hwm = 0
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    v = {l.split(":")[0]: int(l.split()[1]) // 1024 for l in f if l.startswith(("RssAnon", "VmHWM"))}
                anon, hwm = max(anon, v.get("RssAnon", 0)), v.get("VmHWM", hwm)
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
    print(f"exit {p.returncode}; peak anonymous RSS {anon} MiB; VmHWM {hwm} MiB")


if __name__ == "__main__":
    main()
