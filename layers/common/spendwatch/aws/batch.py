"""Partial batch responses for Lambda's SQS and DynamoDB Streams event sources (`ReportBatchItemFailures`).

Each record goes to the record handler; the records whose handler raised are reported in
`batchItemFailures` (SQS: the `messageId`; DynamoDB Streams: `dynamodb.SequenceNumber`), so Lambda retries
only those (a stream mapping re-delivers from the lowest reported one). When every record failed, the
invocation fails with `BatchProcessingError`, so the batch counts as an error and is retried, bisected
and finally dead-lettered.

This is the contract of Powertools' batch utility, which it replaces: importing that utility pulled in
asyncio and every event data class and, once pydantic was loaded (the poller's case), built every
Powertools parser model, about 70 ms of each alerter cold start and 200 ms of each poll's, plus 1.3 MB
of the layer for this loop (docs/performance.md).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypedDict, TypeVar

ExceptionInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]


class ItemFailure(TypedDict):
    itemIdentifier: str


class PartialItemFailureResponse(TypedDict):
    batchItemFailures: list[ItemFailure]


class BatchProcessingError(Exception):
    """Every record of the batch failed; `child_exceptions` holds each one's `sys.exc_info()`."""

    def __init__(self, msg: str, child_exceptions: list[ExceptionInfo] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.child_exceptions = child_exceptions or []

    def __str__(self) -> str:
        # The invocation's error message: each record's own error, as Lambda logs nothing else about it.
        parts = [f"{self.msg}\n"]
        parts += ["".join(traceback.format_exception(*info)) for info in self.child_exceptions]
        return "\n".join(parts)


class UnexpectedBatchTypeError(BatchProcessingError):
    """The event is not a batch of records (no `Records` list)."""


@dataclass(frozen=True)
class SqsRecord:
    """One SQS message as Lambda delivers it."""

    raw_event: dict[str, Any]

    @property
    def message_id(self) -> str:
        return str(self.raw_event.get("messageId"))

    @property
    def body(self) -> str:
        return str(self.raw_event.get("body") or "")

    @property
    def item_identifier(self) -> str:
        return self.message_id


@dataclass(frozen=True)
class StreamRecord:
    """One DynamoDB Streams record as Lambda delivers it."""

    raw_event: dict[str, Any]

    @property
    def sequence_number(self) -> str:
        return str((self.raw_event.get("dynamodb") or {}).get("SequenceNumber"))

    @property
    def item_identifier(self) -> str:
        return self.sequence_number


RecordT = TypeVar("RecordT", SqsRecord, StreamRecord)


@dataclass(frozen=True)
class BatchSource(Generic[RecordT]):
    record_type: type[RecordT]


SQS = BatchSource(SqsRecord)
DYNAMODB_STREAMS = BatchSource(StreamRecord)


def process_partial_response(
    event: Mapping[str, Any], record_handler: Callable[[RecordT], object], source: BatchSource[RecordT]
) -> PartialItemFailureResponse:
    """Run `record_handler` on each record; report the failed ones, or raise when all failed."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not records or not isinstance(records, list):
        raise UnexpectedBatchTypeError("Unexpected batch event type: no Records list")
    failed: list[ItemFailure] = []
    errors: list[ExceptionInfo] = []
    for raw in records:
        record = source.record_type(raw)
        try:
            record_handler(record)
        except Exception:  # each record's failure is reported, not raised: the others still run
            errors.append(sys.exc_info())
            failed.append({"itemIdentifier": record.item_identifier})
    if failed and len(failed) == len(records):
        raise BatchProcessingError(
            f"All records failed processing. {len(errors)} individual errors logged separately below.", errors
        )
    return {"batchItemFailures": failed}
