"""PollerApp by event shape: the schedule fans out one SQS message per organization, the queue's batches
poll one organization each (partial batch failures), manual invokes poll directly. No AWS: the store,
the queue client and the OpenAI client are in-memory."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from spendwatch.aws.batch import BatchProcessingError
from spendwatch.aws.secrets import EnvSecrets
from spendwatch.core.config import OrganizationConfig, SpendwatchConfig, parse_config
from spendwatch.core.errors import EnvironmentConfigError, NothingCollectedError, SpendwatchError
from spendwatch.core.snapshot import Snapshot
from spendwatch.poller.app import PollerApp, PollerSettings, PollRequest, is_scheduled_event, is_sqs_batch
from spendwatch.poller.openai_api import ADMIN_KEY_REJECTED, KeyProblemError, OpenAIClient

from .test_poll_collect import RoutedClient, full_routes

EVENTS = Path(__file__).resolve().parents[2] / "events"
POLL_TIME = datetime(2026, 11, 21, 23, tzinfo=UTC)
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/spendwatch-PollRequestsQueue"


def config(*ids: str) -> SpendwatchConfig:
    orgs = ", ".join(f"{{id: {i}, name: Org {i}}}" for i in ids)
    return parse_config(f"organizations: [{orgs}]", "test")


class MemoryStore:
    def __init__(self) -> None:
        self.items: dict[tuple[str, datetime], Snapshot] = {}
        self.puts = 0

    def put_snapshot(self, snapshot: Snapshot, *, expires_at: int) -> bool:
        self.puts += 1
        key = (snapshot.org_id, snapshot.poll_time)
        if key in self.items:
            return False
        self.items[key] = snapshot
        return True


class MemoryQueue:
    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.batches: list[list[dict[str, str]]] = []
        self.fail = fail

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        assert QueueUrl == QUEUE_URL
        assert len(Entries) <= 10
        self.batches.append(Entries)
        failed = [
            {"Id": e["Id"], "Code": "KMS.ThrottlingException", "SenderFault": False}
            for e in Entries
            if json.loads(e["MessageBody"])["org_id"] in self.fail
        ]
        return {"Successful": [], "Failed": failed}


class CountedClient(RoutedClient):
    @property
    def request_count(self) -> int:
        return len(self.calls)


def revoked_routes() -> dict[str, Any]:
    error = KeyProblemError(
        "s", "admin key rejected (401 invalid_api_key): wrong, revoked or expired key", ADMIN_KEY_REJECTED
    )
    return dict.fromkeys(full_routes(), error)


def app(
    cfg: SpendwatchConfig,
    *,
    queue_url: str | None = None,
    queue: MemoryQueue | None = None,
    routes_for: Callable[[str], dict[str, Any]] = lambda _: full_routes(),
    environ: dict[str, str] | None = None,
) -> tuple[PollerApp, MemoryStore]:
    env = PollerSettings.from_environ(
        {"SNAPSHOTS_TABLE": "snapshots", "SPENDWATCH_CONFIG_PARAMETER": "/spendwatch/config"}
        | ({"POLL_QUEUE_URL": queue_url} if queue_url else {})
        | (environ or {})
    )
    store = MemoryStore()
    poller = PollerApp(
        env=env,
        config=lambda: cfg,
        secrets=EnvSecrets({}),
        store=store,  # type: ignore[arg-type]
        now=lambda: POLL_TIME,
        sqs=lambda: queue or MemoryQueue(),  # type: ignore[arg-type,return-value]
    )

    def client_for(org: OrganizationConfig, remaining_ms: Any) -> OpenAIClient:
        return CountedClient(routes_for(org.id), session=False)  # type: ignore[return-value]

    poller.client_for = client_for  # type: ignore[method-assign]
    return poller, store


def scheduled() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "schedule.json").read_text())
    return event


def sqs_event(*bodies: str, receives: int | None = 1) -> dict[str, Any]:
    """Poll-queue records as Lambda delivers them, each received `receives` times (None: no count)."""
    template = json.loads((EVENTS / "sqs_poll_request.json").read_text())["Records"][0]
    attributes = dict(template["attributes"])
    if receives is None:
        del attributes["ApproximateReceiveCount"]
    else:
        attributes["ApproximateReceiveCount"] = str(receives)
    return {
        "Records": [
            template | {"messageId": f"m{i}", "body": body, "attributes": attributes} for i, body in enumerate(bodies)
        ]
    }


LAST_RECEIVE = 5
"""POLL_MAX_RECEIVE_COUNT's default, = the poll queue's maxReceiveCount in the template."""


def request(org_id: str) -> str:
    return json.dumps({"org_id": org_id, "poll_time": "2026-11-21T23:00:00Z"})


def test_poll_app_schedule_dispatches_one_message_per_org_in_batches_of_ten() -> None:
    queue = MemoryQueue()
    ids = [f"org-{i:02d}" for i in range(25)]
    poller, store = app(config(*ids), queue_url=QUEUE_URL, queue=queue)
    result = poller.handle(scheduled())
    assert [len(b) for b in queue.batches] == [10, 10, 5]
    bodies = [PollRequest.model_validate_json(e["MessageBody"]) for b in queue.batches for e in b]
    assert [b.org_id for b in bodies] == ids
    assert {b.poll_time for b in bodies} == {POLL_TIME}
    assert result == {"poll_time": "2026-11-21T23:00:00Z", "dispatched": ids}
    assert store.puts == 0, "the dispatching invocation polls nobody itself"


def test_poll_app_dispatch_failure_names_the_organizations_and_fails_the_invocation() -> None:
    poller, _ = app(config("a", "b", "c"), queue_url=QUEUE_URL, queue=MemoryQueue(fail=frozenset({"b"})))
    with pytest.raises(SpendwatchError, match=r"could not queue the poll of: b \(KMS.ThrottlingException\)"):
        poller.handle(scheduled())


def test_poll_app_without_a_queue_polls_every_org_in_one_invocation() -> None:
    poller, store = app(config("a", "b"))
    result = poller.handle(scheduled())
    assert set(result["organizations"]) == {"a", "b"}
    assert {org for org, _ in store.items} == {"a", "b"}


def test_poll_app_manual_invoke_polls_that_org_directly_even_with_a_queue() -> None:
    poller, store = app(config("a", "sim"), queue_url=QUEUE_URL)
    event = json.loads((EVENTS / "poll_org.json").read_text())
    result = poller.handle(event)
    assert list(result["organizations"]) == ["sim"]
    assert [org for org, _ in store.items] == ["sim"]
    with pytest.raises(SpendwatchError, match="no organization 'zzz'"):
        poller.handle({"org_id": "zzz"})


def test_poll_app_sqs_batch_reports_only_the_failed_messages() -> None:
    poller, store = app(
        config("good", "revoked"), routes_for=lambda o: revoked_routes() if o == "revoked" else full_routes()
    )
    response = poller.handle(sqs_event(request("good"), request("revoked"), "not json", request("gone")))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}
    good = store.items[("good", POLL_TIME)]
    assert good.failures == ()
    assert ("revoked", POLL_TIME) not in store.items, "not the last receive: the key stays free for the retry"
    assert ("gone", POLL_TIME) not in store.items, "an organization removed from the config is dropped"


def test_poll_app_sqs_batch_with_every_message_failed_fails_the_invocation() -> None:
    poller, _ = app(config("revoked"), routes_for=lambda _: revoked_routes())
    with pytest.raises(BatchProcessingError) as caught:
        poller.handle(sqs_event(request("revoked")))
    assert any(isinstance(e[1], NothingCollectedError) for e in caught.value.child_exceptions)


def test_poll_app_retry_after_nothing_collected_stores_the_retrys_data() -> None:
    """An outage on the first receive, recovery by the retry: the retry's snapshot is the one stored."""
    calls = {"n": 0}

    def routes(_: str) -> dict[str, Any]:
        calls["n"] += 1
        return revoked_routes() if calls["n"] == 1 else full_routes()

    poller, store = app(config("sim"), routes_for=routes)
    with pytest.raises(BatchProcessingError) as caught:
        poller.handle(sqs_event(request("sim"), receives=1))
    assert "receive 1 of 5: not stored" in str(caught.value.child_exceptions[0][1])
    assert store.items == {}
    assert poller.handle(sqs_event(request("sim"), receives=2)) == {"batchItemFailures": []}
    stored = store.items[("sim", POLL_TIME)]
    assert stored.failures == ()
    assert stored.month_to_date_usd is not None
    assert store.puts == 1, "one write in all: the failed receive wrote nothing"


