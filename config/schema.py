"""The configuration schema: msgspec Structs, one per TOML table.

Every default here is the embedded default, so `chargegw run` works with no file at all.
`config/default.toml` spells out the same values; a test keeps the two in step.

Validation that msgspec cannot express lives in `__post_init__` and raises
`ValueError("key: what is wrong")`; the loader turns that into a full key path.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Literal

import msgspec

# Application ids the default config serves (kept here so the gateway and the launcher
# agree on the list without importing the charging code).
APP_ACCOUNTING = 3
APP_CREDIT_CONTROL = 4
APP_SY = 16777302
APP_TEST = 16777215  # freeDiameter test_app
VENDOR_3GPP = 10415
VENDOR_FD_TEST = 999999

Transport = Literal["tcp", "tls", "sctp"]


class _Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


def _check(cond: bool, key: str, what: str) -> None:
    if not cond:
        raise ValueError(f"{key}: {what}")


class Identity(_Base):
    """Who the gateway is on the Diameter wire (CER/CEA, Origin-* of every answer)."""

    origin_host: str = "gw.localdomain"
    origin_realm: str = "localdomain"
    product_name: str = "chargegw"
    vendor_id: int = 0
    # Host-IP-Address values for CER/CEA; empty = the listen addresses.
    host_ip_addresses: list[str] = []
    firmware_revision: int = 1

    def __post_init__(self) -> None:
        # freeDiameter's acl_wl (and common sense) reject one-label identities.
        _check("." in self.origin_host, "origin_host", "must be a FQDN with at least two labels")
        _check(bool(self.origin_realm), "origin_realm", "must not be empty")


class TlsSettings(_Base):
    """Certificate files for TLS over TCP (RFC 6733 13: TLS before CER)."""

    cert: str = ""
    key: str = ""
    ca: str = ""  # the only trust anchors: the system store is never used
    verify_peer: bool = True  # needs `ca`; the peer's certificate must name its Origin-Host

    def __post_init__(self) -> None:
        _check(
            not self.verify_peer or bool(self.ca),
            "ca",
            "verify_peer = true needs a CA file (the system trust store is never used);"
            " set ca, or verify_peer = false to accept any certificate",
        )


class Listen(_Base):
    """A Diameter listening endpoint (port 0 = ephemeral, for tests)."""

    address: str = "127.0.0.1"
    port: int = 3868
    transport: Transport = "tcp"
    tls: TlsSettings | None = None

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, "port", f"{self.port} is not a port number")
        _check(
            self.transport != "tls" or (self.tls is not None and bool(self.tls.cert)),
            "tls",
            "transport 'tls' needs tls.cert and tls.key",
        )


class Peer(_Base):
    """A statically configured peer, always admitted inbound; `connect = true` dials it.

    `uri = "aaa://peer.example.net:3868;transport=tcp"` (RFC 6733 4.3.1; aaas:// = tls) gives
    address, port and transport in one string, and the name when `name` is left out. A key
    also set by hand must agree with the URI."""

    name: str = ""  # the peer's Origin-Host; required unless `uri` names an FQDN
    uri: str = ""
    realm: str = ""  # used by routing when no route names this peer
    address: str = ""  # "" = the uri's host, else 127.0.0.1
    port: int = 0  # 0 = the uri's port, else 3868 (5658 for tls)
    transport: Transport | Literal[""] = ""  # "" = the uri's (tcp; aaas: tls), else tcp
    connect: bool = False
    tls: TlsSettings | None = None
    tw: float = 0.0  # 0 = diameter.tw
    # Addresses a CER naming this peer may come from: IPs, CIDR networks or host names.
    # Empty = `address`; ["*"] = any address (the name is then only a claim).
    source: list[str] = []

    def __post_init__(self) -> None:
        if self.uri:
            self._from_uri()
        _check(bool(self.name), "name", "must not be empty (or give a uri naming an FQDN)")
        self.address = self.address or "127.0.0.1"
        self.transport = self.transport or "tcp"
        for i, entry in enumerate(self.source):
            _check(
                _is_source(entry), f"source[{i}]", f"{entry!r} is not an address, network or host"
            )
        _check(0 <= self.port <= 65535, "port", f"{self.port} is not a port number")
        _check(self.tw == 0.0 or self.tw >= 6.0, "tw", "must be at least 6 seconds (RFC 3539)")

    def _from_uri(self) -> None:
        """Fill address/port/transport (and a missing name) from `uri`; refuse conflicts."""
        from chargegw.peer.uri import DiameterURIError, parse_diameter_uri

        try:
            uri = parse_diameter_uri(self.uri)
            transport = uri.peer_transport
        except DiameterURIError as exc:
            raise ValueError(f"uri: {exc}") from None
        for key, mine, theirs in (
            ("address", self.address, uri.host),
            ("port", self.port, uri.effective_port),
            ("transport", self.transport, transport),
        ):
            _check(
                not mine or str(mine).lower() == str(theirs).lower(),
                key,
                f"{mine!r} conflicts with uri {self.uri!r} ({theirs!r}); set one or the other",
            )
        if not self.name:
            _check(
                not uri.is_address,
                "name",
                f"must be given: uri {self.uri!r} names an address, not the peer's Origin-Host",
            )
            self.name = uri.host
        self.address, self.port, self.transport = uri.host, uri.effective_port, transport


class Route(_Base):
    """A realm route: requests for `realm` (and `app_id`, 0 = any) go to one of `peers`.
    A realm beginning with "." or "*." matches that suffix (the longest match wins)."""

    realm: str
    peers: list[str]
    app_id: int = 0

    def __post_init__(self) -> None:
        _check(bool(self.realm), "realm", "must not be empty")
        _check(bool(self.peers), "peers", "must name at least one peer")


class Allow(_Base):
    """Admits an inbound peer whose Origin-Host and Origin-Realm match (fnmatch patterns)."""

    host: str = "*"
    realm: str = "*"


class Diameter(_Base):
    """Base-protocol knobs handed to the Node."""

    tw: float = 30.0  # RFC 3539 watchdog interval
    max_message_length: int = 65536  # bytes; raise it for peers that send bigger messages
    relay: bool = False  # advertise the Relay application id
    request_timeout: float = 5.0  # requests the gateway sends (worker-initiated ones)
    default_route: list[str] = []  # peers for requests no route matches
    # Inbound peers admitted besides [[peers]]. Empty: none, except that when every
    # listener is on a loopback address any peer connecting over loopback is admitted.
    allow: list[Allow] = []
    # Admit any peer at all. Needed, explicitly, for a non-loopback listener with neither
    # `allow` rules nor [[peers]].
    allow_any: bool = False
    check_destination: bool = True  # answer 3002/3003 for another host or realm
    validate_requests: bool = False  # full grammar check in the front end (costs throughput)
    dup_cache_size: int = 100_000  # duplicate detection (T flag) in the Node; 0 = off
    dup_cache_bytes: int = 64 << 20  # bound on the answer bytes the duplicate cache holds
    cer_timeout: float = 10.0  # an accepted connection must finish TLS and CER within this
    tls_handshake_timeout: float = 5.0  # bound on one TLS handshake
    max_pre_cer_connections: int = 256  # accepted connections without CER, in total
    max_pre_cer_per_source: int = 32  # the same, from one source address
    supported_vendors: list[int] = []  # Supported-Vendor-Id; the app vendors are added

    def __post_init__(self) -> None:
        _check(self.tw >= 6.0, "tw", "must be at least 6 seconds (RFC 3539)")
        _check(self.max_message_length >= 64, "max_message_length", "must be at least 64")
        _check(self.request_timeout > 0, "request_timeout", "must be > 0")
        _check(self.dup_cache_bytes >= 0, "dup_cache_bytes", "must be >= 0")
        _check(self.cer_timeout > 0, "cer_timeout", "must be > 0")
        _check(self.tls_handshake_timeout > 0, "tls_handshake_timeout", "must be > 0")
        _check(self.max_pre_cer_connections >= 1, "max_pre_cer_connections", "must be >= 1")
        _check(self.max_pre_cer_per_source >= 1, "max_pre_cer_per_source", "must be >= 1")


class Agent(_Base):
    """`chargegw relay`: a Diameter relay, proxy or redirect agent (RFC 6733 2.8), no
    workers. A relay or proxy sends requests that are not for this node upstream by
    `routes` (then [[routes]], the peers' own realms and `diameter.default_route`), with a
    Route-Record added, loops refused (3005), hop-by-hop ids mapped back, failover to an
    alternate (T flag) and a 3006 from upstream followed once. A redirect agent answers
    them 3006 instead, naming the servers those routes hold (Redirect-Host)."""

    # "relay" | "proxy" | "redirect"; "" = no agent (`chargegw relay` refuses to start)
    mode: str = ""
    # proxy: the application ids it forwards and advertises in CER/CEA (a relay forwards
    # every application and advertises Relay, 0xffffffff, instead: leave it empty)
    apps: list[int] = []
    routes: list[Route] = []  # realm (+ app_id) -> upstream peers, tried before [[routes]]
    max_pending: int = 10000  # forwarded requests awaiting an answer per upstream; then 3004
    request_timeout: float = 0.0  # seconds for an upstream answer, then 3002; 0 = diameter's
    # redirect: Redirect-Host-Usage in its 3006 answers (0 DONT_CACHE, 1 ALL_SESSION,
    # 2 ALL_REALM, 3 REALM_AND_APPLICATION, 4 ALL_APPLICATION, 5 ALL_HOST, 6 ALL_USER)
    redirect_usage: int = 0
    # redirect: Redirect-Max-Cache-Time in seconds, sent (and required) when usage is not 0
    redirect_cache_time: int = 0

    def __post_init__(self) -> None:
        _check(
            self.mode in ("", "relay", "proxy", "redirect"),
            "mode",
            f"must be 'relay', 'proxy' or 'redirect' (or '' for no agent), not {self.mode!r}",
        )
        _check(0 <= self.redirect_usage <= 6, "redirect_usage", "must be 0 (DONT_CACHE) to 6")
        _check(
            not self.redirect_usage or 0 < self.redirect_cache_time < 1 << 32,
            "redirect_cache_time",
            "must be > 0 seconds when redirect_usage is not 0 (DONT_CACHE)",
        )
        for i, app in enumerate(self.apps):
            _check(0 < app < 0xFFFFFFFF, f"apps[{i}]", f"{app} is not an application id")
        _check(
            self.mode != "proxy" or bool(self.apps),
            "apps",
            "a proxy must list the application ids it proxies",
        )
        _check(
            self.mode not in ("relay", "redirect") or not self.apps,
            "apps",
            f"a {self.mode} agent takes every application: leave apps empty (or mode = 'proxy')",
        )
        if self.mode == "proxy":
            for i, r in enumerate(self.routes):
                _check(
                    r.app_id == 0 or r.app_id in self.apps,
                    f"routes[{i}].app_id",
                    f"{r.app_id} is not among the proxied apps {self.apps}",
                )
        _check(self.max_pending >= 1, "max_pending", "must be >= 1")
        _check(self.request_timeout >= 0, "request_timeout", "must be >= 0 (0 = diameter's)")


class Pool(_Base):
    """The gateway side of the worker pool."""

    # ROUTER endpoints the gateway binds (tcp://host:port or ipc://path). Empty = the
    # default ipc endpoint under data_dir (see `Config.pool_endpoints`).
    bind: list[str] = []
    deadline: float = 4.0  # seconds a request may take before the gateway answers it
    heartbeat_interval: float = 1.0
    # Silence after which a worker is dropped and what it held is sent to another worker.
    # Keep it below `deadline` (the gateway warns otherwise): a silent worker's requests
    # would reach their deadline (3002) before it is declared gone.
    heartbeat_timeout: float = 3.0
    max_credit: int = 4096  # cap on what one worker may grant (bounds the in-flight map)
    # A latency objective, in milliseconds (0: off). With it each worker holds only as many
    # requests as it answers within this mean time (gateway to worker and back), and the
    # rest get 3004 at once instead of a place in a queue (gateway/latency.py). Keep it well
    # above a worker's unloaded latency; a closed-loop client whose concurrency implies
    # more than this sees 3004s it would otherwise not.
    latency_target_ms: float = 0.0
    drain_timeout: float = 5.0  # graceful shutdown: bound on draining in-flight requests
    vnodes: int = 64  # consistent-hash points per worker
    # CURVE (required for every tcp:// bind; `chargegw keys generate` writes the files):
    # the gateway's secret key file, and a directory of the worker public keys admitted.
    curve_secret_key: str = ""
    curve_workers: str = ""
    # `chargegw status` asks here (ipc:// only: the operator's socket, mode 0600). Empty =
    # ipc://<data_dir>/status.ipc.
    status_bind: str = ""
    # Command codes workers may send out besides RAR (258), ASR (274) and SNR (8388636).
    out_commands: list[int] = []

    def __post_init__(self) -> None:
        _check(self.deadline > 0, "deadline", "must be > 0")
        _check(self.heartbeat_interval > 0, "heartbeat_interval", "must be > 0")
        _check(
            self.heartbeat_timeout > self.heartbeat_interval,
            "heartbeat_timeout",
            "must be greater than heartbeat_interval",
        )
        _check(self.max_credit >= 1, "max_credit", "must be >= 1")
        _check(
            0 <= self.latency_target_ms < self.deadline * 1000,
            "latency_target_ms",
            "must be >= 0 (0: off) and below the deadline",
        )
        _check(self.vnodes >= 1, "vnodes", "must be >= 1")
        for i, ep in enumerate(self.bind):
            _check(_is_endpoint(ep), f"bind[{i}]", f"{ep!r} is not a tcp:// or ipc:// endpoint")
        if any(ep.startswith("tcp://") for ep in self.bind):
            for key in ("curve_secret_key", "curve_workers"):
                _check(
                    bool(getattr(self, key)),
                    key,
                    "a tcp:// bind needs CURVE keys: set pool.curve_secret_key and "
                    "pool.curve_workers (`chargegw keys generate` writes them)",
                )
        _check(
            not self.status_bind or self.status_bind.startswith("ipc://"),
            "status_bind",
            "must be an ipc:// endpoint (only the operator may reach it)",
        )
        for i, code in enumerate(self.out_commands):
            _check(0 < code < 1 << 24, f"out_commands[{i}]", f"{code} is not a command code")


class Worker(_Base):
    """The worker side: where to connect and how much to take on."""

    # Gateways to connect to; a worker serves all of them. Empty = the gateway's own bind
    # list (the all-in-one case).
    gateways: list[str] = []
    credit: int = 256  # slots granted to each gateway
    id: str = ""  # routing identity; empty = host-pid-random
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 3.0
    # CURVE (required to connect to a tcp:// gateway): this worker's secret key file, and
    # the gateway's public key file.
    curve_secret_key: str = ""
    curve_server_key: str = ""

    def __post_init__(self) -> None:
        _check(self.credit >= 1, "credit", "must be >= 1")
        _check(self.heartbeat_interval > 0, "heartbeat_interval", "must be > 0")
        _check(
            self.heartbeat_timeout > self.heartbeat_interval,
            "heartbeat_timeout",
            "must be greater than heartbeat_interval",
        )
        for i, ep in enumerate(self.gateways):
            _check(_is_endpoint(ep), f"gateways[{i}]", f"{ep!r} is not a tcp:// or ipc:// endpoint")
        if any(ep.startswith("tcp://") for ep in self.gateways):
            for key in ("curve_secret_key", "curve_server_key"):
                _check(
                    bool(getattr(self, key)),
                    key,
                    "a tcp:// gateway needs CURVE keys: set worker.curve_secret_key and "
                    "worker.curve_server_key (`chargegw keys generate` writes them)",
                )


class Launcher(_Base):
    """`chargegw run`: how many workers and how to restart them; and, for `chargegw run` and
    `chargegw gateway` alike, how many workers must be there before the Diameter port opens
    (a port that is open with no worker behind it answers every request 3002)."""

    workers: int = 0  # 0 = number of CPU cores
    restart_backoff_min: float = 0.5
    restart_backoff_max: float = 30.0
    stable_after: float = 10.0  # a worker up this long resets its backoff
    # A worker slot that exits crash_limit times within crash_window seconds stops the
    # launcher (non-zero status) instead of restarting forever; 0 = restart forever.
    crash_limit: int = 5
    crash_window: float = 60.0
    min_workers: int = 1  # registered workers before the Diameter listeners open; 0 = at once
    ready_timeout: float = 60.0  # give up (exit non-zero) if min_workers are not there by then

    def __post_init__(self) -> None:
        _check(self.workers >= 0, "workers", "must be >= 0 (0 = one per core)")
        _check(self.crash_limit >= 0, "crash_limit", "must be >= 0 (0 = restart forever)")
        _check(self.crash_window > 0, "crash_window", "must be > 0")
        _check(self.min_workers >= 0, "min_workers", "must be >= 0")
        _check(self.ready_timeout > 0, "ready_timeout", "must be > 0")
        _check(self.restart_backoff_min > 0, "restart_backoff_min", "must be > 0")
        _check(
            self.restart_backoff_max >= self.restart_backoff_min,
            "restart_backoff_max",
            "must be >= restart_backoff_min",
        )


class Metrics(_Base):
    """The operator's HTTP endpoint: Prometheus `/metrics`, `/healthz` and `/readyz`
    (served by the gateway process; workers' figures come through the gateway)."""

    enabled: bool = True
    address: str = "127.0.0.1"  # loopback by default: the figures name peers and counts
    port: int = 9464  # 0 = an ephemeral port (tests)

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, "port", "must be 0..65535")
        _check(bool(self.address), "address", "must not be empty")


class Logging(_Base):
    """What every process writes to stderr (chargegw.process.setup_logging)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    # "text": plain lines; "json": one JSON object per line (orjson), for a log collector;
    # "auto": json when stderr is not a terminal (a container, systemd), text when it is.
    format: Literal["text", "json", "auto"] = "text"
    # Seconds: one line per cause (logger + message template) per interval, then the count
    # of repeats ("(repeated N times in 5s)"); 0 = every line (debug lines always pass).
    repeat_interval: float = 5.0

    def __post_init__(self) -> None:
        _check(self.repeat_interval >= 0, "repeat_interval", "must be >= 0 (0 = off)")


class Dictionaries(_Base):
    """Dictionary files loaded at start, beyond the built-in ones (every process loads them)."""

    # chargegw JSON dictionaries or Wireshark dictionary XML (entity includes are followed),
    # e.g. "/usr/share/wireshark/diameter/dictionary.xml" for every vendor Wireshark knows;
    # "vendor:<name>" is a vendor dictionary chargegw ships (cisco, ericsson, starent, ...).
    files: list[str] = []
    # What a definition that clashes with a loaded one does: "error" (refuse to start,
    # naming both sources), "skip" (keep the loaded one) or "rename" (load it as Name.code).
    on_conflict: str = "error"

    def __post_init__(self) -> None:
        _check(
            self.on_conflict in ("error", "skip", "rename"),
            "on_conflict",
            f"must be error, skip or rename, not {self.on_conflict!r}",
        )


class Application(_Base):
    """One `[[applications]]` entry: an application id and the handler that serves it."""

    app_id: int
    handler: str  # "module:attr"
    # Vendor-Id for a Vendor-Specific-Application-Id in CER/CEA; 0 = plain Auth/Acct id.
    vendor_id: int = 0
    kind: Literal["auth", "acct", ""] = ""  # "" = acct for app 3, else auth
    config: dict[str, Any] = {}

    def __post_init__(self) -> None:
        _check(0 < self.app_id < 0xFFFFFFFF, "app_id", f"{self.app_id} is not an application id")
        mod, sep, attr = self.handler.partition(":")
        _check(bool(mod and sep and attr), "handler", f"{self.handler!r} is not 'module:attr'")

    @property
    def is_acct(self) -> bool:
        return self.kind == "acct" or (self.kind == "" and self.app_id == APP_ACCOUNTING)


def default_applications() -> list[Application]:
    return [
        Application(
            app_id=APP_CREDIT_CONTROL, handler="chargegw.workers.charging.gy:CreditControlApp"
        ),
        Application(app_id=APP_ACCOUNTING, handler="chargegw.workers.charging.rf:AccountingApp"),
        Application(
            app_id=APP_SY,
            handler="chargegw.workers.charging.sy:SpendingLimitApp",
            vendor_id=VENDOR_3GPP,
        ),
        Application(
            app_id=APP_TEST, handler="chargegw.workers.testapp:TestApp", vendor_id=VENDOR_FD_TEST
        ),
    ]


class Config(_Base):
    data_dir: str = "./data"
    identity: Identity = msgspec.field(default_factory=Identity)
    listen: list[Listen] = msgspec.field(default_factory=lambda: [Listen()])
    peers: list[Peer] = []
    routes: list[Route] = []
    diameter: Diameter = msgspec.field(default_factory=Diameter)
    agent: Agent = msgspec.field(default_factory=Agent)
    pool: Pool = msgspec.field(default_factory=Pool)
    worker: Worker = msgspec.field(default_factory=Worker)
    launcher: Launcher = msgspec.field(default_factory=Launcher)
    logging: Logging = msgspec.field(default_factory=Logging)
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    dictionaries: Dictionaries = msgspec.field(default_factory=Dictionaries)
    applications: list[Application] = msgspec.field(default_factory=default_applications)

    def __post_init__(self) -> None:
        _check(bool(self.data_dir), "data_dir", "must not be empty")
        seen: set[int] = set()
        for i, app in enumerate(self.applications):
            _check(
                app.app_id not in seen, f"applications[{i}].app_id", f"{app.app_id} is listed twice"
            )
            seen.add(app.app_id)
        names: set[str] = set()
        for i, peer in enumerate(self.peers):
            _check(peer.name not in names, f"peers[{i}].name", f"{peer.name!r} is listed twice")
            names.add(peer.name)
        lower = {n.lower() for n in names}
        for i, route in enumerate(self.agent.routes):
            for j, name in enumerate(route.peers):
                _check(
                    name.lower() in lower,
                    f"agent.routes[{i}].peers[{j}]",
                    f"{name!r} is not a [[peers]] name: an agent forwards only to known peers",
                )
        admits = bool(self.diameter.allow or self.peers or self.diameter.allow_any)
        for i, lst in enumerate(self.listen):
            _check(
                admits or is_loopback(lst.address),
                f"listen[{i}].address",
                f"{lst.address!r} is not a loopback address and no peer is allowlisted:"
                " list the peers ([[peers]] or [[diameter.allow]]), or set"
                " diameter.allow_any = true to admit any peer that connects",
            )

    # Derived values -------------------------------------------------------------------

    @property
    def data_path(self) -> str:
        return os.path.abspath(self.data_dir)

    def pool_endpoints(self) -> list[str]:
        """The ROUTER endpoints the gateway binds."""
        return list(self.pool.bind) or [default_ipc_endpoint(self.data_path)]

    def worker_gateways(self) -> list[str]:
        """The endpoints a worker connects to (a bound tcp://0.0.0.0 becomes 127.0.0.1)."""
        if self.worker.gateways:
            return list(self.worker.gateways)
        return [
            ep.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:").replace("tcp://*:", "tcp://127.0.0.1:")
            for ep in self.pool_endpoints()
        ]


def is_loopback(address: str) -> bool:
    """A listen address only this host can reach (a host name counts only as "localhost")."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _is_source(entry: str) -> bool:
    if entry == "*":
        return True
    try:
        ipaddress.ip_network(entry, strict=False)
        return True
    except ValueError:
        pass
    return bool(entry) and all(c.isalnum() or c in "-." for c in entry)


def _is_endpoint(ep: str) -> bool:
    return (ep.startswith("tcp://") and ":" in ep[6:]) or (ep.startswith("ipc://") and len(ep) > 6)


# ipc:// paths are Unix socket paths: the kernel limit is 107 bytes.
_IPC_MAX = 100


def default_ipc_endpoint(data_path: str, name: str = "gateway.ipc") -> str:
    """`name` in the data dir; when that path is too long for a Unix socket, in a private
    directory (mode 0700, checked when the socket is bound) under the temp dir."""
    path = os.path.join(data_path, name)
    if len(path) <= _IPC_MAX:
        return "ipc://" + path
    import hashlib
    import tempfile

    digest = hashlib.sha1(data_path.encode()).hexdigest()[:12]
    private = f"chargegw-{os.getuid()}-{digest}"
    return "ipc://" + os.path.join(tempfile.gettempdir(), private, name)
