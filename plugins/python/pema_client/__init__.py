"""A client of the pema daemon (``pema serve``), standard library only.

pema learns the writing style of a folder of documents (a *workspace*) and rewrites text in
that style. ``pema serve`` speaks JSON-RPC 2.0 with LSP framing over TCP or a unix socket
(docs/protocol.md); this module is a thin, typed client of it::

    from pema_client import Client

    with Client() as c:
        root = c.open_workspace("~/notes")
        r = c.rewrite("Do not be troubled.", workspace=root,
                      on_text=lambda delta, text: print(delta, end=""))

Finding the daemon, first match wins: the ``address`` argument, ``$PEMA_DAEMON``, the address
the last ``pema serve`` wrote to ``$XDG_CACHE_HOME/pema/serve.addr``, then ``127.0.0.1:7858``.
The token, first match wins: ``token``, ``token_file``, ``$PEMA_TOKEN``, then the daemon's own
token file ``$XDG_CACHE_HOME/pema/serve.token``.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

__all__ = [
    "Client",
    "PemaError",
    "Progress",
    "Rewrite",
    "RewriteResult",
    "DEFAULT_ADDRESS",
    "cache_dir",
    "find_address",
    "find_token",
]

DEFAULT_ADDRESS = "127.0.0.1:7858"

#: JSON-RPC error codes the daemon answers with (docs/protocol.md, "Errors").
INVALID_PARAMS = -32602
CANCELLED = -32800
REQUEST_FAILED = -32803


class PemaError(Exception):
    """An error answered by the daemon (``code`` is the JSON-RPC code), or a lost connection
    (``code`` is None). ``str(e)`` is a sentence meant for the user; ``kind`` says what went wrong
    for programs (``data.kind`` of docs/protocol.md: ``noAdapter``, ``notInWorkspace``, …)."""

    def __init__(self, message: str, code: Optional[int] = None, kind: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind


@dataclass(frozen=True)
class RewriteResult:
    """The answer to a rewrite."""

    text: str
    mode: str
    tokens: int
    stopped_by: str
    seconds: float
    tokens_per_second: float
    workspace: Optional[str]


@dataclass(frozen=True)
class Progress:
    """One step of the daemon's background work on a workspace (paraphrasing, building the
    memory, training): ``kind`` is ``begin``, ``report`` or ``end``."""

    token: str
    kind: str
    workspace: Optional[str]
    title: Optional[str]
    message: Optional[str]
    percentage: Optional[int]


TextCallback = Callable[[str, str], None]
"""Called with (delta, text so far) as a rewrite streams."""

ProgressCallback = Callable[[Progress], None]


def cache_dir() -> Path:
    """pema's cache folder: ``$XDG_CACHE_HOME/pema`` or ``~/.cache/pema``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pema"


def find_address(address: Optional[str] = None) -> str:
    """The daemon's address (``HOST:PORT``, ``PORT`` or ``unix:/path``), as described in the
    module's documentation."""
    if address:
        return address
    if os.environ.get("PEMA_DAEMON"):
        return os.environ["PEMA_DAEMON"]
    try:
        for line in (cache_dir() / "serve.addr").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "rpc" and value.strip():
                return value.strip()
    except OSError:
        pass
    return DEFAULT_ADDRESS


def find_token(token: Optional[str] = None, token_file: Union[str, Path, None] = None) -> Optional[str]:
    """The token to present, as described in the module's documentation (None when there is
    none: a unix socket of a daemon started without a token needs none)."""
    if token:
        return token
    if token_file is not None:
        return Path(token_file).expanduser().read_text().strip()
    if os.environ.get("PEMA_TOKEN"):
        return os.environ["PEMA_TOKEN"]
    try:
        return (cache_dir() / "serve.token").read_text().strip() or None
    except OSError:
        return None


def _connect(address: str, timeout: float) -> socket.socket:
    if address.startswith("unix:") or "/" in address:
        path = address[len("unix:"):] if address.startswith("unix:") else address
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
    else:
        host, _, port = address.rpartition(":")
        if not host:
            host = "127.0.0.1"
        s = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(None)
    return s


