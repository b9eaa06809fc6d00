"""One peer connection of the load generator and the session it carries.

The connection speaks the base protocol a peer expects (CER/CEA first, DWR and DPR answered,
DPR on the way out), answers the server's RAR/ASR/SNR for the sessions it carries (5002 for
one it does not know), matches answers to requests by hop-by-hop id and hands them to the
engine. Requests of one event-loop turn leave in one write.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from typing import TYPE_CHECKING

from chargegw.codec import FramingError, Message, ResultCode
from chargegw.codec.commands import CapabilitiesExchangeRequest
from chargegw.codec.constants import CMD_ASR, CMD_CER, CMD_DPR, CMD_DWR, CMD_RAR, CMD_SNR

from .scenarios import Flow, Identity, cer_avps
from .wire import AnswerView, server_request_answer

if TYPE_CHECKING:
    from .generator import Engine

_U32 = struct.Struct(">I")
_SERVER_REQUESTS = {CMD_DWR: "DWR", CMD_DPR: "DPR", CMD_RAR: "RAR", CMD_ASR: "ASR", CMD_SNR: "SNR"}
_CEA = CMD_CER.to_bytes(3, "big")
_DPA = CMD_DPR.to_bytes(3, "big")


class ConnectError(ConnectionError):
    """The target cannot be used at all: unreachable, silent, or refused our CER."""


class Session:
    __slots__ = ("conn", "flow", "step", "sid", "sid_full", "sub", "intended", "measured",
                 "echo", "e2e", "aborted", "handle", "deadline", "resent")

    def __init__(self, conn: LoadConn, flow: Flow, sid: bytes, sid_full: bytes,
                 sub: bytes) -> None:
        self.conn = conn
        self.flow = flow
        self.step = 0
        self.sid = sid
        self.sid_full = sid_full
        self.sub = sub
        self.intended = 0.0
        self.measured = False
        self.echo = 0
        self.e2e = 0
        self.aborted = False
        self.handle: asyncio.TimerHandle | None = None
        self.deadline = 0.0  # when the request in flight times out (reset when it is resent)
        self.resent = False  # the request in flight was sent again after a reconnect


class LoadConn(asyncio.Protocol):
    """One peer connection: CER/CEA, DWR/DPR/RAR/ASR/SNR answered, answers matched by hop-by-hop."""

    def __init__(self, eng: Engine, index: int, ident: Identity, flows: list[Flow],
                 sid_prefix: bytes) -> None:
        self.eng = eng
        self.index = index
        # Each connection is its own peer (RFC 6733 5.6.4: one connection per Origin-Host),
        # with request templates and Session-Ids carrying that Origin-Host.
        self.ident = ident
        self.flows = flows
        self.sid_prefix = sid_prefix
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, Session] = {}
        self.sessions: dict[bytes, Session] = {}
        self.loop = asyncio.get_running_loop()
        self.hbh = random.getrandbits(31)
        self.e2e = ((int(time.time()) & 0xFFF) << 20) | random.getrandbits(20)
        self.closing = False  # we sent DPR or are closing on purpose
        # While the connection is being re-established (--reconnect): the requests sessions
        # want to send meanwhile, sent once it is open again, and the task doing it.
        self.backlog: list[tuple[Session, float]] = []
        self.reconnecting: asyncio.Task[None] | None = None
        self.reset()

    def reset(self) -> None:
        """Fresh per-transport state: a new connection (the first, or a reconnect) starts here."""
        self.buf = bytearray()
        self.cea: asyncio.Future[Message] = self.loop.create_future()
        self.dpa: asyncio.Future[None] = self.loop.create_future()
        self.lost: asyncio.Future[None] = self.loop.create_future()  # the transport closed
        self.transport = None
        self.open = False
        self.established = False  # CER/CEA completed on this transport
        self.dead = False
        self.server_dpr = False  # the server sent DPR: it is going away (maybe to restart)
        self.out: list[bytes | bytearray] = []  # requests written at the end of this loop turn

    def queue(self, frame: bytes | bytearray) -> None:
        """Coalesce the requests of one event-loop turn into one write (one syscall)."""
        if not self.out:
            self.loop.call_soon(self.flush)
        self.out.append(frame)

    def flush(self) -> None:
        out, self.out = self.out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def next_ids(self) -> tuple[int, int]:
        self.hbh = (self.hbh + 1) & 0xFFFFFFFF
        self.e2e = (self.e2e + 1) & 0xFFFFFFFF
        return self.hbh, self.e2e

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ident = self.ident
        hbh, e2e = self.next_ids()
        cer = CapabilitiesExchangeRequest(
            hop_by_hop=hbh, end_to_end=e2e, origin_host=ident.origin_host,
            origin_realm=ident.origin_realm, host_ip_address=["127.0.0.1"], vendor_id=0,
            product_name="chargegw-load", **cer_avps(self.eng.scn),
        )
        self.transport.write(cer.encode())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        eng = self.eng
        pos, n = 0, len(buf)
        while n - pos >= 20:
            vl = _U32.unpack_from(buf, pos)[0]
            length = vl & 0xFFFFFF
            if vl >> 24 != 1 or length < 20 or length & 3:
                del buf[:pos]
                self._garbage(FramingError(
                    f"version {vl >> 24}, length {length} at a message boundary", 5015))
                return
            if n - pos < length:
                break
            frame = bytes(buf[pos : pos + length])
            pos += length
            if frame[4] & 0x80:
                self._server_request(frame)
                continue
            s = self.pending.pop(_U32.unpack_from(frame, 12)[0], None)
            if s is not None:
                eng.on_answer(s, frame)
            elif not self.cea.done() and frame[5:8] == _CEA:
                try:
                    self.cea.set_result(Message.decode(frame))
                except Exception as exc:  # noqa: BLE001 - a CEA we cannot read ends the run
                    self.cea.set_exception(ConnectError(f"unreadable CEA: {exc}"))
            elif frame[5:8] == _DPA:
                if not self.dpa.done():
                    self.dpa.set_result(None)
            else:
                eng.rec.c["unexpected_answers"] += 1
        del buf[:pos]

    def _garbage(self, exc: Exception) -> None:
        eng = self.eng
        eng.rec.conn["garbage"] += 1
        eng.rec.problem(
            f"connection {self.index} to {eng.cfg.target}: the server sent bytes that are not "
            f"Diameter ({exc}); connection closed"
        )
        if not self.cea.done():
            self.cea.set_exception(ConnectError(f"sent bytes that are not Diameter ({exc})"))
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def _server_request(self, frame: bytes) -> None:
        eng = self.eng
        code = int.from_bytes(frame[5:8], "big")
        ident = self.ident
        kind = _SERVER_REQUESTS.get(code, "other")
        eng.rec.server_requests[kind] += 1
        sid = AnswerView(frame, -1).session_id
        known = sid is not None and sid in self.sessions
        if kind in ("DWR", "DPR"):
            rc = ResultCode.DIAMETER_SUCCESS
        elif kind == "other":
            rc = ResultCode.DIAMETER_COMMAND_UNSUPPORTED
        else:
            rc = ResultCode.DIAMETER_SUCCESS if known else ResultCode.DIAMETER_UNKNOWN_SESSION_ID
        try:
            req, ans = server_request_answer(frame, ident.origin_host, ident.origin_realm, int(rc))
        except Exception as exc:  # noqa: BLE001 - a request we cannot decode is reported
            eng.rec.problem(f"connection {self.index}: undecodable {kind} from the server: {exc}")
            return
        self.queue(ans)
        if kind == "ASR" and known and sid is not None:
            self.sessions[sid].aborted = True  # the next step becomes the session's last
        elif kind == "DPR":
            eng.rec.conn["dpr_from_server"] += 1
            eng.rec.problem(
                f"connection {self.index}: the server sent DPR (Disconnect-Cause "
                f"{req.get('Disconnect-Cause')}) during the run"
            )
            self.server_dpr = True
            self.open = False
            eng.on_server_dpr(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.dead = True
        self.open = False
        if not self.cea.done():
            self.cea.set_exception(ConnectError("the server closed the connection before CEA"))
        if not self.dpa.done():
            self.dpa.set_result(None)
        if not self.lost.done():
            self.lost.set_result(None)
        self.eng.on_conn_lost(self, exc)
