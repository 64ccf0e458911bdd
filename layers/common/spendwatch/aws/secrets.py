"""Where secrets come from: SSM Parameter Store SecureStrings when deployed, environment variables locally.

Deployed functions hold only parameter *names*; values are read at run time through a Powertools
`SSMProvider` with a cache, and re-read on demand after an auth failure (key rotation). The provider's
SSM client has short timeouts and few retries (`ssm_client_config`), so an SSM outage costs a poll
seconds, not the invocation's whole time budget.

Every value read is registered with `spendwatch.core.redact` before it is returned, so from then on it is
scrubbed from every log line, message, snapshot and error this process emits.

Two failures are told apart: a parameter that does not exist is "not set" (`get` returns None, and
`require` raises `SecretNotFoundError`); a parameter that could not be read now (throttled, access
denied, timed out) raises `SecretUnavailableError`, which callers treat as retryable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from spendwatch.core.config import SecretRef
from spendwatch.core.errors import SecretNotFoundError
from spendwatch.core.redact import register_secret

if TYPE_CHECKING:
    from botocore.config import Config

SECRET_CACHE_SECONDS = 300
SSM_CONNECT_TIMEOUT_S = 2.0
SSM_READ_TIMEOUT_S = 3.0
SSM_MAX_ATTEMPTS = 2
"""Per GetParameter call: at most 2 attempts (standard retry mode) of at most 2 s connect + 3 s read each,
so one read is bounded by about 11 s including back-off (SSM normally answers in tens of milliseconds)."""


class SecretUnavailableError(SecretNotFoundError):
    """The secret could not be read now (SSM throttled, access denied, KMS or network failure, timeout).

    Unlike a secret that is not set, this says nothing about the secret itself: try again later. A
    subclass of `SecretNotFoundError` so callers that only know "the secret cannot be had" keep working.
    The message names the parameter and the error code, never a value.
    """


def ssm_client_config() -> Config:
    """botocore settings of the SSM client used for secrets: short timeouts, few retries."""
    from botocore.config import Config  # noqa: PLC0415 - only deployed runs pay this import

    return Config(
        connect_timeout=SSM_CONNECT_TIMEOUT_S,
        read_timeout=SSM_READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": SSM_MAX_ATTEMPTS},
    )


class ParameterReader(Protocol):
    """What `SsmSecrets` needs of Powertools' `SSMProvider` (tests substitute a fake)."""

    def get(self, name: str, *, max_age: int, decrypt: bool, force_fetch: bool) -> object: ...


def _default_reader() -> ParameterReader:
    from aws_lambda_powertools.utilities.parameters import SSMProvider  # noqa: PLC0415

    provider: ParameterReader = SSMProvider(boto_config=ssm_client_config())
    return provider


class SecretSource(Protocol):
    def get(self, ref: SecretRef, *, force_fetch: bool = False) -> str | None:
        """The secret's value, or None when it is not configured."""


class EnvSecrets:
    """Local runs: the secret is in the environment variable the ref names."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ

    def get(self, ref: SecretRef, *, force_fetch: bool = False) -> str | None:
        value = self._environ.get(ref.env) or None
        register_secret(value)
        return value


class SsmSecrets:
    """Deployed runs: the secret is an SSM SecureString parameter, cached for a few minutes.

    A parameter that does not exist (an optional session key nobody set) is remembered as absent for the
    same time, so it costs one GetParameter per cache period rather than one per poll. Any other failure
    (throttling, access denied, KMS, timeout) raises `SecretUnavailableError` and is not remembered: the
    next read asks SSM again.

    Reads go through this instance's own `SSMProvider` (created on first use, `ssm_client_config`), not
    Powertools' shared default provider, whose client has botocore's default 60 s timeouts and retries.
    """

    def __init__(
        self,
        max_age_s: int = SECRET_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        *,
        reader: Callable[[], ParameterReader] | None = None,
    ) -> None:
        self._max_age = max_age_s
        self._clock = clock
        self._absent_until: dict[str, float] = {}
        self._new_reader = reader or _default_reader
        self._reader: ParameterReader | None = None

    def get(self, ref: SecretRef, *, force_fetch: bool = False) -> str | None:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError  # noqa: PLC0415

        if not force_fetch and self._absent_until.get(ref.parameter, 0.0) > self._clock():
            return None
        try:
            if self._reader is None:
                self._reader = self._new_reader()
            value = self._reader.get(ref.parameter, decrypt=True, max_age=self._max_age, force_fetch=force_fetch)
        except GetParameterError as exc:
            code = _error_code(exc)
            if code == "ParameterNotFound" or "(ParameterNotFound)" in str(exc):
                self._absent_until[ref.parameter] = self._clock() + self._max_age
                return None
            raise SecretUnavailableError(f"cannot read SSM parameter {ref.parameter}: {code}") from None
        except Exception as exc:  # e.g. no region or credentials while creating the client
            raise SecretUnavailableError(f"cannot read SSM parameter {ref.parameter}: {type(exc).__name__}") from None
        self._absent_until.pop(ref.parameter, None)
        secret = str(value) if value else None
        register_secret(secret)
        return secret


def require(source: SecretSource, ref: SecretRef, what: str, *, force_fetch: bool = False) -> str:
    """The secret's value; `SecretNotFoundError` when it is not set, `SecretUnavailableError` when it
    could not be read now (both messages name where it should be, never a value)."""
    try:
        value = source.get(ref, force_fetch=force_fetch)
    except SecretUnavailableError as exc:
        raise SecretUnavailableError(f"{what} could not be read: {exc}") from None
    if value is None:
        raise SecretNotFoundError(f"{what} is not set: put it in SSM parameter {ref.parameter} or env {ref.env}")
    return value


def _error_code(exc: Exception) -> str:
    """The AWS error code (`ThrottlingException`, `AccessDeniedException`) or the botocore exception's name
    (`ReadTimeoutError`, `EndpointConnectionError`) behind a Powertools error; never its message."""
    cause = exc.__cause__ or exc.__context__
    if cause is None:
        return type(exc).__name__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(cause).__name__))
    return type(cause).__name__
