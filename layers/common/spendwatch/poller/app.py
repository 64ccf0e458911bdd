"""The poller's work for one invocation, decided by the event's shape.

- **Scheduled Event** (EventBridge, every `PollSchedule`): with `POLL_QUEUE_URL` set (as deployed), send
  one `{"org_id", "poll_time"}` message per organization to the poll queue and return: each organization
  is then polled by its own invocation, isolated from the others. Without a queue, poll every
  organization in this invocation.
- **SQS batch** (the poll queue): poll the organization each message names and store its snapshot. A
  message fails (and is retried, then dead-lettered) only when nothing at all could be collected.
- **`{"org_id": ...}`** (manual invoke): poll that organization now.

The snapshot key is (organization, scheduled time), written with a conditional put, so a retried or
duplicated message for the same moment writes nothing new. That is also why a poll that collected
nothing stores nothing while its message will be received again: the snapshot listing the failures
(which the alerter reports, e.g. `admin_key_rejected`) would occupy the key, and a retry that collects
everything could no longer store it. Only the last receive (`ApproximateReceiveCount` reaching
`POLL_MAX_RECEIVE_COUNT`, the queue's `maxReceiveCount`) stores the failure snapshot; its message still
fails, so it lands in the poll dead-letter queue.

A direct invocation (`run`) is treated as its own last attempt and always stores what it collected:
Lambda tells an asynchronously invoked function nothing about which attempt it is running, a manual
invoke is normally synchronous (not retried), and the deployed Scheduled Event only dispatches. (Were
the schedule to poll directly, without a queue, its asynchronous retry could therefore not replace a
failure snapshot of the first attempt.)

Every poll ends in time to store its snapshot: its deadline is the invocation's remaining time, read when
the poll starts, minus `WRITE_RESERVE_S` (`openai_api.Deadline`); every request is cut at that deadline and
`collect_snapshot` returns by it, listing a source still running as `deadline` and keeping the rest. So a
reply trickling a few bytes a second costs its source, never the snapshot (Lambda would otherwise end the
invocation before the write, on every receive).

Kept out of the handler so the handler stays a few lines and tests can inject the store, secrets, queue
and clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from spendwatch.aws.runtime import PollerEnv, SsmConfigSource, utc_now
from spendwatch.aws.secrets import SecretSource, SsmSecrets
from spendwatch.aws.store import SnapshotStore, ttl_epoch
from spendwatch.core.config import ORG_ID_PATTERN, OrganizationConfig, SpendwatchConfig
from spendwatch.core.errors import NothingCollectedError, SpendwatchError
from spendwatch.core.model import BaseModel, ConfigDict, Field, ValidationError
from spendwatch.core.observability import logger, metrics
from spendwatch.core.snapshot import VERIFY_NONCE_PATTERN, Snapshot, UtcTime, isoformat_utc, parse_utc
from spendwatch.poller.collect import collect_snapshot
from spendwatch.poller.openai_api import READ_TIMEOUT_S, Deadline, OpenAIClient

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

SQS_BATCH_LIMIT = 10


DEFAULT_MAX_RECEIVE_COUNT = 5


class PollerSettings(PollerEnv):
    """The poller's environment: `PollerEnv` plus the fan-out queue, its receive limit and the OpenAI
    read timeout."""

    poll_queue_url: str | None = None
    openai_read_timeout_s: Annotated[float, Field(gt=0, le=60)] = READ_TIMEOUT_S
    poll_max_receive_count: Annotated[int, Field(ge=1, le=1000)] = DEFAULT_MAX_RECEIVE_COUNT
    """the poll queue's redrive `maxReceiveCount`: the receive with this count is a message's last"""


class PollRequest(BaseModel):
    """The body of one poll-queue message: which organization, for which scheduled time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    org_id: Annotated[str, Field(pattern=ORG_ID_PATTERN)]
    poll_time: UtcTime


