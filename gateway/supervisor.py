"""The launcher's supervisor: keeps N worker processes (`chargegw worker`) running.

Workers get ids this supervisor assigns, so that when one exits the pool fails its
requests over at once (`on_exit`) instead of waiting for the heartbeat timeout. A crashed
worker is restarted with exponential backoff (reset once it has stayed up
`launcher.stable_after` seconds); a slot that exits `launcher.crash_limit` times within
`launcher.crash_window` seconds stops the launcher instead of restarting forever; a worker
that exits EX_CONFIG stops it at once. Workers are child processes started by command
line: this module imports nothing of chargegw.workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

from chargegw.config import Config
from chargegw.process import EX_CONFIG

WORKER_STOP_TIMEOUT = 10.0  # the most a worker gets to stop after SIGTERM

log = logging.getLogger("chargegw.gateway")


class Supervisor:
    """Keeps `n` worker processes running; tells the pool when one exits."""

    def __init__(
        self,
        config: Config,
        n: int,
        *,
        config_path: str | None,
        gateways: list[str],
        level: str,
        on_exit: Any,
    ) -> None:
        self.config = config
        self.n = n
        self.config_path = os.path.abspath(config_path) if config_path else None
        self.gateways = gateways
        self.level = level
        self.on_exit = on_exit
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self.stopping = False
        self.config_error = False
        self.crash_loop: str | None = None  # why the launcher gave up, when it did
        self.on_fatal: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for slot in range(self.n):
            self._tasks.append(asyncio.get_running_loop().create_task(self._keep(slot)))

    def _argv(self, wid: str) -> list[str]:
        argv = [
            sys.executable,
            "-P",  # the working directory must not shadow the installed package
            "-m",
            "chargegw.cli",
            "worker",
            "--id",
            wid,
            "--parent-pid",
            str(os.getpid()),
            "--log-level",
            self.level,
        ]
        if self.config_path:
            argv += ["--config", self.config_path]
        if not self.config.worker.gateways:
            for ep in self.gateways:
                argv += ["--gateway", ep]
        return argv

    async def _keep(self, slot: int) -> None:
        lc = self.config.launcher
        backoff = lc.restart_backoff_min
        incarnation = 0
        exits: deque[float] = deque()  # when this slot's recent workers exited
        while not self.stopping:
            incarnation += 1
            # Stable per slot (the incarnation aside): a restarted worker keeps its shards and
            # its store owner file (chargegw/sharding.py owner_name).
            wid = f"{socket.gethostname()}-w{slot}.{incarnation}"
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self._argv(wid), start_new_session=True
                )
            except OSError as exc:
                log.error("cannot start worker %d: %s", slot, exc)
                proc = None
            last = "cannot start"
            started = time.monotonic()
            if proc is not None:
                self.procs[slot] = proc
                rc = await proc.wait()
                self.procs.pop(slot, None)
                self.on_exit(wid.encode(), rc)
                if self.stopping:
                    return
                if rc == EX_CONFIG:
                    # An application cannot be set up with this config: restarting will
                    # not help. Stop everything (the worker printed why).
                    log.error("worker %s: application config error; stopping", wid)
                    self.config_error = True
                    if self.on_fatal is not None:
                        self.on_fatal()
                    return
                last = describe_rc(rc)
                log.warning("worker %s exited with %s", wid, last)
            if self._crash_loop(slot, exits, last):
                return
            if time.monotonic() - started >= lc.stable_after:
                backoff = lc.restart_backoff_min
            self.restarts += 1
            log.info("restarting worker slot %d in %.1fs", slot, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, lc.restart_backoff_max)

    def _crash_loop(self, slot: int, exits: deque[float], last: str) -> bool:
        """Note an exit; True (and the launcher told to stop) when the slot has exited
        `crash_limit` times within `crash_window` seconds: restarting a worker that cannot
        stay up only hides the fault while every request gets 3002."""
        lc = self.config.launcher
        if not lc.crash_limit:
            return False
        now = time.monotonic()
        exits.append(now)
        while exits and now - exits[0] > lc.crash_window:
            exits.popleft()
        if len(exits) < lc.crash_limit:
            return False
        self.crash_loop = (
            f"worker slot {slot} exited {len(exits)} times within {lc.crash_window:.0f}s "
            f"(last: {last}); giving up instead of restarting it forever. The worker's own "
            "output above says why (launcher.crash_limit, launcher.crash_window)"
        )
        log.error("%s", self.crash_loop)
        if self.on_fatal is not None:
            self.on_fatal()
        return True

    async def stop(self, timeout: float | None = None) -> None:
        """SIGTERM every worker, SIGKILL what is left after `timeout`: by default
        `pool.drain_timeout` (at least 1 s, at most WORKER_STOP_TIMEOUT). The gateway has
        drained for that long already, and closed its pool: what a worker still holds has
        no one to answer to, so the shutdown as a whole stays bounded by the drain."""
        if timeout is None:
            timeout = min(WORKER_STOP_TIMEOUT, max(1.0, self.config.pool.drain_timeout))
        self.stopping = True
        procs = list(self.procs.values())
        for p in procs:
            if p.returncode is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        if procs:
            _done, pending = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in procs], timeout=timeout
            )
            for p in procs:
                if p.returncode is None:
                    log.warning("worker pid %d did not stop in %.0fs: killing it", p.pid, timeout)
                    try:
                        p.kill()
                    except ProcessLookupError:
                        pass
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def set_level(self, level: str) -> None:
        """The log level for workers started from now on (SIGHUP's `logging.level`).
        Running workers take no SIGHUP (its default action would end them): the pool tells
        them in a LogLevel message (PoolServer.set_log_level)."""
        self.level = level

    def status(self) -> dict[str, Any]:
        return {
            "launcher": {
                "workers": self.n,
                "running": sorted(p.pid for p in self.procs.values()),
                "restarts": self.restarts,
            }
        }


def describe_rc(rc: int | None) -> str:
    if rc is not None and rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"status {rc}"
