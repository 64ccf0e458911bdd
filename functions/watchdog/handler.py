"""Watchdog Lambda: on its own schedule, report organizations whose newest snapshot is too old.

A stopped poller writes nothing, so the alerter (driven by the snapshot stream) cannot notice it; this
function can. It raises when a notice could not be delivered, so `WatchdogErrorsAlarm` fires and the
next scheduled run tries again (the notification log makes that retry send each notice once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spendwatch.alerter.process import DeliveryFailedError
from spendwatch.core.observability import logger, metrics
from spendwatch.watchdog.app import WatchdogApp, event_time

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

_app: WatchdogApp | None = None


def app() -> WatchdogApp:
    global _app  # noqa: PLW0603
    if _app is None:
        _app = WatchdogApp.from_environment()
    return _app


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    checks = app().run(event_time(event), remaining_ms=context.get_remaining_time_in_millis)
    summary = {"organizations": {check.org_id: check.as_dict() for check in checks}}
    stale = sorted(check.org_id for check in checks if check.stale)
    logger.info("watchdog run", stale=stale, checked=len(checks))
    failures = [failure for check in checks for failure in check.failures]
    if failures:
        raise DeliveryFailedError(failures)
    return summary
