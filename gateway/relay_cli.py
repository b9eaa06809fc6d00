"""`chargegw relay --config F`: a Diameter relay, proxy or redirect agent (RFC 6733 2.8),
no workers.

The Node alone, with `peer.relay`'s agent on it: requests that are not this node's go to
an upstream peer by `[agent] routes` (then `[[routes]]`, the peers' realms and
`diameter.default_route`); answers come back as the upstream sent them (a redirect agent
answers 3006 naming those peers instead). Nothing is handed to
a worker, so there is no pool and no `launcher.min_workers` wait: the listeners open at once.
`[[applications]]` is not served here; in proxy mode an application listed there with a
`vendor_id` is advertised as a Vendor-Specific-Application-Id, as the gateway would.
SIGHUP reloads peers, routes and the allowlist (the agent's mode and apps need a restart).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from chargegw.codec.constants import APP_ACCOUNTING
from chargegw.config import Config
from chargegw.gateway.frontend import build_node_config
from chargegw.gateway.service import load_or_exit, reloader
from chargegw.peer.config import NodeConfig, RouteConfig, VendorApp
from chargegw.peer.relay import AgentConfig, Mode, RelayAgent, advertised
from chargegw.process import install_signals, run_loop, setup_logging

log = logging.getLogger("chargegw.relay")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", help="TOML config file with an [agent] table (or $CHARGEGW_CONFIG)"
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="overrides logging.level"
    )


def agent_config(config: Config) -> AgentConfig:
    a = config.agent
    mode: Mode = "proxy" if a.mode == "proxy" else "redirect" if a.mode == "redirect" else "relay"
    return AgentConfig(
        mode,
        frozenset(a.apps),
        max_pending=a.max_pending,
        request_timeout=a.request_timeout or None,
        redirect_usage=a.redirect_usage,
        redirect_cache_time=a.redirect_cache_time,
    )


def agent_node_config(config: Config) -> NodeConfig:
    """The Node's settings for an agent: the gateway's, with the agent's applications in
    CER/CEA (Relay, or the proxied ones) instead of the workers', and its routes first."""
    nc = build_node_config(config)
    relay, apps = advertised(agent_config(config))
    vendors = {app.app_id: app.vendor_id for app in config.applications if app.vendor_id}
    nc.relay = relay
    nc.auth_apps = [a for a in apps if a != APP_ACCOUNTING and a not in vendors]
    nc.acct_apps = [a for a in apps if a == APP_ACCOUNTING]
    nc.vendor_specific_apps = [VendorApp(vendors[a], a) for a in apps if a in vendors]
    nc.supported_vendors = sorted(
        set(config.diameter.supported_vendors) | {vendors[a] for a in apps if a in vendors}
    )
    agent_routes = [
        RouteConfig(realm=r.realm, peers=list(r.peers), app_id=r.app_id or None)
        for r in config.agent.routes
    ]
    nc.routes = agent_routes + list(nc.routes)
    return nc


def run(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    if config is None:
        return 2
    if config.agent.mode not in ("relay", "proxy", "redirect"):
        print(
            'chargegw relay: the config has no agent: set [agent] mode = "relay", "proxy"'
            ' or "redirect"'
            " (and [[agent.routes]] or [[routes]] for the upstream peers)",
            file=sys.stderr,
        )
        return 2
    setup_logging(args.log_level or config.logging.level, config.logging, role="relay")
    return run_loop(_main(args, config))


async def _main(args: argparse.Namespace, config: Config) -> int:
    from chargegw.peer.node import Node

    node = Node(agent_node_config(config))
    agent = RelayAgent(agent_config(config))
    node.set_agent(agent)

    def apply(new: Config) -> None:
        node.update_config(agent_node_config(new))

    stop = asyncio.Event()
    install_signals(stop, reloader(args.config, apply))
    try:
        await node.start()
    except OSError as exc:
        print(f"chargegw relay: cannot start: {exc}", file=sys.stderr)
        await node.stop(graceful=False)
        return 1
    listen = ", ".join(f"{h}:{p}" for _, h, p in node.listen_addresses) or "(nothing)"
    upstream = ", ".join(p.name for p in config.peers) or "(none configured)"
    print(
        f"chargegw relay: {config.identity.origin_host} (realm {config.identity.origin_realm})"
        f" as {agent.config.mode}; listening on {listen}; peers {upstream}",
        flush=True,
    )
    await stop.wait()
    log.info("stopping: draining forwarded requests, then DPR to peers")
    await node.stop()
    log.info("stopped; agent %s", " ".join(f"{k}={v}" for k, v in agent.stats.items()))
    return 0
