#!/usr/bin/env python3
"""Prints the quality table of BENCHMARKS.md from the eval.json files scripts/quality.sh wrote.

Columns: BLEU and chrF against the references, chrF against the sources (content kept), style
accuracy (share of outputs the classifier trained on the training pairs puts on the target
side), degenerate outputs (loops, run-aways), and, where a set has one, a marker count that BLEU
against near-copies barely shows: for the Bible set the share of outputs with an archaic form
(thou, thee, thy, thine, unto, hath, doth, saith, ye, shalt, cometh, spake,
art, wilt, hast, didst, verily, behold, Jehovah; 55 of the first 100 Bible dev references have one), for the German formality set the share
with no informal second-person form (du, dich, dir, dein..., euch, euer...).
"""
import json, re, sys
from pathlib import Path

INFORMAL = re.compile(r"\b(du|dich|dir|dein|deine|deinen|deinem|deiner|deines|euch|euer|eure|euren|eurem|eurer|eures)\b", re.I)
ARCHAIC = re.compile(r"\b(thou|thee|thy|thine|unto|hath|doth|saith|ye|shalt|cometh|spake|art|wilt|hast|didst|verily|behold|jehovah)\b", re.I)


def marker(name):
    if name.startswith("cocoa"):
        return "no informal form", lambda o: not INFORMAL.search(o)
    if name.startswith("bible"):
        return "archaic form", lambda o: bool(ARCHAIC.search(o))
    return None, None


out = Path(sys.argv[1] if len(sys.argv) > 1 else "target/quality")
for d in sorted(p for p in out.iterdir() if (p / "eval.json").exists()):
    ev = json.loads((d / "eval.json").read_text())
    info = json.loads((d / "train.json").read_text())
    tr = info["training"]
    print(f"\n### {d.name} ({ev['pairs']} dev pairs)\n")
    dec = info.get("decoding")
    chosen = ""
    if dec:
        if dec["mode"] == "fixed":
            chosen = f"; default chosen on held-out pairs: fixed λ = {dec['lambda']}"
        else:
            chosen = f"; default chosen on held-out pairs: {dec['mode']} λ_max = {dec['lambda_max']}, floor {dec['lambda_floor']}"
        if dec.get("held_out_bleu") is not None:
            chosen += f" (held-out rewrites' BLEU {dec['held_out_bleu']:.2f})"
        else:
            chosen += f" (held-out NLL {dec['held_out_nll']:.3f}, plain {dec['plain_nll']:.3f})"
    print(f"adapter: {tr['train_entries']} training entries, vocabulary {tr['vocab_size']}, "
          f"{tr['epochs']} epochs (best {tr['best_epoch']}), {tr['seconds']:.0f} s, "
          f"held-out CE {tr['held_out_ce_start']:.3f} -> {tr['held_out_ce']:.3f}{chosen}\n")
    mname, mfun = marker(d.name)
    head = "| system | BLEU | chrF | chrF vs source | style acc. | degenerate | tok/s |" + (f" {mname} |" if mname else "")
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for s in ev["systems"]:
        style = "-" if s.get("style_accuracy") is None else f"{s['style_accuracy']:.2f}"
        row = (f"| {s['system']} | {s['bleu']:.2f} | {s['chrf']:.2f} | {s.get('chrf_source', 0):.2f} | "
               f"{style} | {s.get('degenerate', 0)} | {s['tokens_per_second']:.1f} |")
        if mname:
            outs = s.get("outputs", [])
            if len(outs) == ev["pairs"]:
                row += f" {sum(1 for o in outs if mfun(o)) / len(outs):.2f} |"
            else:
                row += " (run eval with --outputs) |"
        print(row)
