#!/usr/bin/env python3
"""Prints the quality table of BENCHMARKS.md from the eval.json files scripts/quality.sh wrote.

For the German formality set it adds the share of outputs with no informal second-person form
(du, dich, dir, dein..., euch, euer...): every source has one, so this is how often a system
actually made the text formal, which BLEU against near-copies barely shows.
"""
import json, re, sys
from pathlib import Path

INFORMAL = re.compile(r"\b(du|dich|dir|dein|deine|deinen|deinem|deiner|deines|euch|euer|eure|euren|eurem|eurer|eures)\b", re.I)

out = Path(sys.argv[1] if len(sys.argv) > 1 else "target/quality")
for d in sorted(p for p in out.iterdir() if (p / "eval.json").exists()):
    ev = json.loads((d / "eval.json").read_text())
    tr = json.loads((d / "train.json").read_text())["training"]
    print(f"\n### {d.name} ({ev['pairs']} dev pairs)\n")
    print(f"adapter: {tr['train_entries']} training entries, vocabulary {tr['vocab_size']}, "
          f"{tr['epochs']} epochs (best {tr['best_epoch']}), {tr['seconds']:.0f} s, "
          f"held-out CE {tr['held_out_ce_start']:.3f} -> {tr['held_out_ce']:.3f}\n")
    formality = d.name.startswith("cocoa")
    head = "| system | BLEU | chrF | tok/s |" + (" no informal form |" if formality else "")
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for s in ev["systems"]:
        row = f"| {s['system']} | {s['bleu']:.2f} | {s['chrf']:.2f} | {s['tokens_per_second']:.1f} |"
        if formality:
            outs = s.get("outputs", [])
            if len(outs) == ev["pairs"]:
                row += f" {sum(1 for o in outs if not INFORMAL.search(o)) / len(outs):.2f} |"
            else:
                row += " (run eval with --outputs) |"
        print(row)