class VerifyRequest(BaseModel):
    """A `spendwatch verify` invoke: poll this organization now and mark the snapshot with the run's nonce."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    org_id: Annotated[str, Field(pattern=ORG_ID_PATTERN)]
    verify: Annotated[str, Field(pattern=VERIFY_NONCE_PATTERN)]


class BadPollRequestError(SpendwatchError):
    """A poll-queue message that is not a `PollRequest`."""


def poll_time_from_event(event: Mapping[str, Any], now: datetime) -> datetime:
    """The scheduled time of the invocation (a retry carries the same one); manual invokes use the minute."""
    scheduled = event.get("time") if isinstance(event, Mapping) else None
    if isinstance(scheduled, str):
        return parse_utc(scheduled)
    return now.astimezone(UTC).replace(second=0, microsecond=0)


def is_sqs_batch(event: Mapping[str, Any]) -> bool:
    records = event.get("Records") if isinstance(event, Mapping) else None
    return isinstance(records, list) and bool(records) and records[0].get("eventSource") == "aws:sqs"


def is_scheduled_event(event: Mapping[str, Any]) -> bool:
    return isinstance(event, Mapping) and event.get("detail-type") == "Scheduled Event"


def receive_count(record: Mapping[str, Any]) -> int | None:
    """`attributes.ApproximateReceiveCount` of a Lambda SQS record (1 on the first receive), or None."""
    attributes = record.get("attributes")
    value = attributes.get("ApproximateReceiveCount") if isinstance(attributes, Mapping) else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _sqs_client() -> SQSClient:
    import boto3  # noqa: PLC0415 - only the dispatching invocation needs it

    return boto3.client("sqs")


@dataclass
class PollerApp:
    env: PollerSettings
    config: Callable[[], SpendwatchConfig]
    secrets: SecretSource
    store: SnapshotStore
    now: Callable[[], datetime] = utc_now
    sqs: Callable[[], SQSClient] = _sqs_client
    _queue: SQSClient | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_environment(cls) -> PollerApp:
        env = PollerSettings.from_environ()
        return cls(
            env=env,
            config=SsmConfigSource(env.spendwatch_config_parameter).get,
            secrets=SsmSecrets(),
            store=SnapshotStore(env.snapshots_table),
        )

    # ---- entry point ----------------------------------------------------------------------------

    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Route by event shape (see the module docstring)."""
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if is_sqs_batch(event):
            return self.consume(event, context)
        if isinstance(event, Mapping) and "verify" in event:
            return self.verify(event, remaining_ms)
        return self.run(event, remaining_ms=remaining_ms)

    # ---- one organization -----------------------------------------------------------------------

    def client_for(self, org: OrganizationConfig, remaining_ms: Callable[[], int] | None) -> OpenAIClient:
        return OpenAIClient.for_org(
            org,
            self.secrets,
            base_url=self.env.openai_base_url,
            deadline=Deadline(remaining_ms),
            read_timeout_s=self.env.openai_read_timeout_s,
        )

    def poll_one(
        self,
        org: OrganizationConfig,
        poll_time: datetime,
        remaining_ms: Callable[[], int] | None,
        *,
        store_if_empty: bool = True,
        verify: str | None = None,
    ) -> Snapshot:
        """Poll the organization and store its snapshot once (conditional put).

        With `store_if_empty=False` a snapshot without any collected source is not stored: the caller is
        about to fail a message that will be received again, and that retry must find the key free.
        """
        client = self.client_for(org, remaining_ms)
        snapshot = collect_snapshot(org, client, poll_time=poll_time, now=self.now)
        if verify is not None:
            snapshot = snapshot.model_copy(update={"verify": verify})
        store = store_if_empty or bool(snapshot.sources_ok)
        written = store and self.store.put_snapshot(
            snapshot, expires_at=ttl_epoch(snapshot.collected_at, self.env.snapshot_retention_days)
        )
        # A source that only skipped rows (kind `skipped_rows`) answered: it is in `sources_ok` too.
        failed = [f for f in snapshot.failures if f.source not in snapshot.sources_ok]
        for failure in snapshot.failures:
            logger.warning(
                "source failed" if failure in failed else "source answered but skipped rows",
                org_id=org.id,
                source=failure.source,
                kind=failure.kind,
                detail=failure.detail,
            )
        # SnapshotsWritten is the one custom metric a poll emits (the "poller stopped" alarm reads it; $0.30 a
        # month); failing sources and request counts are in the log line below (dashboard: Logs Insights).
        if written:
            metrics.add_metric(name="SnapshotsWritten", unit="Count", value=1)
        if written:
            outcome = "snapshot stored"
        elif store:
            outcome = "snapshot already stored for this poll time"
        else:
            outcome = "nothing collected: snapshot not stored, so that the retry can store its own"
        logger.info(
            outcome,
            org_id=org.id,
            poll_time=isoformat_utc(poll_time),
            month_to_date_usd=str(snapshot.month_to_date_usd),
            sources_ok=len(snapshot.sources_ok),
            failed_sources=[f.source for f in failed],
            conditions=list(snapshot.conditions),
            requests=client.request_count,
        )
        return snapshot

    # ---- scheduled or manual invocation ---------------------------------------------------------

    def run(self, event: Mapping[str, Any], remaining_ms: Callable[[], int] | None = None) -> dict[str, Any]:
        poll_time = poll_time_from_event(event, self.now())
        config = self.config()
        wanted = event.get("org_id") if isinstance(event, Mapping) else None
        if wanted is None and self.env.poll_queue_url and is_scheduled_event(event):
            return self.dispatch(config, poll_time)
        orgs = [o for o in config.organizations if wanted in (None, o.id)]
        if not orgs:
            raise SpendwatchError(f"no organization {wanted!r} in the config")
        results: dict[str, Any] = {}
        empty: list[str] = []
        for org in orgs:
            snapshot = self.poll_one(org, poll_time, remaining_ms)
            results[org.id] = {
                "month_to_date_usd": None if snapshot.month_to_date_usd is None else str(snapshot.month_to_date_usd),
                "failed_sources": [f.source for f in snapshot.failures if f.source not in snapshot.sources_ok],
            }
            if not snapshot.sources_ok:
                empty.append(org.id)
        if empty:
            # The snapshots listing the failures are stored; failing the invocation raises the Errors alarm.
            raise NothingCollectedError(f"nothing could be collected for: {', '.join(empty)}")
        return {"poll_time": isoformat_utc(poll_time), "organizations": results}

    # ---- `spendwatch verify` -----------------------------------------------------------------------

    def verify(self, event: Mapping[str, Any], remaining_ms: Callable[[], int] | None = None) -> dict[str, Any]:
        """Poll one organization now for `spendwatch verify` and store the snapshot with the run's nonce, which
        makes the alerter post "spendwatch is connected" to its channels (`spendwatch.alerter.verify`).

        Never raises for the organization's own problems (a missing key, a refused scope): the answer lists
        them for the command to explain. The snapshot's key is this second, not a scheduled time.
        """
        try:
            request = VerifyRequest.model_validate(dict(event))
        except ValidationError as exc:
            raise BadPollRequestError(f"not a verify request: {exc.errors()[0]['msg']}") from None
        config = self.config()
        try:
            org = config.organization(request.org_id)
        except KeyError:
            known = ", ".join(o.id for o in config.organizations)
            raise SpendwatchError(
                f"no organization {request.org_id!r} in the deployed config (known: {known})"
            ) from None
        poll_time = self.now().astimezone(UTC).replace(microsecond=0)
        snapshot = self.poll_one(org, poll_time, remaining_ms, verify=request.verify)
        return {
            "verify": request.verify,
            "org_id": org.id,
            "org_name": org.name,
            "poll_time": isoformat_utc(poll_time),
            "month_to_date_usd": None if snapshot.month_to_date_usd is None else str(snapshot.month_to_date_usd),
            "sources_ok": list(snapshot.sources_ok),
            "failures": [f.model_dump() for f in snapshot.failures],
            "conditions": list(snapshot.conditions),
            "channels": org.all_channels(),
            "admin_key_parameter": org.admin_key_ref().parameter,
            "session_key_parameter": org.session_key_ref().parameter,
        }

    # ---- fan-out --------------------------------------------------------------------------------

    def dispatch(self, config: SpendwatchConfig, poll_time: datetime) -> dict[str, Any]:
        """One poll-queue message per organization, sent in batches of 10; raises if any send failed."""
        assert self.env.poll_queue_url is not None
        if self._queue is None:
            self._queue = self.sqs()
        when = isoformat_utc(poll_time)
        orgs = [org.id for org in config.organizations]
        failed: list[str] = []
        for start in range(0, len(orgs), SQS_BATCH_LIMIT):
            chunk = orgs[start : start + SQS_BATCH_LIMIT]
            response = self._queue.send_message_batch(
                QueueUrl=self.env.poll_queue_url,
                Entries=[
                    {"Id": str(index), "MessageBody": json.dumps({"org_id": org_id, "poll_time": when})}
                    for index, org_id in enumerate(chunk)
                ],
            )
            failed.extend(
                f"{chunk[int(entry['Id'])]} ({entry.get('Code', 'error')})" for entry in response.get("Failed", [])
            )
        logger.info("polls dispatched", poll_time=when, organizations=orgs, failed=failed)
        if failed:
            # The scheduled invocation is retried once; organizations already sent are deduplicated by
            # the snapshot's conditional put.
            raise SpendwatchError(f"could not queue the poll of: {', '.join(failed)}")
        return {"poll_time": when, "dispatched": orgs}

    def consume(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Poll the organization of each poll-queue message; report the failed ones to SQS."""
        from spendwatch.aws.batch import SQS, SqsRecord, process_partial_response  # noqa: PLC0415

        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        config = self.config()

        def poll_record(record: SqsRecord) -> None:
            try:
                request = PollRequest.model_validate(json.loads(record.body))
            except (ValueError, ValidationError) as exc:
                raise BadPollRequestError(f"message {record.message_id} is not a poll request: {exc}") from None
            try:
                org = config.organization(request.org_id)
            except KeyError:
                # Removed from the config after the dispatch: there is nothing left to poll.
                logger.warning("poll request for an unknown organization dropped", org_id=request.org_id)
                return
            receives = receive_count(record.raw_event)
            # Unknown count: treat as the last receive, so the failure is at least stored and reported.
            last = receives is None or receives >= self.env.poll_max_receive_count
            snapshot = self.poll_one(org, request.poll_time, remaining_ms, store_if_empty=last)
            if not snapshot.sources_ok:
                attempt = f"receive {receives or '?'} of {self.env.poll_max_receive_count}"
                outcome = "failure snapshot stored" if last else "not stored, retried after the visibility timeout"
                raise NothingCollectedError(f"nothing could be collected for: {org.id} ({attempt}: {outcome})")

        return dict(process_partial_response(event, poll_record, SQS))
