"""The money check: what the OCS should have debited for the usage the generator reported.

Every CCR-U/T of a Gy session flow reports Used-Service-Unit (CC-Total-Octets `used_octets`)
for each of its rating groups; the OCS debits each report at price x started blocks
(`price_of`, the same function the OCS and `chargegw ledger check` use), so the expected
rated total is exact for reports answered 2001. Reports whose fate the generator cannot know
(timed out, lost, answered with another code) widen the expectation into a range [low, high].
`--verify-ledger` compares that with the change in `chargegw ledger check --json`'s `rated`
(debits + shortfall) across the run, so a load run is also a correctness run. It assumes the
generator is the only traffic on that store during the run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

from .scenarios import Scenario

MONEY_NEUTRAL = {"rf", "sy", "test_app"}


def parse_money(text: str) -> int:
    """Currency units ("0.01") to integer micro-units, exactly (no float)."""
    from decimal import Decimal, InvalidOperation

    try:
        micro = Decimal(text.strip()) * 1_000_000
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if micro != micro.to_integral_value():
        raise ValueError(f"{text!r} has more than 6 decimals")
    return int(micro)


def parse_tariffs(specs: list[str]) -> dict[int, tuple[int, int]]:
    """`RG=PRICE/UNIT_SIZE` (e.g. 100=0.01/1048576) -> {rating group: (micro price, unit)}."""
    out = {}
    for spec in specs:
        m = re.fullmatch(r"\s*(\d+)=([\d.]+)/(\d+)\s*", spec)
        if not m:
            raise ValueError(f"--expect-tariff {spec!r}: expected RG=PRICE/UNIT_SIZE")
        out[int(m.group(1))] = (parse_money(m.group(2)), int(m.group(3)))
    return out


def tariffs_from_config(config: str | None) -> dict[int, tuple[int, int]]:
    """The Gy tariffs of a gateway config (its rating-group entries), as the OCS reads them."""
    import argparse

    from chargegw.workers.charging.cli_common import load_gy  # noqa: PLC0415

    _dir, gy = load_gy(argparse.Namespace(config=config, data_dir=None))
    return {t.rating_group: (t.micro, t.unit_size) for t in gy.tariffs
            if t.rating_group is not None and t.service_identifier is None}


def _price_of(units: int, price: int, unit: int) -> int:
    return 0 if units <= 0 else -(-units // unit) * price


def expected_debits(scn: Scenario, usage: dict[str, dict[str, int]],
                    tariffs: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """Expected rated money in micro-units: exact `low` (2001 answers) and `high` (+ unknown)."""
    low = high = 0
    flows = []
    for i, f in enumerate(scn.flows):
        if f.kind in MONEY_NEUTRAL or (f.kind == "gy-event" and f.requested_action in (2, 3)):
            continue
        if f.kind != "gy":
            raise ValueError(f"the money check covers Gy session flows; flow {i} is {f.kind} "
                             f"with Requested-Action {f.requested_action}")
        per_report = 0
        for rg in f.rating_groups:
            if rg not in tariffs:
                raise ValueError(f"no tariff for rating group {rg} (give --expect-tariff)")
            per_report += _price_of(f.used_octets, *tariffs[rg])
        u = usage.get(str(i), {"answered_2001": 0, "unknown": 0})
        low += u["answered_2001"] * per_report
        high += (u["answered_2001"] + u["unknown"]) * per_report
        flows.append({"flow": i, "per_report_micro": per_report, **u})
    return {"low_micro": low, "high_micro": high, "flows": flows}


def ledger_snapshot(config: str | None) -> dict[str, Any]:
    """`chargegw ledger check --json` of the deployment (run as the operator would)."""
    argv = [sys.executable, "-m", "chargegw.cli", "ledger", "check", "--json"]
    if config:
        argv += ["--config", config]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    import orjson

    try:
        return orjson.loads(out.stdout)
    except orjson.JSONDecodeError:
        raise ValueError(f"chargegw ledger check --json failed: {out.stderr.strip()[-400:]}"
                         ) from None


def verify(before: dict[str, Any], after: dict[str, Any], exp: dict[str, Any]) -> dict[str, Any]:
    delta = int(after["rated"]) - int(before["rated"])
    ok = exp["low_micro"] <= delta <= exp["high_micro"] and bool(after.get("ok"))
    return {"rated_delta_micro": delta, "ledger_ok": bool(after.get("ok")),
            "ledger_problems": list(after.get("problems", []))[:20], "passed": ok}


def fmt(micro: int) -> str:
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), 1_000_000)
    return f"{sign}{whole}.{frac:06d}"