class Rewrite:
    """A rewrite in flight: wait for it with :meth:`result`, stop it with :meth:`cancel`."""

    def __init__(self, client: "Client", request_id: int, pending: "_Pending") -> None:
        self._client = client
        self.id = request_id
        self._pending = pending

    def cancel(self) -> None:
        """Asks the daemon to stop before its next token; :meth:`result` then raises
        :class:`PemaError` with code -32800."""
        self._client._notify("$/cancelRequest", {"id": self.id})

    def done(self) -> bool:
        """Whether the answer has arrived."""
        return self._pending.event.is_set()

    def result(self, timeout: Optional[float] = None) -> RewriteResult:
        """Waits for the answer (``timeout`` seconds at most; None waits as long as it takes)."""
        r = self._pending.wait(timeout)
        return RewriteResult(
            text=r["text"],
            mode=r["mode"],
            tokens=int(r["tokens"]),
            stopped_by=r["stoppedBy"],
            seconds=float(r["seconds"]),
            tokens_per_second=float(r["tokensPerSecond"]),
            workspace=r.get("workspace"),
        )


class _Pending:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.result: Any = None
        self.error: Optional[PemaError] = None

    def wait(self, timeout: Optional[float]) -> Any:
        if not self.event.wait(timeout):
            raise TimeoutError(f"no answer from the pema daemon within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result


class Client:
    """A connection to ``pema serve``. Thread-safe: calls may come from several threads, and
    streamed text and progress callbacks run on the connection's reader thread (keep them
    short)."""

    def __init__(
        self,
        address: Optional[str] = None,
        *,
        token: Optional[str] = None,
        token_file: Union[str, Path, None] = None,
        on_progress: Optional[ProgressCallback] = None,
        timeout: float = 10.0,
    ) -> None:
        """Connects and initializes. Raises :class:`PemaError` with a sentence saying how to
        start a daemon when none answers, or why the daemon refused (a wrong token)."""
        self.address = find_address(address)
        self.on_progress = on_progress
        try:
            self._sock = _connect(self.address, timeout)
        except OSError as e:
            raise PemaError(
                f"no pema daemon answers at {self.address} ({e}); start one with "
                "`pema serve --workspace DIR &`, or pass the address of a running one"
            ) from None
        self._wlock = threading.Lock()
        self._plock = threading.Lock()
        self._pending: Dict[int, _Pending] = {}
        self._partials: Dict[str, Callable[[Dict[str, Any]], None]] = {}
        self._ids = itertools.count(1)
        self._closed: Optional[str] = None
        self._reader = threading.Thread(target=self._read_loop, name="pema-client", daemon=True)
        self._reader.start()
        options: Dict[str, Any] = {}
        t = find_token(token, token_file)
        if t:
            options["token"] = t
        try:
            self.server_info = self._call(
                "initialize",
                {"processId": os.getpid(), "rootUri": None, "capabilities": {},
                 "initializationOptions": options},
                timeout=60,
            ).get("serverInfo", {})
        except PemaError:
            self.close()
            raise
        self._notify("initialized", {})

    # -- the wire ---------------------------------------------------------------------------

    def _send(self, msg: Dict[str, Any]) -> None:
        body = json.dumps(msg).encode("utf-8")
        with self._wlock:
            if self._closed:
                raise PemaError(self._closed)
            self._sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def _notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def _start(self, method: str, params: Any) -> "tuple[int, _Pending]":
        rid = next(self._ids)
        p = _Pending()
        with self._plock:
            self._pending[rid] = p
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return rid, p

    def _call(self, method: str, params: Any, timeout: Optional[float] = 600) -> Any:
        _, p = self._start(method, params)
        return p.wait(timeout)

    def _read_loop(self) -> None:
        f = self._sock.makefile("rb")
        reason = "the pema daemon closed the connection"
        try:
            while True:
                length = None
                while True:
                    line = f.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length is None:
                    continue
                msg = json.loads(f.read(length))
                self._dispatch(msg)
        except (OSError, ValueError) as e:
            reason = f"the connection to the pema daemon broke: {e}"
        finally:
            self._closed = self._closed or reason
            with self._plock:
                pending, self._pending = self._pending, {}
            for p in pending.values():
                p.error = PemaError(self._closed)
                p.event.set()

    def _dispatch(self, msg: Dict[str, Any]) -> None:
        method = msg.get("method")
        if method is not None and "id" in msg:
            # A request from the daemon (e.g. a progress token): acknowledged.
            self._send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            return
        if method == "$/progress":
            params = msg.get("params") or {}
            cb = self._partials.get(str(params.get("token")))
            if cb is not None:
                cb(params.get("value") or {})
            return
        if method == "pema/progress":
            if self.on_progress is not None:
                params = msg.get("params") or {}
                v = params.get("value") or {}
                self.on_progress(Progress(
                    token=str(params.get("token")), kind=str(v.get("kind")),
                    workspace=params.get("workspace"), title=v.get("title"),
                    message=v.get("message"), percentage=v.get("percentage"),
                ))
            return
        if method is None and "id" in msg:
            with self._plock:
                p = self._pending.pop(msg["id"], None)
            if p is None:
                return
            if "error" in msg:
                e = msg["error"] or {}
                data = e.get("data") if isinstance(e.get("data"), dict) else {}
                p.error = PemaError(str(e.get("message", "the daemon refused")), e.get("code"), data.get("kind"))
            else:
                p.result = msg.get("result")
            p.event.set()

    # -- pema's methods ---------------------------------------------------------------------

    def open_workspace(self, path: Union[str, Path]) -> str:
        """Opens a folder as a workspace (its style is learned in the background) and returns
        its root as the daemon names it. Refused: ``/``, the home folder, system folders."""
        p = str(Path(path).expanduser().resolve())
        return str(self._call("pema/openWorkspace", {"path": p})["root"])

    def close_workspace(self, path: Union[str, Path]) -> None:
        """Closes a workspace this connection opened (nothing is deleted)."""
        self._call("pema/closeWorkspace", {"path": str(Path(path).expanduser().resolve())})

    def status(self, workspace: Optional[str] = None) -> Dict[str, Any]:
        """The daemon's state (docs/protocol.md, ``pema/status``): the model, the work queue
        and each workspace's files, memory and adapter (``adapter.state`` is ``loading``,
        ``none``, ``building``, ``training`` or ``ready``)."""
        return dict(self._call("pema/status", {"workspace": workspace} if workspace else {}))

    def train(self, workspace: Optional[str] = None, from_scratch: bool = False) -> None:
        """Trains the workspace's adapter now instead of after the quiet period."""
        self._call("pema/train", {"workspace": workspace, "fromScratch": from_scratch})

    def start_rewrite(
        self,
        text: str,
        workspace: Optional[str] = None,
        *,
        mode: Optional[str] = None,
        on_text: Optional[TextCallback] = None,
        lambda_max: Optional[float] = None,
        lambda_fixed: Optional[float] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        seed: Optional[int] = None,
        max_tokens: Optional[int] = None,
    ) -> Rewrite:
        """Starts a rewrite and returns at once; see :meth:`rewrite` for the arguments."""
        options = {k: v for k, v in {
            "lambdaMax": lambda_max, "lambdaFixed": lambda_fixed, "temperature": temperature,
            "topP": top_p, "seed": seed, "maxTokens": max_tokens,
        }.items() if v is not None}
        params: Dict[str, Any] = {"text": text, "options": options}
        if workspace is not None:
            params["workspace"] = workspace
        if mode is not None:
            params["mode"] = mode
        token = None
        if on_text is not None:
            token = f"py-{next(self._ids)}"
            params["partialResultToken"] = token
            cb = on_text
            self._partials[token] = lambda v: cb(str(v.get("delta", "")), str(v.get("text", "")))
        rid, p = self._start("pema/rewrite", params)
        if token is not None:
            done = p.event

            def forget() -> None:
                done.wait()
                self._partials.pop(token, None)

            threading.Thread(target=forget, daemon=True).start()
        return Rewrite(self, rid, p)

    def rewrite(
        self,
        text: str,
        workspace: Optional[str] = None,
        *,
        mode: Optional[str] = None,
        on_text: Optional[TextCallback] = None,
        timeout: Optional[float] = 600,
        **options: Any,
    ) -> RewriteResult:
        """Rewrites ``text`` in the workspace's style and waits for the answer.

        ``workspace``: a path inside an open workspace (None: the only one open). ``mode``:
        ``gu``, ``fixed`` or ``plain`` (default: the workspace's own choice). ``on_text`` is
        called with (delta, text so far) as the rewrite streams. Other options:
        ``lambda_max``, ``lambda_fixed``, ``temperature``, ``top_p``, ``seed``,
        ``max_tokens``. Raises :class:`PemaError` (code -32803 while the style is still being
        learned; -32602 for bad input)."""
        return self.start_rewrite(text, workspace, mode=mode, on_text=on_text, **options).result(timeout)

    def close(self) -> None:
        """Closes the connection (its running rewrites are cancelled by the daemon)."""
        self._closed = self._closed or "the client was closed"
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
