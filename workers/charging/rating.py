"""Rating: which tariff applies to each service of a CCR, in which unit, and what the store
should reserve and debit for it (`rate`). Pure: no store, no loop."""

from __future__ import annotations

from typing import Any

from chargegw.codec import Avp, DiameterError, ResultCode

from . import core
from .config import Quota, Tariff, service_key
from .core import ServiceReq
from .money import MAX_AMOUNT, MAX_UNITS, price_of

UNIT_AVPS = {
    "time": ("cc_time",),
    "volume": ("cc_total_octets", "cc_input_octets", "cc_output_octets"),
    "units": ("cc_service_specific_units",),
}


class Rater:
    """Tariffs indexed by (rating group, service identifier), with the quota per unit type."""

    def __init__(self, tariffs: list[Tariff], quota: Quota) -> None:
        self.by_key = {t.key: t for t in tariffs}
        self.quota = quota

    def tariff(self, rating_group: int | None, service_identifier: int | None) -> Tariff | None:
        """Most specific tariff: (RG, SI), then RG alone, then SI alone, then the default."""
        get = self.by_key.get
        if rating_group is not None:
            t = (
                get(service_key(rating_group, service_identifier))
                if service_identifier is not None
                else None
            )
            return t or get(service_key(rating_group, None))
        if service_identifier is not None:
            return get(service_key(None, service_identifier)) or get(":")
        return get(":")

    def tariff_by_key(self, key: str) -> tuple[int, int] | None:
        t = self.by_key.get(key)
        return (t.micro, t.unit_size) if t else None

    def quota_for(self, tariff: Tariff) -> int:
        if tariff.quota is not None:
            return tariff.quota
        q = self.quota
        return (
            q.time
            if tariff.unit_type == "time"
            else q.volume
            if tariff.unit_type == "volume"
            else q.units
        )


def units_of(container: Any, unit_type: str) -> int | None:
    """The amount of `unit_type` in a RSU/USU group; None when the container does not say.

    Volume counts CC-Total-Octets, or input plus output octets when the total is absent.
    """
    if container is None:
        return None
    if unit_type == "time":
        return container.cc_time
    if unit_type == "units":
        return container.cc_service_specific_units
    total = container.cc_total_octets
    if total is not None:
        return total
    inp, out = container.cc_input_octets, container.cc_output_octets
    if inp is None and out is None:
        return None
    return (inp or 0) + (out or 0)


class BadRequest(DiameterError):
    """A CCR answered with a protocol error (5004/5005) naming the faulty AVP by `name` and
    the value to show in Failed-AVP."""

    def __init__(self, result_code: int, name: str, value: Any) -> None:
        super().__init__(
            result_code, f"{name}: {ResultCode(result_code).name}", [Avp.new(name, value)]
        )


_UNIT_AVP = {"time": "cc_time", "volume": "cc_total_octets", "units": "cc_service_specific_units"}


class Rated:
    """A service of the request with its tariff (None: unrated) and what the store should do."""

    __slots__ = ("rating_group", "service_identifier", "tariff", "req")

    def __init__(
        self, rating_group: int | None, service_identifier: int | None, tariff: Tariff | None
    ) -> None:
        self.rating_group = rating_group
        self.service_identifier = service_identifier
        self.tariff = tariff
        self.req: ServiceReq | None = None


class _Svc:
    """One MSCC of the request, or its top-level service (no Rating-Group)."""

    __slots__ = ("rating_group", "service_identifier", "rsu", "usus")

    def __init__(self, rg: int | None, sid: int | None, rsu: Any, usus: list[Any]) -> None:
        self.rating_group = rg
        self.service_identifier = sid
        self.rsu = rsu
        self.usus = usus


def services_of(v: Any) -> list[_Svc]:
    """The request's services: its MSCCs, or the top-level units when it has none."""
    msccs = v.multiple_services_credit_control
    if msccs:
        return [
            _Svc(m.rating_group, m.service_identifier[0] if m.service_identifier else None,
                 m.requested_service_unit, m.used_service_unit)
            for m in msccs
        ]  # fmt: skip
    rsu, usus = v.requested_service_unit, v.used_service_unit
    if rsu is not None or usus:
        return [_Svc(None, v.service_identifier, rsu, usus)]
    return []


