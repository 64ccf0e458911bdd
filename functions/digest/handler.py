"""Digest Lambda: hourly, send each organization's daily and weekly spend digests that are due, once each.

It raises when a digest could not be delivered, so `DigestErrorsAlarm` fires; the digest stays due, and
the next run (or Lambda's one asynchronous retry) sends it, at most once per channel and period.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from spendwatch.alerter.process import DeliveryFailedError
from spendwatch.core.observability import logger, metrics
from spendwatch.digest.app import DigestApp
from spendwatch.watchdog.app import event_time

_app: DigestApp | None = None


def app() -> DigestApp:
    global _app  # noqa: PLW0603
    if _app is None:
        _app = DigestApp.from_environment()
    return _app


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    results = app().run(event_time(event), remaining_ms=context.get_remaining_time_in_millis)
    summary: dict[str, Any] = {}
    for result in results:
        summary.setdefault(result.org_id, []).append(result.as_dict())
    sent = sum(1 for result in results if result.status == "sent")
    logger.info("digest run", sent=sent, checked=len(results))
    failures = [result.error for result in results if result.error is not None]
    if failures:
        raise DeliveryFailedError(failures)
    return {"organizations": summary}
