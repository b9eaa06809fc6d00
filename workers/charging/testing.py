"""Helpers for tests and benchmarks: a private redis-server and an in-process WorkerContext."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A throwaway redis-server on a free loopback port (no persistence), stopped on exit."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if self.binary is None:
            raise RuntimeError("redis-server is not installed")
        self.dir = tempfile.mkdtemp(prefix="cg-redis-")
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir, "--daemonize", "no", "--loglevel", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                        c.sendall(b"PING\r\n")
                        if c.recv(16).startswith(b"+PONG"):
                            return self
                except OSError:
                    time.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def answer(app: Any, request: Any, rctx: Any = None) -> Any:
    """One request (a Message or its bytes) through the app's `handle_batch`, as the runtime
    calls it, and its answer decoded (None: dropped). An answer the app gives as an awaitable
    is awaited on a fresh loop, or, called on a running loop, returned as a coroutine."""
    from chargegw.codec import Message

    from ..api import Incoming, RequestContext

    raw = request if isinstance(request, bytes) else request.encode()
    res = app.handle_batch([Incoming(raw, rctx or RequestContext(peer="", deadline=0.0))])
    out = res[0] if isinstance(res, list) else res  # or an awaitable of the whole batch
    if out is not None and not isinstance(out, bytes):
        async def wait() -> Any:
            got = await out
            if not isinstance(res, list):
                got = got[0]
                if got is not None and not isinstance(got, bytes):
                    got = await got
            return None if got is None else Message.decode(got)

        if _loop_running():
            return wait()  # on the caller's loop: an awaitable of the decoded answer
        return asyncio.run(wait())
    return None if out is None else Message.decode(out)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class FakeWorkerContext:
    """A WorkerContext for running applications without the worker runtime.

    `send_request` records (request, peer) in `sent` and answers with `responder(request)`
    (default: the request's answer with 2001); `call_later` records callbacks in `timers`.
    """

    def __init__(
        self,
        data_dir: str,
        config: Mapping[str, Any] | None = None,
        responder: Callable[[Any], Any] | None = None,
    ) -> None:
        self.origin_host = "ocs.test"
        self.origin_realm = "test"
        self.worker_id = f"w{os.getpid()}"
        self.data_dir = data_dir
        self.config = dict(config or {})
        self.log = logging.getLogger("chargegw.test")
        self.sent: list[tuple[Any, str | None]] = []
        self.timers: list[tuple[float, Callable[[], Any]]] = []
        self.responder = responder

    def send_request(self, request: Any, *, peer: str | None = None, timeout: float = 5.0) -> Any:
        self.sent.append((request, peer))
        fut: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
        try:
            fut.set_result(self.responder(request) if self.responder else request.answer(2001))
        except Exception as exc:  # the responder may raise SendError
            fut.set_exception(exc)
        return fut

    def call_later(self, delay: float, callback: Callable[[], Any]) -> None:
        self.timers.append((delay, callback))

    def run_timers(self) -> None:
        """Run the callbacks scheduled so far once (they may schedule themselves again)."""
        timers, self.timers = self.timers, []
        for _, cb in timers:
            res = cb()
            if asyncio.iscoroutine(res):
                asyncio.get_event_loop().run_until_complete(res)
