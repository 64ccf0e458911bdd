"""Which attribute a notified level goes in (issue 7, item 7): any Decimal must be storable, so the write
that records a sent message can never fail on its value."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendwatch.aws.store import DYNAMODB_MAX_DIGITS, level_attributes


def fits_dynamodb_number(text: str) -> bool:
    value = Decimal(text).normalize()
    return value.is_zero() or (len(value.as_tuple().digits) <= DYNAMODB_MAX_DIGITS and -130 <= value.adjusted() <= 125)


@settings(max_examples=300, deadline=None)
@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_level_attributes_property_any_decimal_is_stored_exactly(level: Decimal) -> None:
    name, value = level_attributes(level)
    if name == "notified_level":
        assert fits_dynamodb_number(value["N"])
        assert Decimal(value["N"]) == level
    else:
        assert name == "notified_level_s"
        assert str(Decimal(value["S"])) == str(level), "the exact string, digits and exponent kept"


@pytest.mark.parametrize(
    ("level", "attribute"),
    [
        ("80", "notified_level"),
        ("80.000", "notified_level"),
        ("0E-200", "notified_level"),
        ("1E-130", "notified_level"),
        ("12345678901234567890123456789012345678", "notified_level"),  # 38 digits
        ("123456789012345678901234567890123456789", "notified_level_s"),  # 39: the config
        ("0.123456789012345678901234567890123456789", "notified_level_s"),
        ("1E+126", "notified_level_s"),
        ("1E-131", "notified_level_s"),
        ("Infinity", "notified_level_s"),
    ],
)
def test_level_attributes_at_dynamodb_limits(level: str, attribute: str) -> None:
    assert level_attributes(Decimal(level))[0] == attribute
