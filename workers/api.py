"""The contract between worker runtime and application handlers.

An application is any object with `app_id`, `setup(ctx)` and one of:
- `handle_batch(requests: list[Incoming]) -> list[bytes | Awaitable[bytes] | None]`: the
  runtime drains a batch of requests from ZeroMQ and calls this once per application per
  batch, so an application can decide them together (one store transaction). One entry
  per request, in order: the encoded answer (a Message is encoded for you), an awaitable
  of it, None to drop the request unapplied (it expired: the gateway answers 3002), an
  exception instance (answered like a raised one), or a `chargegw.sharding.ShardMoved`
  instance: not applied here, the gateway places it on the owner of that shard. The whole list may also be returned
  as one awaitable.
- `handle(request: Message, ctx: RequestContext) -> Message | Awaitable[Message]`: the
  simple form for users' applications; the runtime adapts it to `handle_batch` (one call
  per request, each failure kept to its own request).

A sharded application (the charging store's Gy and Sy) also has `shards` (the store's shard
count, read after setup) and `assign_shards(shards)`, called with the set of shards this
worker owns whenever a gateway's Assign changes it (see chargegw/sharding.py).

It runs inside a worker process and may send requests out through the gateway (RAR, ASR,
SNR). A handler that raises gets its request answered 5012 DIAMETER_UNABLE_TO_COMPLY by
the runtime (or the DiameterError's Result-Code), which logs the Session-Id and keeps
serving.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from chargegw.codec import Message

if TYPE_CHECKING:
    import logging


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
    shard: int = -1  # the charging shard the gateway routed it by (-1: not sharded)


class Incoming:
    """One request of a drained batch: the bytes as received, its context, and the decoded
    Message on first use (an application that reads the bytes itself never pays for it).
    `message` raises the codec's AvpError/CodecError for a request that does not decode."""

    __slots__ = ("raw", "ctx", "_message")

    def __init__(self, raw: bytes, ctx: RequestContext) -> None:
        self.raw = raw
        self.ctx = ctx
        self._message: Message | None = None

    @property
    def message(self) -> Message:
        m = self._message
        if m is None:
            m = self._message = Message.decode(self.raw)
        return m

    def __repr__(self) -> str:
        return f"Incoming({len(self.raw)} bytes, peer={self.ctx.peer!r})"


BatchResult = list["bytes | Message | Awaitable[bytes | Message] | BaseException | None"]


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
    """A simple application (`handle`). Register it in config as `module:attr`."""

    app_id: int

    def setup(self, ctx: WorkerContext) -> None: ...

    def handle(self, request: Message, ctx: RequestContext) -> Message | Awaitable[Message]: ...


class BatchApplication(Protocol):
    """An application that decides a drained batch at once (`handle_batch`)."""

    app_id: int

    def setup(self, ctx: WorkerContext) -> None: ...

    def handle_batch(self, requests: list[Incoming]) -> BatchResult | Awaitable[BatchResult]: ...


@dataclass(slots=True)
class AppSpec:
    """One `[[applications]]` entry of the config, as the worker runtime loads it."""

    app_id: int
    handler: str  # "module:attr"; attr is a class (instantiated with no args) or an instance
    config: dict[str, Any] = field(default_factory=dict)
