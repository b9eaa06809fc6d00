"""RFC 6733 4.3.1 DiameterURIs: the parser, its errors, PeerConfigs from URIs, and
`[[peers]] uri = ...` in the config (filling address/port/transport, refusing conflicts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargegw.config import ConfigError, load_config
from chargegw.gateway.frontend import build_node_config
from chargegw.peer import DiameterURI, DiameterURIError, parse_diameter_uri, peer_from_uri


@pytest.mark.parametrize(
    ("text", "host", "port", "effective", "transport", "protocol", "secure"),
    [
        ("aaa://peer.example.net", "peer.example.net", None, 3868, "tcp", "diameter", False),
        ("aaa://peer.example.net:3869;transport=tcp", "peer.example.net", 3869, 3869, "tcp",
         "diameter", False),
        ("aaa://dra2.gy;transport=sctp", "dra2.gy", None, 3868, "sctp", "diameter", False),
        ("aaas://peer.example.net", "peer.example.net", None, 5658, "tcp", "diameter", True),
        ("AAA://Peer.Example.NET:1;Transport=TCP;Protocol=Diameter", "Peer.Example.NET", 1, 1,
         "tcp", "diameter", False),
        ("aaa://h.example;protocol=diameter;transport=sctp", "h.example", None, 3868, "sctp",
         "diameter", False),
        ("aaa://192.0.2.7:3870", "192.0.2.7", 3870, 3870, "tcp", "diameter", False),
        ("aaa://[2001:db8::1]:3871;transport=tcp", "2001:db8::1", 3871, 3871, "tcp", "diameter",
         False),
        ("aaa://[::1]", "::1", None, 3868, "tcp", "diameter", False),
        ("aaa://host.example;transport=udp;protocol=radius", "host.example", None, 3868, "udp",
         "radius", False),
    ],
)  # fmt: skip
def test_parse(
    text: str,
    host: str,
    port: int | None,
    effective: int,
    transport: str,
    protocol: str,
    secure: bool,
) -> None:
    uri = parse_diameter_uri(text)
    assert (uri.host, uri.port, uri.effective_port) == (host, port, effective)
    assert (uri.transport, uri.protocol, uri.secure) == (transport, protocol, secure)
    assert parse_diameter_uri(str(uri)) == uri  # the canonical form reads back the same


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no scheme"),
        ("peer.example.net:3868", "no scheme"),
        ("http://peer.example.net", "the scheme is 'http'"),
        ("aaa://", "no host"),
        ("aaa://:3868", "no host"),
        ("aaa://peer.example.net:0", "port '0' is not a number from 1 to 65535"),
        ("aaa://peer.example.net:65536", "port '65536'"),
        ("aaa://peer.example.net:", "port ''"),
        ("aaa://peer.example.net:38a", "port '38a'"),
        ("aaa://peer.example.net:-1", "port '-1'"),
        ("aaa://::1", "must be written in brackets"),
        ("aaa://[::1", "not a bracketed IPv6 address"),
        ("aaa://[192.0.2.1]", "not a bracketed IPv6 address"),
        ("aaa://[::1]x", "unexpected 'x'"),
        ("aaa://999.1.1.1", "is not an IPv4 address"),
        ("aaa://-bad.example", "is not a host name"),
        ("aaa://bad_name.example", "is not a host name"),
        ("aaa://a..example", "is not a host name"),
        ("aaa://peer.example.", "is not a host name"),
        ("aaa://peer.example.net;transport=quic", "transport=quic is not one of tcp, sctp, udp"),
        ("aaa://peer.example.net;protocol=http", "protocol=http is not one of"),
        ("aaa://peer.example.net;transport=tcp;transport=sctp", "transport is given twice"),
        ("aaa://peer.example.net;port=3868", "unknown parameter 'port'"),
        ("aaa://peer.example.net;transport", "'transport' is not name=value"),
        ("aaa://peer.example.net;", "'' is not name=value"),
        ("aaa://peer.example.net; transport=tcp", "white space"),
        ("aaa://pëer.example", "non-ASCII"),
    ],
)
def test_bad_uris_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(DiameterURIError) as exc:
        parse_diameter_uri(text)
    assert why in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_what_chargegw_dials() -> None:
    def dial(text: str) -> str:
        return parse_diameter_uri(text).peer_transport

    assert dial("aaa://p.example") == "tcp"
    assert dial("aaa://p.example;transport=sctp") == "sctp"
    assert dial("aaas://p.example;transport=tcp") == "tls"
    for text, why in [
        ("aaas://p.example;transport=sctp", "DTLS/SCTP"),
        ("aaa://p.example;transport=udp", "transport=udp is not allowed"),
        ("aaa://p.example;protocol=radius", "not a Diameter peer"),
    ]:
        with pytest.raises(DiameterURIError, match=why):
            dial(text)


def test_peer_from_uri() -> None:
    pc = peer_from_uri("aaa://dra1.gy:3870;transport=tcp", realm="gy.example", connect=False)
    assert (pc.name, pc.host, pc.port, pc.transport) == ("dra1.gy", "dra1.gy", 3870, "tcp")
    assert pc.realm == "gy.example" and pc.connect is False
    tls = peer_from_uri(DiameterURI("aaas", "ocs.example", None))
    assert (tls.transport, tls.effective_port) == ("tls", 5658)
    named = peer_from_uri("aaa://192.0.2.9", name="ocs.example")
    assert (named.name, named.host, named.port) == ("ocs.example", "192.0.2.9", 3868)
    dial = peer_from_uri("aaa://dra1.gy;transport=sctp", realm="gy.net", address="10.0.0.5")
    assert (dial.name, dial.host, dial.transport) == ("dra1.gy", "10.0.0.5", "sctp")
    with pytest.raises(DiameterURIError, match="give the peer's Origin-Host"):
        peer_from_uri("aaa://192.0.2.9")


def test_agrees_with_python_diameter_on_its_own_examples() -> None:
    helpers = pytest.importorskip("diameter.node._helpers")
    for text in [
        "aaa://host.example.com;transport=tcp",
        "aaa://host.example.com:5959;transport=tcp;protocol=diameter",
        "aaas://host.example.com;transport=tcp",
        "aaa://dra1.gy:3868;transport=tcp",
    ]:
        theirs = helpers.parse_diameter_uri(text)
        ours = parse_diameter_uri(text)
        assert (ours.host, ours.effective_port, ours.secure) == (
            theirs.fqdn,
            theirs.port,
            theirs.is_secure,
        )
        assert ours.transport == theirs.params.get("transport", "tcp")


# -- [[peers]] uri = ... ---------------------------------------------------------------------


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> object:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(str(path), env=env or {})


def test_config_uri_fills_the_peer(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        "[[peers]]\nuri = 'aaa://peer.example.net:3869;transport=tcp'\nrealm = 'example.net'\n"
        "connect = true\n"
        "[[peers]]\nname = 'ocs.example.net'\nuri = 'aaas://192.0.2.5'\n"
        "[[peers]]\nname = 'old.example.net'\naddress = '192.0.2.6'\nport = 3870\n",
    )
    a, b, old = c.peers  # type: ignore[attr-defined]
    assert (a.name, a.address, a.port, a.transport) == ("peer.example.net", "peer.example.net",
                                                        3869, "tcp")  # fmt: skip
    assert (b.name, b.address, b.port, b.transport) == ("ocs.example.net", "192.0.2.5", 5658, "tls")
    assert (old.address, old.port, old.transport) == ("192.0.2.6", 3870, "tcp")  # keys as before
    node = build_node_config(c)  # type: ignore[arg-type]
    pa, pb, pold = node.peers
    assert (pa.name, pa.host, pa.effective_port, pa.transport, pa.connect) == (
        "peer.example.net", "peer.example.net", 3869, "tcp", True)  # fmt: skip
    assert pa.source == ["peer.example.net"]  # source defaults to the address, as before
    assert (pb.host, pb.effective_port, pb.transport) == ("192.0.2.5", 5658, "tls")
    assert (pold.host, pold.effective_port, pold.transport) == ("192.0.2.6", 3870, "tcp")


def test_config_defaults_without_uri_are_unchanged(tmp_path: Path) -> None:
    c = load(tmp_path, "[[peers]]\nname = 'a.example'\n")
    p = c.peers[0]  # type: ignore[attr-defined]
    assert (p.name, p.address, p.port, p.transport) == ("a.example", "127.0.0.1", 0, "tcp")
    assert build_node_config(c).peers[0].effective_port == 3868  # type: ignore[arg-type]


def test_config_uri_keys_that_agree_are_fine(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        "[[peers]]\nuri = 'aaa://p.example:3870;transport=sctp'\nname = 'p.example'\n"
        "address = 'P.example'\nport = 3870\ntransport = 'sctp'\n",
    )
    p = c.peers[0]  # type: ignore[attr-defined]
    assert (p.address, p.port, p.transport) == ("p.example", 3870, "sctp")


def test_config_uri_from_the_environment(tmp_path: Path) -> None:
    c = load(tmp_path, "", env={"CHARGEGW_PEERS__0__URI": "aaa://env.example:3999"})
    p = c.peers[0]  # type: ignore[attr-defined]
    assert (p.name, p.address, p.port) == ("env.example", "env.example", 3999)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("uri = 'aaa://p.example'\naddress = '192.0.2.1'\n",
         "peers[0].address: '192.0.2.1' conflicts with uri 'aaa://p.example' ('p.example')"),
        ("uri = 'aaa://p.example:3870'\nport = 3868\n", "peers[0].port: 3868 conflicts with uri"),
        ("uri = 'aaa://p.example'\nport = 3869\n", "peers[0].port: 3869 conflicts"),
        ("uri = 'aaas://p.example'\ntransport = 'tcp'\n",
         "peers[0].transport: 'tcp' conflicts with uri 'aaas://p.example' ('tls')"),
        ("uri = 'aaa://p.example;transport=sctp'\ntransport = 'tcp'\n",
         "peers[0].transport: 'tcp' conflicts"),
        ("uri = 'aaa://192.0.2.1'\n", "peers[0].name: must be given: uri 'aaa://192.0.2.1' names"),
        ("uri = 'aaa://p.example:99999'\n", "peers[0].uri: 'aaa://p.example:99999' is not a "
         "DiameterURI: port '99999'"),
        ("uri = 'peer.example'\n", "peers[0].uri: 'peer.example' is not a DiameterURI: no scheme"),
        ("uri = 'aaa://p.example;transport=udp'\n", "peers[0].uri: aaa://p.example;transport=udp:"
         " transport=udp is not allowed"),
        ("realm = 'x'\n", "peers[0].name: must not be empty (or give a uri"),
        ("name = 'a.example'\ntransport = 'udp'\n", "peers[0].transport"),
    ],
)  # fmt: skip
def test_config_uri_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, "[[peers]]\n" + text)
    assert expected in str(exc.value)


def test_config_uri_names_count_for_duplicates(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"peers\[1\].name: 'p.example' is listed twice"):
        load(tmp_path, "[[peers]]\nname = 'p.example'\n[[peers]]\nuri = 'aaa://p.example:3900'\n")
