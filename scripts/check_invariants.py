#!/usr/bin/env python3
"""Checks the invariants of ARCHITECTURE.md that a reading of the source can check.

Run by .ci/run before the tests (and by hand: `python3 scripts/check_invariants.py`). Each check
prints what breaks it, with file and line; the exit status is the number of broken invariants.
The invariants that need the program running (the offsite property at run time, no slow work on
a keystroke's path, atomic writes surviving kill -9, ...) are checked by tests; this script
names them at the end.
"""

import collections
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")


def sources():
    """(path relative to src/, the code without its #[cfg(test)] module) of every .rs file."""
    for d, _, files in os.walk(SRC):
        for f in sorted(files):
            if f.endswith(".rs"):
                p = os.path.join(d, f)
                text = open(p, encoding="utf-8").read()
                # Unit tests sit in one `#[cfg(test)] mod tests` at the bottom of a file.
                cut = text.find("#[cfg(test)]\nmod tests")
                yield os.path.relpath(p, SRC), text if cut < 0 else text[:cut]


def top(rel):
    return rel.split(os.sep)[0].removesuffix(".rs")


def lines_matching(code, pattern):
    for n, line in enumerate(code.splitlines(), 1):
        s = line.split("//")[0]
        if re.search(pattern, s):
            yield n, line.strip()


broken = []


def check(name, problems):
    problems = list(problems)
    print(f"{'ok  ' if not problems else 'FAIL'} {name}")
    for p in problems:
        print(f"     {p}")
    if problems:
        broken.append(name)


files = list(sources())

# `unsafe` lives in three places, each with a SAFETY note: the llama.cpp FFI, the memory map, and
# malloc_trim after training.
UNSAFE_OK = {"model/llama.rs", "memory/format.rs", "daemon/pipeline/train.rs"}
check(
    "unsafe only in model/llama.rs, memory/format.rs (mmap) and daemon/pipeline/train.rs (malloc_trim)",
    (f"src/{rel}:{n}: {l}" for rel, code in files if rel not in UNSAFE_OK
     for n, l in lines_matching(code, r"\bunsafe\b")),
)
check(
    "every unsafe block outside model/llama.rs says why it is sound (a SAFETY comment above it)",
    (f"src/{rel}:{n}: {l}" for rel, code in files if rel in UNSAFE_OK - {"model/llama.rs"}
     for n, l in lines_matching(code, r"\bunsafe\s*\{")
     if "SAFETY" not in "\n".join(code.splitlines()[max(0, n - 6):n])),
)

# Only the server knows LSP or JSON-RPC.
check(
    "only src/server/ knows LSP or JSON-RPC (tower_lsp_server, jsonrpc)",
    (f"src/{rel}:{n}: {l}" for rel, code in files if top(rel) != "server"
     for n, l in lines_matching(code, r"tower_lsp|jsonrpc|JsonRpc")),
)
# JSON elsewhere only as a file format at the edges, and in the CLI's --json reports.
JSON_OK = {"server", "cli", "main"}
JSON_FILES = {"memory/pairs.rs", "memory/marked.rs", "workspace/state.rs", "workspace/style_words.rs", "adapter/file.rs", "workspace/config.rs"}
check(
    "serde_json outside src/server/ only in the CLI and the file formats (pairs, paraphrase cache, style words, marked words, adapter metadata, the settings' JSON schema)",
    (f"src/{rel}:{n}: {l}" for rel, code in files if top(rel) not in JSON_OK and rel not in JSON_FILES
     for n, l in lines_matching(code, r"serde_json")),
)

check(
    "src/daemon/ derives no Serialize: the server's to_proto decides the wire",
    (f"src/{rel}:{n}: {l}" for rel, code in files if top(rel) == "daemon"
     for n, l in lines_matching(code, r"\bserde\b|Serialize")),
)

# PEMA's offsite property: the adapter holds the LM head and the model's identity, nothing else.
check(
    "src/adapter/ takes from the model only LmHead and ModelInfo",
    (f"src/{rel}:{n}: {l}" for rel, code in files if top(rel) == "adapter"
     for n, l in lines_matching(code, r"crate::model::")
     if not re.search(r"crate::model::(\{\s*(LmHead|ModelInfo)(\s*,\s*(LmHead|ModelInfo))*\s*\}|(LmHead|ModelInfo)\b)", l)),
)

# One llama.cpp context per daemon, owned by the worker.
check(
    "in the daemon and server, only daemon/worker.rs makes a llama.cpp session",
    (f"src/{rel}:{n}: {l}" for rel, code in files if top(rel) in ("daemon", "server") and rel != "daemon/worker.rs"
     for n, l in lines_matching(code, r"\.session\(")),
)

# Files are written atomically: through fsutil, or the memory's own temp-file-and-rename writer.
WRITE_OK = {"fsutil.rs", "memory/format.rs"}
check(
    "files are written only through fsutil's atomic writes (or the memory's own temp file + rename)",
    (f"src/{rel}:{n}: {l}" for rel, code in files if rel not in WRITE_OK
     for n, l in lines_matching(code, r"fs::write\(|File::create\(|\.write\(true\)|\.append\(true\)")),
)

# The layers form no circle.
deps = collections.defaultdict(set)
mods = {top(rel) for rel, _ in files} - {"lib", "main"}
for rel, code in files:
    for m in re.findall(r"crate::(\w+)", code):
        if m in mods and m != top(rel):
            deps[top(rel)].add(m)


def cycles():
    seen, stack, out = set(), [], []

    def visit(m):
        if m in stack:
            out.append(" -> ".join(stack[stack.index(m):] + [m]))
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in sorted(deps[m]):
            visit(d)
        stack.pop()

    for m in sorted(mods):
        visit(m)
    return out


check("no import circle between the top-level modules", cycles())

print(
    "checked by tests instead: the offsite property at run time (tests/adapter_rewrite.rs), one file's\n"
    "edit recomputing only its own pairs (tests/memory_build.rs, tests/daemon.rs), rewrites first and\n"
    "nothing slow on a keystroke's path (tests/robustness.rs), atomic writes under kill -9\n"
    "(tests/memory_build.rs, tests/daemon.rs), reads inside open workspaces only (tests/daemon.rs)."
)
sys.exit(len(broken))
