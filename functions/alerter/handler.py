"""Alerter Lambda: for each snapshot INSERT on the table's stream, send the alerts whose state changed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spendwatch.alerter.app import AlerterApp
from spendwatch.aws.batch import DYNAMODB_STREAMS, PartialItemFailureResponse, StreamRecord, process_partial_response
from spendwatch.core.observability import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

_app: AlerterApp | None = None


def app() -> AlerterApp:
    global _app  # noqa: PLW0603
    if _app is None:
        _app = AlerterApp.from_environment()
    return _app


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    def record_handler(record: StreamRecord) -> None:
        app().handle_record(record.raw_event, remaining_ms=context.get_remaining_time_in_millis)

    # A batch whose every record failed raises BatchProcessingError, so the invocation counts as an error
    # and the mapping retries, bisects and finally dead-letters it.
    return process_partial_response(event, record_handler, DYNAMODB_STREAMS)
