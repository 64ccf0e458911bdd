"""Partial batch responses: failed records are reported by their SQS message id or stream sequence number;
a batch whose every record failed raises, so Lambda retries it; the module stays cheap to import."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spendwatch.aws.batch import (
    DYNAMODB_STREAMS,
    SQS,
    BatchProcessingError,
    SqsRecord,
    StreamRecord,
    UnexpectedBatchTypeError,
    process_partial_response,
)


def sqs(*ids: str) -> dict[str, Any]:
    return {"Records": [{"messageId": i, "body": f"body of {i}", "eventSource": "aws:sqs"} for i in ids]}


def stream(*sequence_numbers: str) -> dict[str, Any]:
    return {"Records": [{"eventName": "INSERT", "dynamodb": {"SequenceNumber": n}} for n in sequence_numbers]}


def failing_on(*bad: str) -> Any:
    seen: list[str] = []

    def handle(record: SqsRecord | StreamRecord) -> None:
        seen.append(record.item_identifier)
        if record.item_identifier in bad:
            raise ValueError(f"cannot handle {record.item_identifier}")

    handle.seen = seen  # type: ignore[attr-defined]
    return handle


def test_batch_sqs_reports_only_the_failed_message_ids_and_runs_every_record() -> None:
    handler = failing_on("m2", "m4")
    response = process_partial_response(sqs("m1", "m2", "m3", "m4"), handler, SQS)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m4"}]}
    assert handler.seen == ["m1", "m2", "m3", "m4"]


def test_batch_stream_reports_failed_sequence_numbers() -> None:
    response = process_partial_response(stream("101", "102", "103"), failing_on("102"), DYNAMODB_STREAMS)
    assert response == {"batchItemFailures": [{"itemIdentifier": "102"}]}


def test_batch_without_failures_reports_an_empty_list() -> None:
    assert process_partial_response(stream("101"), failing_on(), DYNAMODB_STREAMS) == {"batchItemFailures": []}


def test_batch_every_record_failed_raises_with_each_error() -> None:
    with pytest.raises(BatchProcessingError) as caught:
        process_partial_response(sqs("m1", "m2"), failing_on("m1", "m2"), SQS)
    assert str(caught.value).startswith("All records failed processing. 2 individual errors logged separately below.")
    assert "ValueError: cannot handle m1" in str(caught.value)
    assert [str(info[1]) for info in caught.value.child_exceptions] == ["cannot handle m1", "cannot handle m2"]


@pytest.mark.parametrize("event", [{}, {"Records": []}, {"Records": "x"}, {"detail-type": "Scheduled Event"}])
def test_batch_event_without_records_is_an_unexpected_batch_type(event: dict[str, Any]) -> None:
    with pytest.raises(UnexpectedBatchTypeError):
        process_partial_response(event, failing_on(), SQS)


def test_batch_records_expose_what_the_handlers_read() -> None:
    record = SqsRecord(sqs("m1")["Records"][0])
    assert (record.message_id, record.body, record.raw_event["eventSource"]) == ("m1", "body of m1", "aws:sqs")
    assert StreamRecord(stream("7")["Records"][0]).sequence_number == "7"


def test_batch_base_exception_is_not_swallowed() -> None:
    def interrupt(record: SqsRecord) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process_partial_response(sqs("m1"), interrupt, SQS)


@given(st.lists(st.booleans(), min_size=1, max_size=20))
def test_batch_reports_exactly_the_failed_records_in_order(outcomes: list[bool]) -> None:
    ids = [f"m{i}" for i in range(len(outcomes))]
    bad = [i for i, ok in zip(ids, outcomes, strict=True) if not ok]
    if len(bad) == len(ids):
        with pytest.raises(BatchProcessingError):
            process_partial_response(sqs(*ids), failing_on(*bad), SQS)
    else:
        response = process_partial_response(sqs(*ids), failing_on(*bad), SQS)
        assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == bad


def test_batch_import_loads_no_powertools_batch_and_no_asyncio() -> None:
    """What it replaces cost a cold start asyncio, every event data class and every Powertools parser model."""
    code = (
        "import sys; import spendwatch.aws.batch; "
        "print(sorted(m for m in sys.modules if m.startswith(('asyncio', 'aws_lambda_powertools'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
