"""`chargegw run [--config F] [--workers N]`: the gateway plus N supervised workers.

The gateway runs in this process; workers are child processes (`chargegw worker`) with
ids this launcher assigns, so when one exits the gateway fails its requests over at once
instead of waiting for the heartbeat timeout. A crashed worker is restarted with
exponential backoff (reset once it has stayed up `launcher.stable_after` seconds); a slot
that exits `launcher.crash_limit` times within `launcher.crash_window` seconds stops the
launcher with an error instead of restarting forever.

The Diameter listeners open only once `launcher.min_workers` workers have registered, so a
peer never meets an open port with no worker behind it; if they do not come within
`launcher.ready_timeout` seconds, the launcher stops with an error.

Shutdown (SIGTERM/SIGINT): the gateway drains and sends DPR, then the workers get SIGTERM
(they finish what they hold and say goodbye), then SIGKILL after a bound.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import secrets
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

import zmq

from chargegw.config import Config
from chargegw.gateway.service import (
    install_signals,
    load_or_exit,
    log,
    reloader,
    run_loop,
    setup_logging,
    startup_line,
)
from chargegw.workers.runtime import EX_CONFIG

WORKER_STOP_TIMEOUT = 10.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", help="TOML config file (default: embedded defaults, or $CHARGEGW_CONFIG)"
    )
    parser.add_argument(
        "--workers",
        "-w",
        type=int,
        help="worker processes (default: launcher.workers, 0 = one per core)",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="overrides logging.level"
    )
    parser.add_argument(
        "--forward", choices=["raw", "decoded"], help="overrides pool.forward (benchmarking)"
    )


def check_handlers(config: Config) -> str | None:
    """Import every handler now, so a typo fails at start and not in a restart loop."""
    for i, app in enumerate(config.applications):
        mod_name, _, attr = app.handler.partition(":")
        try:
            obj: Any = importlib.import_module(mod_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            return f"config error: applications[{i}].handler: cannot load {app.handler!r}: {type(exc).__name__}: {exc}"
    return None


def run(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    if config is None:
        return 2
    if args.workers is not None and args.workers < 0:
        print("chargegw run: --workers must be >= 0", file=sys.stderr)
        return 2
    problem = check_handlers(config)
    if problem:
        print(f"chargegw: {problem}", file=sys.stderr)
        return 2
    level = args.log_level or config.logging.level
    setup_logging(level)
    n = args.workers if args.workers is not None else config.launcher.workers
    n = n or os.cpu_count() or 1
    return run_loop(_main(args, config, n, level))


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
        self._tag = secrets.token_hex(2)

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
            wid = f"{socket.gethostname()}-{self._tag}-w{slot}.{incarnation}"
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
                last = _describe_rc(rc)
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

    async def stop(self, timeout: float = WORKER_STOP_TIMEOUT) -> None:
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

    def status(self) -> dict[str, Any]:
        return {
            "launcher": {
                "workers": self.n,
                "running": sorted(p.pid for p in self.procs.values()),
                "restarts": self.restarts,
            }
        }


def _describe_rc(rc: int | None) -> str:
    if rc is not None and rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"status {rc}"


async def _main(args: argparse.Namespace, config: Config, n: int, level: str) -> int:
    from chargegw.gateway.frontend import Gateway, NotReady

    gw = Gateway(config, forward=args.forward)
    try:
        gw.start_pool()
    except (OSError, zmq.ZMQError) as exc:
        print(f"chargegw run: cannot start the gateway: {exc}", file=sys.stderr)
        return 1
    gateways = [_connectable(ep) for ep in (config.pool_endpoints()[:-1] + gw.pool.bound[-1:])]
    sup = Supervisor(
        config,
        n,
        config_path=args.config,
        gateways=gateways,
        level=level,
        on_exit=lambda ident, rc: gw.pool.drop_worker(
            ident, f"process exited ({_describe_rc(rc)})"
        ),
    )
    extra = gw.pool.status_extra

    def status_extra() -> dict[str, Any]:
        doc = extra() if extra is not None else {}
        doc.update(sup.status())
        return doc

    gw.pool.status_extra = status_extra
    stop = asyncio.Event()
    sup.on_fatal = stop.set
    sup.start()
    install_signals(stop, reloader(args.config, gw.reload))
    # The Diameter port opens only once the workers are there (or never: a crash loop,
    # an application config error, a signal or the ready timeout stops us first).
    failure: str | None = None
    lc = config.launcher
    if lc.min_workers > n:
        log.warning(
            "launcher.min_workers is %d but this launcher starts %d: the rest must come from "
            "other hosts within launcher.ready_timeout (%.0fs)",
            lc.min_workers,
            n,
            lc.ready_timeout,
        )
    try:
        opened = await gw.open(
            min_workers=lc.min_workers, ready_timeout=lc.ready_timeout, abort=stop
        )
    except (OSError, zmq.ZMQError) as exc:
        failure, opened = f"cannot start the gateway: {exc}", False
    except NotReady as exc:
        failure, opened = str(exc), False
    if opened:
        print(startup_line(gw, config, workers=n), flush=True)
        await stop.wait()
    log.info("stopping: draining in-flight requests, DPR to peers, then the workers")
    try:
        await gw.stop(drain_timeout=None if opened else 0.0)
    finally:
        await sup.stop()
    log.info("stopped")
    if sup.config_error:
        return 2
    failure = sup.crash_loop or failure
    if failure:
        print(f"chargegw run: {failure}", file=sys.stderr)
        return 1
    return 0


def _connectable(ep: str) -> str:
    for wild in ("tcp://0.0.0.0:", "tcp://*:"):
        if ep.startswith(wild):
            return "tcp://127.0.0.1:" + ep[len(wild) :]
    return ep
