"""The operator's HTTP endpoint (issue 12): /metrics, /healthz, /readyz.

The end-to-end test runs `chargegw run` with the metrics port ephemeral, drives load
through it, and checks that the series moved and add up: the answers by Result-Code sum to
what the load generator got answered, and the requests counted equal the answers."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from chargegw.codec import Avp, Message
from chargegw.config import Config
from chargegw.gateway.frontend import Gateway
from chargegw.gateway.metrics import MetricsServer, result_code, start_metrics

CLI = [sys.executable, "-m", "chargegw.cli"]


def _get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(samples: dict[Any, float], name: str, **match: str) -> float:
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == name and all(dict(labels).get(k) == want for k, want in match.items())
    )


# Result-Code extraction ---------------------------------------------------------------


def test_result_code_from_answer_octets() -> None:
    a = Message(code=272, app_id=4, flags=0x40)
    a.set("Session-Id", "x;1")
    a.set("Origin-Host", "gw.localdomain")
    a.set("Result-Code", 4012)
    assert result_code(a.encode()) == 4012
    e = Message(code=272, app_id=4, flags=0x40)
    e.set("Session-Id", "x;2")
    e.add(Avp(297, [Avp(266, (10415).to_bytes(4, "big")), Avp(298, (5030).to_bytes(4, "big"))]))
    assert result_code(e.encode()) == 5030
    none = Message(code=272, app_id=4, flags=0x40)
    none.set("Session-Id", "x;3")
    raw = none.encode()
    assert result_code(raw) == 0
    # Truncated or lying AVP lengths end the walk; never an exception.
    bad = bytearray(a.encode())
    bad[25:28] = (0xFFFFFF).to_bytes(3, "big")
    assert result_code(bytes(bad)) == 0
    assert result_code(b"\x01" * 10) == 0


# /readyz before workers, and the HTTP side's hostile input ----------------------------


def _config(tmp_path: Path, **metrics: Any) -> Config:
    return msgspec.convert(
        {
            "data_dir": str(tmp_path / "data"),
            "listen": [{"address": "127.0.0.1", "port": 0}],
            "launcher": {"min_workers": 1},
            "metrics": {"address": "127.0.0.1", "port": 0, **metrics},
        },
        Config,
    )


async def _http(port: int, payload: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(payload)
    await w.drain()
    data = await asyncio.wait_for(r.read(), 10)
    w.close()
    return data


def test_readyz_503_before_workers_and_listeners(tmp_path: Path) -> None:
    async def main() -> None:
        gw = Gateway(_config(tmp_path))
        gw.start_pool()
        srv = await start_metrics(gw, gw.config)
        assert srv is not None and srv.port
        try:
            ready = await _http(srv.port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert ready.startswith(b"HTTP/1.1 503 ")
            assert b"not open" in ready  # the reason, short
            health = await _http(srv.port, b"GET /healthz HTTP/1.1\r\n\r\n")
            assert health.startswith(b"HTTP/1.1 200 ")
            body = (await _http(srv.port, b"GET /metrics HTTP/1.1\r\n\r\n")).split(b"\r\n\r\n")[1]
            s = _samples(body.decode())
            assert s[("chargegw_pool_workers", ())] == 0
            assert s[("chargegw_ready", ())] == 0
            # With the listeners open but no worker: still 503, saying why.
            await gw.node.start()
            ok, why = gw.readiness()
            assert not ok and "0 of 1 workers" in why
            # Hostile HTTP: garbage, an unknown method, headers without end, a long line.
            assert (await _http(srv.port, b"\x00\x01garbage\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
            assert (await _http(srv.port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 405 "
            )
            assert (await _http(srv.port, b"GET /x HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404 ")
            assert await _http(srv.port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n") == b""
            # Still serving after all that.
            assert (await _http(srv.port, b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 200 "
            )
        finally:
            await srv.close()
            await gw.stop(drain_timeout=0.0)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_metrics_disabled_and_port_in_use(tmp_path: Path) -> None:
    async def main() -> None:
        gw = Gateway(_config(tmp_path, enabled=False))
        assert await start_metrics(gw, gw.config) is None
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            gw2 = Gateway(_config(tmp_path, port=busy.getsockname()[1]))
            # Logged, not fatal: the gateway's job is Diameter.
            assert await start_metrics(gw2, gw2.config) is None
        srv = MetricsServer(gw, "127.0.0.1", 0)
        assert srv.respond("GET", "/healthz")[0] == 200

    asyncio.run(asyncio.wait_for(main(), 30))


# End to end: chargegw run, chargegw load, scrape ---------------------------------------


def test_scrape_during_load_adds_up(tmp_path: Path, chargegw_run: Any) -> None:
    metrics = '[metrics]\naddress = "127.0.0.1"\nport = 0\n'
    with chargegw_run(tmp_path, workers=1, extra=metrics) as gw:
        m = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", gw.output())
        assert m, gw.output()
        base = m.group(1)
        assert _get(base + "/healthz")[0] == 200
        status, why = _get(base + "/readyz")
        assert status == 200, why
        before = _samples(_get(base + "/metrics")[1])
        out = tmp_path / "load.json"
        load = subprocess.Popen(
            [*CLI, "load", "--port", str(gw.port), "--sessions", "200", "--updates", "1",
             "--concurrency", "20", "--interval", "0.01", "--timeout", "10", "--quiet",
             "--json", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        # During the run: the load's peer is up, and the counters move.
        during: dict[Any, float] = {}
        while load.poll() is None:
            during = _samples(_get(base + "/metrics")[1])
            if _sum(during, "chargegw_peer_up") and _sum(during, "chargegw_requests_total"):
                break
            time.sleep(0.02)
        load_out, _ = load.communicate(timeout=240)
        assert out.exists(), load_out
        assert _sum(during, "chargegw_peer_up") >= 1, during
        assert (
            _sum(during, "chargegw_peer_state", state="R-Open")
            + _sum(during, "chargegw_peer_state", state="I-Open")
            >= 1
        ), during
        rep = json.loads(out.read_text())
        status, text = _get(base + "/metrics")
        assert status == 200
        after = _samples(text)

    summary = rep["summary"]
    answered = summary["answered"]
    assert answered >= 200 * 3 * 0.9, summary  # CCR-I, one CCR-U, CCR-T per session
    got = _sum(after, "chargegw_answers_total") - _sum(before, "chargegw_answers_total")
    assert got == answered, (got, summary)
    # By Result-Code, the gateway's split is the generator's.
    for code, n in summary["result_codes"].items():
        moved = _sum(after, "chargegw_answers_total", result_code=str(code)) - _sum(
            before, "chargegw_answers_total", result_code=str(code)
        )
        assert moved == n, (code, moved, n)
    reqs = _sum(after, "chargegw_requests_total") - _sum(before, "chargegw_requests_total")
    assert reqs == got  # every request the front end took got one answer
    # Credit-Control (app 4, command 272) carried them all.
    assert _sum(after, "chargegw_requests_total", app="4", command="272") >= answered
    lat = _sum(after, "chargegw_answer_latency_seconds_count") - _sum(
        before, "chargegw_answer_latency_seconds_count"
    )
    assert lat == got
    assert after[("chargegw_answer_latency_seconds_bucket", (("le", "+Inf"),))] == _sum(
        after, "chargegw_answer_latency_seconds_count"
    )
    placed = _sum(after, "chargegw_pool_placed_total") - _sum(before, "chargegw_pool_placed_total")
    assert placed >= answered - summary.get("errors", 0)
    assert _sum(after, "chargegw_pool_workers") == 1
    assert _sum(after, "chargegw_pool_credit") > 0
    assert _sum(after, "chargegw_ready") == 1
    # Bounded labels: no Session-Id, no subscriber anywhere in the exposition.
    assert ";" not in "".join(v for (_n, labels), _ in after.items() for _k, v in labels)


def test_a_failing_probe_answers_500_and_the_server_keeps_serving() -> None:
    class Broken:
        def readiness(self) -> tuple[bool, str]:
            raise RuntimeError("boom")

    async def main() -> None:
        srv = MetricsServer(Broken(), "127.0.0.1", 0)
        await srv.start()
        try:
            assert (await _http(srv.port, b"GET /readyz HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 500 "
            )
            assert (await _http(srv.port, b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 200 "
            )
        finally:
            await srv.close()

    asyncio.run(asyncio.wait_for(main(), 30))
