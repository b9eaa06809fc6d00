"""Money as fixed-point integers: micro-units of the configured currency, never floats."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

SCALE = 1_000_000  # micro-units per currency unit
EXPONENT = -6  # Unit-Value exponent matching SCALE
# The largest unit count and the largest amount one request may carry. Both stores keep
# integers as signed 64-bit (SQLite INTEGER, Redis via msgpack), and a ledger entry holds
# amount + shortfall == price; 2**62 leaves room to add two of them without overflow.
# A request past either bound is refused with 5004 before anything is stored.
MAX_UNITS = 2**62 - 1
MAX_AMOUNT = 2**62 - 1


def parse_money(text: str | int) -> int:
    """Parse "12.50" (currency units) into micro-units exactly; ints are taken as micro-units."""
    if isinstance(text, bool):
        raise ValueError(f"not an amount: {text!r}")
    if isinstance(text, int):
        return text
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not an amount: {text!r}")
    micro = value * SCALE
    if micro != micro.to_integral_value():
        raise ValueError(f"{text!r} has more than 6 decimals")
    return int(micro)


def format_money(micro: int) -> str:
    """Render micro-units as a decimal string with 6 places ("-0.050000")."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), SCALE)
    return f"{sign}{whole}.{frac:06d}"


def price_of(units: int, price: int, unit: int) -> int:
    """Price of `units` base units when each started block of `unit` costs `price`."""
    if units <= 0:
        return 0
    return -(-units // unit) * price


def affordable_units(available: int, price: int, unit: int) -> int:
    """Whole blocks of base units that `available` micro-units pay for."""
    if available <= 0:
        return 0
    return (available // price) * unit
