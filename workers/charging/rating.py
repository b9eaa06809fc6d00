"""Tariff lookup and unit extraction: which price applies to a service, in which unit."""

from __future__ import annotations

from typing import Any

from .config import Quota, Tariff, service_key

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
