"""Unit tests are pure: any attempt to open a network connection fails the test."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unit tests must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield


@pytest.fixture(autouse=True)
def _own_boto3_default_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """A default session a unit test creates (with the test's fake credentials, or none) is discarded with
    it: boto3 keeps the credentials it first resolved, and a later test's clients would sign with them
    (DynamoDB Local keeps one set of tables per access key, so the integration tests then lost theirs)."""
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
