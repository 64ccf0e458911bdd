"""`AlertStateStore.get_many` under throttling: unprocessed keys are re-asked with a bounded back-off."""

from __future__ import annotations

from typing import Any

import pytest

from spendwatch.aws.store import UNPROCESSED_ATTEMPTS, AlertStateStore, StoreThrottledError


class Throttled:
    """BatchGetItem that leaves every key unprocessed `times` times, then answers (nothing stored)."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.times:
            return {"Responses": {}, "UnprocessedKeys": RequestItems}
        return {"Responses": {"alerts": []}}


def test_alert_state_store_backs_off_on_unprocessed_keys_then_reads() -> None:
    client, slept = Throttled(2), list[float]()
    store = AlertStateStore("alerts", client, sleep=slept.append)  # type: ignore[arg-type]
    assert store.get_many("acme", ["budget#slack"]) == {}
    assert client.calls == 3
    assert slept == [0.1, 0.2]


def test_alert_state_store_gives_up_after_bounded_back_off_with_a_named_error() -> None:
    client, slept = Throttled(10**6), list[float]()
    store = AlertStateStore("alerts", client, sleep=slept.append)  # type: ignore[arg-type]
    with pytest.raises(StoreThrottledError, match="still unprocessed"):
        store.get_many("acme", ["budget#slack"])
    assert client.calls == UNPROCESSED_ATTEMPTS
    assert sum(slept) < 5


def test_store_and_config_clients_fail_fast_instead_of_botocores_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    from spendwatch.aws import runtime, store
    from spendwatch.aws.secrets import SSM_READ_TIMEOUT_S

    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)
    config: Any = store._client().meta.config
    assert (config.connect_timeout, config.read_timeout) == (3, 10)
    assert config.retries == {"mode": "standard", "total_max_attempts": 4}
    monkeypatch.setattr(runtime, "_config_provider", None)
    monkeypatch.setattr(SSMProvider, "get", lambda self, name, **kwargs: '{"organizations": []}')
    assert runtime.read_parameter("/spendwatch/config", max_age=60) == '{"organizations": []}'
    assert runtime._config_provider.client.meta.config.read_timeout == SSM_READ_TIMEOUT_S
