"""The one Logger and Metrics of spendwatch, created once and imported everywhere.

No Powertools Tracer: its X-Ray SDK import cost ~370 ms of each cold start (docs/performance.md). The
functions run with `Tracing: Active`, so Lambda still traces each invocation.

Logs go to stderr so that command output on stdout stays machine-readable; in Lambda both streams reach
CloudWatch Logs. Events are never logged (they can carry figures users consider confidential).
"""

from __future__ import annotations

import sys

from aws_lambda_powertools import Logger, Metrics


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at write time, so a caller can redirect logs (the demo does)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


logger = Logger(service="spendwatch", stream=_CurrentStderr())  # type: ignore[arg-type]
metrics = Metrics(namespace="Spendwatch", service="spendwatch")
