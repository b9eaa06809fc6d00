"""Loading applications, and the one place where a simple `handle(request, ctx)`
application is adapted to the runtime's single entry point, `handle_batch`."""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chargegw.codec import Message
from chargegw.workers.api import BatchResult, Incoming

if TYPE_CHECKING:
    from chargegw.workers.runtime import WorkerRuntime

HandleBatch = Callable[[list[Incoming]], "BatchResult | Awaitable[BatchResult]"]


class AppLoadError(Exception):
    """An application handler could not be imported or its setup(ctx) failed."""


def load_handler(spec: str) -> Any:
    """`module:attr`; a class is instantiated with no arguments."""
    mod_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj() if inspect.isclass(obj) else obj


@dataclass(slots=True)
class AppContext:
    """The WorkerContext one application sees (its own config table, shared runtime)."""

    origin_host: str
    origin_realm: str
    worker_id: str
    data_dir: str
    config: Mapping[str, Any]
    log: logging.Logger
    _runtime: WorkerRuntime

    def send_request(
        self, request: Message, *, peer: str | None = None, timeout: float = 5.0
    ) -> Awaitable[Message]:
        return self._runtime.send_request(request, peer=peer, timeout=timeout)

    def call_later(self, delay: float, callback: Any) -> None:
        self._runtime.call_later(delay, callback)


@dataclass(slots=True)
class LoadedApp:
    app_id: int
    app: Any
    ctx: AppContext
    handle_batch: HandleBatch


def batch_entry(app: Any) -> HandleBatch:
    """The application's `handle_batch`, or one built from its `handle`: each request is
    decoded and handled on its own, and a failure (an undecodable request, a raising
    handler) becomes that request's entry, so the rest of the batch is unaffected."""
    own = getattr(app, "handle_batch", None)
    if own is not None:
        return own
    handle = getattr(app, "handle", None)
    if handle is None:
        raise TypeError(f"{type(app).__name__} has neither handle_batch nor handle")

    def handle_batch(requests: list[Incoming]) -> BatchResult:
        out: BatchResult = []
        for r in requests:
            try:
                out.append(handle(r.message, r.ctx))
            except Exception as exc:
                out.append(exc)
        return out

    return handle_batch
