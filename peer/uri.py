"""RFC 6733 4.3.1 DiameterURIs, as python-diameter and freeDiameter take a peer's address:

    aaa://peer.example.net:3868;transport=tcp;protocol=diameter
    aaas://peer.example.net;transport=tcp         (aaas: transport security, here TLS)

Grammar: ("aaa" / "aaas") "://" FQDN [":" port] [";transport=" (tcp/sctp/udp)]
[";protocol=" (diameter/radius/tacacs+)]. The port defaults to 3868 (aaa) or 5658 (aaas), the
transport to TCP (RFC 6733; RFC 3588 said SCTP). Keywords are case-insensitive (ABNF); the
two parameters are taken in either order. An IP literal is accepted where the FQDN goes (IPv6
in brackets), as python-diameter does. Parsing follows the grammar; `peer_transport` then
says what chargegw can dial: UDP, RADIUS/TACACS+ and DTLS/SCTP (aaas with sctp) are refused.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from chargegw.peer.config import DEFAULT_PORT, DEFAULT_TLS_PORT, PeerConfig, Transport

__all__ = [
    "DiameterURI",
    "DiameterURIError",
    "parse_diameter_uri",
    "peer_from_uri",
    "redirect_uri",
]

_FORM = "aaa://host[:port][;transport=tcp|sctp][;protocol=diameter] (or aaas://)"
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_TRANSPORTS = ("tcp", "sctp", "udp")
_PROTOCOLS = ("diameter", "radius", "tacacs+")


class DiameterURIError(ValueError):
    """A string that is not a DiameterURI, or one chargegw cannot use for a peer."""


@dataclass(frozen=True, slots=True)
class DiameterURI:
    scheme: str  # "aaa" or "aaas"
    host: str  # an FQDN, or an IP literal (IPv6 without its brackets)
    port: int | None  # None: not written (see effective_port)
    transport: str = "tcp"  # tcp / sctp / udp; tcp when not written
    protocol: str = "diameter"

    @property
    def secure(self) -> bool:
        return self.scheme == "aaas"

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return DEFAULT_TLS_PORT if self.secure else DEFAULT_PORT

    @property
    def is_address(self) -> bool:
        """True when the host part is an IP literal rather than an FQDN."""
        return _ip(self.host) is not None

    @property
    def peer_transport(self) -> Transport:
        """The PeerConfig transport: tcp, sctp, or tls for aaas over TCP."""
        if self.protocol != "diameter":
            raise DiameterURIError(f"{self}: protocol={self.protocol} is not a Diameter peer")
        if self.transport == "udp":
            raise DiameterURIError(
                f"{self}: transport=udp is not allowed for Diameter (RFC 6733 2.1: tcp or sctp)"
            )
        if self.secure:
            if self.transport == "sctp":
                raise DiameterURIError(f"{self}: aaas over sctp (DTLS/SCTP) is not supported")
            return "tls"
        return "sctp" if self.transport == "sctp" else "tcp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        proto = f";protocol={self.protocol}" if self.protocol != "diameter" else ""
        return f"{self.scheme}://{host}{port};transport={self.transport}{proto}"


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _bad(text: str, why: str) -> DiameterURIError:
    return DiameterURIError(f"{text!r} is not a DiameterURI: {why}; expected {_FORM}")


def parse_diameter_uri(text: str) -> DiameterURI:
    """Parse a DiameterURI; DiameterURIError (a ValueError) says what is wrong with it."""
    if not isinstance(text, str):
        raise DiameterURIError(f"a DiameterURI is a string, not {type(text).__name__}")
    if not text.isascii() or any(c.isspace() for c in text):
        raise _bad(text, "it contains white space or non-ASCII characters")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise _bad(text, "no scheme (aaa:// or aaas://)")
    scheme = scheme.lower()
    if scheme not in ("aaa", "aaas"):
        raise _bad(text, f"the scheme is {scheme!r}, not aaa or aaas")
    authority, *params = rest.split(";")
    host, port = _authority(text, authority)
    found: dict[str, str] = {}
    for param in params:
        key, eq, value = param.partition("=")
        key, value = key.lower(), value.lower()
        if not eq or not key or not value:
            raise _bad(text, f"parameter {param!r} is not name=value")
        if key not in ("transport", "protocol"):
            raise _bad(text, f"unknown parameter {key!r} (only transport and protocol)")
        if key in found:
            raise _bad(text, f"{key} is given twice")
        allowed = _TRANSPORTS if key == "transport" else _PROTOCOLS
        if value not in allowed:
            raise _bad(text, f"{key}={value} is not one of {', '.join(allowed)}")
        found[key] = value
    return DiameterURI(
        scheme, host, port, found.get("transport", "tcp"), found.get("protocol", "diameter")
    )


def _authority(text: str, authority: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        host, close, after = authority[1:].partition("]")
        if not close or not isinstance(_ip(host), ipaddress.IPv6Address):
            raise _bad(text, f"{authority!r} is not a bracketed IPv6 address")
        if after and not after.startswith(":"):
            raise _bad(text, f"unexpected {after!r} after the address")
        port_text: str | None = after[1:] if after else None
    else:
        if authority.count(":") > 1:
            raise _bad(text, "an IPv6 address must be written in brackets, [::1]:3868")
        host, colon, port_text_ = authority.partition(":")
        port_text = port_text_ if colon else None
        if not host:
            raise _bad(text, "no host")
        if _ip(host) is None:
            if re.fullmatch(r"[0-9.]+", host):
                raise _bad(text, f"{host!r} is not an IPv4 address")
            labels = host.split(".")
            if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
                raise _bad(text, f"{host!r} is not a host name (FQDN)")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise _bad(text, f"port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    return host, port


def peer_from_uri(
    uri: str | DiameterURI, name: str | None = None, *, address: str | None = None, **kw: Any
) -> PeerConfig:
    """A PeerConfig dialling `uri`, named (its Origin-Host) by `name` or the URI's FQDN.

    python-diameter: node.add_peer("aaa://dra1.gy;transport=tcp", "gy.net", ["10.0.0.5"])
    chargegw:        peer_from_uri("aaa://dra1.gy;transport=tcp", realm="gy.net",
                                   address="10.0.0.5")
    `address` dials there instead of the URI's host. Further keywords (realm, tls, connect,
    source...) go to PeerConfig.
    """
    parsed = uri if isinstance(uri, DiameterURI) else parse_diameter_uri(uri)
    if name is None:
        if parsed.is_address:
            raise DiameterURIError(
                f"{parsed}: names an address; give the peer's Origin-Host as name="
            )
        name = parsed.host
    return PeerConfig(
        name,
        host=address or parsed.host,
        port=parsed.effective_port,
        transport=parsed.peer_transport,
        **kw,
    )


def redirect_uri(name: str, pc: PeerConfig | None) -> str:
    """The DiameterURI a redirect agent names for server `name`: its `[[peers]]` entry's
    port and transport (aaas for TLS), or the defaults for a server known only by name."""
    if pc is None:
        return str(DiameterURI("aaa", name, None))
    scheme = "aaas" if pc.transport == "tls" else "aaa"
    return str(
        DiameterURI(scheme, name, pc.effective_port, "sctp" if pc.transport == "sctp" else "tcp")
    )
