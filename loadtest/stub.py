"""A stub Diameter server for measuring the generator itself and for its tests (loopback only).

It answers every application request at byte level: the answer copies the request's header
ids and its Session-Id, request type/number and Test-AVP, and adds Result-Code, Origin-Host and
Origin-Realm. That is the least work a server can do per request, so against it the generator's
own ceiling shows. Knobs make it misbehave on purpose: a delay per request, another Result-Code,
a wrong Session-Id or request number, garbage bytes, a close mid-run, silence, and RAR/ASR
sent to the client.

    python -m chargegw.loadtest.stub --port 3868          # a null server until Ctrl-C
"""

from __future__ import annotations

import argparse
import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chargegw.codec import Message
from chargegw.codec.commands import DisconnectPeerRequest
from chargegw.codec.constants import (
    CMD_ACR,
    CMD_ASR,
    CMD_CCR,
    CMD_CER,
    CMD_DPR,
    CMD_DWR,
    CMD_RAR,
    CMD_SLR,
)

from .wire import TEST_AVP, avp_code

_U32 = struct.Struct(">I")
_SESSION_ID = avp_code("Session-Id")
_RESULT_CODE = avp_code("Result-Code")
_ORIGIN_HOST = avp_code("Origin-Host")
_ORIGIN_REALM = avp_code("Origin-Realm")
_DEST_REALM = avp_code("Destination-Realm")
_DEST_HOST = avp_code("Destination-Host")
_AUTH_APP = avp_code("Auth-Application-Id")
_RE_AUTH_TYPE = avp_code("Re-Auth-Request-Type")
_CC_TYPE = avp_code("CC-Request-Type")
_ACCT_TYPE = avp_code("Accounting-Record-Type")
_NUMBERS = (avp_code("CC-Request-Number"), avp_code("Accounting-Record-Number"))
# AVPs copied from request to answer: Session-Id, Auth-/Acct-Application-Id, CC-Request-Type,
# CC-Request-Number, Accounting-Record-Type/-Number, Test-AVP (vendor 999999)
_COPY = {_SESSION_ID, _AUTH_APP, avp_code("Acct-Application-Id"), _CC_TYPE, *_NUMBERS,
         _ACCT_TYPE, TEST_AVP}


def _avp(code: int, data: bytes, flags: int = 0x40) -> bytes:
    n = 8 + len(data)
    return struct.pack(">II", code, (flags << 24) | n) + data + b"\0" * (-n % 4)


@dataclass
class StubBehaviour:
    delay: float | Callable[[int], float] = 0.0  # seconds before answering request n
    result_code: Callable[[int], int] = lambda n: 2001
    wrong_session_every: int = 0  # every k-th answer carries another Session-Id
    wrong_number_every: int = 0
    garbage_after: int | None = None  # send non-Diameter bytes after n requests
    close_after: int | None = None  # close the connection after answering n requests
    closes_left: int | None = None  # close_after applies this many times (None: always)
    dpr_after: int | None = None  # send DPR after answering n requests, close on the DPA
                                  # (a graceful stop); counts against closes_left too
    silent_after: int | None = None  # answer nothing after n requests (CER still answered)
    stall_at: int | None = None  # at request n the server stalls (a GC pause, a full disk):
    stall_s: float = 0.0  # everything that arrives in the next stall_s is answered at its end
    rar_after_initial: bool = False  # send a RAR for each session after its first request
    asr_after_initial: bool = False
    seen: list[bytes] = field(default_factory=list)  # request frames, when record=True
    record: bool = False
    server_answers: list[int] = field(default_factory=list)  # Result-Codes of RAA/ASA


