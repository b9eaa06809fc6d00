"""The [agent] table: validation with clear errors, what `chargegw relay` builds from it
(Relay or the proxied applications in CER/CEA, the agent's routes first), and the command
refusing a config without an agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chargegw.codec.constants import APP_CREDIT_CONTROL, APP_RELAY
from chargegw.config import ConfigError
from chargegw.config.loader import convert
from chargegw.config.schema import APP_TEST as TEST_APP
from chargegw.config.schema import VENDOR_FD_TEST as TEST_VENDOR
from chargegw.gateway.relay_cli import agent_config, agent_node_config
from chargegw.peer.capabilities import build_cer, parse_capabilities

PEER = {"name": "ocs.example.net", "realm": "example.net", "address": "127.0.0.1"}


def load(agent: dict[str, Any], **extra: Any) -> Any:
    return convert({"agent": agent, "peers": [PEER], **extra})


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ({"mode": "forward"}, "agent.mode: must be 'relay', 'proxy' or 'redirect'"),
        ({"mode": "redirect", "apps": [4]}, "agent.apps: a redirect agent takes every"),
        ({"mode": "redirect", "redirect_usage": 9}, "agent.redirect_usage: must be 0"),
        ({"mode": "redirect", "redirect_usage": 1}, "agent.redirect_cache_time: must be > 0"),
        ({"mode": "proxy"}, "agent.apps: a proxy must list the application ids"),
        ({"mode": "relay", "apps": [4]}, "agent.apps: a relay agent takes every application"),
        ({"mode": "proxy", "apps": [0xFFFFFFFF]}, "is not an application id"),
        ({"mode": "relay", "max_pending": 0}, "agent.max_pending: must be >= 1"),
        ({"mode": "relay", "request_timeout": -1.0}, "agent.request_timeout: must be >= 0"),
        (
            {
                "mode": "proxy",
                "apps": [4],
                "routes": [{"realm": "x", "peers": [PEER["name"]], "app_id": 5}],
            },
            "is not among the proxied apps",
        ),
        (
            {"mode": "relay", "routes": [{"realm": "x", "peers": ["nobody.example.net"]}]},
            "agent.routes[0].peers[0]: 'nobody.example.net' is not a [[peers]] name",
        ),
        ({"mode": "relay", "routes": [{"realm": "x", "peers": []}]}, "must name at least one peer"),
    ],
)
def test_bad_agent_tables_are_refused_with_the_key(agent: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(agent)
    assert message in str(info.value)


def test_relay_mode_advertises_relay_and_none_of_the_workers_applications() -> None:
    cfg = load(
        {"mode": "relay", "routes": [{"realm": "example.net", "peers": [PEER["name"]]}]},
        routes=[{"realm": "other.net", "peers": [PEER["name"]]}],
    )
    nc = agent_node_config(cfg)
    caps = parse_capabilities(build_cer(nc))
    assert caps.relay and caps.app_ids() == {APP_RELAY}
    assert [r.realm for r in nc.routes] == ["example.net", "other.net"]  # the agent's first
    assert agent_config(cfg).mode == "relay"


def test_proxy_mode_advertises_the_proxied_applications_with_their_vendor() -> None:
    cfg = load({"mode": "proxy", "apps": [APP_CREDIT_CONTROL, TEST_APP], "max_pending": 7})
    nc = agent_node_config(cfg)
    caps = parse_capabilities(build_cer(nc))
    assert not caps.relay
    assert caps.auth_apps == {APP_CREDIT_CONTROL}
    assert [(v.vendor_id, v.app_id) for v in caps.vendor_apps] == [(TEST_VENDOR, TEST_APP)]
    ac = agent_config(cfg)
    assert ac.forwards(TEST_APP) and not ac.forwards(3) and ac.max_pending == 7


def test_chargegw_relay_refuses_a_config_without_an_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chargegw.cli import main

    path = tmp_path / "c.toml"
    path.write_text('[identity]\norigin_host = "relay.example.net"\n')
    assert main(["relay", "--config", str(path)]) == 2
    assert 'set [agent] mode = "relay", "proxy" or "redirect"' in capsys.readouterr().err