def _units(u: Any, unit_type: str, name: str) -> int | None:
    if u is None:
        return None
    money = u.cc_money
    if money is not None and money.unit_value is not None and money.unit_value.value_digits < 0:
        raise BadRequest(
            ResultCode.DIAMETER_INVALID_AVP_VALUE, name,
            {"cc_money": {"unit_value": {"value_digits": money.unit_value.value_digits}}},
        )  # fmt: skip
    return units_of(u, unit_type)


def _too_big(mscc: bool, svc: _Svc, used: bool, u: Any, unit_type: str) -> BadRequest:
    """5004 for units (or their price) past what the money arithmetic holds (MAX_UNITS,
    MAX_AMOUNT), naming the unit AVPs at fault inside their RSU/USU (and MSCC)."""
    if u is None:
        inner: dict[str, Any] = {}
    elif unit_type == "volume" and u.cc_total_octets is None:
        inner = {
            k: v for k in ("cc_input_octets", "cc_output_octets") if (v := getattr(u, k)) is not None
        }
    else:
        inner = {_UNIT_AVP[unit_type]: getattr(u, _UNIT_AVP[unit_type])}
    name = "Used-Service-Unit" if used else "Requested-Service-Unit"
    bad = ResultCode.DIAMETER_INVALID_AVP_VALUE
    if not mscc:
        return BadRequest(bad, name, inner)
    block: dict[str, Any] = {
        "used_service_unit" if used else "requested_service_unit": [inner] if used else inner
    }
    if svc.rating_group is not None:
        block["rating_group"] = svc.rating_group
    if svc.service_identifier is not None:
        block["service_identifier"] = [svc.service_identifier]
    return BadRequest(bad, "Multiple-Services-Credit-Control", block)


def rate(
    v: Any,
    rtype: int,
    rater: Rater,
    honour_requested: bool,
    cache: dict[tuple[int | None, int | None], tuple[Tariff | None, str, int]],
) -> list[Rated]:
    """Rate each service of request view `v`: its tariff, and the units to debit (USU) and to
    grant (RSU, capped by the quota). BadRequest for units past the money bounds. `cache`
    keeps (RG, SI) -> (tariff, store key, quota) so that rating is a dict look-up."""
    out: list[Rated] = []
    granting = rtype in (core.INITIAL, core.UPDATE, core.EVENT)
    svcs = services_of(v)
    if not svcs and rtype == core.EVENT:
        svcs = [_Svc(None, None, None, [])]
    mscc = bool(v.multiple_services_credit_control)
    for svc in svcs:
        rg, sid = svc.rating_group, svc.service_identifier
        hit = cache.get((rg, sid))
        if hit is None:
            t0 = rater.tariff(rg, sid)
            hit = (t0, service_key(rg, sid), rater.quota_for(t0) if t0 is not None else 0)
            if len(cache) < 4096:
                cache[(rg, sid)] = hit
        t, skey, quota = hit
        s = Rated(rg, sid, t)
        out.append(s)
        if t is None:
            continue
        used = 0
        for u in svc.usus:
            used += _units(u, t.unit_type, "Used-Service-Unit") or 0
            if used > MAX_UNITS or price_of(used, t.micro, t.unit_size) > MAX_AMOUNT:
                raise _too_big(mscc, svc, True, u, t.unit_type)
        requested = 0
        rsu = svc.rsu
        if granting and (rsu is not None or rtype == core.EVENT):
            asked = _units(rsu, t.unit_type, "Requested-Service-Unit")
            if asked is not None and asked > MAX_UNITS:
                raise _too_big(mscc, svc, False, rsu, t.unit_type)
            if rtype == core.EVENT:
                requested = asked if asked is not None else quota
                if price_of(requested, t.micro, t.unit_size) > MAX_AMOUNT:
                    raise _too_big(mscc, svc, False, rsu, t.unit_type)
            elif asked and honour_requested:
                requested = min(asked, quota)
            else:
                requested = quota
        s.req = ServiceReq(skey, t.micro, t.unit_size, used, requested)
    return out
