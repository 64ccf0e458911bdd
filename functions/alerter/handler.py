"""Alerter Lambda: for each snapshot INSERT on the table's stream, send the alerts whose state changed."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from spendwatch.alerter_app import AlerterApp
from spendwatch.observability import logger, metrics

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
_app: AlerterApp | None = None


def app() -> AlerterApp:
    global _app  # noqa: PLW0603
    if _app is None:
        _app = AlerterApp.from_environment()
    return _app


def record_handler(record: DynamoDBRecord, lambda_context: LambdaContext | None = None) -> None:
    remaining = lambda_context.get_remaining_time_in_millis if lambda_context is not None else None
    app().handle_record(record.raw_event, remaining_ms=remaining)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    # A batch whose every record failed raises BatchProcessingError (Powertools' default), so the
    # invocation counts as an error and the mapping retries, bisects and finally dead-letters it.
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
