"""Process plumbing shared by `chargegw gateway` and `chargegw run`: logging, the event
loop, signals (SIGTERM/SIGINT stop, SIGHUP reloads) and the startup line."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from chargegw.config import Config, ConfigError, load_config
from chargegw.peer import loop as peer_loop

log = logging.getLogger("chargegw.gateway")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def run_loop(coro: Coroutine[Any, Any, int]) -> int:
    """Run on the peer layer's loop choice: uvloop when installed, unless CHARGEGW_UVLOOP=0."""
    return peer_loop.run(coro)


def install_signals(stop: asyncio.Event, reload: Callable[[], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)


def reloader(path: str | None, apply: Callable[[Config], None]) -> Callable[[], None]:
    """A SIGHUP handler: re-read the file (and environment); a bad config is logged and the
    running one kept."""

    def reload() -> None:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            log.error("SIGHUP: keeping the running config: %s", exc)
            return
        try:
            apply(cfg)
        except Exception:
            log.exception("SIGHUP: applying the new config failed")
            return
        log.info(
            "SIGHUP: peers, routes and allowlist reloaded from %s", path or "defaults/environment"
        )

    return reload


def startup_line(gw: Any, config: Config, *, workers: int | None = None) -> str:
    listen = ", ".join(f"{h}:{p}" for h, p in gw.listen_addresses()) or "(nothing)"
    parts = [
        f"chargegw: {config.identity.origin_host} (realm {config.identity.origin_realm})",
        f"listening on {listen}",
    ]
    if workers is not None:
        parts.append(f"{workers} worker{'s' if workers != 1 else ''}")
    parts.append("worker pool on " + ", ".join(gw.pool.bound or config.pool_endpoints()))
    parts.append(f"apps {', '.join(str(a) for a in gw.app_ids)}")
    parts.append(f"data dir {config.data_path}")
    return "; ".join(parts)


def load_or_exit(path: str | None) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"chargegw: {exc}", file=sys.stderr)
        return None