def test_poll_app_last_receive_stores_the_failure_snapshot_and_still_fails_the_message() -> None:
    poller, store = app(config("revoked"), routes_for=lambda _: revoked_routes())
    for receive in range(1, LAST_RECEIVE):
        with pytest.raises(BatchProcessingError):
            poller.handle(sqs_event(request("revoked"), receives=receive))
    assert store.puts == 0
    with pytest.raises(BatchProcessingError) as caught:  # failed: SQS moves it to the poll DLQ
        poller.handle(sqs_event(request("revoked"), receives=LAST_RECEIVE))
    assert "receive 5 of 5: failure snapshot stored" in str(caught.value.child_exceptions[0][1])
    revoked = store.items[("revoked", POLL_TIME)]
    assert revoked.sources_ok == ()
    assert revoked.conditions == (ADMIN_KEY_REJECTED,), "what the alerter reports"
    # A receive beyond the limit (Lambda throttling also counts as a receive) is a last one too, and the
    # conditional put keeps it from writing a second item.
    with pytest.raises(BatchProcessingError):
        poller.handle(sqs_event(request("revoked"), receives=LAST_RECEIVE + 1))
    assert (store.puts, len(store.items)) == (2, 1)


def test_poll_app_last_receive_follows_poll_max_receive_count() -> None:
    poller, store = app(
        config("revoked"), routes_for=lambda _: revoked_routes(), environ={"POLL_MAX_RECEIVE_COUNT": "2"}
    )
    with pytest.raises(BatchProcessingError):
        poller.handle(sqs_event(request("revoked"), receives=1))
    assert store.items == {}
    with pytest.raises(BatchProcessingError):
        poller.handle(sqs_event(request("revoked"), receives=2))
    assert ("revoked", POLL_TIME) in store.items


