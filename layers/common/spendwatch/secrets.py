"""Where secrets come from: SSM Parameter Store SecureStrings when deployed, environment variables locally.

Deployed functions hold only parameter *names*; values are read at run time through Powertools
parameters with a cache, and re-read on demand after an auth failure (key rotation).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from spendwatch.config import SecretRef
from spendwatch.errors import SecretNotFoundError

SECRET_CACHE_SECONDS = 300


class SecretSource(Protocol):
    def get(self, ref: SecretRef, *, force_fetch: bool = False) -> str | None:
        """The secret's value, or None when it is not configured."""


class EnvSecrets:
    """Local runs: the secret is in the environment variable the ref names."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ

    def get(self, ref: SecretRef, *, force_fetch: bool = False) -> str | None:
        value = self._environ.get(ref.env)
        return value or None


class SsmSecrets:
    """Deployed runs: the secret is an SSM SecureString parameter, cached for a few minutes.

    A parameter that does not exist (an optional session key nobody set) is remembered as absent for the
    same time, so it costs one GetParameter per cache period rather than one per poll.
    """

    def __init__(self, max_age_s: int = SECRET_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age = max_age_s
        self._clock = clock
        self._absent_until: dict[str, float] = {}

    def get(self, ref: SecretRef, *, force_fetch: bool = False) -> str | None:
        from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - only deployed runs pay this import

        if not force_fetch and self._absent_until.get(ref.parameter, 0.0) > self._clock():
            return None
        try:
            value = parameters.get_parameter(
                ref.parameter, decrypt=True, max_age=self._max_age, force_fetch=force_fetch
            )
        except parameters.exceptions.GetParameterError as exc:
            if "ParameterNotFound" in str(exc):
                self._absent_until[ref.parameter] = self._clock() + self._max_age
                return None
            raise SecretNotFoundError(f"cannot read SSM parameter {ref.parameter}: {_error_code(exc)}") from None
        self._absent_until.pop(ref.parameter, None)
        return str(value) if value else None


def require(source: SecretSource, ref: SecretRef, what: str, *, force_fetch: bool = False) -> str:
    value = source.get(ref, force_fetch=force_fetch)
    if value is None:
        raise SecretNotFoundError(f"{what} is not set: put it in SSM parameter {ref.parameter} or env {ref.env}")
    return value


def _error_code(exc: Exception) -> str:
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(cause).__name__))
    return type(exc).__name__
