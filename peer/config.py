"""Plain configuration objects for the peer layer.

These are deliberately dumb dataclasses: the gateway's config schema (TOML, msgspec) builds
them, tests build them by hand, and the Node only reads them. Nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Transport = Literal["tcp", "tls", "sctp"]

DEFAULT_PORT = 3868
DEFAULT_TLS_PORT = 5658
RELAY_APP_ID = 0xFFFFFFFF


@dataclass(slots=True)
class TlsConfig:
    """Certificates for TLS over TCP (RFC 6733 section 13: TLS starts before CER)."""

    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None
    # A peer must present a certificate signed by cafile (both directions).
    verify_peer: bool = True
    # Hostname checked against the server certificate; None = the peer's configured name.
    # Whatever it is, the certificate's DNS SAN must also name the peer's Origin-Host.
    server_hostname: str | None = None
    check_hostname: bool = True
    # Passed to SSLContext.set_ciphers when given.
    ciphers: str | None = None


@dataclass(slots=True)
class VendorApp:
    """A Vendor-Specific-Application-Id: {Vendor-Id, Auth- or Acct-Application-Id}."""

    vendor_id: int
    app_id: int
    acct: bool = False


@dataclass(slots=True)
class PeerConfig:
    """A peer we know by name: connected to when `connect` is true, always admitted inbound."""

    name: str  # the peer's Origin-Host (DiameterIdentity)
    host: str = "127.0.0.1"
    port: int | None = None  # None: 3868, or 5658 for TLS
    transport: Transport = "tcp"
    realm: str | None = None  # used by routing when no explicit route names this peer
    connect: bool = True  # False: wait for the peer to connect to us
    tls: TlsConfig | None = None
    # SCTP multi-homing: extra peer addresses and local addresses to bind.
    peer_addresses: list[str] = field(default_factory=list)
    local_addresses: list[str] = field(default_factory=list)
    # Overrides NodeConfig.tw for this peer.
    tw: float | None = None
    # Source addresses (IP literals, CIDR networks or host names) a CER naming this peer
    # may come from; None = any address. Binds the name to something an attacker cannot
    # simply claim in an AVP.
    source: list[str] | None = None

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return DEFAULT_TLS_PORT if self.transport == "tls" else DEFAULT_PORT


@dataclass(slots=True)
class ListenConfig:
    """One listening endpoint. port=0 picks an ephemeral port (see Node.listen_addresses)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    transport: Transport = "tcp"
    tls: TlsConfig | None = None
    # SCTP multi-homing: further local addresses bound with sctp_bindx.
    extra_addresses: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RouteConfig:
    """Realm-based route: requests for `realm` (and `app_id`, None = any) go to `peers`.

    A realm beginning with "." or "*." matches that suffix (longest match wins).
    """

    realm: str
    peers: list[str]
    app_id: int | None = None


@dataclass(slots=True)
class AllowRule:
    """Admits an inbound peer whose Origin-Host and Origin-Realm match these fnmatch patterns."""

    host: str = "*"
    realm: str = "*"


@dataclass(slots=True)
class NodeConfig:
    """Everything a Node needs; `Node.update_config` accepts a new one at run time."""

    origin_host: str
    origin_realm: str
    host_ip_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    vendor_id: int = 0
    product_name: str = "chargegw"
    firmware_revision: int | None = 1
    origin_state_id: int = field(default_factory=lambda: int(time.time()) & 0xFFFFFFFF)
    auth_apps: list[int] = field(default_factory=list)
    acct_apps: list[int] = field(default_factory=list)
    # (vendor, app) or (vendor, app, acct) tuples are accepted too: see vendor_apps().
    vendor_specific_apps: Sequence[VendorApp | tuple[int, int] | tuple[int, int, bool]] = field(
        default_factory=list
    )
    supported_vendors: list[int] = field(default_factory=list)
    relay: bool = False
    inband_security: list[int] = field(default_factory=lambda: [0])

    listen: list[ListenConfig] = field(default_factory=list)
    peers: list[PeerConfig] = field(default_factory=list)
    routes: list[RouteConfig] = field(default_factory=list)
    default_route: list[str] = field(default_factory=list)
    # None admits any peer (configured peers are always admitted); a list restricts to it.
    allow: list[AllowRule] | None = None
    # With an allowlist: still admit an unknown peer whose connection comes from a loopback
    # address (the embedded local default: open on 127.0.0.1 only).
    allow_loopback: bool = False

    # Timers (seconds).
    tw: float = 30.0  # RFC 3539 watchdog; clamped to >= 6 and jittered by +-2 s
    cer_timeout: float = 10.0  # inbound connection must send CER within this (from accept)
    tls_handshake_timeout: float = 5.0  # bound on a TLS handshake (asyncio's default is 60 s)
    cea_timeout: float = 10.0  # Wait-Conn-Ack / Wait-I-CEA / Wait-Returns
    dpa_timeout: float = 5.0  # Closing
    connect_timeout: float = 5.0
    reconnect_min: float = 1.0  # backoff starts here, doubles up to reconnect_max
    reconnect_max: float = 30.0  # RFC 6733 Tc
    busy_holdoff: float = 300.0  # after DPR BUSY: no automatic reconnect for this long
    request_timeout: float = 5.0

    # Limits.
    max_message_length: int = 1 << 16
    dup_cache_size: int = 100_000  # 0 disables duplicate detection
    dup_cache_bytes: int = 64 << 20  # bound on the answer bytes the cache holds
    dup_cache_ttl: float = 240.0
    dup_in_progress_ttl: float = 10.0  # a copy of an unanswered request is dropped this long
    write_high_water: int = 4 << 20  # bytes buffered per connection before reads pause
    max_inflight_per_connection: int = 10_000  # async handlers running per connection
    # Inbound connections that have not finished CER (TLS handshakes included): in total,
    # and from one source address. Excess connections are closed at accept.
    max_pre_cer: int = 256
    max_pre_cer_per_source: int = 32

    # Behaviour switches.
    # RFC 3539 says to throw away non-DWA traffic from a peer in REOPEN. Doing so drops a
    # reconnecting client's requests for ~3*Tw (OTP's default, see shared/peers/README), so by
    # default we answer them and only hold back our own requests until three DWAs.
    reopen_discards_requests: bool = False
    # Answer requests for another realm/host with 3003/3002 rather than handling them.
    check_destination: bool = True
    # Call Message.validate() on requests before the handler (answers 5xxx on failure).
    validate_requests: bool = False
    sctp_streams: int = 8
    sctp_nodelay: bool = True

    def vendor_apps(self) -> list[VendorApp]:
        """vendor_specific_apps normalised to VendorApp."""
        out: list[VendorApp] = []
        for item in self.vendor_specific_apps:
            if isinstance(item, VendorApp):
                out.append(item)
            else:
                vendor, app, *rest = item
                out.append(VendorApp(int(vendor), int(app), bool(rest[0]) if rest else False))
        return out

    def advertised_app_ids(self) -> set[int]:
        """Every application id we advertise (Vendor-Id ignored, as in the intersection)."""
        ids = set(self.auth_apps) | set(self.acct_apps)
        ids.update(v.app_id for v in self.vendor_apps())
        if self.relay:
            ids.add(RELAY_APP_ID)
        return ids
