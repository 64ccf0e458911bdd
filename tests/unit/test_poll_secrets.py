"""The poller's key reads from SSM (`SsmSecrets`): only ParameterNotFound means "not set"; any other failure
(throttled, access denied, timed out) is `SecretUnavailableError`, not remembered, and names the error
code, never a value. The SSM client is time-bounded. Runs a real Powertools `SSMProvider` over a
botocore-stubbed client, so the error wrapping is Powertools' own; no network."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import SSMProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from spendwatch.aws import secrets as secrets_module
from spendwatch.aws.secrets import (
    SSM_CONNECT_TIMEOUT_S,
    SSM_MAX_ATTEMPTS,
    SSM_READ_TIMEOUT_S,
    SecretUnavailableError,
    SsmSecrets,
    require,
)
from spendwatch.core.config import SecretRef
from spendwatch.core.errors import SecretNotFoundError

REF = SecretRef(parameter="/spendwatch/acme/openai-admin-key", env="OPENAI_ADMIN_KEY")
KEY = "sk-admin-value-that-must-never-appear-0000"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ssm_client() -> Any:
    return boto3.client("ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")


def stubbed(*replies: tuple[str, str] | str) -> tuple[SsmSecrets, Stubber, Clock]:
    """SsmSecrets over a real SSMProvider whose client answers `replies` in order: an error code with its
    message, or a parameter value."""
    client = ssm_client()
    stub = Stubber(client)
    for reply in replies:
        if isinstance(reply, tuple):
            code, message = reply
            stub.add_client_error("get_parameter", service_error_code=code, service_message=message)
        else:
            stub.add_response(
                "get_parameter",
                {"Parameter": {"Name": REF.parameter, "Type": "SecureString", "Value": reply, "Version": 1}},
            )
    stub.activate()
    clock = Clock()
    return SsmSecrets(clock=clock, reader=lambda: SSMProvider(boto3_client=client)), stub, clock


def test_poll_secrets_parameter_not_found_is_not_set_and_remembered() -> None:
    secrets, stub, _ = stubbed(("ParameterNotFound", "Parameter /spendwatch/acme/openai-admin-key not found."))
    assert secrets.get(REF) is None
    assert secrets.get(REF) is None, "remembered: no second GetParameter"
    stub.assert_no_pending_responses()
    with pytest.raises(SecretNotFoundError, match="is not set") as caught:
        require(secrets, REF, "OpenAI admin key of acme")
    assert not isinstance(caught.value, SecretUnavailableError)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ThrottlingException", "Rate exceeded"),
        ("AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/poller is not authorized"),
        ("InternalServerError", "internal error"),
    ],
)
def test_poll_secrets_other_ssm_errors_are_unavailable_and_not_remembered(code: str, message: str) -> None:
    secrets, stub, _ = stubbed((code, message), KEY)
    with pytest.raises(SecretUnavailableError) as caught:
        secrets.get(REF)
    assert str(caught.value) == f"cannot read SSM parameter /spendwatch/acme/openai-admin-key: {code}"
    assert isinstance(caught.value, SecretNotFoundError), "existing callers still catch it"
    assert secrets.get(REF) == KEY, "not remembered as absent: the next read asks SSM again"
    stub.assert_no_pending_responses()


def test_poll_secrets_timeout_is_unavailable() -> None:
    class TimingOut:
        def get(self, name: str, **kwargs: Any) -> str:
            try:
                raise ReadTimeoutError(endpoint_url="https://ssm.us-east-1.amazonaws.com/")
            except ReadTimeoutError as exc:
                raise GetParameterError(str(exc))  # noqa: B904 - as Powertools' BaseProvider.get does

    secrets = SsmSecrets(reader=TimingOut)
    with pytest.raises(SecretUnavailableError, match=r"openai-admin-key: ReadTimeoutError$"):
        secrets.get(REF)


def test_poll_secrets_require_names_the_secret_and_never_its_value() -> None:
    secrets, _, _ = stubbed(("ThrottlingException", f"Rate exceeded for {KEY}"))
    with pytest.raises(SecretUnavailableError) as caught:
        require(secrets, REF, "OpenAI admin key of acme")
    assert str(caught.value) == (
        "OpenAI admin key of acme could not be read: "
        "cannot read SSM parameter /spendwatch/acme/openai-admin-key: ThrottlingException"
    )
    assert KEY not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_poll_secrets_client_that_cannot_be_created_is_unavailable() -> None:
    def broken() -> Any:
        raise RuntimeError(f"no region ({KEY})")

    with pytest.raises(SecretUnavailableError, match=r"openai-admin-key: RuntimeError$"):
        SsmSecrets(reader=broken).get(REF)


def test_poll_secrets_ssm_client_has_short_timeouts_and_few_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dummy values so creating the client never looks further for credentials (instance metadata).
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
    }.items():
        monkeypatch.setenv(name, value)
    provider = secrets_module._default_reader()
    assert isinstance(provider, SSMProvider)
    config: Any = provider.client.meta.config  # botocore's stubs declare no attributes on Config
    assert (config.connect_timeout, config.read_timeout) == (SSM_CONNECT_TIMEOUT_S, SSM_READ_TIMEOUT_S)
    assert config.retries == {"mode": "standard", "total_max_attempts": SSM_MAX_ATTEMPTS}
    assert SSM_CONNECT_TIMEOUT_S + SSM_READ_TIMEOUT_S <= 5 and SSM_MAX_ATTEMPTS <= 2


def test_poll_secrets_reads_through_its_own_provider_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """One provider per SsmSecrets, created on first use; a value is cached for the cache period."""
    created: list[SSMProvider] = []
    client = ssm_client()
    stub = Stubber(client)
    stub.add_response(
        "get_parameter", {"Parameter": {"Name": REF.parameter, "Type": "SecureString", "Value": KEY, "Version": 1}}
    )
    stub.activate()

    def reader() -> SSMProvider:
        created.append(SSMProvider(boto3_client=client))
        return created[-1]

    secrets = SsmSecrets(reader=reader)
    assert created == []
    assert secrets.get(REF) == KEY
    assert secrets.get(REF) == KEY
    assert len(created) == 1
    stub.assert_no_pending_responses()
