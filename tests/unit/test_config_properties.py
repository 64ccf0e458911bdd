"""Property tests of the config loader: any input gives a config or a `ConfigError` naming file, field and
problem, on both routes (the YAML a user writes, the canonical JSON the deployed functions read); the
functions' config source survives any failure; every number a valid config makes DynamoDB store fits."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from spendwatch.alerter.rules import ladder
from spendwatch.core import config_yaml
from spendwatch.core.config import (
    SpendwatchConfig,
    canonical_config_text,
    load_document,
    parse_config,
    parse_config_bytes,
    validate_config,
)
from spendwatch.core.config_input import MAX_CONFIG_BYTES
from spendwatch.core.errors import ConfigError
from spendwatch.core.money import percent_of
from spendwatch.core.numbers import dynamodb_number

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(SETTINGS, max_examples=25)
"""For inputs that take PyYAML up to ~0.4 s each (64 KB files, 1,000-character flow nesting)."""
SOURCE = "config/spendwatch.yaml"
# `line N[, column M]: `, `byte offset N: `, or a field path (or `(top level)`), then the problem.
_INDEX = r"""\[(?:\d+|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\]"""
_PATH = rf"(?:\(top level\)|(?:[A-Za-z0-9_-]+|{_INDEX})(?:{_INDEX}|\.[A-Za-z0-9_-]+)*)"
PROBLEM = re.compile(rf"^(?:byte offset \d+: |line \d+, column \d+: |(?:line \d+: )?{_PATH}: )\S")
"""`byte offset N: `, `line N, column M: `, or `[line N: ]field.path: `, then the problem."""
VALID = """\
version: 1
organizations:
  - id: acme
    name: Acme
    budget: {monthly_usd: 500, thresholds_percent: [50, 80, 100], thresholds_usd: [450]}
    channels: [slack]
    fallback_channel: mail
    hard_limit_usd: 1000
    credit_grants: [{id: g, amount_usd: 100, used_usd: 20, expires_at: 2027-01-01}]
    rules:
      budget: {projects: [{id: p, monthly_usd: 5}], line_items: [{name: "gpt-4o, input", monthly_usd: 50}]}
      forecast: {thresholds_percent: [100], min_days: 5}
      hard_limit: {percent: 90, repeat_interval: 6h}
      grant_expiry: {lead_days: [30, 7, 1]}
      low_balance: {min_usd: 20, min_runway_days: 7}
      spike: {factor: 3, baseline_days: 7, min_usd: 10}
      health: {failing_polls: 3, admin_key_expiry_days: 14}
channels:
  slack: {type: slack, channel: "#spend", mention: "<!here>"}
  mail: {type: email, sender: a@example.com, recipients: [b@example.com]}
silences:
  - {org: acme, rule: spike, until: 2026-12-01T00:00:00Z, reason: load test}
"""
HOSTILE_SCALARS = [
    ".inf",
    "-.inf",
    ".nan",
    "1:30.5",
    "190:20:30",
    "2026-02-30",
    "2026-12-01T25:00:00Z",
    "2026-13-01",
    "0x1F",
    "0b101",
    "0100",
    "1e400",
    "1e-400",
    "9" * 60,
    "0." + "0" * 50 + "1",
    "true",
    "no",
    "on",
    "null",
    "~",
    "''",
    '"\\u0000"',
    '"a\\nb"',
    '"\\r\\nBcc: x@y.z"',
    '"\\ud800"',
    "!!binary QUJD",
    "!!set {a, b}",
    "!!omap [{a: 1}]",
    "!!python/object:os.system x",
    "!foo bar",
    "*undefined",
    "[a, b]",
    "{a: 1}",
    "? [a, b]",
    "<<",
    "-1",
    "0",
    "1.0",
    "0.5",
    '"\u202e"',
    "&anchor x",
]
FIELD_NAMES = [
    "version",
    "organizations",
    "channels",
    "silences",
    "id",
    "name",
    "budget",
    "monthly_usd",
    "thresholds_percent",
    "thresholds_usd",
    "rules",
    "forecast",
    "min_days",
    "hard_limit_usd",
    "credit_grants",
    "expires_at",
    "until",
    "type",
    "<<",
]


def config_or_error(load: Callable[[], SpendwatchConfig], source: str) -> SpendwatchConfig | ConfigError:
    """The property: a config, or a ConfigError naming the source and, per problem, where and what."""
    try:
        return load()
    except ConfigError as exc:
        assert exc.source == source
        assert exc.problems
        for problem in exc.problems:
            assert "\n" not in problem and "\r" not in problem, problem
            assert PROBLEM.match(problem), problem
            assert "Input should" not in problem and "valid tuple" not in problem, problem
        return exc


# --- any text, any bytes, any encoding -------------------------------------------------------------------


PARSERS = st.sampled_from([config_yaml._LOADER, config_yaml._PureLoader])
"""libyaml's parser (when PyYAML has it) and PyYAML's own: the config reads the same with either."""


def with_parser(parser: type[Any], load: Callable[[], SpendwatchConfig]) -> Callable[[], SpendwatchConfig]:
    def run() -> SpendwatchConfig:
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setattr(config_yaml, "_LOADER", parser)
            return load()

    return run


@SETTINGS
@given(st.text(max_size=3000), PARSERS)
def test_config_any_text_gives_a_config_or_a_config_error(text: str, parser: type[Any]) -> None:
    config_or_error(with_parser(parser, lambda: parse_config(text, SOURCE)), SOURCE)


@SETTINGS
@given(st.binary(max_size=3000))
def test_config_any_bytes_give_a_config_or_a_config_error(raw: bytes) -> None:
    config_or_error(lambda: parse_config_bytes(raw, SOURCE), SOURCE)


ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be", "latin-1", "cp1252"]
ENCODINGS += ["shift_jis", "gb18030", "koi8-r", "mac-roman", "utf-7"]


@SETTINGS
@given(st.sampled_from(ENCODINGS), st.text(max_size=200), st.booleans())
def test_config_in_any_encoding_gives_a_config_or_a_config_error(encoding: str, name: str, mutate: bool) -> None:
    text = VALID.replace("name: Acme", f"name: {json.dumps(name)}") if mutate else VALID
    raw = text.encode(encoding, errors="replace")
    result = config_or_error(lambda: parse_config_bytes(raw, SOURCE), SOURCE)
    if encoding in {"utf-8", "utf-8-sig", "utf-16", "utf-32"} and not mutate:
        assert isinstance(result, SpendwatchConfig), result


# --- YAML-shaped documents with hostile scalars ----------------------------------------------------------


def yaml_flow(value: Any) -> str:
    """Flow-style YAML in which scalars are written raw (so hostile ones reach the YAML parser as written)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_flow(v) for v in value) + "]"
    return str(value)


