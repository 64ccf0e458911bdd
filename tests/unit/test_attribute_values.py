"""`store.from_attribute_map`, the alerter's own reader of DynamoDB attribute values (a stream record's image,
a Query's items), must return what boto3's `TypeDeserializer` returns, and fail where it fails, on any input:
numbers exact (never rounded), odd type names, extra keys, malformed values."""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import DYNAMODB_CONTEXT, Binary, TypeDeserializer, TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from spendwatch.aws.store import deserialize, from_attribute_map

_boto3 = TypeDeserializer()


def canonical(value: Any) -> Any:
    """A comparable form: a Decimal by its exact text (NaN != NaN), a set in a fixed order, types kept."""
    if isinstance(value, Decimal):
        return ("N", str(value))
    if isinstance(value, Binary):
        return ("B", repr(value))  # Binary(b"...")
    if isinstance(value, set | frozenset):
        return ("set", sorted((canonical(v) for v in value), key=repr))
    if isinstance(value, dict):
        return ("M", [(k, canonical(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("L", [canonical(v) for v in value])
    return (type(value).__name__, value)


def outcome(convert: Any, value: Any) -> Any:
    """The result, or the error's type and text; the decimal context's flags are cleared first, as a
    conversion that fails midway leaves them set."""
    DYNAMODB_CONTEXT.clear_flags()
    try:
        return ("ok", canonical(convert(value)))
    except RecursionError:
        raise
    except Exception as exc:
        return ("error", type(exc), str(exc))


NUMBER_TEXT = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-(10**60), max_value=10**60).map(str),
    st.from_regex(r"-?[0-9]{0,45}(\.[0-9]{0,45})?([eE][-+]?[0-9]{1,4})?", fullmatch=True),
    st.text(max_size=12),
    st.sampled_from(["1e126", "1e125", "1e-130", "1e-131", "9.9999999999999999999999999999999999999E+125", "0e-9999"]),
)
TYPE_NAMES = st.sampled_from(
    ["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M", "s", "n", "Null", "bool", "m", "l", "X", "", "SSS"]
)
SCALARS = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=8)),
    st.builds(lambda n: {"N": n}, NUMBER_TEXT),
    st.builds(lambda b: {"B": b}, st.binary(max_size=8) | st.text(max_size=3)),
    st.builds(lambda b: {"BOOL": b}, st.booleans() | st.integers()),
    st.builds(lambda b: {"NULL": b}, st.booleans()),
    st.builds(lambda v: {"SS": v}, st.lists(st.text(max_size=4), max_size=3)),
    st.builds(lambda v: {"NS": v}, st.lists(NUMBER_TEXT, max_size=3)),
    st.builds(lambda v: {"BS": v}, st.lists(st.binary(max_size=4), max_size=3)),
    # Hostile shapes: an odd or unknown type name, more than one key, no key, not a mapping at all.
    st.dictionaries(TYPE_NAMES, st.text(max_size=4) | NUMBER_TEXT | st.none(), min_size=1, max_size=3),
    st.just({}),
    st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)),
)


def attribute_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.builds(lambda v: {"L": v}, st.lists(inner, max_size=4)),
            st.builds(lambda v: {"M": v}, st.dictionaries(st.text(max_size=5), inner, max_size=4)),
            st.builds(lambda t, v: {t: v}, st.sampled_from(["l", "m"]), st.lists(inner, max_size=2)),
        ),
        max_leaves=20,
    )


@settings(max_examples=1500, deadline=None)
@given(attribute_values())
def test_deserialize_property_matches_boto3_on_any_value(value: Any) -> None:
    assert outcome(deserialize, value) == outcome(_boto3.deserialize, value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), attribute_values(), max_size=6))
def test_from_attribute_map_property_matches_boto3_on_any_image(image: dict[str, Any]) -> None:
    ours = outcome(from_attribute_map, image)
    theirs = outcome(lambda i: {k: _boto3.deserialize(v) for k, v in i.items()}, image)
    assert ours == theirs


# What DynamoDB (and so TypeSerializer) accepts: at most 38 digits, magnitude 1E-130 to under 1E+126.
PYTHON_NUMBERS = st.builds(
    lambda digits, exponent: Decimal(f"{digits}E{exponent}"),
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.integers(min_value=-130, max_value=125),
).filter(lambda d: d.is_zero() or -130 <= d.adjusted() <= 125)
PYTHON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.text(max_size=10),
        st.integers(min_value=-(10**37), max_value=10**37),
        PYTHON_NUMBERS,
        st.binary(min_size=1, max_size=8),
        st.sets(st.text(min_size=1, max_size=4), min_size=1, max_size=3),
        st.sets(PYTHON_NUMBERS, min_size=1, max_size=3),
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), PYTHON_VALUES, max_size=8))
def test_from_attribute_map_property_round_trips_what_type_serializer_writes(item: dict[str, Any]) -> None:
    image = {key: TypeSerializer().serialize(value) for key, value in item.items()}
    read = from_attribute_map(image)
    assert canonical(read) == canonical({k: _boto3.deserialize(v) for k, v in image.items()})
    assert canonical(read) == canonical({k: _boto3.deserialize(TypeSerializer().serialize(v)) for k, v in item.items()})


@pytest.mark.parametrize(
    "text",
    ["1.00000000000000000000000000000000000000001", "1e126", "1e127", "1e-130", "1e-131", "-0", "NaN", "1_000", " 1"],
)
def test_deserialize_numbers_at_dynamodb_limits_as_boto3(text: str) -> None:
    assert outcome(deserialize, {"N": text}) == outcome(_boto3.deserialize, {"N": text})


def test_deserialize_numbers_never_rounded() -> None:
    with pytest.raises(decimal.Inexact):
        deserialize({"N": "1.00000000000000000000000000000000000000001"})  # 42 digits: refused, as boto3 does


def test_deserialize_numbers_exact() -> None:
    value = deserialize({"N": "12345678901234567890123456789012345678"})
    assert value == Decimal("12345678901234567890123456789012345678")
    assert str(deserialize({"N": "0.10"})) == "0.10", "the written digits are kept"


def test_deserialize_reads_first_key_and_lowercase_types_as_boto3() -> None:
    assert deserialize({"S": "a", "N": "1"}) == "a"
    assert deserialize({"n": "2"}) == Decimal(2)
    assert deserialize({"Null": True}) is None
    with pytest.raises(TypeError, match="Dynamodb type X is not supported"):
        deserialize({"X": "1"})
    with pytest.raises(TypeError, match="nonempty dictionary"):
        deserialize({})
