"""A local stand-in for Lambda's DynamoDB event source mapping.

Reads the table's stream over the real DynamoDB Streams API, shapes records exactly as Lambda delivers
them (`eventSourceARN` added, `ApproximateCreationDateTime` as epoch seconds), applies the template's
`FilterCriteria`, batches, invokes the handler, and honours `ReportBatchItemFailures`: it re-delivers
from the lowest failed sequence number, up to `MaximumRetryAttempts`, then sends a batch description to
the on-failure destination, as Lambda does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]


def matches(pattern: dict[str, Any], record: dict[str, Any]) -> bool:
    """EventBridge-pattern match for the subset the template uses: nested keys and lists of exact values."""
    for key, expected in pattern.items():
        if key not in record:
            return False
        actual = record[key]
        if isinstance(expected, dict):
            if not isinstance(actual, dict) or not matches(expected, actual):
                return False
        elif isinstance(expected, list):
            if any(isinstance(e, dict) for e in expected):
                raise NotImplementedError(f"content filters are not emulated: {expected}")
            if actual not in expected:
                return False
        else:
            raise ValueError(f"pattern values must be lists or objects, got {expected!r}")
    return True


def snapshot_inserts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records that insert a snapshot: what the alerter's filter passes (each poll also inserts its
    history summary)."""
    return [
        r
        for r in records
        if r.get("eventName") == "INSERT"
        and ((r.get("dynamodb") or {}).get("NewImage") or {}).get("kind", {}).get("S") == "snapshot"
    ]


def lambda_shape(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    shaped: dict[str, Any] = json.loads(json.dumps(record, default=_epoch))
    shaped["eventSourceARN"] = stream_arn
    for image in ("NewImage", "OldImage"):
        if isinstance(shaped.get("dynamodb", {}).get(image), dict):
            shaped["dynamodb"][image] = {k: _attribute(v) for k, v in shaped["dynamodb"][image].items()}
    return shaped


def _attribute(value: Any) -> Any:
    """DynamoDB Local (3.3.0) streams an empty map as `{}` where DynamoDB Streams sends `{"M": {}}`."""
    if value == {}:
        return {"M": {}}
    if isinstance(value, dict) and isinstance(value.get("M"), dict):
        return {"M": {k: _attribute(v) for k, v in value["M"].items()}}
    if isinstance(value, dict) and isinstance(value.get("L"), list):
        return {"L": [_attribute(v) for v in value["L"]]}
    return value


def _epoch(value: object) -> object:
    if isinstance(value, datetime):
        return int(value.timestamp())
    raise TypeError(type(value).__name__)


@dataclass
class DeliveryStats:
    invocations: int = 0
    delivered: int = 0
    filtered_out: int = 0
    retried_batches: int = 0
    dead_lettered: list[dict[str, Any]] = field(default_factory=list)


class StreamPump:
    def __init__(
        self,
        streams_client: Any,
        stream_arn: str,
        *,
        filter_patterns: list[dict[str, Any]],
        batch_size: int = 10,
        max_retries: int = 3,
        on_failure: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._client = streams_client
        self._arn = stream_arn
        self._patterns = filter_patterns
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._on_failure = on_failure
        self._iterators: dict[str, str] = {}
        self.stats = DeliveryStats()

    @classmethod
    def from_template_settings(
        cls, streams_client: Any, stream_arn: str, settings: dict[str, Any], **kwargs: Any
    ) -> StreamPump:
        filters = settings.get("FilterCriteria", {}).get("Filters", [])
        return cls(
            streams_client,
            stream_arn,
            filter_patterns=[json.loads(f["Pattern"]) for f in filters],
            batch_size=int(settings.get("BatchSize", 10)),
            max_retries=int(settings.get("MaximumRetryAttempts", 3)),
            **kwargs,
        )

    def read_all(self) -> list[dict[str, Any]]:
        """Every record still on the stream, without moving the pump's position."""
        return self._read({})

    def read_new(self) -> list[dict[str, Any]]:
        """Records appended since the last read, in Lambda's shape, before filtering."""
        return self._read(self._iterators)

    def _read(self, iterators: dict[str, str]) -> list[dict[str, Any]]:
        shards = self._client.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]
        records: list[dict[str, Any]] = []
        for shard in shards:
            shard_id = shard["ShardId"]
            iterator = (
                iterators.get(shard_id)
                or self._client.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            )
            while iterator:
                response = self._client.get_records(ShardIterator=iterator, Limit=1000)
                records.extend(lambda_shape(r, self._arn) for r in response.get("Records", []))
                next_iterator = response.get("NextShardIterator")
                if not response.get("Records") or next_iterator is None:
                    iterator = next_iterator
                    break
                iterator = next_iterator
            if iterator:
                iterators[shard_id] = iterator
        return records

    def deliver(self, handler: Handler, context: Any, records: list[dict[str, Any]] | None = None) -> DeliveryStats:
        """Deliver `records` (default: everything new on the stream) to the handler as Lambda would."""
        pending = self.read_new() if records is None else records
        passing = [r for r in pending if not self._patterns or any(matches(p, r) for p in self._patterns)]
        self.stats.filtered_out += len(pending) - len(passing)
        for start in range(0, len(passing), self._batch_size):
            self._deliver_batch(handler, context, passing[start : start + self._batch_size])
        return self.stats

    def _deliver_batch(self, handler: Handler, context: Any, batch: list[dict[str, Any]]) -> None:
        attempts = 0
        while batch:
            self.stats.invocations += 1
            try:
                response = handler({"Records": batch}, context)
                failures = (response or {}).get("batchItemFailures") or []
                failed_seqs = [f["itemIdentifier"] for f in failures]
            except Exception:
                failed_seqs = [batch[0]["dynamodb"]["SequenceNumber"]]
            if not failed_seqs:
                self.stats.delivered += len(batch)
                return
            # Lambda checkpoints at the lowest failed sequence number and retries from there.
            lowest = min(failed_seqs, key=int)
            index = next(i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] == lowest)
            self.stats.delivered += index
            batch = batch[index:]
            attempts += 1
            if attempts > self._max_retries:
                # With bisection on, Lambda narrows a persistently failing batch down to the poison
                # record; that record's description goes to the on-failure destination, the rest goes on.
                poison = batch[0]
                description = {
                    "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": attempts},
                    "DDBStreamBatchInfo": {
                        "shardId": "local",
                        "startSequenceNumber": poison["dynamodb"]["SequenceNumber"],
                        "endSequenceNumber": poison["dynamodb"]["SequenceNumber"],
                        "batchSize": 1,
                        "streamArn": self._arn,
                    },
                }
                self.stats.dead_lettered.append(description)
                if self._on_failure is not None:
                    self._on_failure(description)
                batch = batch[1:]
                attempts = 0
                continue
            self.stats.retried_batches += 1
