from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from spendwatch.aws import secrets as secrets_module
from spendwatch.aws.secrets import EnvSecrets, SsmSecrets, require
from spendwatch.core.config import SecretRef
from spendwatch.core.errors import SecretNotFoundError

REF = SecretRef(parameter="/spendwatch/acme/openai-session-key", env="OPENAI_SESSION_KEY")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ssm_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stands in for the Powertools SSMProvider SsmSecrets reads through: the parameter does not exist."""
    calls: list[dict[str, Any]] = []

    def missing(name: str, **kwargs: Any) -> str:
        calls.append({"name": name, **kwargs})
        raise parameters.exceptions.GetParameterError("An error occurred (ParameterNotFound) when calling GetParameter")

    monkeypatch.setattr(secrets_module, "_default_reader", lambda: SimpleNamespace(get=missing))
    return calls


def test_ssm_secrets_remembers_an_absent_parameter_for_the_cache_period(ssm_calls: list[dict[str, Any]]) -> None:
    clock = Clock()
    secrets = SsmSecrets(max_age_s=300, clock=clock)
    assert secrets.get(REF) is None
    clock.now = 299
    assert secrets.get(REF) is None
    assert len(ssm_calls) == 1
    clock.now = 301
    assert secrets.get(REF) is None
    assert len(ssm_calls) == 2


def test_ssm_secrets_force_fetch_bypasses_the_absence_cache(ssm_calls: list[dict[str, Any]]) -> None:
    secrets = SsmSecrets(clock=Clock())
    secrets.get(REF)
    secrets.get(REF, force_fetch=True)
    assert len(ssm_calls) == 2
    assert ssm_calls[1]["force_fetch"] is True


def test_require_names_where_the_secret_should_be() -> None:
    with pytest.raises(
        SecretNotFoundError, match="SSM parameter /spendwatch/acme/openai-session-key or env OPENAI_SESSION_KEY"
    ):
        require(EnvSecrets({}), REF, "session key")
