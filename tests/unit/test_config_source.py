"""`SsmConfigSource`: whatever the parameter holds or however reading it fails, the deployed functions keep
the last valid config (or the bundled one on a cold start) and log the problem once, never crash."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spendwatch.aws.runtime import SsmConfigSource
from spendwatch.core import config as config_module
from spendwatch.core.config import SpendwatchConfig
from spendwatch.core.errors import ConfigError

VALID = '{"organizations":[{"id":"acme","name":"Acme"}]}'
OTHER = '{"organizations":[{"id":"beta","name":"Beta"}]}'
BUNDLED = '{"organizations":[{"id":"bundled","name":"Bundled"}]}'


class Parameter:
    """Stands in for powertools' `get_parameter`: returns the text, or raises the exception, it is given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, value: str | BaseException = VALID) -> None:

        self.value = value
        self.reads = 0
        monkeypatch.setattr("spendwatch.aws.runtime.read_parameter", self.get)

    def get(self, name: str, **kwargs: Any) -> str:
        self.reads += 1
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


def test_config_source_keeps_the_last_valid_config_when_the_parser_itself_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    parameter = Parameter(monkeypatch)
    source = SsmConfigSource("/spendwatch/config", bundled_path=None)
    assert source.get().organizations[0].id == "acme"

    def broken(text: str, source: str) -> SpendwatchConfig:
        raise RecursionError("maximum recursion depth exceeded")

    parameter.value = OTHER
    monkeypatch.setattr("spendwatch.aws.runtime.parse_config", broken)
    with caplog.at_level(logging.ERROR):
        assert source.get().organizations[0].id == "acme"
        assert source.get().organizations[0].id == "acme"
    assert source.source == "last_valid"
    assert source.last_error is not None
    assert source.last_error.problems == ["cannot be parsed (RecursionError: maximum recursion depth exceeded)"]
    logged = [r for r in caplog.records if "config unusable" in r.getMessage()]
    assert len(logged) == 1, "one line per new problem, not one per record"


@pytest.mark.parametrize(
    "failure",
    [TimeoutError("read timed out"), ConnectionResetError(), RuntimeError("botocore internal"), KeyError("Value")],
)
def test_config_source_keeps_the_last_valid_config_when_reading_fails_in_any_way(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    parameter = Parameter(monkeypatch)
    source = SsmConfigSource("/spendwatch/config", bundled_path=None)
    source.get()
    parameter.value = failure
    assert source.get().organizations[0].id == "acme"
    assert source.last_error is not None
    assert source.last_error.problems == [f"cannot be read ({type(failure).__name__}): run `spendwatch config push`"]


def test_config_source_on_a_cold_start_uses_the_bundled_config_whatever_the_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundled = tmp_path / "bundled_config.json"
    bundled.write_text(BUNDLED)  # canonical JSON: the layer carries no YAML parser
    Parameter(monkeypatch, OSError("no route to host"))
    source = SsmConfigSource("/spendwatch/config", bundled_path=bundled)
    assert source.get().organizations[0].id == "bundled"
    assert source.source == "bundled"


def test_config_source_parses_a_parameter_once_however_many_records_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    Parameter(monkeypatch, '{"organizations": [{"id": "BAD"}]}')
    calls = []
    real = config_module.parse_config

    def counting(text: str, source: str) -> SpendwatchConfig:
        calls.append(text)
        return real(text, source)

    monkeypatch.setattr("spendwatch.aws.runtime.parse_config", counting)
    source = SsmConfigSource("/spendwatch/config", bundled_path=None)
    for _ in range(5):
        with pytest.raises(ConfigError):
            source.get()
    assert len(calls) == 1


FAILURES = st.sampled_from(
    [ValueError, TypeError, KeyError, IndexError, RecursionError, MemoryError, UnicodeError, OSError, ArithmeticError]
)
POISON = '{"organizations":[{"id":"poison","name":"Crashes the parser"}]}'
EVENTS = st.one_of(
    st.just(VALID),
    st.just(OTHER),
    st.just(POISON),
    st.text(max_size=300),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
    st.sampled_from(['{"organizations": NaN}', "{" * 5000, '{"organizations":[{"id":"a","name":"A","x":1}]}']),
    FAILURES.map(lambda kind: kind("injected")),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENTS, min_size=1, max_size=12))
def test_config_source_never_fails_once_it_has_seen_a_valid_config(events: list[str | Exception]) -> None:
    """Any sequence of parameter values, read failures and parser crashes: after the first valid config,
    `get()` always returns the newest valid one and never raises."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        parameter = Parameter(monkeypatch)
        real = config_module.parse_config

        def parse(text: str, source: str) -> SpendwatchConfig:
            if text == POISON:
                raise LookupError("injected parser bug")
            return real(text, source)

        monkeypatch.setattr("spendwatch.aws.runtime.parse_config", parse)
        source = SsmConfigSource("/spendwatch/config", max_age_s=0, bundled_path=None)
        expected = source.get()
        for value in events:
            parameter.value = value
            got = source.get()
            if isinstance(value, str) and value != POISON:
                with contextlib.suppress(ConfigError):
                    expected = real(value, "check")
            assert got == expected
