"""The config tables of the charging applications, validated with msgspec.

Every field has a default, so an empty table gives a working Gy/Rf/Sy server. A bad value
raises ConfigError naming the key path, e.g. "Gy config: Expected `int`, got `str` - at
`$.quota.time`".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import msgspec

from .money import parse_money
from .store import StoreConfig, SyCounter

T = TypeVar("T")


class ConfigError(ValueError):
    """An application's config table is invalid; the message names the key path."""


def _nonneg(**values: int | float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0")


class Tariff(msgspec.Struct, forbid_unknown_fields=True):
    """A price for one rating group and/or service; neither given = the single-service default."""

    rating_group: int | None = None
    service_identifier: int | None = None
    unit_type: Literal["time", "volume", "units"] = "time"
    price: str | int = "0"  # money per started `unit_size` ("0.01", or an int in micro-units)
    unit_size: int = 1  # base units (seconds, octets, events) one `price` buys
    quota: int | None = None  # base units per grant; default from [quota]
    micro: int = 0  # parsed price, filled in

    def __post_init__(self) -> None:
        try:
            self.micro = parse_money(self.price)
        except ValueError as exc:
            raise ValueError(f"price: {exc}") from None
        if self.micro < 0:
            raise ValueError("price must be >= 0")
        if self.unit_size <= 0:
            raise ValueError("unit_size must be > 0")
        if self.quota is not None and self.quota <= 0:
            raise ValueError("quota must be > 0")

    @property
    def key(self) -> str:
        return service_key(self.rating_group, self.service_identifier)


def service_key(rating_group: int | None, service_identifier: int | None) -> str:
    rg = "" if rating_group is None else str(rating_group)
    sid = "" if service_identifier is None else str(service_identifier)
    return f"{rg}:{sid}"


DEFAULT_TARIFFS = [
    Tariff(unit_type="time", price="0.01", unit_size=60),  # single-service (no RG, no SI)
    Tariff(rating_group=1, unit_type="volume", price="0.01", unit_size=1_048_576),
    Tariff(rating_group=2, unit_type="time", price="0.01", unit_size=60),
    Tariff(rating_group=3, unit_type="units", price="0.05", unit_size=1),
    # the bundled load generator (`chargegw load`) charges data on rating group 100
    Tariff(rating_group=100, unit_type="volume", price="0.01", unit_size=1_048_576),
]


class Quota(msgspec.Struct, forbid_unknown_fields=True):
    """Grant sizes and the quota-management AVPs of every grant (0 = AVP not sent)."""

    time: int = 600  # seconds
    volume: int = 10_485_760  # octets
    units: int = 10  # service-specific units
    validity_time: int = 3600
    time_quota_threshold: int = 0
    volume_quota_threshold: int = 0
    unit_quota_threshold: int = 0
    quota_holding_time: int = 0
    honour_requested: bool = True  # grant min(requested, quota) when the RSU names an amount

    def __post_init__(self) -> None:
        if min(self.time, self.volume, self.units) <= 0:
            raise ValueError("time, volume and units must be > 0")
        _nonneg(
            validity_time=self.validity_time,
            time_quota_threshold=self.time_quota_threshold,
            volume_quota_threshold=self.volume_quota_threshold,
            unit_quota_threshold=self.unit_quota_threshold,
            quota_holding_time=self.quota_holding_time,
        )


class FinalUnit(msgspec.Struct, forbid_unknown_fields=True):
    """Final-Unit-Indication sent with the last grant the balance allows."""

    action: Literal["terminate", "redirect"] = "terminate"
    redirect_address_type: int = 2  # 0 IPv4, 1 IPv6, 2 URL, 3 SIP URI
    redirect_address: str = ""

    def __post_init__(self) -> None:
        if self.action == "redirect" and not self.redirect_address:
            raise ValueError("redirect_address is required when action = 'redirect'")
        if not 0 <= self.redirect_address_type <= 3:
            raise ValueError("redirect_address_type must be 0..3")


class Demo(msgspec.Struct, forbid_unknown_fields=True):
    """The demo account set seeded into a fresh store (see README.md)."""

    enabled: bool = True
    prefix: str = "4670"  # END_USER_E164 numbers with this prefix get an account on first use
    imsi_prefix: str = "24007"  # END_USER_IMSI likewise
    balance: str | int = "100.00"
    micro: int = 0

    def __post_init__(self) -> None:
        try:
            self.micro = parse_money(self.balance)
        except ValueError as exc:
            raise ValueError(f"balance: {exc}") from None


# Event records (and so event idempotency) last `event_ttl`, which must stay well above any
# window in which a client may still resend an event: RFC 8506 Tx (10 s) plus a failover and
# the late-answer wait it suggests (120 s), and the gateway's own duplicate cache (240 s).
EVENT_TTL_MIN = 300.0
EVENT_TTL_MAX = 7 * 86400.0


def _check_peer_groups(groups: list[list[str]]) -> None:
    for i, g in enumerate(groups):
        if not g or any(not isinstance(h, str) or not h.strip() for h in g):
            raise ValueError(f"peer_groups[{i}] must list one or more Origin-Host names")


def peer_index(groups: list[list[str]]) -> dict[str, tuple[str, ...]]:
    """Origin-Host (lower case) -> the peers that may act for it: itself first, then the
    other members of every group it is in (so a client's sessions survive its failover)."""
    out: dict[str, tuple[str, ...]] = {}
    for g in groups:
        names = [h.strip().lower() for h in g]
        for h in names:
            have = out.get(h, (h,))
            out[h] = have + tuple(n for n in names if n not in have)
    return out


class Refunds(msgspec.Struct, forbid_unknown_fields=True):
    """REFUND_ACCOUNT events: off unless enabled, and then only from the listed peers. A refund
    names the DIRECT_DEBITING event it refunds by that event's Session-Id in CC-Correlation-Id,
    and gives back at most what that event took for each of its services."""

    enabled: bool = False
    peers: list[str] = msgspec.field(default_factory=list)  # Origin-Host names allowed to refund

    def __post_init__(self) -> None:
        if self.enabled and not self.peers:
            raise ValueError("peers must list the Origin-Hosts allowed to refund when enabled")


class GyConfig(msgspec.Struct, forbid_unknown_fields=True):
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    currency: int = 978  # ISO 4217 numeric, sent in Cost-Information
    tariffs: list[Tariff] = msgspec.field(default_factory=lambda: list(DEFAULT_TARIFFS))
    quota: Quota = msgspec.field(default_factory=Quota)
    final_unit: FinalUnit = msgspec.field(default_factory=FinalUnit)
    tcc: float = (
        0.0  # idle seconds before a session's reservations are swept; 0 = 2 x validity_time
    )
    closed_ttl: float = 600.0  # seconds a finished session's answer is kept for retransmissions
    event_ttl: float = 3600.0  # seconds an event's record is kept: a resend within is not charged
    refunds: Refunds = msgspec.field(default_factory=Refunds)
    # Peers that may continue each other's sessions (client failover), e.g.
    # [["ctf-a.example", "ctf-b.example"]]; any other peer gets 5002 for a session it did not open.
    peer_groups: list[list[str]] = msgspec.field(default_factory=list)
    sweep_interval: float = 5.0
    notice_interval: float = 1.0  # how often queued RAR/ASR work is picked up
    service_contexts: list[str] = msgspec.field(
        default_factory=list
    )  # accepted suffixes; empty = any
    group_commit: bool = True  # one store transaction for the CCRs of one event-loop turn
    # With group_commit: how long (ms) the first CCR of a group waits for more batches to
    # share its store transaction (one fsync) before it is committed; a group of 64 commits
    # at once. 0 (the default) commits each drained batch by itself. Answers leave only
    # after the commit. Off by default: under erl-ccr-client (concurrency 50, 4 workers on
    # 2 cores) batches reach a worker more than 10 ms apart, so a window of 2 or 10 ms
    # merged only 1.1-1.4 batches per commit and saved no CPU (gy.py, `_gather`).
    commit_window_ms: float = 0.0
    demo: Demo = msgspec.field(default_factory=Demo)

    def __post_init__(self) -> None:
        _nonneg(tcc=self.tcc, closed_ttl=self.closed_ttl)
        if not EVENT_TTL_MIN <= self.event_ttl <= EVENT_TTL_MAX:
            raise ValueError(
                f"event_ttl must be between {EVENT_TTL_MIN:g} and {EVENT_TTL_MAX:g} seconds"
            )
        _check_peer_groups(self.peer_groups)
        if self.sweep_interval <= 0 or self.notice_interval <= 0:
            raise ValueError("sweep_interval and notice_interval must be > 0")
        if not 0 <= self.commit_window_ms <= 50:
            raise ValueError("commit_window_ms must be between 0 and 50")
        seen: set[str] = set()
        for t in self.tariffs:
            if t.key in seen:
                raise ValueError(
                    f"two tariffs for rating_group={t.rating_group} service_identifier={t.service_identifier}"
                )
            seen.add(t.key)

    @property
    def tcc_seconds(self) -> float:
        return self.tcc or 2.0 * max(self.quota.validity_time, 30)


class RfConfig(msgspec.Struct, forbid_unknown_fields=True):
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    interim_interval: int = 0  # Acct-Interim-Interval to send in ACAs; 0 = do not send
    retention_days: float = 90.0  # how long CDRs are kept; 0 = forever
    purge_interval: float = 60.0  # seconds between purges of CDRs past their retention

    def __post_init__(self) -> None:
        _nonneg(retention_days=self.retention_days)
        if self.purge_interval <= 0:
            raise ValueError("purge_interval must be > 0")


class Threshold(msgspec.Struct, forbid_unknown_fields=True):
    at: str | int  # spending (money) from which `status` applies
    status: str


class Counter(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    base_status: str = "valid"
    thresholds: list[Threshold] = msgspec.field(default_factory=list)

    def compiled(self) -> SyCounter:
        pairs = []
        for i, t in enumerate(self.thresholds):
            try:
                pairs.append((parse_money(t.at), t.status))
            except ValueError as exc:
                raise ConfigError(
                    f"Sy config: counters {self.id!r} thresholds[{i}].at: {exc}"
                ) from None
        pairs.sort()
        return SyCounter(self.id, self.base_status, pairs)


DEFAULT_COUNTERS = [
    Counter(
        id="monthly-spend",
        thresholds=[
            Threshold(at="50.00", status="near-limit"),
            Threshold(at="100.00", status="limit-reached"),
        ],
    )
]


class SyConfig(msgspec.Struct, forbid_unknown_fields=True):
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    counters: list[Counter] = msgspec.field(default_factory=lambda: list(DEFAULT_COUNTERS))
    peer_groups: list[list[str]] = msgspec.field(default_factory=list)  # as Gy's

    def __post_init__(self) -> None:
        _check_peer_groups(self.peer_groups)


def load(kind: type[T], name: str, table: Mapping[str, Any] | None) -> T:
    """Validate an application's config table into its Struct."""
    try:
        return msgspec.convert(dict(table or {}), kind, str_keys=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{name} config: {exc}") from None
