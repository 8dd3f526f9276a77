"""The Python client against the real daemon and model (fixtures in plugins/conftest.py)."""

from __future__ import annotations

import threading
import time

import pytest

from pema_client import CANCELLED, Client, PemaError

TEXT = "Do not be troubled in your heart."


def test_status_and_open_workspace(daemon):
    with daemon.client() as c:
        assert c.server_info["name"] == "pema"
        root = c.open_workspace(daemon.workspace)
        assert root == str(daemon.workspace.resolve())
        s = c.status(root)
        assert s["model"] and s["workspaces"][0]["root"] == root
        with pytest.raises(PemaError) as e:
            c.open_workspace("/")
        assert e.value.code == -32602
        assert e.value.kind == "invalidRequest"


def test_the_token_file_is_found_and_a_wrong_token_refused(daemon, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(daemon.cache))
    monkeypatch.delenv("PEMA_TOKEN", raising=False)
    with Client(daemon.rpc) as c:  # the token from the daemon's own token file
        c.status()
    with pytest.raises(PemaError) as e:
        Client(daemon.rpc, token="x" * 64)
    assert "token" in str(e.value)


def test_no_daemon_says_how_to_start_one():
    with pytest.raises(PemaError) as e:
        Client("127.0.0.1:1")
    assert "pema serve" in str(e.value)


def test_rewrite_streams_text(daemon):
    seen = []
    with daemon.client() as c:
        r = c.rewrite(TEXT, str(daemon.workspace), mode="plain",
                      on_text=lambda delta, so_far: seen.append((delta, so_far)))
    assert r.text.strip() and r.mode == "plain" and r.tokens > 0
    assert len(seen) > 1
    assert "".join(d for d, _ in seen) == r.text
    assert seen[-1][1] == r.text


def test_cancel_stops_a_rewrite(daemon):
    long = "\n".join(["And he said to them, Go into all the world and give the good news."] * 30)
    first = threading.Event()
    with daemon.client() as c:
        rw = c.start_rewrite(long, str(daemon.workspace), mode="plain",
                             on_text=lambda d, t: first.set())
        assert first.wait(300), "no text arrived"
        rw.cancel()
        with pytest.raises(PemaError) as e:
            rw.result(120)
        assert e.value.code == CANCELLED
        # The connection is still usable.
        assert c.rewrite("Go now.", str(daemon.workspace), mode="plain").text


def test_progress_and_the_learned_style(ready):
    # The `ready` fixture watched the workspace learn through this client's on_progress.
    until = time.time() + 30
    while not any(p.kind == "end" and "training" in p.token for p in ready.progress):
        assert time.time() < until, [(p.token, p.kind) for p in ready.progress]
        time.sleep(0.5)
    assert all(p.workspace == str(ready.workspace) for p in ready.progress)
    with ready.client() as c:
        r = c.rewrite(TEXT, str(ready.workspace))
        assert r.mode in ("gu", "fixed") and r.text.strip()
