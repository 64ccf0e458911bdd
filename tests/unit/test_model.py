"""spendwatch.core.model: validation with pydantic's error shapes, frozen records, dumps, and no pydantic."""

from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spendwatch.core.model import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=5, pattern=r"^[a-z]+$")]
    count: Annotated[int, Field(ge=1, le=10)] = 1
    strict_count: Annotated[int, Field(strict=True)] = 0
    amount: Annotated[Decimal, Field(gt=0, decimal_places=2)] = Decimal(1)
    flag: StrictBool = False
    tags: Annotated[tuple[str, ...], Field(max_length=2)] = ()
    labels: dict[Annotated[str, Field(pattern=r"^[a-z]+$")], int] = Field(default_factory=dict)
    kind: Literal["a", "b"] = "a"
    when: date | None = None


def problems(model: type[BaseModel], data: Any) -> list[tuple[tuple[int | str, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()]


def test_model_validate_reports_every_problem_with_its_location_and_pydantic_type() -> None:
    found = problems(
        Limits,
        {
            "name": "TOOLONG",
            "count": 11,
            "strict_count": "3",
            "amount": "1.234",
            "flag": "yes",
            "tags": ["a", "b", "c"],
            "labels": {"Bad": "x"},
            "kind": "c",
            "when": "2026-13-01",
            "extra": 1,
        },
    )
    assert found == [
        (("name",), "string_too_long"),
        (("count",), "less_than_equal"),
        (("strict_count",), "int_type"),
        (("amount",), "decimal_max_places"),
        (("flag",), "bool_type"),
        (("tags",), "too_long"),
        (("labels", "Bad", "[key]"), "string_pattern_mismatch"),
        (("labels", "Bad"), "int_parsing"),
        (("kind",), "literal_error"),
        (("when",), "date_parsing"),
        (("extra",), "extra_forbidden"),
    ]
    assert problems(Limits, {}) == [(("name",), "missing")]
    assert problems(Limits, []) == [((), "model_type")]


def test_model_anchored_pattern_refuses_a_trailing_line_break() -> None:
    # Python's `$` matches before a final "\n": a one-line pattern must not let "abc\n" through.
    assert problems(Limits, {"name": "abc\n"}) == [(("name",), "string_pattern_mismatch")]


def test_model_lax_numbers_read_dynamodb_decimals_and_text_but_never_lose_a_fraction() -> None:
    assert Limits.model_validate({"name": "a", "count": Decimal("7"), "amount": "0.5"}).count == 7
    assert Limits.model_validate({"name": "a", "count": " 7 "}).count == 7
    assert problems(Limits, {"name": "a", "count": Decimal("7.5")}) == [(("count",), "int_from_float")]
    assert problems(Limits, {"name": "a", "amount": "NaN"}) == [(("amount",), "finite_number")]
    assert problems(Limits, {"name": "a", "amount": True}) == [(("amount",), "decimal_type")]
    # Trailing zeros are not decimal places: 1.500 has two at most.
    assert Limits.model_validate({"name": "a", "amount": Decimal("1.500")}).amount == Decimal("1.5")


def test_model_is_frozen_comparable_hashable_and_picklable() -> None:
    one = Limits(name="abc", tags=["x"])
    assert one.tags == ("x",)
    with pytest.raises(TypeError, match="frozen"):
        one.name = "other"
    assert one == Limits(name="abc", tags=("x",)) and one != Limits(name="abd", tags=("x",))
    assert hash(Cat(type="cat")) == hash(Cat(type="cat", lives=9)) and len({Cat(type="cat"), Cat(type="cat")}) == 1
    assert pickle.loads(pickle.dumps(one)) == one  # noqa: S301 - our own bytes
    assert dict(Limits(name="abc"))["name"] == "abc"


def test_model_copy_applies_the_update_without_validating_it() -> None:
    one = Limits(name="abc")
    copy = one.model_copy(update={"count": 99})
    assert copy.count == 99 and one.count == 1 and copy.name == "abc"


Stamp = Annotated[datetime, PlainSerializer(lambda v: v.strftime("%Y-%m-%d"), return_type=str, when_used="json")]


class Dumped(BaseModel):
    amount: Decimal
    at: datetime
    day: date
    stamp: Stamp
    wait: timedelta
    inner: Limits | None = None
    items: tuple[Limits, ...] = ()
    note: str | None = None


def test_model_dump_json_mode_writes_exact_text_and_python_mode_keeps_types() -> None:
    at = datetime(2026, 11, 29, 12, tzinfo=UTC)
    dumped = Dumped(amount=Decimal("0.10"), at=at, day=date(2026, 11, 29), stamp=at, wait=timedelta(hours=6))
    assert dumped.model_dump(mode="json", exclude_none=True) == {
        "amount": "0.10",
        "at": "2026-11-29T12:00:00Z",
        "day": "2026-11-29",
        "stamp": "2026-11-29",
        "wait": "PT21600S",
        "items": [],
    }
    python = dumped.model_copy(update={"items": (Limits(name="a"),)}).model_dump()
    assert python["amount"] == Decimal("0.10") and python["stamp"] == at and python["note"] is None
    assert python["items"][0]["name"] == "a" and isinstance(python["items"], tuple)


class Ordered(BaseModel):
    """Before validators run outermost (the last one first), after validators in order."""

    value: Annotated[
        str,
        AfterValidator(lambda v: v + "-after1"),
        BeforeValidator(lambda v: f"{v}-before1"),
        BeforeValidator(lambda v: f"{v}-before2"),
        AfterValidator(lambda v: v + "-after2"),
    ]


def test_model_annotated_validators_run_in_pydantic_order() -> None:
    assert Ordered(value="x").value == "x-before2-before1-after1-after2"


class InconsistentError(Exception):
    pass


class Checked(BaseModel):
    low: int
    high: int

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        return {"high": 10, **data} if isinstance(data, dict) else data

    @field_validator("low")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("low must not be negative")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Checked:
        if self.low > self.high:
            raise ValueError(f"low {self.low} exceeds high {self.high}")
        if self.low == 7:
            raise InconsistentError("raised as is")
        return self


class CheckedChild(Checked):
    @field_validator("low")
    @classmethod
    def _not_negative(cls, value: int) -> int:  # replaces the base's validator of the same name
        return abs(value)


def test_model_validators_locate_value_errors_and_let_other_exceptions_through() -> None:
    assert Checked(low=3).high == 10
    with pytest.raises(ValidationError) as caught:
        Checked(low=-1)
    [error] = caught.value.errors()
    assert (error["loc"], error["type"], error["msg"]) == (
        ("low",),
        "value_error",
        "Value error, low must not be negative",
    )
    with pytest.raises(ValidationError) as caught:
        Checked(low=11)
    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [((), "Value error, low 11 exceeds high 10")]
    with pytest.raises(InconsistentError):
        Checked(low=7)
    assert CheckedChild(low=-3).low == 3


class Cat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["cat"]
    lives: int = 9


class Dog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["dog"]
    good: StrictBool = True


class Home(BaseModel):
    pets: dict[str, Annotated[Cat | Dog, Field(discriminator="type")]] = Field(default_factory=dict)


def test_model_discriminated_union_picks_by_tag_and_locates_errors_under_it() -> None:
    home = Home(pets={"tom": {"type": "cat"}, "rex": {"type": "dog"}})
    assert isinstance(home.pets["tom"], Cat) and isinstance(home.pets["rex"], Dog)
    assert problems(Home, {"pets": {"x": {"type": "cow"}}}) == [(("pets", "x"), "union_tag_invalid")]
    assert problems(Home, {"pets": {"x": {}}}) == [(("pets", "x"), "union_tag_not_found")]
    assert problems(Home, {"pets": {"x": {"type": "dog", "good": "yes"}}}) == [
        (("pets", "x", "dog", "good"), "bool_type")
    ]


def test_model_builds_its_validator_on_first_use_not_at_class_creation() -> None:
    class Lazy(BaseModel):
        value: int

    assert Lazy.__dict__.get("__spendwatch_plan__") is None
    assert Lazy(value=1).value == 1
    assert Lazy.__dict__.get("__spendwatch_plan__") is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.decimals(allow_nan=True, places=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from([*Limits.model_fields, "other"]), json_values, max_size=8))
def test_model_hostile_input_is_a_validation_error_or_a_valid_record(data: dict[str, Any]) -> None:
    try:
        record = Limits.model_validate(data)
    except ValidationError as exc:
        assert exc.errors() and all(isinstance(e["loc"], tuple) and e["type"] for e in exc.errors())
    else:
        assert 1 <= record.count <= 10 and record.amount > 0 and record.kind in ("a", "b")


def test_functions_import_no_pydantic() -> None:
    """pydantic's import and model building cost ~0.9x an `import boto3` per cold start (docs/performance.md)."""
    modules = (
        "spendwatch.poller.app",
        "spendwatch.alerter.app",
        "spendwatch.watchdog.app",
        "spendwatch.digest.app",
        "spendwatch.core.config",
    )
    code = f"import sys; import {', '.join(modules)}; print(sorted(m for m in sys.modules if 'pydantic' in m))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_model_huge_or_non_ascii_numbers_are_refused_quickly_and_exactly() -> None:
    # 1E+1000000 must not be expanded to a million digits to be compared (it took minutes).
    assert problems(Limits, {"name": "a", "count": Decimal("1E+1000000")}) == [(("count",), "int_parsing_size")]
    assert problems(Limits, {"name": "a", "amount": Decimal("1E-1000000")}) == [(("amount",), "decimal_max_places")]
    assert Limits.model_validate({"name": "a", "count": "3.0"}).count == 3
    assert problems(Limits, {"name": "a", "count": "\uff13"}) == [(("count",), "int_parsing")]  # a fullwidth 3
    assert problems(Limits, {"name": "a", "count": Decimal("sNaN")}) == [(("count",), "finite_number")]


class Flags(BaseModel):
    on: bool | None = None
    day: date | None = None
    version: Literal[1] = 1
    sized: Annotated[int, Field(ge=0)] = Field(3, le=5)
    late: Annotated[int, AfterValidator(lambda v: v - 10), Field(ge=0)] = 10
    empty: int | None = Field(None, ge=0)
    unanchored: Annotated[str, Field(pattern=r"[a-z]+$")] = "a"


def test_model_lax_conversions_follow_pydantic() -> None:
    assert Flags(on=Decimal(1), day="2026-12-01T00:00:00Z", version=Decimal("1.000")).day == date(2026, 12, 1)
    assert Flags(on="TRUE").on is True and Flags(on=0.0).on is False
    assert problems(Flags, {"on": Decimal("sNaN")}) == [(("on",), "bool_parsing")]
    assert problems(Flags, {"on": " true "}) == [(("on",), "bool_parsing")]
    assert problems(Flags, {"day": "20261201"}) == [(("day",), "date_parsing")]
    assert problems(Flags, {"version": True}) == [(("version",), "literal_error")]


def test_model_constraints_apply_where_pydantic_applies_them() -> None:
    assert problems(Flags, {"sized": 9}) == [(("sized",), "less_than_equal")]  # the default's Field(le=5)
    assert problems(Flags, {"late": 5}) == [(("late",), "greater_than_equal")]  # after the validator: 5 - 10
    assert Flags().empty is None  # Field(None, ...) is a default, not "required"
    assert problems(Flags, {"unanchored": "abc\n"}) == [(("unanchored",), "string_pattern_mismatch")]


def test_model_mutable_default_is_each_instance_own() -> None:
    class Holder(BaseModel):
        values: dict[str, int] = {}

    assert Holder().values is not Holder().values


def test_model_validation_error_pickles() -> None:
    with pytest.raises(ValidationError) as caught:
        Limits.model_validate({})
    again = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 - our own bytes
    assert again.errors() == caught.value.errors()


def test_model_end_of_text_keeps_a_leading_bracket_a_member_of_its_class() -> None:
    from spendwatch.core.model import end_of_text

    assert end_of_text(r"^[]$a]+$") == r"^[]$a]+\Z"
    assert end_of_text(r"^[^]$]+$") == r"^[^]$]+\Z"
    assert end_of_text(r"^a\$[\]$]$") == r"^a\$[\]$]\Z"


class Loose(BaseModel):
    flag: bool | None = None
    seconds: float | None = None


def test_model_numbers_past_any_range_are_validation_errors_not_crashes() -> None:
    assert problems(Loose, {"flag": 10**400}) == [(("flag",), "bool_parsing")]
    assert problems(Loose, {"seconds": 10**400}) == [(("seconds",), "finite_number")]
    assert problems(Loose, {"seconds": Decimal("sNaN")}) == [(("seconds",), "finite_number")]


class Dated(BaseModel):
    date: date | None = None  # a field named like the type it holds: the annotation means the type


def test_model_annotation_names_resolve_in_the_module_before_the_class() -> None:
    assert Dated(date="2026-12-01").date == date(2026, 12, 1)
