"""Process start-up: the launcher gives up on a crash loop, the Diameter port opens only once
workers are there (`chargegw run` and `chargegw gateway` alike), the documented
CHARGEGW_UVLOOP switch, and the shipped container configs have no demo accounts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chargegw.config import load_config
from chargegw.config.loader import NOT_CONFIG
from chargegw.gateway.bench import Proc
from chargegw.gateway.status_cli import query
from chargegw.peer import loop as peer_loop
from chargegw.workers.charging.config import GyConfig, load

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "chargegw.cli"]
TEST_APP = 16777215

# Applications whose setup misbehaves in the worker process only (the launcher imports the
# module to check the handler, but never calls setup).
APPS = '''
import os
import time


class Crash:
    app_id = 16777215

    def setup(self, ctx):
        os._exit(3)  # dies like a segfault or an OOM kill would: no exception, no EX_CONFIG

    def handle(self, request, ctx):
        raise AssertionError("never reached")


class SlowStart:
    """Takes a while to set up, as a real application opening its store can."""

    app_id = 16777215

    def setup(self, ctx):
        time.sleep(float(ctx.config.get("delay", 1.5)))

    def handle(self, request, ctx):
        from chargegw.workers.testapp import TestApp

        return TestApp.handle(self, request, ctx)
'''


def status_ep(pool_endpoint: str) -> str:
    """The operator's status socket: next to the default ipc pool socket in the data dir."""
    return pool_endpoint.replace("/gateway.ipc", "/status.ipc")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def setup_case(
    tmp_path: Path, handler: str, launcher: str = "", app_config: str = ""
) -> tuple[Path, int, dict[str, str]]:
    """A config serving only the test application with `handler`, and an environment in
    which the workers (started with `python -P`) can import the apps module."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "startup_apps.py").write_text(APPS)
    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path}/data"\n'
        f'[[listen]]\naddress = "127.0.0.1"\nport = {port}\n'
        "[launcher]\nrestart_backoff_min = 0.1\nrestart_backoff_max = 0.2\n" + launcher + "\n"
        f'[[applications]]\napp_id = {TEST_APP}\nhandler = "{handler}"\nvendor_id = 999999\n'
        + (f"[applications.config]\n{app_config}\n" if app_config else "")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEGW_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return cfg, port, env


def test_crash_loop_stops_the_launcher_with_a_clear_message(tmp_path: Path) -> None:
    cfg, port, env = setup_case(tmp_path, "startup_apps:Crash")  # crash_limit 5 in 60 s
    try:
        out = subprocess.run(
            [*CLI, "run", "--config", str(cfg), "--workers", "1"],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:  # today's launcher restarts forever
        raise AssertionError(f"the launcher kept restarting the worker: {exc.stderr!r}") from None
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    assert "worker slot 0 exited 5 times within 60s (last: status 3)" in out.stderr
    assert "giving up instead of restarting it forever" in out.stderr
    assert "listening on" not in out.stdout, "the port opened with no worker behind it"


@pytest.mark.parametrize(("workers", "launcher"), [(1, ""), (2, "min_workers = 2")])
def test_run_opens_the_port_only_after_min_workers_registered(
    tmp_path: Path, workers: int, launcher: str
) -> None:
    cfg, port, env = setup_case(tmp_path, "startup_apps:SlowStart", launcher)
    proc = Proc([*CLI, "run", "--config", str(cfg), "--workers", str(workers)], env=env)
    s = "s" if workers > 1 else ""
    try:
        proc.wait_line(
            rf"waiting for {workers} worker{s} to register before opening the Diameter port", 60
        )
        assert not port_open(port), "the port is open before the workers registered"
        m = proc.wait_line(
            rf"listening on 127\.0\.0\.1:(\d+); {workers} worker{s}; worker pool on (\S+);", 60
        )
        # The line comes only once they are registered: the status says so at once.
        doc = query(status_ep(m.group(2).rstrip(",")), 3.0)
        assert len(doc["pool"]["workers"]) == workers, doc["pool"]
        assert port_open(port)
        assert any(
            f"{workers} worker{s} registered: opening the Diameter listeners" in ln
            for ln in proc.lines
        )
    finally:
        proc.stop()


def test_gateway_alone_waits_for_a_worker_then_listens(tmp_path: Path) -> None:
    cfg, port, env = setup_case(tmp_path, "startup_apps:SlowStart")
    gw = Proc([*CLI, "gateway", "--config", str(cfg)], env=env)
    worker: Proc | None = None
    try:
        gw.wait_line(r"waiting for 1 worker to register before opening the Diameter port", 60)
        time.sleep(0.5)
        assert not port_open(port), "the port is open with no worker"
        worker = Proc([*CLI, "worker", "--config", str(cfg)], env=env)
        m = gw.wait_line(r"listening on 127\.0\.0\.1:(\d+); worker pool on (\S+);", 60)
        doc = query(status_ep(m.group(2).rstrip(",")), 3.0)
        assert len(doc["pool"]["workers"]) == 1, doc["pool"]
        assert port_open(port)
    finally:
        if worker is not None:
            worker.stop()
        gw.stop()


@pytest.mark.parametrize("cmd", [["gateway"], ["run", "--workers", "1"]])
def test_no_workers_in_time_is_a_clear_error_and_the_port_stays_shut(
    tmp_path: Path, cmd: list[str]
) -> None:
    # `run` with a worker that takes longer to set up than the gateway waits.
    cfg, port, env = setup_case(
        tmp_path, "startup_apps:SlowStart", "ready_timeout = 1.0", app_config="delay = 30"
    )
    t0 = time.monotonic()
    out = subprocess.run(
        [*CLI, *cmd, "--config", str(cfg)], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    assert "0 of 1 workers registered within 1s, so the Diameter port stays closed" in out.stderr
    assert "listening on" not in out.stdout
    assert time.monotonic() - t0 < 40, "the launcher waits for its workers to stop, boundedly"


# The uvloop switch --------------------------------------------------------------------------


def test_uvloop_switch_is_not_a_config_key() -> None:
    assert peer_loop.ENV_UVLOOP in NOT_CONFIG
    for value in ("0", "false", "NO", "off", "1"):
        load_config(None, env={"CHARGEGW_UVLOOP": value})  # no "unknown key"
    with pytest.raises(Exception, match="unknown key"):
        load_config(None, env={"CHARGEGW_UVLOOP_TYPO": "0"})  # other names still checked


def test_uvloop_switch_off_and_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEGW_UVLOOP", "0")
    assert peer_loop.want_uvloop() is False
    monkeypatch.setenv("CHARGEGW_UVLOOP", "Off")
    assert peer_loop.want_uvloop() is False
    monkeypatch.setenv("CHARGEGW_UVLOOP", "1")
    assert peer_loop.want_uvloop() is peer_loop.uvloop_available()


def _loop_in(cmd: list[str], tmp_path: Path, uvloop: str | None) -> str:
    """Run a gateway with the switch set (or not) and report which loop it runs on."""
    cfg, port, env = setup_case(tmp_path, "chargegw.workers.testapp:TestApp")
    if uvloop is not None:
        env["CHARGEGW_UVLOOP"] = uvloop
    proc = Proc([*CLI, *cmd, "--config", str(cfg)], env=env)
    try:
        proc.wait_line(r"listening on 127\.0\.0\.1:", 60)
        maps = Path(f"/proc/{proc.p.pid}/maps").read_text()
        return "uvloop" if "uvloop" in maps else "asyncio"
    finally:
        proc.stop()


def test_uvloop_switch_works_for_run(tmp_path: Path) -> None:
    run = ["run", "--workers", "1"]
    assert _loop_in(run, tmp_path / "off", "0") == "asyncio"
    if peer_loop.uvloop_available():
        assert _loop_in(run, tmp_path / "on", None) == "uvloop"


# Demo accounts ------------------------------------------------------------------------------


def _demo(config_file: str | None) -> bool:
    cfg = load_config(config_file, env={})
    gy = [a for a in cfg.applications if a.handler.endswith("charging.gy:CreditControlApp")]
    assert len(gy) == 1
    return load(GyConfig, "Gy", gy[0].config).demo.enabled


@pytest.mark.parametrize("name", ["docker.toml", "example.toml"])
def test_container_and_example_configs_have_no_demo_accounts(name: str) -> None:
    assert _demo(str(ROOT / "config" / name)) is False


def test_demo_accounts_stay_on_in_the_embedded_default() -> None:
    assert _demo(None) is True
    assert _demo(str(ROOT / "config" / "default.toml")) is True


def test_docker_config_serves_the_default_applications() -> None:
    docker = load_config(str(ROOT / "config" / "docker.toml"), env={})
    default = load_config(None, env={})
    assert [(a.app_id, a.handler, a.vendor_id) for a in docker.applications] == [
        (a.app_id, a.handler, a.vendor_id) for a in default.applications
    ]


def test_a_store_not_up_at_start_is_temporary_not_a_config_error(tmp_path: Path) -> None:
    """A worker whose store stays unavailable through `start_timeout` (here: its set-up lock
    held by another process) exits EX_TEMPFAIL, so the launcher restarts it with backoff;
    never EX_CONFIG, which stops the whole gateway as a bad config."""
    import fcntl

    from chargegw.process import EX_CONFIG, EX_TEMPFAIL

    data = tmp_path / "data"
    data.mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'data_dir = "{data}"\n'
        "[[applications]]\napp_id = 4\n"
        'handler = "chargegw.workers.charging.gy:CreditControlApp"\nvendor_id = 0\n'
        "[applications.config.store]\ntimeout = 0.2\nstart_timeout = 0.5\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEGW_")}
    fd = os.open(data / "charging.db.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        out = subprocess.run(
            [*CLI, "worker", "--config", str(cfg), "--gateway", f"ipc://{tmp_path}/gw.ipc"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        os.close(fd)
    assert out.returncode == EX_TEMPFAIL != EX_CONFIG, (out.returncode, out.stderr[-2000:])
    assert "not available yet" in out.stderr
