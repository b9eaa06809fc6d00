"""Store outage (issue 14): the scale-out store, Redis, is stopped and started again while the
bundled generator runs Gy sessions through `chargegw run`. While it is down every request is
answered quickly with an RFC code (no timeout), service resumes by itself once it is back, and
the ledger reconciles afterwards."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from chargegw.loadtest import reliability as rel

pytestmark = pytest.mark.timeout(180)


@contextlib.contextmanager
def redis(d: Path, sock: Path) -> Iterator[subprocess.Popen[bytes]]:
    exe = shutil.which("redis-server")
    assert exe is not None
    # AOF with fsync always: what was acknowledged before the stop is there after the start
    # (and Redis 7.0 has no WAITAOF, which the CDR store would otherwise use).
    p = subprocess.Popen(
        [exe, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "yes",
         "--appendfsync", "always", "--dir", str(d)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    end = time.monotonic() + 10
    while not sock.exists():
        assert time.monotonic() < end, "redis-server did not start"
        time.sleep(0.02)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(10)


def traffic(sock: Path, timeout: float = 30.0) -> None:
    """Wait until the store holds sessions (the generator's CCRs are being charged; the
    demo seed alone writes accounts, no session)."""
    import redis as redis_py

    r = redis_py.Redis(unix_socket_path=str(sock), socket_timeout=1.0)
    end = time.monotonic() + timeout
    try:
        while not next(r.scan_iter(match="cg:{s*}:s:*", count=1000), None):
            assert time.monotonic() < end, "no traffic reached the store"
            time.sleep(0.05)
    finally:
        r.close()


def test_redis_stopped_and_started_mid_run_answers_quickly_then_resumes(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install -y redis-server)")
    rdir = tmp_path / "redis"
    rdir.mkdir()
    sock = tmp_path / "redis.sock"
    store = f'[applications.config.store]\nbackend = "redis"\nurl = "unix://{sock}"\n'
    apps = (
        '[[applications]]\napp_id = 4\nhandler = "chargegw.workers.charging.gy:CreditControlApp"\n'
        + store
        + '[[applications]]\napp_id = 3\nhandler = "chargegw.workers.charging.rf:AccountingApp"\n'
        + store
    )
    out = tmp_path / "load.json"
    with redis(rdir, sock) as first:
        gw = rel.Gateway(tmp_path / "gw", workers=2, extra=apps)
        with gw:
            load = rel.start_load(gw, out, "--scenario", "gy", "--duration", "9",
                                  "--concurrency", "10", "--timeout", "5",
                                  "--subscribers", "200")  # fmt: skip
            traffic(sock)  # the generator's sessions reach the store (a slow start is not the test)
            time.sleep(1.5)
            first.send_signal(signal.SIGTERM)  # the outage
            first.wait(10)
            sock.unlink(missing_ok=True)
            time.sleep(2.0)
            with redis(rdir, sock):  # back, with its AOF
                load.wait(60)
                check = subprocess.run(
                    [*rel.CLI, "ledger", "check", "--json", "-c", str(gw.cfg)],
                    capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                assert gw.alive(), gw.output()[-3000:]
                log = gw.output()
    s = orjson.loads(out.read_bytes())["summary"]
    codes = {int(k): v for k, v in s["result_codes"].items()}
    # every request answered, none left to time out, only RFC codes
    assert s["timeouts"] == 0 and s["lost"] == 0 and s["mismatches"] == 0, s
    assert set(codes) <= {2001, 3002, 3004, 5012}, codes
    assert sum(v for k, v in codes.items() if k != 2001) > 0, codes  # the outage was seen
    series = s["series"]
    # The outage begins in the generator's first second with an error answer (its own clock:
    # no alignment with this test's); that second and the next are answered, not stalled.
    first_err = min(x["t"] for x in series if x["errors"] > 0)
    during = [x for x in series if first_err <= x["t"] <= first_err + 1]
    assert len(during) == 2 and all(x["answered"] > 0 for x in during), (series, log[-4000:])
    tail = [x for x in series if x["t"] >= 7]
    assert tail and all(x["answered"] > 0 and x["errors"] == 0 for x in tail), series  # resumed
    rep = orjson.loads(check.stdout)
    assert check.returncode == 0 and rep["ok"], (rep.get("problems"), check.stderr[-2000:])
