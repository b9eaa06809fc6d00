"""Diagnostic and benchmark applications.

- `TestApp`: freeDiameter's test_app (command 16777214, application 16777215): answers
  2001 and echoes the Test-AVP (code 16777215, vendor 999999), so `fd-client.sh` can
  drive `chargegw run` out of the box. It decodes with the codec like any application
  (`handle`); `[applications.config] fast = true` switches it to a byte-level answer.
- `NullApp`: answers 2001 to anything at once, byte-level (the front end's ceiling).
- `FailApp`, `SlowApp`, `BlockApp`, `AskPeerApp`: fault and feature probes for tests.

Byte-level handlers implement `handle_batch(requests)` and read `Incoming.raw` only, so
nothing is decoded (see workers/api.py).
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

from chargegw.codec import Avp, Message
from chargegw.workers.api import Incoming, RequestContext, SendError, WorkerContext

TEST_APP_ID = 16777215
TEST_CMD = 16777214
TEST_AVP = 16777215
TEST_VENDOR = 999999

_U32x2 = struct.Struct("!II")
_HDR = struct.Struct("!IIIII")


def _avp(code: int, data: bytes, *, flags: int = 0x40, vendor: int = 0) -> bytes:
    if vendor:
        n = 12 + len(data)
        head = struct.pack("!III", code, ((flags | 0x80) << 24) | n, vendor)
    else:
        n = 8 + len(data)
        head = _U32x2.pack(code, (flags << 24) | n)
    return head + data + b"\0" * (-n % 4)


class _RawAnswerer:
    """Builds `header + Session-Id + copied AVPs + fixed tail` without decoding."""

    def __init__(
        self,
        origin_host: str,
        origin_realm: str,
        result_code: int = 2001,
        copy: tuple[tuple[int, int], ...] = (),
    ) -> None:
        self.tail = (
            _avp(268, result_code.to_bytes(4, "big"))
            + _avp(264, origin_host.encode())
            + _avp(296, origin_realm.encode())
        )
        self.copy = copy

    def answer(self, raw: bytes) -> bytes:
        vl, fc, app, hbh, e2e = _HDR.unpack_from(raw)
        end = min(vl & 0xFFFFFF, len(raw))
        parts = [b""]
        sid = b""
        copied: list[bytes] = []
        copy = self.copy
        pos = 20
        while pos + 8 <= end:
            code, fl = _U32x2.unpack_from(raw, pos)
            length = fl & 0xFFFFFF
            if length < 8:
                break
            step = (length + 3) & ~3
            if code == 263 and not sid:
                sid = raw[pos : pos + step]
            elif copy:
                vendor = int.from_bytes(raw[pos + 8 : pos + 12], "big") if fl & 0x80000000 else 0
                if (code, vendor) in copy:
                    copied.append(raw[pos : pos + step])
            pos += step
        parts.append(sid)
        parts.extend(copied)
        parts.append(self.tail)
        body_len = sum(map(len, parts))
        flags = (fc >> 24) & 0x40  # P copied, R cleared
        parts[0] = _HDR.pack(
            (1 << 24) | (20 + body_len), (flags << 24) | (fc & 0xFFFFFF), app, hbh, e2e
        )
        return b"".join(parts)


class TestApp:
    """freeDiameter test_app responder: 2001 with the Test-AVP echoed."""

    __test__ = False  # not a pytest class
    app_id = TEST_APP_ID

    def setup(self, ctx: WorkerContext) -> None:
        self.origin_host = ctx.origin_host
        self.origin_realm = ctx.origin_realm
        if ctx.config.get("fast", False):
            answerer = _RawAnswerer(
                ctx.origin_host, ctx.origin_realm, copy=((TEST_AVP, TEST_VENDOR),)
            )
            # Set on the instance: only the fast variant has a batch entry point.
            self.handle_batch = lambda requests: [answerer.answer(r.raw) for r in requests]

    def handle(self, request: Message, ctx: RequestContext) -> Message:
        ans = request.answer(2001, origin_host=self.origin_host, origin_realm=self.origin_realm)
        for a in request.copy_avps(TEST_AVP, TEST_VENDOR):
            ans.add(a)
        return ans


class NullApp:
    """Answers 2001 at once without decoding: measures everything but the application.
    Copies the Test-AVP, and the AVPs listed in `config.copy` ([[code, vendor], ...]):
    with `copy = [[258, 0], [416, 0], [415, 0]]` its answers are valid CCAs."""

    app_id = 0

    def setup(self, ctx: WorkerContext) -> None:
        copy = [(int(c), int(v)) for c, v in ctx.config.get("copy", [])]
        if ctx.config.get("echo_test_avp", True):
            copy.append((TEST_AVP, TEST_VENDOR))
        self._answerer = _RawAnswerer(ctx.origin_host, ctx.origin_realm, copy=tuple(copy))

    def handle_batch(self, requests: list[Incoming]) -> list[bytes]:
        answer = self._answerer.answer
        return [answer(r.raw) for r in requests]


class FailApp:
    """Raises on every request (the runtime must answer 5012 and live on)."""

    app_id = 0

    def setup(self, ctx: WorkerContext) -> None:
        pass

    def handle(self, request: Message, ctx: RequestContext) -> Message:
        raise RuntimeError("FailApp fails on purpose")


class SlowApp:
    """Answers 2001 after `config.delay` seconds without blocking the loop."""

    app_id = 0

    def setup(self, ctx: WorkerContext) -> None:
        self.delay = float(ctx.config.get("delay", 0.5))
        self.origin = (ctx.origin_host, ctx.origin_realm)
        self.seen_retransmit = 0

    async def handle(self, request: Message, ctx: RequestContext) -> Message:
        if ctx.retransmit:
            self.seen_retransmit += 1
        await asyncio.sleep(self.delay)
        return request.answer(2001, origin_host=self.origin[0], origin_realm=self.origin[1])


class BlockApp:
    """Blocks the whole worker for `config.delay` seconds (a hung process, heartbeats stop).
    With `config.only_first`, a resent copy (ctx.retransmit) is answered at once."""

    app_id = 0

    def setup(self, ctx: WorkerContext) -> None:
        self.delay = float(ctx.config.get("delay", 5.0))
        self.only_first = bool(ctx.config.get("only_first", False))
        self.origin = (ctx.origin_host, ctx.origin_realm)

    def handle(self, request: Message, ctx: RequestContext) -> Message:
        if not (self.only_first and ctx.retransmit):
            time.sleep(self.delay)
        return request.answer(2001, origin_host=self.origin[0], origin_realm=self.origin[1])


class AskPeerApp:
    """Before answering, sends a test_app Test-Request back to the requesting peer (as an
    OCS sends RAR) and answers with that answer's Result-Code, or the SendError's."""

    app_id = 0

    def setup(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    async def handle(self, request: Message, ctx: RequestContext) -> Message:
        wctx = self.ctx
        out = Message(code=TEST_CMD, app_id=TEST_APP_ID, flags=0xC0)
        out.set("Session-Id", request.get("Session-Id") or f"{wctx.origin_host};ask;1")
        out.set("Origin-Host", wctx.origin_host)
        out.set("Origin-Realm", wctx.origin_realm)
        out.set("Destination-Realm", request.get("Origin-Realm") or wctx.origin_realm)
        out.add(Avp(TEST_AVP, (1234).to_bytes(4, "big"), vendor=TEST_VENDOR, flags=0x80))
        peer = None if wctx.config.get("by_realm") else ctx.peer
        try:
            ans = await wctx.send_request(
                out, peer=peer, timeout=float(wctx.config.get("timeout", 2.0))
            )
            rc: Any = ans.get("Result-Code")
            code = int(rc) if rc is not None else 5012
        except SendError as exc:
            code = exc.result_code
        return request.answer(code, origin_host=wctx.origin_host, origin_realm=wctx.origin_realm)