SCALARS = st.one_of(
    st.sampled_from(HOSTILE_SCALARS),
    st.integers(-(10**50), 10**50).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=20).map(json.dumps),
)
KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.sampled_from(HOSTILE_SCALARS[:20]))
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)),
    max_leaves=25,
)


@SETTINGS
@given(DOCUMENTS, PARSERS)
def test_config_yaml_shaped_documents_with_hostile_scalars(document: Any, parser: type[Any]) -> None:
    text = yaml_flow(document) if isinstance(document, dict) else f"organizations: {yaml_flow(document)}"
    config_or_error(with_parser(parser, lambda: parse_config(text, SOURCE)), SOURCE)


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaf_paths(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaf_paths(v, (*path, i))] or [path]
    return [path]


def replace_at(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replace_at(value[path[0]], path[1:], new)
    return copy


VALID_DATA = json.loads(canonical_config_text(load_document(VALID, "valid")))
VALID_LEAVES = leaf_paths(VALID_DATA)


@SETTINGS
@given(st.sampled_from(VALID_LEAVES), st.one_of(SCALARS, DOCUMENTS))
def test_config_a_valid_config_with_one_hostile_value_on_the_yaml_route(path: tuple[Any, ...], new: Any) -> None:
    def as_yaml(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: as_yaml(v) for k, v in value.items()}
        if isinstance(value, list):
            return [as_yaml(v) for v in value]
        return json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else value

    text = yaml_flow(replace_at(as_yaml(VALID_DATA), path, new))
    config_or_error(lambda: parse_config(text, SOURCE), SOURCE)


def json_text(value: Any) -> str:
    """JSON with numbers written raw, so NaN, Infinity, huge and exotic numbers reach the JSON parser."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{json_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value).lower() if isinstance(value, bool) else "null" if value is None else str(value)


JSON_SCALARS = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "1e-400", "9" * 5000, "-0", "0.0", "true", "null"]),
    st.integers(-(10**60), 10**60),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.booleans(),
    st.none(),
)
JSON_DOCUMENTS = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
SSM = "SSM parameter /spendwatch/config"


@SETTINGS
@given(st.sampled_from(VALID_LEAVES), st.one_of(JSON_SCALARS, JSON_DOCUMENTS))
def test_config_canonical_json_with_one_hostile_value(path: tuple[Any, ...], new: Any) -> None:
    text = json_text(replace_at(VALID_DATA, path, new))
    config_or_error(lambda: parse_config(text, SSM), SSM)


@SETTINGS
@given(JSON_DOCUMENTS, st.integers(0, 200_000), st.sampled_from(["[", '{"a":', " ", "\\u0000", '"x",']))
def test_config_json_route_any_document_deep_or_huge(document: Any, repeat: int, unit: str) -> None:
    config_or_error(lambda: parse_config("{" + json.dumps("organizations") + ":" + json_text(document) + "}", SSM), SSM)
    text = '{"organizations": ' + unit * repeat
    config_or_error(lambda: parse_config(text, SSM), SSM)


@FEW
@given(st.integers(MAX_CONFIG_BYTES - 2000, MAX_CONFIG_BYTES + 2000), st.sampled_from(["#", "a", "é", "[", "- "]))
def test_config_inputs_near_the_size_bound(size: int, unit: str) -> None:
    text = "organizations: [{id: a, name: A}]\n" + unit * (size // len(unit.encode()))
    result = config_or_error(lambda: parse_config(text, SOURCE), SOURCE)
    if len(text.encode()) > MAX_CONFIG_BYTES:
        assert isinstance(result, ConfigError) and "a config may have" in result.problems[0]


@FEW
@given(st.integers(1, 20_000), st.sampled_from(["[", "{a: ", "- ", "  - ", "&a [*a, "]))
def test_config_deep_nesting_of_any_kind_is_a_config_error(depth: int, unit: str) -> None:
    text = "organizations: " + unit * depth
    config_or_error(with_parser(config_yaml._PureLoader, lambda: parse_config(text, SOURCE)), SOURCE)
    config_or_error(lambda: parse_config(text, SOURCE), SOURCE)


# --- numbers derived from a valid config that DynamoDB stores ---------------------------------------------


def exact(low: str, high: str) -> st.SearchStrategy[Decimal]:
    """Decimals between the bounds with 0 to 10 decimal places (what the config allows), now and then wild."""
    within = st.integers(0, 10).flatmap(
        lambda places: st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=places)
    )
    extremes = st.sampled_from([Decimal(x) for x in ("1e-125", "1e-130", "3.3e-121", "9.99e125", "1" + "0" * 40)])
    wild = st.one_of(extremes, st.decimals(min_value=Decimal("1e-140"), max_value=Decimal("1e130"), allow_nan=False))
    return st.one_of(*[within] * 9, wild)


@st.composite
def organizations(draw: st.DrawFn) -> dict[str, Any]:
    monthly = draw(exact("0.0000000001", "100000000"))
    ceiling = min(monthly * 10, Decimal(10**8))
    usd = draw(st.lists(exact("0.0000000001", "100000000").filter(lambda t: t <= ceiling), max_size=5, unique=True))
    percent = draw(st.lists(exact("1", "1000"), min_size=0 if usd else 1, max_size=5, unique=True))
    grants = draw(st.lists(st.tuples(exact("0.0000000001", "100000000"), exact("0", "100000000")), max_size=5))
    return {
        "id": "a",
        "name": "A",
        "budget": {
            "monthly_usd": str(monthly),
            "thresholds_usd": [str(t) for t in usd],
            "thresholds_percent": [str(t) for t in percent],
        },
        "hard_limit_usd": str(draw(exact("0.01", "100000000"))),
        "credit_grants": [
            {"id": f"g{i}", "amount_usd": str(max(a, u)), "used_usd": str(min(a, u)), "expires_at": "2027-01-01"}
            for i, (a, u) in enumerate(grants)
        ],
        "rules": {
            "forecast": {"thresholds_percent": [str(draw(exact("1", "1000")))]},
            "hard_limit": {"percent": str(draw(exact("1", "100")))},
            "spike": {"factor": str(draw(exact("1.0000000001", "1000"))), "min_usd": str(draw(exact("0", "1e8")))},
        },
    }


@SETTINGS
@given(organizations())
def test_config_every_stored_number_derived_from_a_valid_config_fits_dynamodb(org: dict[str, Any]) -> None:
    try:
        config = validate_config({"organizations": [org]}, "t")
    except ConfigError:
        event("refused")
        return
    event("accepted")
    org_config = config.organizations[0]
    assert org_config.budget is not None
    rules = org_config.rules
    stored: list[Decimal | int] = [rung.level for rung in ladder(org_config.budget)]  # alert state's notified_level
    stored += [*rules.forecast.thresholds_percent, rules.hard_limit.percent, rules.spike.factor]  # levels too
    if org_config.hard_limit_usd is not None:
        from spendwatch.poller.collect import usd_to_cents

        stored.append(usd_to_cents(org_config.hard_limit_usd))  # the snapshot's spend limit, in cents
    amounts = [g.amount_usd for g in org_config.credit_grants]
    used = [g.used_usd for g in org_config.credit_grants]
    with localcontext() as exact_sums:  # as the poller sums them: exactly, never rounded at 28 digits
        exact_sums.prec = 1000
        stored += [*amounts, *used, sum(amounts, Decimal(0)), sum(used, Decimal(0))]  # the credit summary
        stored += [sum((a - u for a, u in zip(amounts, used, strict=True)), Decimal(0))]
    serializer = TypeSerializer()
    for number in stored:
        assert dynamodb_number(Decimal(number)) == number, number  # DynamoDB's range and 38 digits
        serializer.serialize(number)  # what put_item does: raises on anything boto3 would round


def test_config_number_property_would_catch_a_level_dynamodb_cannot_store() -> None:
    # Not vacuous: a USD threshold that fits DynamoDB has a percent-of-budget level that may not (what the
    # bounds prevent). boto3 lets this one through; DynamoDB refuses it (range 1E-130 to 9.99E+125).
    level = percent_of(Decimal("1e-125"), Decimal(10**8))
    assert dynamodb_number(level) is None
