"""Worker-initiated requests at the gateway (RAR, ASR, SNR): checked, sent, answered.

A worker may only send the applications' server-initiated commands (RAR, ASR, SNR and
`pool.out_commands`), for a configured application, never anything else as the gateway;
anything else is refused with 3001 and never reaches a peer. At most MAX_OUT_REQUESTS are
outstanding at once (3004 beyond). Part of PoolServer, kept apart by concern.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable

from chargegw.codec.constants import ResultCode
from chargegw.codec.errors import DiameterError
from chargegw.ipc import protocol as pp

MAX_OUT_REQUESTS = 10_000  # worker-initiated requests in flight at once
_HDR = struct.Struct("!I I I I I")  # version+length, flags+code, app, hbh, e2e

OutRequestFn = Callable[[bytes, str, float], Awaitable[bytes]]


class OutRequestFailed(DiameterError):
    """Raised by the out-request callback: the Result-Code and why."""

    def __init__(self, result_code: int, reason: str) -> None:
        super().__init__(result_code, reason)
        self.reason = reason


class OutRequests:
    """PoolServer's worker-initiated requests; PoolServer provides the state declared here."""

    out_request: OutRequestFn | None
    out_commands: frozenset[int]
    out_apps: frozenset[int] | None
    out_requests: int
    out_refused: int
    log: logging.Logger
    _tasks: set[asyncio.Task[None]]
    _loop: asyncio.AbstractEventLoop | None

    def _queue(self, ident: bytes, msg: pp.PoolMessage) -> None:
        raise NotImplementedError

    def _start_out_request(self, ident: bytes, m: pp.OutRequest) -> None:
        self.out_requests += 1
        why = self._out_refusal(m.raw)
        if why is not None:
            self.out_refused += 1
            self.log.warning("worker %r: request refused, never sent to a peer: %s", ident, why)
            self._queue(
                ident, pp.OutAnswer(m.id, error=ResultCode.DIAMETER_COMMAND_UNSUPPORTED, reason=why)
            )
            return
        if len(self._tasks) >= MAX_OUT_REQUESTS:  # bounded like everything else
            self._queue(
                ident,
                pp.OutAnswer(
                    m.id, error=ResultCode.DIAMETER_TOO_BUSY, reason="too many requests outstanding"
                ),
            )
            return
        assert self._loop is not None
        task = self._loop.create_task(self._out_request(ident, m))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _out_refusal(self, raw: bytes) -> str | None:
        """Why a worker may not send `raw` (None: it may). Workers only send the
        applications' server-initiated requests, never anything else as the gateway."""
        if len(raw) < 20:
            return "not a Diameter message"
        vl, fc, app, _hbh, _e2e = _HDR.unpack_from(raw)
        if vl != (0x01000000 | len(raw)):
            return "bad Diameter header (version or length)"
        if not fc & 0x80000000:
            return "not a request"
        cmd = fc & 0xFFFFFF
        if cmd not in self.out_commands:
            return (
                f"command {cmd} is not a server-initiated command workers may send "
                f"(RAR, ASR, SNR and pool.out_commands)"
            )
        if self.out_apps is not None and app not in self.out_apps:
            return f"application {app} is not configured"
        return None

    async def _out_request(self, ident: bytes, m: pp.OutRequest) -> None:
        if self.out_request is None:
            reply = pp.OutAnswer(
                m.id,
                error=ResultCode.DIAMETER_UNABLE_TO_DELIVER,
                reason="this gateway sends no requests",
            )
        else:
            try:
                raw = await self.out_request(m.raw, m.peer, m.timeout)
                reply = pp.OutAnswer(m.id, raw=raw)
            except OutRequestFailed as exc:
                reply = pp.OutAnswer(m.id, error=exc.result_code, reason=exc.reason)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never lose the worker's request silently
                self.log.exception("worker-initiated request failed")
                reply = pp.OutAnswer(
                    m.id, error=ResultCode.DIAMETER_UNABLE_TO_COMPLY, reason=f"gateway error: {exc}"
                )
        self._queue(ident, reply)
