"""Exact money: JSON parsing that never lets a float touch an amount, and display formatting.

Amounts are `Decimal` from the JSON parser onward; names carry the unit (`_usd`, `_cents`).
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")


def loads_exact(text: str | bytes | bytearray) -> Any:
    """Parse JSON with every non-integer number as `Decimal` (integers stay `int`)."""
    return json.loads(text, parse_float=Decimal)


def format_usd(amount_usd: Decimal) -> str:
    """Display an amount rounded half-up to the cent, e.g. `$1,234.57`. Only for people, never stored."""
    rounded = amount_usd.quantize(CENT, rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,.2f}"


def percent_of(part: Decimal, whole: Decimal) -> Decimal:
    if whole <= 0:
        raise ValueError("percent of a non-positive amount")
    return part * 100 / whole


def format_percent(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


class DecimalJSONEncoder(json.JSONEncoder):
    """Encode Decimal as a string so the exact value survives any JSON consumer."""

    def default(self, o: object) -> object:
        if isinstance(o, Decimal):
            return str(o)
        return super().default(o)


def dumps_exact(value: object, *, indent: int | None = None) -> str:
    return json.dumps(value, cls=DecimalJSONEncoder, indent=indent, sort_keys=False)
