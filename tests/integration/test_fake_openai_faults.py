"""FakeOpenAI's transport faults on the wire, read with a raw socket (no client library to hide them):
what each fault sends, so the poller's fault tests rest on faults that really happen as documented."""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from spendwatch.devtools.fake_openai import SIM_ADMIN_KEY, FakeOpenAI
from spendwatch.devtools.simulated_org import SimulatedOrg

from .conftest import POLL_TIME

PATH = "/v1/organization/spend_limit"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(SimulatedOrg.default(POLL_TIME)) as server:
        yield server


def exchange(fake: FakeOpenAI, path: str = PATH, timeout: float = 10) -> tuple[bytes, bytes, str]:
    """(head, body, how the connection ended) of one GET on a fresh connection."""
    with socket.create_connection(("127.0.0.1", fake.port), timeout=timeout) as sock:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SIM_ADMIN_KEY}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(request.encode())
        data = bytearray()
        ended = "closed"
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            ended = "reset"
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return head, body, ended


def header(head: bytes, name: str) -> str | None:
    for line in head.decode().split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def test_fake_openai_plain_reply_is_whole(fake: FakeOpenAI) -> None:
    head, body, ended = exchange(fake)
    assert ended == "closed"
    assert int(header(head, "Content-Length") or -1) == len(body)
    assert json.loads(body)["object"] == "organization.spend_limit"


def test_fake_openai_cut_body_stays_short_of_its_content_length(fake: FakeOpenAI) -> None:
    fake.cut_body(PATH, keep=0.5)
    head, body, ended = exchange(fake)
    declared = int(header(head, "Content-Length") or 0)
    assert ended == "closed"
    assert 0 < len(body) == declared // 2


def test_fake_openai_cut_chunked_body_lacks_its_last_chunk(fake: FakeOpenAI) -> None:
    fake.cut_body(PATH, chunked=True, keep=0.5)
    head, body, _ = exchange(fake)
    assert header(head, "Transfer-Encoding") == "chunked"
    assert header(head, "Content-Length") is None
    assert not body.endswith(b"0\r\n\r\n")
    size, _, rest = body.partition(b"\r\n")
    assert int(size, 16) == len(rest.removesuffix(b"\r\n"))


def test_fake_openai_whole_chunked_body_ends_with_the_last_chunk(fake: FakeOpenAI) -> None:
    from spendwatch.devtools.fake_openai import Delivery

    fake.deliver(PATH, Delivery(chunked=True))
    _, body, _ = exchange(fake)
    assert body.endswith(b"0\r\n\r\n")


@pytest.mark.parametrize("when", ["before_headers", "mid_body"])
def test_fake_openai_reset_sends_a_tcp_rst(fake: FakeOpenAI, when: str) -> None:
    fake.reset_connection(PATH, when=when)  # type: ignore[arg-type]
    head, _, ended = exchange(fake)
    assert ended == "reset"
    if when == "before_headers":
        assert head == b""
    # mid-body: the headers and half the body were sent, but an RST may discard what the client had not
    # read yet, so only the reset itself is certain here (the poller's tests see both halves).


def test_fake_openai_trickle_sends_at_about_its_rate(fake: FakeOpenAI) -> None:
    fake.trickle(PATH, bytes_per_s=100)
    started = time.monotonic()
    head, body, _ = exchange(fake)
    elapsed = time.monotonic() - started
    assert len(body) == int(header(head, "Content-Length") or 0)
    assert elapsed >= len(body) / 100 * 0.8, f"{len(body)} bytes in {elapsed:.1f} s"


def test_fake_openai_huge_body_is_streamed_valid_json_without_being_built(fake: FakeOpenAI) -> None:
    size = 20 * 1024 * 1024
    fake.huge(PATH, size, chunked=False)
    tracemalloc.start()
    try:
        with socket.create_connection(("127.0.0.1", fake.port), timeout=10) as sock:
            sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            received, first, last = 0, b"", b""
            while chunk := sock.recv(1 << 20):
                if len(first) < 4096:
                    first += chunk[:4096]
                last = (last + chunk)[-64:]
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    head, _, start = first.partition(b"\r\n\r\n")
    assert int(header(head, "Content-Length") or 0) == size
    assert received == len(head) + 4 + size
    assert start.startswith(b'{"object": "page", "data": []')
    assert last.endswith(b'xx"}')
    assert peak < 4 * 1024 * 1024, "neither side held the body"


def test_fake_openai_missing_scope_is_openais_body(fake: FakeOpenAI) -> None:
    fake.missing_scope(PATH, status=401, scopes=("api.usage.read",))
    head, body, _ = exchange(fake)
    assert head.startswith(b"HTTP/1.1 401")
    assert json.loads(body)["error"]["message"] == (
        "You have insufficient permissions for this operation. Missing scopes: api.usage.read."
    )


def test_fake_openai_rewrite_edits_the_real_json(fake: FakeOpenAI) -> None:
    fake.rewrite(PATH, lambda limit: limit.pop("currency"))
    _, body, _ = exchange(fake)
    reply = json.loads(body)
    assert "currency" not in reply
    assert reply["threshold_amount"] == fake.org.org_spend_limit.threshold_amount  # type: ignore[union-attr]
