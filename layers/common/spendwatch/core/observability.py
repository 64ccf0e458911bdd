"""The one Logger and Metrics of spendwatch, created once and imported everywhere.

No Powertools Tracer: its X-Ray SDK import cost ~370 ms of each cold start (docs/performance.md). The
functions run with `Tracing: Active`, so Lambda still traces each invocation.

Logs go to stderr so that command output on stdout stays machine-readable; in Lambda both streams reach
CloudWatch Logs. Events are never logged (they can carry figures users consider confidential). Every log
line is scrubbed of the secrets the process has read (`spendwatch.core.redact`) after it is serialized, so a
secret is caught in whatever field, exception text or encoding it reached the line; records of other
libraries (urllib3, botocore) that reach the root logger's handlers (Lambda's own) are scrubbed too.
"""

from __future__ import annotations

import logging
import sys

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.logging.types import LogRecord

from spendwatch.core.redact import scrub, scrub_data


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at write time, so a caller can redirect logs (the demo does)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter whose output never carries a registered secret."""

    def serialize(self, log: LogRecord) -> str:
        # Fields first (a secret JSON-escaped inside a field value would be escaped twice in the line),
        # then the line itself (a secret an exception's text split across fields or encoded differently).
        return scrub(super().serialize(scrub_data(log, shapes=True)))


class RedactingFilter(logging.Filter):
    """Scrubs a record's message (its arguments merged in) before a handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def redact_root_handlers() -> None:
    """Put `RedactingFilter` on every handler of the root logger (Lambda's runtime installs one)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


logger = Logger(
    service="spendwatch",
    stream=_CurrentStderr(),  # type: ignore[arg-type]
    logger_formatter=RedactingFormatter(),
)
metrics = Metrics(namespace="Spendwatch", service="spendwatch")
redact_root_handlers()
