"""Config schema and loader: embedded defaults, example files, env overrides, error paths."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from chargegw.config import Config, ConfigError, load_config
from chargegw.config.schema import default_ipc_endpoint

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def test_embedded_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = load_config(None, env={})
    assert c.identity.origin_host == "gw.localdomain"
    assert c.identity.origin_host.count(".") >= 1
    assert c.identity.origin_realm == "localdomain"
    assert [(lst.address, lst.port, lst.transport) for lst in c.listen] == [
        ("127.0.0.1", 3868, "tcp")
    ]
    assert c.data_path == str(tmp_path / "data")
    assert c.pool_endpoints() == [f"ipc://{tmp_path}/data/gateway.ipc"]
    assert c.worker_gateways() == c.pool_endpoints()
    assert {(a.app_id, a.handler) for a in c.applications} == {
        (4, "chargegw.workers.charging.gy:CreditControlApp"),
        (3, "chargegw.workers.charging.rf:AccountingApp"),
        (16777302, "chargegw.workers.charging.sy:SpendingLimitApp"),
        (16777215, "chargegw.workers.testapp:TestApp"),
    }
    test_app = next(a for a in c.applications if a.app_id == 16777215)
    assert test_app.vendor_id == 999999
    assert next(a for a in c.applications if a.app_id == 3).is_acct


def test_default_toml_matches_embedded_defaults() -> None:
    from_file = load_config(str(CONFIG_DIR / "default.toml"), env={})
    assert msgspec.to_builtins(from_file) == msgspec.to_builtins(Config())


@pytest.mark.parametrize("name", ["default.toml", "example.toml", "docker.toml"])
def test_shipped_config_files_load(name: str) -> None:
    c = load_config(str(CONFIG_DIR / name), env={})
    assert c.applications


def test_example_file_contents_reach_the_schema() -> None:
    c = load_config(str(CONFIG_DIR / "example.toml"), env={})
    assert c.pool.bind == ["ipc:///run/chargegw/gateway.ipc", "tcp://0.0.0.0:5555"]
    assert [a.host for a in c.diameter.allow] == [
        "*.pgw.operator.example",
        "*.ims.operator.example",
    ]
    assert c.peers[0].connect and c.peers[0].address == "192.0.2.20"
    assert c.routes[0].app_id == 16777302


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[pool]\ndeadline = 'soon'\n", "pool.deadline: Expected `float`, got `str`"),
        ("[pool]\ncreditt = 5\n", "pool.creditt: unknown key"),
        (
            "[pool]\nheartbeat_timeout = 0.5\n",
            "pool.heartbeat_timeout: must be greater than heartbeat_interval",
        ),
        ("[identity]\norigin_host = 'gw'\n", "identity.origin_host: must be a FQDN"),
        ("[[listen]]\nport = 70000\n", "listen[0].port: 70000 is not a port number"),
        ("[[listen]]\ntransport = 'quic'\n", "listen[0].transport: Invalid enum value 'quic'"),
        (
            "[[applications]]\napp_id = 4\nhandler = 'nocolon'\n",
            "applications[0].handler: 'nocolon' is not 'module:attr'",
        ),
        (
            "[[applications]]\napp_id = 4\nhandler = 'a:b'\n[[applications]]\napp_id = 4\nhandler = 'c:d'\n",
            "applications[1].app_id: 4 is listed twice",
        ),
        (
            "[[peers]]\nname = 'a.b'\n[[peers]]\nname = 'a.b'\n",
            "peers[1].name: 'a.b' is listed twice",
        ),
        (
            "[pool]\nbind = ['udp://x:1']\n",
            "pool.bind[0]: 'udp://x:1' is not a tcp:// or ipc:// endpoint",
        ),
        (
            "[[routes]]\nrealm = 'x.example'\npeers = []\n",
            "routes[0].peers: must name at least one peer",
        ),
        ("bogus = 1\n", "bogus: unknown key"),
        (
            "[[listen]]\naddress = '0.0.0.0'\n",
            "listen[0].address: '0.0.0.0' is not a loopback address and no peer is allowlisted",
        ),
        (
            "[[listen]]\naddress = '127.0.0.1'\n[[listen]]\naddress = '192.0.2.1'\n",
            "listen[1].address: '192.0.2.1' is not a loopback address",
        ),
        (
            "[[listen]]\ntransport = 'tls'\n[listen.tls]\ncert = 'c.pem'\nkey = 'k.pem'\n",
            "listen[0].tls.ca: verify_peer = true needs a CA file",
        ),
        (
            "[[peers]]\nname = 'a.b'\nsource = ['10.0.0.0/33']\n",
            "peers[0].source[0]: '10.0.0.0/33' is not an address, network or host",
        ),
        ("[diameter]\nmax_pre_cer_per_source = 0\n", "diameter.max_pre_cer_per_source: must be"),
    ],
)
def test_bad_config_names_the_key_path(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    msg = str(exc.value)
    assert expected in msg
    assert path in msg


@pytest.mark.parametrize(
    "text",
    [
        "[diameter]\nallow_any = true\n",
        "[[diameter.allow]]\nhost = '*.pgw.example'\n",
        "[[peers]]\nname = 'pgw.example'\naddress = '192.0.2.7'\n",
    ],
)
def test_public_listener_starts_with_an_allowlist_or_allow_any(tmp_path: Path, text: str) -> None:
    c = load_config(write(tmp_path, "[[listen]]\naddress = '0.0.0.0'\n" + text), env={})
    assert c.listen[0].address == "0.0.0.0"


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.toml"), env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[pool\n"), env={})


def test_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[pool]\ndeadline = 3.0\n[[listen]]\nport = 4000\n")
    env = {
        "CHARGEGW_POOL__DEADLINE": "2.5",
        "CHARGEGW_LISTEN__0__PORT": "4001",
        "CHARGEGW_LISTEN__1__ADDRESS": "::1",
        "CHARGEGW_DATA_DIR": str(tmp_path / "d"),
        "CHARGEGW_WORKER__GATEWAYS": "tcp://a:1, tcp://b:2",
        "CHARGEGW_POOL__BIND": '["tcp://0.0.0.0:5555"]',
        "CHARGEGW_POOL__CURVE_SECRET_KEY": "k/gateway.key_secret",
        "CHARGEGW_POOL__CURVE_WORKERS": "k/workers",
        "CHARGEGW_WORKER__CURVE_SECRET_KEY": "k/worker.key_secret",
        "CHARGEGW_WORKER__CURVE_SERVER_KEY": "k/gateway.key",
        "CHARGEGW_IDENTITY__ORIGIN_HOST": "gw1.example.net",
        "chargegw_logging__level": "debug",
        "CHARGEGW_WORKER__ID": "007",  # a str field keeps digits as written
        "OTHER": "ignored",
    }
    c = load_config(path, env=env)
    assert c.pool.deadline == 2.5
    assert [(lst.address, lst.port) for lst in c.listen] == [("127.0.0.1", 4001), ("::1", 3868)]
    assert c.data_path == str(tmp_path / "d")
    assert c.worker.gateways == ["tcp://a:1", "tcp://b:2"]
    assert c.pool.bind == ["tcp://0.0.0.0:5555"]
    assert c.identity.origin_host == "gw1.example.net"
    assert c.logging.level == "debug"
    assert c.worker.id == "007"
    assert c.worker_gateways() == ["tcp://a:1", "tcp://b:2"]


def test_env_config_file_and_env_errors_name_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[pool]\ndeadline = 3.0\n")
    assert load_config(None, env={"CHARGEGW_CONFIG": path}).pool.deadline == 3.0
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={"CHARGEGW_POOL__DEADLINE": "abc"})
    assert "pool.deadline (from CHARGEGW_POOL__DEADLINE='abc')" in str(exc.value)
    with pytest.raises(ConfigError, match="pool.nope .*unknown key"):
        load_config(None, env={"CHARGEGW_POOL__NOPE": "1"})
    with pytest.raises(ConfigError, match=r"listen\[3\].*skips entries"):
        load_config(None, env={"CHARGEGW_LISTEN__3__PORT": "1"})


def test_worker_gateways_default_follows_bind(tmp_path: Path) -> None:
    c = load_config(
        write(
            tmp_path,
            "[pool]\nbind = ['tcp://0.0.0.0:5555', 'tcp://*:5556']\n"
            "curve_secret_key = 'k/gw.key_secret'\ncurve_workers = 'k/workers'\n",
        ),
        env={},
    )
    assert c.worker_gateways() == ["tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556"]


def test_long_data_dir_gets_a_short_ipc_path() -> None:
    long_dir = "/tmp/" + "x" * 150
    ep = default_ipc_endpoint(long_dir)
    assert ep.startswith("ipc://") and len(ep) - len("ipc://") <= 100
    assert default_ipc_endpoint(long_dir) == ep  # stable: gateway and workers agree
    # in a private directory of this user's (made mode 0700 when the socket is bound)
    assert os.path.basename(os.path.dirname(ep)).startswith(f"chargegw-{os.getuid()}-")


def test_tcp_pool_without_curve_keys_is_refused_naming_the_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pool\.curve_secret_key.*pool\.curve_workers"):
        load_config(write(tmp_path, "[pool]\nbind = ['tcp://0.0.0.0:5555']\n"), env={})
    with pytest.raises(ConfigError, match=r"worker\.curve_secret_key.*worker\.curve_server_key"):
        load_config(write(tmp_path, "[worker]\ngateways = ['tcp://gw:5555']\n"), env={})
    with pytest.raises(ConfigError, match=r"pool\.status_bind: must be an ipc://"):
        load_config(write(tmp_path, "[pool]\nstatus_bind = 'tcp://0.0.0.0:1'\n"), env={})
    # ipc stays keyless
    assert load_config(write(tmp_path, "[pool]\nbind = ['ipc:///tmp/x.ipc']\n"), env={})
