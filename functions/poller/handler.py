"""Poller Lambda: each schedule tick queues one poll per organization; each queued poll stores a snapshot.

The same function handles the Scheduled Event (fan-out), the poll queue's SQS batches and manual
`{"org_id": ...}` invokes; `PollerApp.handle` tells them apart by the event's shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spendwatch.core.observability import logger, metrics
from spendwatch.poller.app import PollerApp

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

_app: PollerApp | None = None


def app() -> PollerApp:
    # Built on first use, not at import, so a bad environment is reported as an invocation error naming
    # the variable (and tests can import this module without one).
    global _app  # noqa: PLW0603
    if _app is None:
        _app = PollerApp.from_environment()
    return _app


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app().handle(event, context)
