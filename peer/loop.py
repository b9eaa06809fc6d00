"""Event loop choice: uvloop when installed (and not switched off), asyncio's otherwise.

`CHARGEGW_UVLOOP=0` (or false, no, off) switches uvloop off for every chargegw command; the
config loader knows the name and does not take it for a config key (`NOT_CONFIG` there).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

ENV_UVLOOP = "CHARGEGW_UVLOOP"
_OFF = ("0", "false", "no", "off")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def want_uvloop(use_uvloop: bool | None = None) -> bool:
    """None: use it when installed, unless CHARGEGW_UVLOOP=0."""
    if use_uvloop is None:
        use_uvloop = os.environ.get(ENV_UVLOOP, "1").strip().lower() not in _OFF
    return use_uvloop and uvloop_available()


def new_event_loop(use_uvloop: bool | None = None) -> asyncio.AbstractEventLoop:
    if want_uvloop(use_uvloop):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """asyncio.run with the loop chosen by `want_uvloop`."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(use_uvloop)) as runner:
        return runner.run(main)
