"""What `chargegw gateway` and `chargegw run` share beyond process set-up (that is
chargegw.process): the SIGHUP reloader, the startup line and loading the config."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from chargegw.config import Config, ConfigError, load_config
from chargegw.process import set_level

log = logging.getLogger("chargegw.gateway")


def reloader(
    path: str | None,
    apply: Callable[[Config], None],
    *,
    initial: Config | None = None,
    on_level: Callable[[str], None] | None = None,
) -> Callable[[], None]:
    """A SIGHUP handler: re-read the file (and environment); a bad config is logged and the
    running one kept. Once `apply` has taken the new config, a changed `logging.level`
    (against `initial`, then each reload) applies at once to this process and is handed
    to `on_level` (the supervisor's workers). An unchanged level keeps a `--log-level`."""
    last = {"level": initial.logging.level if initial is not None else None}

    def reload() -> None:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            log.error("SIGHUP: keeping the running config: %s", exc)
            return
        try:
            apply(cfg)
        except Exception as exc:
            log.error("SIGHUP: keeping the running config: applying it failed: %s", exc)
            log.debug("SIGHUP: applying the new config failed", exc_info=True)
            return
        level = cfg.logging.level
        if level != last["level"]:
            set_level(level)
            last["level"] = level
            if on_level is not None:
                on_level(level)
            log.warning("SIGHUP: log level is now %s", level)
        log.info(
            "SIGHUP: peers, routes, allowlist, listeners and TLS files reloaded from %s",
            path or "defaults/environment",
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