class StubServer(asyncio.Protocol):
    def __init__(self, b: StubBehaviour, origin_host: str = "stub.localdomain",
                 origin_realm: str = "localdomain") -> None:
        self.b = b
        self.buf = bytearray()
        self.n = 0
        self.t: asyncio.Transport | None = None
        self.tail = (_avp(_ORIGIN_HOST, origin_host.encode())
                     + _avp(_ORIGIN_REALM, origin_realm.encode()))
        self.origin_host, self.origin_realm = origin_host, origin_realm
        self.hbh = 1
        self.stall_until = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 20:
            length = _U32.unpack_from(buf, pos)[0] & 0xFFFFFF
            if length < 20 or len(buf) - pos < length:
                break
            frame = bytes(buf[pos : pos + length])
            pos += length
            self.on_frame(frame)
        del buf[:pos]

    def on_frame(self, frame: bytes) -> None:
        code = int.from_bytes(frame[5:8], "big")
        if not frame[4] & 0x80 and code == CMD_DPR:  # DPA: we asked to leave
            if self.t is not None:
                self.t.close()
            return
        if not frame[4] & 0x80:  # an answer to our RAR/ASR
            rc = _find(frame, _RESULT_CODE)
            self.b.server_answers.append(_U32.unpack(rc)[0] if rc else 0)
            return
        if code in (CMD_CER, CMD_DWR, CMD_DPR):
            req = Message.decode(frame)
            kw: dict[str, Any] = {"origin_host": self.origin_host,
                                  "origin_realm": self.origin_realm}
            if code == CMD_CER:
                kw.update(host_ip_address=["127.0.0.1"], vendor_id=0, product_name="stub",
                          auth_application_id=[0xFFFFFFFF])
            self._write(req.answer(2001, **kw).encode())
            if code == CMD_DPR and self.t is not None:
                self.t.close()
            return
        b = self.b
        n = self.n
        self.n += 1
        if b.record:
            b.seen.append(frame)
        if b.silent_after is not None and n >= b.silent_after:
            return
        if b.garbage_after is not None and n >= b.garbage_after:
            self._write(b"\xffNOT DIAMETER AT ALL\r\n" * 4)
            return
        ans = self.answer(frame, n)
        delay = b.delay(n) if callable(b.delay) else b.delay
        now = asyncio.get_running_loop().time()
        if b.stall_at is not None and n == b.stall_at:
            self.stall_until = now + b.stall_s
        delay = max(delay, self.stall_until - now)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._write, ans)
        else:
            self._write(ans)
        if (b.close_after is not None and n + 1 >= b.close_after and self.t is not None
                and not self.closed and (b.closes_left is None or b.closes_left > 0)):
            self.closed = True
            if b.closes_left is not None:
                b.closes_left -= 1
            self.t.close()
        if (b.dpr_after is not None and n + 1 >= b.dpr_after and not self.closed
                and (b.closes_left is None or b.closes_left > 0)):
            self.closed = True
            if b.closes_left is not None:
                b.closes_left -= 1
            self.hbh += 1
            self._write(DisconnectPeerRequest(
                hop_by_hop=self.hbh, end_to_end=self.hbh, origin_host=self.origin_host,
                origin_realm=self.origin_realm, disconnect_cause=0).encode())
        if (b.rar_after_initial or b.asr_after_initial) and _is_first(frame):
            sid = _find(frame, _SESSION_ID) or b""
            cmd = CMD_RAR if b.rar_after_initial else CMD_ASR
            app = int.from_bytes(frame[8:12], "big")
            body = _avp(_SESSION_ID, sid) + self.tail + _avp(_DEST_REALM, b"localdomain") + _avp(
                _DEST_HOST, b"load.localdomain") + _avp(_AUTH_APP, _U32.pack(app))
            if cmd == CMD_RAR:
                body += _avp(_RE_AUTH_TYPE, _U32.pack(0))  # AUTHORIZE_ONLY
            self.hbh += 1
            hdr = struct.pack(">IIIII", (1 << 24) | (20 + len(body)), (0xC0 << 24) | cmd, app,
                              self.hbh, self.hbh)
            self._write(hdr + body)

    def answer(self, frame: bytes, n: int) -> bytes:
        b = self.b
        parts = []
        pos, end = 20, len(frame)
        while pos + 8 <= end:
            code, fl = struct.unpack_from(">II", frame, pos)
            ln = fl & 0xFFFFFF
            if ln < 8:
                break
            whole = frame[pos : pos + ((ln + 3) & ~3)]
            if code in _COPY:
                if (code == _SESSION_ID and b.wrong_session_every
                        and n % b.wrong_session_every == 0):
                    whole = _avp(_SESSION_ID, b"someone.else;1;2")
                elif code in _NUMBERS and b.wrong_number_every and (
                        n % b.wrong_number_every == 0):
                    whole = _avp(code, _U32.pack(_U32.unpack_from(frame, pos + 8)[0] + 7))
                parts.append(whole)
            pos += (ln + 3) & ~3
        rc = b.result_code(n)
        body = b"".join(parts) + _avp(_RESULT_CODE, _U32.pack(rc)) + self.tail
        flags = frame[4] & 0x40 | (0x20 if 3000 <= rc < 4000 else 0)
        return struct.pack(">II", (1 << 24) | (20 + len(body)),
                           (flags << 24) | int.from_bytes(frame[5:8], "big")) + frame[8:20] + body

    def _write(self, data: bytes) -> None:
        if self.t is not None and not self.t.is_closing():
            self.t.write(data)


def _find(frame: bytes, want: int) -> bytes | None:
    pos, end = 20, len(frame)
    while pos + 8 <= end:
        code, fl = struct.unpack_from(">II", frame, pos)
        ln = fl & 0xFFFFFF
        if ln < 8:
            return None
        hdr = 12 if fl & 0x80000000 else 8
        if code == want:
            return frame[pos + hdr : pos + ln]
        pos += (ln + 3) & ~3
    return None


def _is_first(frame: bytes) -> bool:
    """A CCR-I, ACR START or SLR: the request that opens a session."""
    code = int.from_bytes(frame[5:8], "big")
    if code == CMD_CCR:
        return _find(frame, _CC_TYPE) == _U32.pack(1)
    if code == CMD_ACR:
        return _find(frame, _ACCT_TYPE) == _U32.pack(2)
    return code == CMD_SLR


async def start_stub(b: StubBehaviour | None = None, port: int = 0) -> tuple[asyncio.Server, int]:
    b = b or StubBehaviour()
    server = await asyncio.get_running_loop().create_server(lambda: StubServer(b), "127.0.0.1",
                                                            port)
    return server, server.sockets[0].getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m chargegw.loadtest.stub")
    p.add_argument("--port", type=int, default=3868)
    p.add_argument("--delay", type=float, default=0.0)
    a = p.parse_args(argv)

    async def serve() -> None:
        server, port = await start_stub(StubBehaviour(delay=a.delay), a.port)
        print(f"STUB READY 127.0.0.1:{port}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        import uvloop  # noqa: PLC0415

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
