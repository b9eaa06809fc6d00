"""The contract between worker runtime and application handlers.

An application is any object with `app_id`, `setup(ctx)` and `handle(request, ctx)`.
It runs inside a worker process, receives fully decoded codec messages, and returns an
answer message. It may send requests out through the gateway (RAR, ASR, SNR).

Handlers may be sync or async: the runtime awaits a returned coroutine. A handler that
raises gets its request answered 5012 DIAMETER_UNABLE_TO_COMPLY by the runtime, which
logs the Session-Id and keeps serving.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import logging

    from chargegw.codec import Message


class Incoming:
    """One request of a batch the runtime hands to `handle_batch`: its bytes, its context,
    and the decoded message, made on first use."""

    __slots__ = ("raw", "ctx", "_message")

    def __init__(self, raw: bytes, ctx: RequestContext) -> None:
        self.raw = raw
        self.ctx = ctx
        self._message: Message | None = None

    @property
    def message(self) -> Message:
        if self._message is None:
            from chargegw.codec import Message

            self._message = Message.decode(self.raw)
        return self._message


class SetupUnavailable(Exception):
    """An application could not be set up for a reason that may pass by itself (its store is
    not reachable yet). The worker then exits EX_TEMPFAIL and the launcher restarts it with
    backoff, where any other set-up failure is a config error that stops the gateway."""


class SendError(Exception):
    """A worker-initiated request could not be delivered or got no answer in time."""

    def __init__(self, result_code: int, reason: str) -> None:
        super().__init__(f"{result_code}: {reason}")
        self.result_code = result_code
        self.reason = reason


@dataclass(slots=True)
class RequestContext:
    """Per-request facts the gateway knows and the message does not say."""

    peer: str  # Origin-Host of the peer connection the request came in on
    deadline: float  # time.time() after which the gateway will have answered it itself
    retransmit: bool = False  # True when the gateway resent it after a worker was lost


@runtime_checkable
class WorkerContext(Protocol):
    """What the worker runtime offers every application in its process."""

    origin_host: str
    origin_realm: str
    worker_id: str
    data_dir: str  # the deployment's data directory (stores live here by default)
    config: Mapping[str, Any]  # the application's own config table (may be empty)
    log: logging.Logger

    def send_request(
        self, request: Message, *, peer: str | None = None, timeout: float = 5.0
    ) -> Awaitable[Message]:
        """Ask a gateway to send `request` to `peer` (an Origin-Host), or by realm routing
        on Destination-Realm when `peer` is None. Resolves to the answer or raises SendError."""
        ...

    def call_later(self, delay: float, callback: Any) -> None:
        """Schedule periodic or deferred work (sweeps) on the worker's loop."""
        ...


class Application(Protocol):
    """A user or built-in application. Register it in config as `module:attr`."""

    app_id: int

    def setup(self, ctx: WorkerContext) -> None: ...

    def handle(self, request: Message, ctx: RequestContext) -> Message | Awaitable[Message]: ...


@dataclass(slots=True)
class AppSpec:
    """One `[[applications]]` entry of the config, as the worker runtime loads it."""

    app_id: int
    handler: str  # "module:attr"; attr is a class (instantiated with no args) or an instance
    config: dict[str, Any] = field(default_factory=dict)
