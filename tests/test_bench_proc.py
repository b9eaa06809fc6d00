"""The benchmarks' child-process wrapper (`chargegw.gateway.bench.Proc`) must never stall the
processes it runs: their output goes on being taken after the start-up line was read."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from chargegw.gateway.bench import Proc


def test_a_child_that_writes_a_lot_after_its_start_line_is_not_blocked(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    code = (
        "import sys, pathlib, time\n"
        "print('ready', flush=True)\n"
        "sys.stdout.write('log line\\n' * 200_000); sys.stdout.flush()\n"  # ~1.8 MB, > a pipe
        f"pathlib.Path({str(marker)!r}).write_text('x')\n"
        "time.sleep(30)\n"
    )
    p = Proc([sys.executable, "-c", code])
    try:
        p.wait_line(r"^ready$", 20)
        end = time.monotonic() + 20
        while not marker.exists():  # blocked on a full pipe, it would never get there
            assert time.monotonic() < end, "the child is blocked writing its output"
            time.sleep(0.05)
    finally:
        p.stop()
    out = p.output(5)
    assert out.count("log line") == 200_000 and "ready" in out


def test_lines_after_a_match_are_kept_for_the_next_wait() -> None:
    p = Proc([sys.executable, "-c", "print('one\\ntwo\\nthree', flush=True)"])
    assert p.wait_line(r"^one$", 20).group(0) == "one"
    assert p.wait_line(r"^three$", 20).group(0) == "three"  # read with "one", found later
    assert p.output(5).split() == ["one", "two", "three"]


def test_the_ocs_table_shows_the_per_worker_load_series_without_an_otp_ratio() -> None:
    from chargegw.gateway.bench import CONCURRENCY, _table

    run = {"answers_per_s": 3000.0, "ratio_otp": None, "gateway_us_per_ccr": 60.0,
           "worker_us_per_ccr": [70.0, 72.0], "worker_cpu_vs_1": 0.95, "result": "ok",
           "ledger_ok": True}  # fmt: skip
    ocs = {"client": "--concurrency 50", "otp": {"answers_per_s": 8000.0},
           "sqlite": {"1": {**run, "ratio_otp": 0.4}}, "redis": {"skipped": "no redis"},
           "sqlite_per_worker_load": {"2": run}}  # fmt: skip
    text = _table({"ocs": ocs})
    assert f"sqlite with {CONCURRENCY} in flight per worker (no OTP ratio):" in text
    lines = text.splitlines()
    at = lines.index(f"  sqlite with {CONCURRENCY} in flight per worker (no OTP ratio):")
    assert lines[at + 1].startswith("  sqlite 2 worker(s): 3000.0/s ratio None")
    assert "(x0.95 of 1)" in lines[at + 1] and "ratio 0.4" in text


def test_an_erl_client_run_reports_the_clients_own_cpu_per_ccr(tmp_path: Path) -> None:
    """The load client shares the cores with what it measures: its CPU per CCR is read from
    its rusage once it has ended (here a stand-in that burns ~0.4 s of CPU for 100 CCRs),
    and a process that only sleeps meanwhile is charged about nothing."""
    import subprocess

    from chargegw.gateway.bench import _erl_client_run

    fake = tmp_path / "client.py"
    fake.write_text(
        "import time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.4:\n"
        "    pass\n"
        "print('SENT=100 ANSWERED=100 OK=100 ERRORS=0 elapsed_s=1.0 answers_per_s=100.0')\n"
        "print('RESULT ok')\n"
    )
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        r, spent = _erl_client_run([sys.executable, str(fake)], 1, [], [idle.pid])
    finally:
        idle.kill()
        idle.wait()
    assert r["ok"] == 100 and r["result"] == "ok"
    assert 3_900 <= r["client_us_per_ccr"] <= 8_000  # 0.4 s / 100, plus the start-up
    assert spent[idle.pid] < 0.2


def test_the_ocs_table_charges_the_redis_servers_cpu_to_the_store() -> None:
    from chargegw.gateway.bench import _table

    run = {"answers_per_s": 2000.0, "ratio_otp": 0.2, "gateway_us_per_ccr": 80.0,
           "worker_us_per_ccr": [190.0], "worker_cpu_vs_1": 1.0, "result": "ok",
           "ledger_ok": True, "store_us_per_ccr": 70.0, "cpu_ratio_otp": 0.21}  # fmt: skip
    text = _table({"ocs": {"client": "", "otp": {"answers_per_s": 9000.0},
                           "redis": {"1": run}, "sqlite": {"1": {**run, "store_us_per_ccr": 0}}}})  # fmt: skip
    redis = next(x for x in text.splitlines() if x.startswith("  redis  1"))
    assert "redis-server 70.0 µs/CCR" in redis and "CPU ratio to OTP 0.21" in redis
