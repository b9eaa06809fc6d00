"""The load generator as an instrument: its figures are checked against a stub with known behaviour."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from hdrh.histogram import HdrHistogram

from chargegw.loadtest import cli
from chargegw.loadtest.generator import ConnectError, LoadConfig, run_process
from chargegw.loadtest.runner import run_config
from chargegw.loadtest.stats import (
    CODE_HISTOGRAMS,
    Recorder,
    latency_ms,
    merge,
    new_histogram,
    summarize,
)
from chargegw.loadtest.stub import StubBehaviour, start_stub


def _run(cfg: LoadConfig, b: StubBehaviour | None = None, block: tuple[float, float] | None = None
         ) -> tuple[dict[str, Any], StubBehaviour]:
    """One process against an in-process stub; the full per-process result. `block` = (at, s):
    the event loop (generator and stub alike) is frozen for s seconds at `at`."""
    b = b or StubBehaviour()

    async def go() -> dict[str, Any]:
        server, cfg.port = await start_stub(b)
        if block is not None:
            asyncio.get_running_loop().call_later(block[0], time.sleep, block[1])
        try:
            from chargegw.loadtest.generator import build_report

            part = await run_process(cfg)
            return build_report(cfg, [part]) | {"_part": part}
        finally:
            server.close()

    return asyncio.run(go()), b


def _hist(summary: dict[str, Any]) -> HdrHistogram:
    return HdrHistogram.decode(summary["_part"]["record"]["hist"])


def test_percentiles_match_known_server_delays() -> None:
    # 80% of answers come after 10 ms, 20% after 60 ms; closed loop, one request per session.
    # p50 is then the median of the 10 ms group and p90 the median of the 60 ms group.
    b = StubBehaviour(delay=lambda n: 0.060 if n % 5 == 4 else 0.010)
    cfg = LoadConfig(kind="test_app", sessions=400, concurrency=20, timeout=5)
    s, _ = _run(cfg, b)
    lat = s["latency_ms"]
    assert s["sent"] == s["answered"] == s["ok"] == 400
    # a latency can never be shorter than the server's delay (histogram precision 0.1%) ...
    assert lat["min"] >= 10.0 * 0.999
    assert lat["p50"] >= 10.0 * 0.999
    assert lat["p90"] >= 60.0 * 0.999 and lat["p99"] >= 60.0 * 0.999
    # ... and only the loop's own overhead is added on top (generous for a busy 2-core box)
    assert lat["p50"] <= 10.0 + 8
    assert lat["p90"] <= 60.0 + 8
    assert lat["p99"] <= 60.0 + 30
    assert _hist(s).get_total_count() == 400


def test_open_loop_counts_a_stall_that_closed_loop_hides() -> None:
    """Coordinated omission: in open loop every request intended during a 0.4 s server stall
    is late by up to 0.4 s; a closed loop of one session just waits and records one."""
    stall = StubBehaviour(stall_at=60, stall_s=0.4)
    open_cfg = LoadConfig(kind="test_app", rate=200, duration=1.5, sessions=None, timeout=5)
    s, _ = _run(open_cfg, stall)
    slow = sum(
        it.count_at_value_iterated_to
        for it in _hist(s).get_recorded_iterator()
        if it.value_iterated_to >= 100_000
    )
    assert slow >= 40, slow  # ~ 0.3 s x 200/s requests intended while the server stalled
    closed, _ = _run(LoadConfig(kind="test_app", sessions=150, concurrency=1),
                     StubBehaviour(stall_at=60, stall_s=0.4))
    slow_closed = sum(
        it.count_at_value_iterated_to
        for it in _hist(closed).get_recorded_iterator()
        if it.value_iterated_to >= 100_000
    )
    assert slow_closed <= 2


def _slow(s: dict[str, Any], ms: float) -> int:
    return sum(it.count_at_value_iterated_to for it in _hist(s).get_recorded_iterator()
               if it.value_iterated_to >= ms * 1000)


def test_latency_counts_from_the_intended_send_time() -> None:
    """A generator that itself stalls (here: its loop frozen 0.4 s) must not hide the stall:
    the requests it should have sent meanwhile are late by up to 0.4 s, and say so."""
    cfg = LoadConfig(kind="test_app", rate=200, duration=1.5, sessions=None, timeout=5)
    s, _ = _run(cfg, block=(0.5, 0.4))
    assert _slow(s, 100) >= 40  # ~ 0.3 s x 200/s intended while frozen
    assert s["send_lag_ms"]["max"] >= 300
    assert abs(s["sent"] - 300) <= 15  # and the backlog is still sent: the rate is kept


def test_open_loop_rate_is_honoured_within_5_percent() -> None:
    cfg = LoadConfig(kind="gy", updates=1, rate=300, duration=2.0, sessions=None)
    s, _ = _run(cfg)
    assert abs(s["sessions_started"] - 600) <= 30, s["sessions_started"]
    assert abs(s["sent"] - 1800) <= 90
    assert s["mismatches"] == s["timeouts"] == 0
    assert s["offered_rate"] == 300


def test_warmup_is_excluded() -> None:
    cfg = LoadConfig(kind="test_app", rate=200, warmup=0.5, duration=0.5, sessions=None)
    s, _ = _run(cfg)
    assert abs(s["warmup"]["sent"] - 100) <= 10
    assert abs(s["sent"] - 100) <= 10
    assert s["answered"] == s["sent"]


def test_mismatches_and_errors_are_counted_separately() -> None:
    b = StubBehaviour(wrong_session_every=5, result_code=lambda n: 4012 if n % 4 == 1 else 2001)
    s, _ = _run(LoadConfig(kind="test_app", sessions=100, concurrency=1), b)
    # n % 5 == 0: 20 wrong Session-Ids; n % 4 == 1 but not n % 5 == 0: 20 answers of 4012
    assert s["mismatches"] == s["mismatch_kinds"]["session_id"] == 20
    assert s["result_codes"] == {"2001": 60, "4012": 20}
    assert s["errors"] == 20 and s["ok"] == 60
    assert s["error_rate"] == pytest.approx(0.4)
    assert s["result_classes"] == {"2xxx": 60, "4xxx": 20}


def test_wrong_request_number_is_a_mismatch() -> None:
    b = StubBehaviour(wrong_number_every=3)
    s, _ = _run(LoadConfig(kind="gy-event", sessions=30, concurrency=1), b)
    assert s["mismatch_kinds"]["number"] == 10
    assert s["answered"] == 20


def test_server_initiated_rar_and_asr_are_answered() -> None:
    b = StubBehaviour(rar_after_initial=True)
    s, b = _run(LoadConfig(kind="gy", sessions=20, updates=1, concurrency=1), b)
    assert s["server_requests"]["RAR"] == 20
    assert b.server_answers == [2001] * 20
    # ASR: the session's next request is its CCR-T, so 3 requests instead of 2 + 3 updates
    b = StubBehaviour(asr_after_initial=True)
    s, b = _run(LoadConfig(kind="gy", sessions=10, updates=3, concurrency=1), b)
    assert b.server_answers == [2001] * 10
    assert s["sent"] == 30 and s["sessions_completed"] == 10


def test_garbage_from_server_is_reported_not_raised() -> None:
    t0 = time.monotonic()
    s, _ = _run(LoadConfig(kind="test_app", sessions=100, concurrency=5, timeout=2),
                StubBehaviour(garbage_after=10))
    assert time.monotonic() - t0 < 5
    assert s["connections"]["garbage"] == 1
    assert any("not Diameter" in p for p in s["problems"])
    assert s["answered"] >= 5 and s["answered"] + s["lost"] + s["timeouts"] == s["sent"]


def test_close_mid_run_is_reported() -> None:
    s, _ = _run(LoadConfig(kind="gy", sessions=100, concurrency=5, timeout=2),
                StubBehaviour(close_after=20))
    assert s["connections"]["closed_by_server"] == 1
    assert any("closed by the server mid-run" in p for p in s["problems"])
    assert s["answered"] + s["lost"] == s["sent"]


def test_silent_server_times_out_cleanly() -> None:
    t0 = time.monotonic()
    s, _ = _run(LoadConfig(kind="test_app", sessions=50, concurrency=5, timeout=0.3),
                StubBehaviour(silent_after=3))
    # 47 requests time out 5 at a time, 0.3 s each: about 3 s; a request left waiting past
    # its timeout would hold the run far longer (the bound leaves room for a loaded machine)
    assert time.monotonic() - t0 < 15
    assert s["answered"] == 3
    assert s["timeouts"] == s["sent"] - 3 > 0
    assert any("no answer" in p for p in s["problems"])


def test_unreachable_target_fails_fast_with_address() -> None:
    async def go() -> None:
        server, port = await start_stub()
        server.close()
        await server.wait_closed()
        t0 = time.monotonic()
        with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
            await run_process(LoadConfig(port=port, connect_timeout=2))
        assert time.monotonic() - t0 < 2

    asyncio.run(go())


def test_server_without_cea_fails_with_address() -> None:
    async def go() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ConnectError, match=f"127.0.0.1:{port}.*no CEA"):
            await run_process(LoadConfig(port=port, connect_timeout=0.5))
        server.close()

    asyncio.run(go())


def test_merge_is_exact() -> None:
    a, b, both = Recorder(), Recorder(), new_histogram()
    for i in range(1, 5000):
        (a if i % 3 else b).on_answer("x", 2001, i * 7, True, 0.0)
        both.record_value(i * 7)
    m = merge([a.to_dict(), b.to_dict()])
    assert m["counters"]["answered"] == 4999
    assert latency_ms(m["hist"]) == latency_ms(both)


def test_latency_by_result_code_is_kept_per_code_merged_exactly_and_bounded() -> None:
    a, b = Recorder(), Recorder()
    fast, slow = new_histogram(), new_histogram()
    for i in range(1, 3001):
        rc, lat = (3004, 100 + i % 50) if i % 4 else (2001, 20_000 + i)
        (a if i % 3 else b).on_answer("x", rc, lat, True, 0.0)
        (fast if rc == 3004 else slow).record_value(lat)
    for code in range(5000, 5000 + 2 * CODE_HISTOGRAMS):  # a server inventing codes
        a.on_answer("x", code, 7, True, 0.0)
    m = merge([a.to_dict(), b.to_dict()])
    s = summarize(m, [], None)
    by = s["latency_ms_by_result"]
    assert by["3004"] == latency_ms(fast) and by["2001"] == latency_ms(slow)
    assert by["3004"]["p99"] < 1 < by["2001"]["p50"]
    assert len(by) == CODE_HISTOGRAMS  # bounded; every answer is still counted
    assert s["result_codes"]["5030"] == 1 and s["answered"] == 3000 + 2 * CODE_HISTOGRAMS


def test_two_processes_merge_counts() -> None:
    async def serve() -> tuple[Any, int]:
        return await start_stub()

    import threading

    loop = asyncio.new_event_loop()
    server, port = loop.run_until_complete(serve())
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    try:
        cfg = LoadConfig(kind="gy", port=port, sessions=201, updates=1, concurrency=10,
                         processes=2, connections=2)
        s = run_config(cfg)
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        th.join(5)
    assert s["sessions_started"] == s["sessions_completed"] == 201
    assert s["sent"] == s["answered"] == 603
    assert s["connections"]["connected"] == 2
    assert sum(st["answered"] for st in s["by_step"].values()) == 603


EXPECTED_REPORT_KEYS = {
    "schema", "tool", "started", "target", "params", "summary", "gates", "ramp", "compare",
    "money", "wall_s",
}
EXPECTED_SUMMARY_KEYS = {
    "sent", "answered", "ok", "ok_2001", "errors", "timeouts", "mismatches", "lost",
    "unexpected_answers", "error_rate", "elapsed_s", "answers_per_s", "offered_rate",
    "sessions_started", "sessions_completed", "sessions_failed", "abated", "resent", "reconnects", "result_codes",
    "result_classes", "mismatch_kinds", "latency_ms", "latency_ms_by_result", "send_lag_ms",
    "by_step", "connections",
    "server_requests", "warmup", "usage_reports", "series", "problems",
}
LATENCY_KEYS = {"min", "mean", "p50", "p90", "p99", "p999", "max"}
SERIES_KEYS = {"t", "sent", "answered", "errors", "timeouts", "p50", "p90", "p99", "max"}


def _cli(argv: list[str], b: StubBehaviour | None = None) -> int:
    import argparse
    import threading

    loop = asyncio.new_event_loop()
    server, port = loop.run_until_complete(start_stub(b))
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    try:
        p = argparse.ArgumentParser()
        cli.configure(p)
        return cli.run(p.parse_args(["--port", str(port), "--quiet", *argv]))
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        th.join(5)


def test_json_schema_is_stable(tmp_path: Any) -> None:
    out = tmp_path / "r.json"
    assert _cli(["--scenario", "mix", "--sessions", "50", "--seed", "1", "--json", str(out)]) == 0
    r = orjson.loads(out.read_bytes())
    assert set(r) == EXPECTED_REPORT_KEYS
    assert r["schema"] == "chargegw-load/1"
    s = r["summary"]
    assert set(s) == EXPECTED_SUMMARY_KEYS
    assert set(s["latency_ms"]) == LATENCY_KEYS == set(s["send_lag_ms"])
    assert s["series"] and set(s["series"][0]) == SERIES_KEYS
    assert set(s["mismatch_kinds"]) == {"session_id", "number", "command", "end_to_end",
                                        "echo", "malformed"}
    for st in s["by_step"].values():
        assert set(st) == {"sent", "answered", "latency_ms"}
    assert set(r["gates"]) == {"max_error_rate", "max_p99_ms", "passed", "failures"}
    assert r["params"]["model"] == "closed" and r["params"]["scenario"]["kind"] == "mix"


def test_gates_set_the_exit_code(tmp_path: Any) -> None:
    slow = StubBehaviour(delay=0.02)
    assert _cli(["--scenario", "test_app", "--sessions", "40", "--max-p99-ms", "5"], slow) == 1
    assert _cli(["--scenario", "test_app", "--sessions", "40", "--max-p99-ms", "500"], slow) == 0
    errs = StubBehaviour(result_code=lambda n: 5030 if n % 10 == 0 else 2001)
    assert _cli(["--scenario", "test_app", "--sessions", "100", "--max-error-rate", "0.05"],
                errs) == 1
    errs = StubBehaviour(result_code=lambda n: 5030 if n % 10 == 0 else 2001)
    assert _cli(["--scenario", "test_app", "--sessions", "100", "--max-error-rate", "0.2"],
                errs) == 0


def test_ramp_reports_the_knee(tmp_path: Any) -> None:
    out = tmp_path / "ramp.json"
    assert _cli(["--scenario", "test_app", "--ramp", "100:300:100/0.5", "--max-p99-ms", "1000",
                 "--json", str(out)]) == 0
    r = orjson.loads(out.read_bytes())["ramp"]
    assert [st["rate"] for st in r["steps"]] == [100, 200, 300]
    assert r["knee_rate"] == 300
    # a server slower than the limit at every rate: no knee, exit 1
    assert _cli(["--scenario", "test_app", "--ramp", "100:300:100/0.3", "--max-p99-ms", "1",
                 "--json", str(out)], StubBehaviour(delay=0.01)) == 1
    assert orjson.loads(out.read_bytes())["ramp"]["knee_rate"] is None


def test_unreachable_target_exit_code_2(capsys: Any) -> None:
    import argparse

    p = argparse.ArgumentParser()
    cli.configure(p)
    assert cli.run(p.parse_args(["--port", "1", "--quiet", "--connect-timeout", "1"])) == 2
    assert "127.0.0.1:1" in capsys.readouterr().err


def test_compare_prints_ratios(tmp_path: Any, capsys: Any) -> None:
    import threading

    loop = asyncio.new_event_loop()
    slow, slow_port = loop.run_until_complete(start_stub(StubBehaviour(delay=0.02)))
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    out = tmp_path / "c.json"
    try:
        rc = _cli(["--scenario", "test_app", "--duration", "1", "--concurrency", "4",
                   "--compare", f"127.0.0.1:{slow_port}", "--json", str(out)])
    finally:
        loop.call_soon_threadsafe(slow.close)
        loop.call_soon_threadsafe(loop.stop)
        th.join(5)
    assert rc == 0
    rows = orjson.loads(out.read_bytes())["compare"]
    assert rows[0]["ratio"] == 1.0
    # 4 in flight at 20 ms each: at most ~200/s, far below the fast stub
    assert rows[1]["summary"]["answers_per_s"] <= 210 and rows[1]["ratio"] < 0.5
    assert "ratio" in capsys.readouterr().out


def test_scenario_file_and_subscriber_csv(tmp_path: Any) -> None:
    (tmp_path / "subs.csv").write_text("# msisdn\n46701112223,x\n46701112224,y\n")
    (tmp_path / "s.toml").write_text(
        '[scenario]\nupdates = 2\n[[scenario.flows]]\nkind = "gy"\nweight = 3\n'
        'rating_groups = [1, 100]\n[[scenario.flows]]\nkind = "rf"\nweight = 1\nupdates = 0\n'
        '[subscribers]\ncsv = "subs.csv"\n'
    )
    b = StubBehaviour(record=True)
    assert _cli(["--scenario", str(tmp_path / "s.toml"), "--sessions", "40", "--seed", "3"],
                b) == 0
    from chargegw.codec import Message

    msgs = [Message.decode(f) for f in b.seen]
    ccr = [m for m in msgs if m.code == 272]
    acr = [m for m in msgs if m.code == 271]
    assert ccr and acr and len(ccr) + len(acr) == len(msgs)
    assert len(ccr) % 4 == 0 and len(acr) % 2 == 0  # gy: I, U, U, T; rf: START, STOP
    assert {int(m.accounting_record_type) for m in acr} == {2, 4}
    assert {len(m.multiple_services_credit_control) for m in ccr} == {2}
    subs = {m.subscription_id[0].subscription_id_data for m in ccr}
    assert subs <= {"46701112223", "46701112224"}
    for m in msgs:
        m.validate()
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nkind = "gy"\nupdtes = 1\n')
    assert _cli(["--scenario", str(bad)]) == 2


def test_old_flags_still_drive_gy_sessions(tmp_path: Any) -> None:
    b = StubBehaviour(record=True)
    out = tmp_path / "o.json"
    assert _cli(["--sessions", "30", "--updates", "2", "--concurrency", "5", "--json", str(out)],
                b) == 0
    s = orjson.loads(out.read_bytes())["summary"]
    assert s["sent"] == 120 and s["sessions_completed"] == 30 and s["result_codes"] == {
        "2001": 120}


def test_bench_load_null_part_runs(tmp_path: Any) -> None:
    """`chargegw bench load --only null`: the stub subprocess and two short runs, no anchors."""
    import subprocess
    import sys

    out = tmp_path / "b.json"
    r = subprocess.run(
        [sys.executable, "-m", "chargegw.cli", "bench", "load", "--only", "null", "--duration",
         "1", "--concurrency", "20", "--base-port", str(_free_port()), "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    parts = orjson.loads(out.read_bytes())["parts"]["null"]
    for kind in ("test_app", "gy"):
        assert parts[kind]["answered"] > 0, parts
        assert parts[kind]["mismatches"] == parts[kind]["timeouts"] == 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
