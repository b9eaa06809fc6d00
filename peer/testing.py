"""Test helpers: a hand-driven raw Diameter peer, and message builders.

`RawPeer` speaks bytes over asyncio streams so a test can do what a well-behaved Node never
would (skip CER, send garbage, stop reading) and see exactly what comes back.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_mod
import struct
from collections.abc import Iterable
from typing import Any

from chargegw.codec import FrameReader, FramingError, Message, class_for, get_dictionary
from chargegw.codec.constants import CMD_CCR, CMD_CER, CMD_DPR, CMD_DWR

_e2e = 0x10000


def next_e2e() -> int:
    global _e2e
    _e2e += 1
    return _e2e


def make_cer(
    origin_host: str,
    origin_realm: str,
    *,
    auth_apps: Iterable[int] = (4,),
    acct_apps: Iterable[int] = (),
    vendor_apps: Iterable[tuple[int, int]] = (),
    relay: bool = False,
    inband_security: Iterable[int] = (),
    hop_by_hop: int = 1,
) -> Message:
    auth = list(auth_apps) + ([0xFFFFFFFF] if relay else [])
    avps: dict[str, Any] = {
        "origin_host": origin_host,
        "origin_realm": origin_realm,
        "host_ip_address": [__import__("ipaddress").ip_address("127.0.0.1")],
        "vendor_id": 0,
        "product_name": "raw-test-peer",
    }
    if auth:
        avps["auth_application_id"] = auth
    if acct_apps:
        avps["acct_application_id"] = list(acct_apps)
    if vendor_apps:
        avps["vendor_specific_application_id"] = [
            {"vendor_id": v, "auth_application_id": a} for v, a in vendor_apps
        ]
    if inband_security:
        avps["inband_security_id"] = list(inband_security)
    return class_for(get_dictionary(), 0, CMD_CER, True)(
        hop_by_hop=hop_by_hop, end_to_end=next_e2e(), **avps
    )


def make_ccr(
    origin_host: str,
    origin_realm: str,
    dest_realm: str,
    *,
    session_id: str | None = None,
    request_type: int = 1,
    number: int = 0,
    dest_host: str | None = None,
    hop_by_hop: int = 0,
    end_to_end: int | None = None,
    **extra: Any,
) -> Message:
    return class_for(get_dictionary(), 4, CMD_CCR, True)(
        hop_by_hop=hop_by_hop,
        end_to_end=next_e2e() if end_to_end is None else end_to_end,
        session_id=session_id or f"{origin_host};{next_e2e()}",
        origin_host=origin_host,
        origin_realm=origin_realm,
        destination_realm=dest_realm,
        destination_host=dest_host,
        auth_application_id=4,
        service_context_id="32251@3gpp.org",
        cc_request_type=request_type,
        cc_request_number=number,
        **extra,
    )


def make_dwr(origin_host: str, origin_realm: str, hop_by_hop: int = 7) -> Message:
    return class_for(get_dictionary(), 0, CMD_DWR, True)(
        hop_by_hop=hop_by_hop,
        end_to_end=next_e2e(),
        origin_host=origin_host,
        origin_realm=origin_realm,
    )


def make_dpr(origin_host: str, origin_realm: str, cause: int = 0, hop_by_hop: int = 9) -> Message:
    return class_for(get_dictionary(), 0, CMD_DPR, True)(
        hop_by_hop=hop_by_hop,
        end_to_end=next_e2e(),
        origin_host=origin_host,
        origin_realm=origin_realm,
        disconnect_cause=cause,
    )


class RawPeer:
    """One TCP (or TLS) connection driven by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader(1 << 24)
        self._queue: list[bytes] = []
        self.eof = False

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        ssl: ssl_mod.SSLContext | None = None,
        server_hostname: str | None = None,
        local_addr: tuple[str, int] | None = None,
    ) -> RawPeer:
        """local_addr: the source address (any 127.x.y.z works on Linux loopback)."""
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl, server_hostname=server_hostname, local_addr=local_addr
        )
        return cls(reader, writer)

    async def send(self, data: bytes | Message) -> None:
        self.writer.write(data if isinstance(data, (bytes, bytearray)) else data.encode())
        await self.writer.drain()

    def send_nowait(self, data: bytes | Message) -> None:
        self.writer.write(data if isinstance(data, (bytes, bytearray)) else data.encode())

    async def recv_raw(self, timeout: float = 5.0) -> bytes | None:
        """The next whole message, or None at EOF. Raises TimeoutError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._queue:
            if self.eof:
                return None
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("no message")
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except (ConnectionError, ssl_mod.SSLError):
                chunk = b""
            if not chunk:
                self.eof = True
                continue
            try:
                self._queue.extend(self.frames.feed(chunk))
            except FramingError:
                self.eof = True
        return self._queue.pop(0)

    async def recv(self, timeout: float = 5.0) -> Message | None:
        raw = await self.recv_raw(timeout)
        return None if raw is None else Message.decode(raw, max_length=1 << 24)

    async def recv_until(
        self, code: int, *, request: bool | None = None, timeout: float = 5.0
    ) -> Message | None:
        """Skip messages (answering DWRs) until one with this command code arrives."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - loop.time()))
            if msg is None:
                return None
            if msg.code == CMD_DWR and msg.is_request and code != CMD_DWR:
                await self.send(msg.answer(2001, origin_host="raw", origin_realm="raw"))
                continue
            if msg.code == code and (request is None or msg.is_request == request):
                return msg

    async def handshake(self, origin_host: str, origin_realm: str, **kw: Any) -> Message:
        """CER -> CEA; returns the CEA."""
        await self.send(make_cer(origin_host, origin_realm, **kw))
        cea = await self.recv_until(CMD_CER, request=False)
        if cea is None:
            raise ConnectionError("closed instead of CEA")
        return cea

    async def closed(self, timeout: float = 5.0) -> bool:
        """True when the other side closes within timeout (messages before EOF are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                raw = await self.recv_raw(max(0.01, deadline - loop.time()))
                if raw is None:
                    return True
        except TimeoutError:
            return False

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass

    def abort(self) -> None:
        transport = self.writer.transport
        transport.abort()  # type: ignore[attr-defined]


def result_code(msg: Message) -> int | None:
    value = msg.get("Result-Code")
    return None if value is None else int(value)


def set_hbh(data: bytes, hbh: int) -> bytes:
    return data[:12] + struct.pack(">I", hbh) + data[16:]
