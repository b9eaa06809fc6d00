"""Fixtures shared by the test files: one way to start and stop `chargegw run`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chargegw.workers.charging.testing import free_port

CLI = [sys.executable, "-m", "chargegw.cli"]


@dataclass
class RunningGateway:
    proc: subprocess.Popen[bytes]
    port: int
    cfg: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def children(self) -> list[int]:
        """The launcher's child processes: its workers."""
        return _children(self.proc.pid)


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@contextlib.contextmanager
def running_gateway(
    tmp_path: Path, workers: int = 1, extra: str = "", timeout: float = 60.0
) -> Iterator[RunningGateway]:
    """`chargegw run` on a fresh data dir and a free port (`extra` is appended to its config),
    yielded once every worker registered and the Diameter port accepts; stopped with SIGTERM,
    and any worker it left behind killed."""
    port = free_port()
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[[listen]]\naddress = "127.0.0.1"\nport = {port}\n'
        + extra
    )
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*CLI, "run", "-c", str(cfg), "--workers", str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        gw = RunningGateway(proc, port, cfg, log_path)
        try:
            deadline = time.monotonic() + timeout
            # every worker registered, and the Diameter port open (it opens after the first).
            while gw.output().count("registered (pid") < workers or (
                "listening on" not in gw.output()
            ):
                assert proc.poll() is None, gw.output()
                assert time.monotonic() < deadline, gw.output()
                time.sleep(0.1)
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
            yield gw
        finally:
            kids = _children(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for k in kids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(k, signal.SIGKILL)


@pytest.fixture
def chargegw_run() -> Callable[..., contextlib.AbstractContextManager[RunningGateway]]:
    """`with chargegw_run(tmp_path, workers=2) as gw:` (see `running_gateway`)."""
    return running_gateway
