"""Process set-up shared by every long-running command (`run`, `gateway`, `worker`):
logging, the event loop, stop signals, watching the parent, and the exit statuses the
launcher reads. Both the front end and the workers import it; it imports neither."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from chargegw.peer import loop as peer_loop

T = TypeVar("T")

EX_CONFIG = 78  # a worker's exit status when an application cannot be loaded or set up
EX_TEMPFAIL = 75  # set-up failed for a reason that may pass (a store not up yet): restart later

log = logging.getLogger("chargegw.process")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run on the peer layer's loop choice: uvloop when installed, unless CHARGEGW_UVLOOP=0."""
    return peer_loop.run(coro)


def install_signals(stop: asyncio.Event, reload: Callable[[], None] | None = None) -> None:
    """SIGTERM and SIGINT set `stop`; SIGHUP calls `reload` when given."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)


def watch_parent(parent_pid: int, stop: asyncio.Event, *, every: float = 1.0) -> None:
    """Set `stop` once `parent_pid` is no longer this process's parent (the launcher
    crashed or was killed): a child must not outlive the supervisor that owns it."""
    loop = asyncio.get_running_loop()

    def check() -> None:
        if os.getppid() != parent_pid:
            log.warning("parent %d is gone, stopping", parent_pid)
            stop.set()
        else:
            loop.call_later(every, check)

    loop.call_later(every, check)