def test_poll_app_record_without_a_receive_count_is_treated_as_the_last_receive() -> None:
    poller, store = app(config("revoked"), routes_for=lambda _: revoked_routes())
    with pytest.raises(BatchProcessingError):
        poller.handle(sqs_event(request("revoked"), receives=None))
    assert store.items[("revoked", POLL_TIME)].conditions == (ADMIN_KEY_REJECTED,)


def test_poll_app_partial_collection_is_stored_on_any_receive() -> None:
    def routes(_: str) -> dict[str, Any]:
        partial = revoked_routes()
        partial["/organization/projects"] = full_routes()["/organization/projects"]
        return partial

    poller, store = app(config("sim"), routes_for=routes)
    assert poller.handle(sqs_event(request("sim"), receives=1)) == {"batchItemFailures": []}
    assert store.items[("sim", POLL_TIME)].sources_ok == ("projects",)


def test_poll_app_direct_invoke_that_collected_nothing_stores_the_failures_and_fails() -> None:
    """`run` is its own last attempt (Lambda gives an invoked function no attempt number)."""
    poller, store = app(config("revoked"), routes_for=lambda _: revoked_routes())
    with pytest.raises(NothingCollectedError, match="revoked"):
        poller.handle({"org_id": "revoked"})
    assert [org for org, _ in store.items] == ["revoked"]


def test_poll_app_redelivered_message_writes_nothing_new() -> None:
    poller, store = app(config("sim"))
    event = json.loads((EVENTS / "sqs_poll_request.json").read_text())
    assert poller.handle(event) == {"batchItemFailures": []}
    assert poller.handle(event) == {"batchItemFailures": []}
    assert store.puts == 2
    assert len(store.items) == 1


