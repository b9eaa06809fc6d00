"""A pipelined Diameter flood for the gateway benchmark (run as its own process).

    python -m chargegw.gateway.benchdriver --port 3868 --duration 5 --window 400

CER/CEA, then keeps `window` test_app Test-Requests outstanding on one TCP connection for
`duration` seconds, as fast as the peer answers. Requests are pre-encoded; per request only
the hop-by-hop id and a Session-Id counter are patched, so the driver costs a few
microseconds a message and the gateway stays the bottleneck. Answers are counted by header
(E bit = error), and one in 64 is fully checked for Result-Code 2001. DWRs are answered.
Prints one JSON line: sent, answered, errors, ok_checked, rate, latency percentiles.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import struct
import sys
import time

import orjson

from chargegw.codec import Avp, Message

TEST_CMD = 16777214
TEST_APP = 16777215
TEST_AVP = 16777215
TEST_VENDOR = 999999
_HDR = struct.Struct("!IIIII")
_SID_DIGITS = 10


def cer(origin_host: str, origin_realm: str) -> bytes:
    m = Message(code=257, app_id=0, flags=0x80, hop_by_hop=1, end_to_end=1)
    m.set("Origin-Host", origin_host)
    m.set("Origin-Realm", origin_realm)
    m.set("Host-IP-Address", "127.0.0.1")
    m.set("Vendor-Id", 0)
    m.set("Product-Name", "chargegw-benchdriver")
    m.add("Supported-Vendor-Id", TEST_VENDOR)
    m.add("Auth-Application-Id", 4)
    m.add(
        "Vendor-Specific-Application-Id",
        {"vendor_id": TEST_VENDOR, "auth_application_id": TEST_APP},
    )
    return m.encode()


def test_request_template(
    origin_host: str, origin_realm: str, dest_realm: str
) -> tuple[bytes, int]:
    """The encoded request and the offset of the Session-Id counter digits."""
    sid = f"{origin_host};bench;" + "0" * _SID_DIGITS
    m = Message(code=TEST_CMD, app_id=TEST_APP, flags=0xC0, hop_by_hop=0, end_to_end=0)
    m.set("Session-Id", sid)
    m.set("Destination-Realm", dest_realm)
    m.set("Origin-Host", origin_host)
    m.set("Origin-Realm", origin_realm)
    m.add(Avp(TEST_AVP, (7).to_bytes(4, "big"), vendor=TEST_VENDOR, flags=0x80))
    raw = m.encode()
    off = raw.index(sid.encode()) + len(sid) - _SID_DIGITS
    return raw, off


def _answer_dwr(req: bytes, origin_host: str, origin_realm: str) -> bytes:
    m = Message.decode(req)
    return m.answer(2001, origin_host=origin_host, origin_realm=origin_realm).encode()


def flood(
    host: str,
    port: int,
    *,
    duration: float,
    window: int,
    origin_host: str,
    origin_realm: str,
    dest_realm: str,
    sessions: int = 100_000,
    warmup: float = 0.5,
) -> dict[str, object]:
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(cer(origin_host, origin_realm))
    buf = b""
    while len(buf) < 20 or len(buf) < (_HDR.unpack_from(buf)[0] & 0xFFFFFF):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before CEA")
        buf += chunk
    cea = Message.decode(buf[: _HDR.unpack_from(buf)[0] & 0xFFFFFF])
    if int(cea.get("Result-Code") or 0) != 2001:
        raise ConnectionError(f"CEA Result-Code {cea.get('Result-Code')}")
    buf = buf[_HDR.unpack_from(buf)[0] & 0xFFFFFF :]
    sock.setblocking(False)

    tmpl, sid_off = test_request_template(origin_host, origin_realm, dest_realm)
    head, mid, tail = tmpl[:12], tmpl[20:sid_off], tmpl[sid_off + _SID_DIGITS :]
    hbh_e2e = struct.Struct("!II")
    sent_at: dict[int, float] = {}
    next_hbh = 1
    counter = 0
    sent = answered = errors = checked_ok = checked_bad = 0
    lat: list[float] = []
    clock = time.perf_counter

    def make(n: int) -> bytes:
        nonlocal next_hbh, counter, sent
        parts = []
        now = clock()
        for _ in range(n):
            h = next_hbh
            next_hbh = (h + 1) & 0xFFFFFFFF or 1
            counter = (counter + 1) % sessions
            parts.append(head + hbh_e2e.pack(h, h) + mid + b"%010d" % counter + tail)
            sent_at[h] = now
        sent += n
        return b"".join(parts)

    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    out = bytearray(make(window))
    start = clock()
    measure_from = start + warmup
    end = measure_from + duration
    in_window = 0
    errors_in_window = 0
    stopping = False
    while True:
        now = clock()
        if now >= end and not stopping:
            stopping = True
            stop_at = now
        if stopping and (not sent_at or now > stop_at + 5.0):
            break
        if out:
            try:
                n = sock.send(out)
                del out[:n]
            except BlockingIOError:
                pass
        events = sel.select(0.05 if not out else 0)
        if not events:
            continue
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            continue
        if not chunk:
            break
        buf += chunk
        pos = 0
        blen = len(buf)
        got = 0
        t = clock()
        while blen - pos >= 20:
            vl, fc, _app, hbh, _e2e = _HDR.unpack_from(buf, pos)
            ln = vl & 0xFFFFFF
            if ln < 20 or blen - pos < ln:
                break
            if fc & 0x80000000:  # a request from the gateway (DWR)
                out += _answer_dwr(buf[pos : pos + ln], origin_host, origin_realm)
                pos += ln
                continue
            t0 = sent_at.pop(hbh, None)
            if t0 is not None:
                got += 1
                if t >= measure_from and t0 >= measure_from and t <= end:
                    in_window += 1
                    lat.append(t - t0)
                    if fc & 0x20000000:
                        errors_in_window += 1
                if fc & 0x20000000:
                    errors += 1
                elif (answered & 63) == 0:
                    rc = Message.decode(buf[pos : pos + ln]).get("Result-Code")
                    if rc is not None and int(rc) == 2001:
                        checked_ok += 1
                    else:
                        checked_bad += 1
                answered += 1
            pos += ln
        buf = buf[pos:]
        if got and not stopping:
            out += make(got)
    elapsed = clock() - start
    sock.close()
    lat.sort()

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else None

    return {
        "sent": sent,
        "answered": answered,
        "errors": errors,
        "unanswered": len(sent_at),
        "checked_ok": checked_ok,
        "checked_bad": checked_bad,
        "window": window,
        "duration_s": duration,
        "elapsed_s": round(elapsed, 3),
        "answers_in_window": in_window,
        "errors_in_window": errors_in_window,
        "rate": round((in_window - errors_in_window) / duration, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(lat[-1] * 1000, 3) if lat else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3868)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--window", type=int, default=400)
    ap.add_argument("--origin-host", default="bench.localdomain")
    ap.add_argument("--origin-realm", default="localdomain")
    ap.add_argument("--dest-realm", default="localdomain")
    ap.add_argument("--warmup", type=float, default=0.5)
    a = ap.parse_args(argv)
    try:
        res = flood(
            a.host,
            a.port,
            duration=a.duration,
            window=a.window,
            origin_host=a.origin_host,
            origin_realm=a.origin_realm,
            dest_realm=a.dest_realm,
            warmup=a.warmup,
        )
    except (OSError, ConnectionError) as exc:
        print(orjson.dumps({"error": str(exc)}).decode())
        return 1
    print(orjson.dumps(res).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
