"""The bundled load generator: Gy CCR-I/U/T sessions over TCP, as fast as one core allows.

A load generator written in Python must not be the bottleneck of the system it measures, so
it does the least per message: each request kind is encoded once through the codec as a
template, and per request only the fixed-width fields (Session-Id counter, MSISDN digits,
CC-Request-Number, hop-by-hop, end-to-end) are patched in place. Answers are matched by
hop-by-hop id and read lazily for Result-Code. The connection speaks the base protocol a
peer expects: CER/CEA first, DWR answered, DPR on the way out.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from chargegw.codec import FrameReader, Message, parse_header
from chargegw.codec.commands import (
    CapabilitiesExchangeRequest,
    CreditControlRequest,
    DeviceWatchdogAnswer,
    DisconnectPeerRequest,
)

_U32 = struct.Struct(">I")
SID_WIDTH = 10  # session counter digits in the Session-Id
MSISDN_WIDTH = 13


@dataclass
class LoadConfig:
    host: str = "127.0.0.1"
    port: int = 3868
    origin_host: str = "load.localdomain"
    origin_realm: str = "localdomain"
    destination_realm: str = "localdomain"
    destination_host: str | None = None
    sessions: int = 1000
    updates: int = 1
    concurrency: int = 50
    duration: float | None = None  # stop starting sessions after this many seconds
    rate: float | None = None  # sessions started per second (None: as fast as answers allow)
    msisdn_base: int = 4670000000000
    subscribers: int = 10000
    rating_group: int = 100
    service_identifier: int | None = None
    octets_per_update: int = 1_000_000
    timeout: float = 5.0
    progress: float = 1.0  # seconds between progress lines; 0 disables them


@dataclass
class Stats:
    sent: int = 0
    answered: int = 0
    timeouts: int = 0
    sessions_started: int = 0
    sessions_done: int = 0
    by_result: dict[int, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def ok(self) -> int:
        return self.by_result.get(2001, 0)

    def summary(self) -> dict[str, Any]:
        elapsed = max(self.finished - self.started, 1e-9)
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3)

        return {
            "sent": self.sent,
            "answered": self.answered,
            "ok_2001": self.ok,
            "errors": self.answered - self.ok,
            "timeouts": self.timeouts,
            "sessions_started": self.sessions_started,
            "sessions_completed": self.sessions_done,
            "result_codes": {str(k): v for k, v in sorted(self.by_result.items())},
            "by_request_type": dict(sorted(self.by_type.items())),
            "elapsed_s": round(elapsed, 3),
            "answers_per_s": round(self.answered / elapsed, 1),
            "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)},
        }


class _Template:
    """A pre-encoded request with the byte offsets of the fields patched per use."""

    def __init__(self, msg: Message, sid_marker: bytes, msisdn_marker: bytes) -> None:
        raw = msg.encode()
        self.raw = raw
        self.sid_off = raw.index(sid_marker)
        self.msisdn_off = raw.index(msisdn_marker)
        # CC-Request-Number (415) value: find the AVP header and take the value after it.
        hdr = struct.pack(">II", 415, (0x40 << 24) | 12)
        self.reqnum_off = raw.index(hdr) + 8

    def render(self, sid: bytes, msisdn: bytes, reqnum: int, hbh: int, e2e: int) -> bytes:
        b = bytearray(self.raw)
        b[12:16] = _U32.pack(hbh)
        b[16:20] = _U32.pack(e2e)
        b[self.sid_off : self.sid_off + SID_WIDTH] = sid
        b[self.msisdn_off : self.msisdn_off + MSISDN_WIDTH] = msisdn
        b[self.reqnum_off : self.reqnum_off + 4] = _U32.pack(reqnum)
        return bytes(b)


def build_templates(cfg: LoadConfig) -> dict[str, _Template]:
    sid_marker = b"9" * SID_WIDTH
    msisdn_marker = b"8" * MSISDN_WIDTH
    sid = f"{cfg.origin_host};{os.getpid()};{sid_marker.decode()}"

    def mscc(rsu: bool, usu: bool) -> dict[str, Any]:
        m: dict[str, Any] = {"rating_group": cfg.rating_group}
        if cfg.service_identifier is not None:
            m["service_identifier"] = [cfg.service_identifier]
        if rsu:
            m["requested_service_unit"] = {}
        if usu:
            m["used_service_unit"] = [{"cc_total_octets": cfg.octets_per_update}]
        return m

    def ccr(kind: int, rsu: bool, usu: bool, extra: dict[str, Any]) -> Message:
        return CreditControlRequest(
            session_id=sid,
            origin_host=cfg.origin_host,
            origin_realm=cfg.origin_realm,
            destination_realm=cfg.destination_realm,
            destination_host=cfg.destination_host,
            auth_application_id=4,
            service_context_id="32251@3gpp.org",
            cc_request_type=kind,
            cc_request_number=0x7FFFFFFF,
            subscription_id=[
                {"subscription_id_type": 0, "subscription_id_data": msisdn_marker.decode()}
            ],
            multiple_services_indicator=1,
            multiple_services_credit_control=[mscc(rsu, usu)],
            **extra,
        )

    return {
        "initial": _Template(ccr(1, True, False, {}), sid_marker, msisdn_marker),
        "update": _Template(ccr(2, True, True, {}), sid_marker, msisdn_marker),
        "terminate": _Template(
            ccr(3, False, True, {"termination_cause": 1}), sid_marker, msisdn_marker
        ),
    }


class LoadClient(asyncio.Protocol):
    """One Diameter connection: base protocol plus request/answer matching by hop-by-hop."""

    def __init__(self, cfg: LoadConfig, stats: Stats) -> None:
        self.cfg = cfg
        self.stats = stats
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, tuple[asyncio.Future[int], float]] = {}
        self.cea: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.hbh = random.getrandbits(31)
        self.e2e = random.getrandbits(20) | ((int(time.time()) & 0xFFF) << 20)

    def next_ids(self) -> tuple[int, int]:
        self.hbh = (self.hbh + 1) & 0xFFFFFFFF
        self.e2e = (self.e2e + 1) & 0xFFFFFFFF
        return self.hbh, self.e2e

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        hbh, e2e = self.next_ids()
        cer = CapabilitiesExchangeRequest(
            hop_by_hop=hbh,
            end_to_end=e2e,
            origin_host=self.cfg.origin_host,
            origin_realm=self.cfg.origin_realm,
            host_ip_address=["127.0.0.1"],
            vendor_id=0,
            product_name="chargegw-load",
            auth_application_id=[4],
        )
        self.transport.write(cer.encode())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except Exception as exc:  # noqa: BLE001 - a framing fault ends this connection only
            self._fail(exc)
            return
        for frame in frames:
            h = parse_header(frame)
            if h.flags & 0x80:
                self._request(frame, h.code)
                continue
            entry = self.pending.pop(h.hop_by_hop, None)
            if entry is not None:
                fut, _sent = entry
                if not fut.done():
                    try:
                        rc = Message.decode(frame).get("Result-Code") or 0
                    except Exception:  # noqa: BLE001 - a broken answer counts as result 0
                        rc = 0
                    fut.set_result(int(rc))
                continue
            if h.code == 257 and not self.cea.done():
                self.cea.set_result(Message.decode(frame))

    def _request(self, frame: bytes, code: int) -> None:
        req = Message.decode(frame)
        if code == 280:  # DWR: the gateway checks we are alive
            ans = DeviceWatchdogAnswer(
                hop_by_hop=req.hop_by_hop,
                end_to_end=req.end_to_end,
                result_code=2001,
                origin_host=self.cfg.origin_host,
                origin_realm=self.cfg.origin_realm,
            )
        else:
            ans = req.answer(
                3001 if code != 282 else 2001,
                origin_host=self.cfg.origin_host,
                origin_realm=self.cfg.origin_realm,
            )
        if self.transport is not None:
            self.transport.write(ans.encode())

    def _fail(self, exc: BaseException | None) -> None:
        if not self.cea.done():
            self.cea.set_exception(exc or ConnectionError("connection closed before CEA"))
        for fut, _ in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))
        self.pending.clear()
        if not self.closed.done():
            self.closed.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._fail(exc)

    async def call(self, frame: bytes, hbh: int) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending[hbh] = (fut, time.perf_counter())
        self.transport.write(frame)  # type: ignore[union-attr]
        return await asyncio.wait_for(fut, self.cfg.timeout)

    async def disconnect(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        hbh, e2e = self.next_ids()
        dpr = DisconnectPeerRequest(
            hop_by_hop=hbh,
            end_to_end=e2e,
            origin_host=self.cfg.origin_host,
            origin_realm=self.cfg.origin_realm,
            disconnect_cause=0,
        )
        try:
            await self.call(dpr.encode(), hbh)
        except (TimeoutError, ConnectionError):
            pass
        self.transport.close()


async def run_load(cfg: LoadConfig, *, on_progress: Any = None) -> dict[str, Any]:
    """Run the configured sessions; return the summary dict (also the JSON report body)."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    templates = build_templates(cfg)
    _t, client = await loop.create_connection(lambda: LoadClient(cfg, stats), cfg.host, cfg.port)
    cea = await asyncio.wait_for(client.cea, cfg.timeout)
    rc = cea.get("Result-Code")
    if rc != 2001:
        client.transport.close()  # type: ignore[union-attr]
        raise ConnectionError(f"CEA refused the connection with Result-Code {rc}")

    stats.started = time.perf_counter()
    deadline = stats.started + cfg.duration if cfg.duration else None
    counter = iter(range(cfg.sessions))
    interval = 1.0 / cfg.rate if cfg.rate else 0.0
    next_start = [stats.started]
    steps = ["initial"] + ["update"] * cfg.updates + ["terminate"]

    async def one(kind: str, sid: bytes, msisdn: bytes, number: int) -> int:
        hbh, e2e = client.next_ids()
        frame = templates[kind].render(sid, msisdn, number, hbh, e2e)
        t0 = time.perf_counter()
        stats.sent += 1
        try:
            rc = await client.call(frame, hbh)
        except TimeoutError:
            client.pending.pop(hbh, None)
            stats.timeouts += 1
            return -1
        stats.latencies.append(time.perf_counter() - t0)
        stats.answered += 1
        stats.by_result[rc] = stats.by_result.get(rc, 0) + 1
        stats.by_type[kind] = stats.by_type.get(kind, 0) + 1
        return rc

    async def lane() -> None:
        for n in counter:
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                return
            if interval:
                start_at = next_start[0]
                next_start[0] = max(start_at, now) + interval
                if start_at > now:
                    await asyncio.sleep(start_at - now)
            stats.sessions_started += 1
            sid = str(n % 10**SID_WIDTH).zfill(SID_WIDTH).encode()
            msisdn = str(cfg.msisdn_base + n % cfg.subscribers).zfill(MSISDN_WIDTH).encode()
            for i, kind in enumerate(steps):
                rc = await one(kind, sid, msisdn, i)
                if rc != 2001 and kind != "terminate":
                    break  # a session the OCS refused or lost: do not send more for it
            else:
                stats.sessions_done += 1
            if client.closed.done():
                return

    async def progress() -> None:
        last = (stats.started, 0)
        while True:
            await asyncio.sleep(cfg.progress)
            now = time.perf_counter()
            rate = (stats.answered - last[1]) / max(now - last[0], 1e-9)
            last = (now, stats.answered)
            if on_progress is not None:
                on_progress(stats, rate)

    ticker = asyncio.create_task(progress()) if cfg.progress and on_progress else None
    try:
        await asyncio.gather(*(lane() for _ in range(max(1, cfg.concurrency))))
    finally:
        stats.finished = time.perf_counter()
        if ticker is not None:
            ticker.cancel()
        await client.disconnect()
    return stats.summary()