@pytest.mark.parametrize(
    "body",
    [
        '{"org_id": "sim"}',
        '{"org_id": "Bad Id", "poll_time": "2026-11-21T23:00:00Z"}',
        '{"org_id": "sim", "poll_time": "2026-11-21T23:00:00"}',
        '{"org_id": "sim", "poll_time": "2026-11-21T23:00:00Z", "extra": 1}',
    ],
)
def test_poll_app_rejects_malformed_poll_requests(body: str) -> None:
    poller, store = app(config("sim", "other"))
    response = poller.handle(sqs_event(body, request("other")))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert list(store.items) == [("other", POLL_TIME)]


def test_poll_app_event_shapes() -> None:
    assert is_scheduled_event(scheduled())
    assert not is_scheduled_event({"org_id": "x"})
    assert is_sqs_batch(sqs_event(request("x")))
    assert not is_sqs_batch({"Records": [{"eventSource": "aws:dynamodb"}]})
    assert not is_sqs_batch(scheduled())


def test_poll_app_settings_name_a_bad_variable() -> None:
    base = {"SNAPSHOTS_TABLE": "snapshots", "SPENDWATCH_CONFIG_PARAMETER": "/spendwatch/config"}
    settings = PollerSettings.from_environ(base | {"POLL_QUEUE_URL": QUEUE_URL, "OPENAI_READ_TIMEOUT_S": "2.5"})
    assert (settings.poll_queue_url, settings.openai_read_timeout_s) == (QUEUE_URL, 2.5)
    assert settings.poll_max_receive_count == LAST_RECEIVE
    assert PollerSettings.from_environ(base | {"POLL_MAX_RECEIVE_COUNT": "3"}).poll_max_receive_count == 3
    with pytest.raises(EnvironmentConfigError, match="OPENAI_READ_TIMEOUT_S"):
        PollerSettings.from_environ(base | {"OPENAI_READ_TIMEOUT_S": "0"})
    with pytest.raises(EnvironmentConfigError, match="POLL_MAX_RECEIVE_COUNT"):
        PollerSettings.from_environ(base | {"POLL_MAX_RECEIVE_COUNT": "0"})


def test_poll_app_source_that_only_skipped_rows_is_not_reported_as_failed(caplog: pytest.LogCaptureFixture) -> None:
    """A cost row without an amount is skipped and named (issue 7, item 4); its source still answered."""
    from .test_poll_collect import NOV_1

    def routes(_: str) -> dict[str, Any]:
        table = full_routes()
        pages = cast("list[Any]", table[f"/organization/costs?{NOV_1}"])
        pages[0]["data"][0]["results"].append({"object": "organization.costs.result"})
        return table

    poller, store = app(config("sim"), routes_for=routes)
    result = poller.handle({"org_id": "sim"})
    assert result["organizations"]["sim"]["failed_sources"] == []
    snapshot = store.items[("sim", POLL_TIME)]
    assert [(f.source, f.kind) for f in snapshot.failures] == [("costs", "skipped_rows")]
    assert "costs" in snapshot.sources_ok
    messages = [r.getMessage() for r in caplog.records]
    assert "source answered but skipped rows" in messages
    assert "source failed" not in messages


def test_poll_cli_summary_lists_skipped_rows_apart_from_failures() -> None:
    from spendwatch.cli.main import _poll_summary
    from spendwatch.core.snapshot import SourceFailure

    from .test_poll_collect import collect

    snapshot = collect(CountedClient(full_routes()))
    noted = snapshot.model_copy(
        update={
            "failures": (
                SourceFailure(source="costs", kind="skipped_rows", detail="1 cost rows without an amount skipped (x)"),
                SourceFailure(source="subscription", kind="unavailable", detail="server error 502 after 4 attempts"),
            ),
            "sources_ok": tuple(s for s in snapshot.sources_ok if s != "subscription"),
        }
    )
    text = _poll_summary(noted)
    assert f"sources: {len(noted.sources_ok)} ok, 1 failed" in text
    assert "  failed [unavailable] server error 502 after 4 attempts: subscription" in text
    assert "  skipped in costs: 1 cost rows without an amount skipped (x)" in text
