"""The permanent delivery fault suite, senders against real loopback receivers (issue 7, item 6).

Every fault happens on the wire: a Slack that posts the message and answers after the client's timeout,
one that closes the connection after reading the request, 5xx, 504, 429 with Retry-After, a refused port,
a TLS handshake that fails, an answer dripped past the deadline. The assertions are on what matters: how
many messages reached the receiver, how many requests were made, which outcome the sender reported,
and how long it took (timeouts are set to fractions of a second, so the suite takes seconds).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spendwatch.alerter.notices import notice_message
from spendwatch.channels.base import NotSentError, OutcomeUnknownError, post_once
from spendwatch.channels.slack import HttpSlackTransport, SlackCredentials, SlackSender
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError
from spendwatch.devtools.fake_slack import FakeSlack, refused_url

MESSAGE = notice_message("spendwatch: fault test", ["one line"])
TIMEOUT_S = 0.5
LATE_S = 1.5
TOKEN = "xoxb-1111-2222-SECRETtoken"


def slack_sender(slack: FakeSlack, via: str, **kwargs: Any) -> SlackSender:
    creds = (
        SlackCredentials(webhook_url=slack.webhook_url)
        if via == "webhook"
        else SlackCredentials(bot_token=slack.valid_token)
    )
    options: dict[str, Any] = {"remaining_s": lambda: 30.0, "timeout_s": TIMEOUT_S, "sleep": lambda s: None}
    options.update(kwargs)
    return SlackSender(
        "alerts",
        lambda force: creds,
        channel=next(iter(slack.channels)),
        api_base_url=slack.api_base_url,
        **options,
    )


def timed(action: Callable[[], Any]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        action()
    except Exception as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


VIAS = ["webhook", "api"]


@pytest.mark.parametrize("via", VIAS)
def test_slow_success_is_one_message_and_an_unknown_outcome_within_the_deadline(slack: FakeSlack, via: str) -> None:
    """Issue 7, item 6: Slack records the post and answers after the client timeout. It used to get one
    copy per retry (12 in all); now the sender stops at once and says the outcome is unknown."""
    slack.answer_late(5, delay_s=LATE_S)
    sender = slack_sender(slack, via)
    error, elapsed = timed(lambda: sender.send(MESSAGE))
    assert isinstance(error, DeliveryUnknownError)
    assert error.reason == "read_timeout"
    assert sender.attempts == 1
    assert len(slack.wait_for(1)) == 1, "the message did arrive"
    assert elapsed < TIMEOUT_S + 0.4, "the client's deadline was kept"


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("posted", [True, False])
def test_connection_closed_after_the_request_was_read_is_unknown_and_not_retried(
    slack: FakeSlack, via: str, posted: bool
) -> None:
    slack.drop_connection(5, post=posted)
    sender = slack_sender(slack, via)
    error, _ = timed(lambda: sender.send(MESSAGE))
    assert isinstance(error, DeliveryUnknownError)
    assert error.reason == "connection_reset"
    assert len(slack.requests_log) == 1
    assert len(slack.messages) == (1 if posted else 0)


@pytest.mark.parametrize("via", VIAS)
def test_5xx_is_retried_until_delivered_once(slack: FakeSlack, via: str) -> None:
    slack.fail_next(2, status=503)
    sender = slack_sender(slack, via)
    sender.send(MESSAGE)
    assert [r.status for r in slack.requests_log] == [503, 503, 200]
    assert len(slack.messages) == 1


@pytest.mark.parametrize("via", VIAS)
def test_gateway_timeout_is_unknown_and_not_retried(slack: FakeSlack, via: str) -> None:
    slack.fail_next(3, status=504)
    sender = slack_sender(slack, via)
    error, _ = timed(lambda: sender.send(MESSAGE))
    assert isinstance(error, DeliveryUnknownError) and error.reason in {"http_504", "internal_error", "rollup_error"}
    assert len(slack.requests_log) == 1


def test_fatal_error_is_unknown_and_not_retried(slack: FakeSlack) -> None:
    slack.fail_next(3, error="fatal_error", target="api")
    error, _ = timed(lambda: slack_sender(slack, "api").send(MESSAGE))
    assert isinstance(error, DeliveryUnknownError) and error.reason == "fatal_error"
    assert len(slack.requests_log) == 1


@pytest.mark.parametrize("via", VIAS)
def test_429_retry_after_within_the_time_left_then_delivered(slack: FakeSlack, via: str) -> None:
    slack.fail_next(1, retry_after=1)
    slept: list[float] = []
    slack_sender(slack, via, sleep=slept.append).send(MESSAGE)
    assert slept == [1.0]
    assert [r.status for r in slack.requests_log] == [429, 200]
    assert len(slack.messages) == 1


def test_429_retry_after_past_the_time_left_fails_retryably_without_waiting(slack: FakeSlack) -> None:
    slack.fail_next(1, retry_after=600)
    slept: list[float] = []
    error, _ = timed(lambda: slack_sender(slack, "webhook", sleep=slept.append).send(MESSAGE))
    assert isinstance(error, DeliveryError) and not isinstance(error, DeliveryUnknownError)
    assert (error.retryable, error.reason) == (True, "rate_limited")
    assert slept == []


@pytest.mark.parametrize("via", VIAS)
def test_refused_connection_is_not_sent_retried_and_names_no_secret(
    via: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    url = refused_url("/services/T000/B000/SECRETPATHxyz123")
    creds = SlackCredentials(webhook_url=url) if via == "webhook" else SlackCredentials(bot_token=TOKEN)
    caplog.set_level(logging.DEBUG)
    slept: list[float] = []
    sender = SlackSender(
        "alerts",
        lambda force: creds,
        channel="C0ALERTS",
        transport=HttpSlackTransport(url.replace("/services/T000/B000/SECRETPATHxyz123", "/api/")),
        remaining_s=lambda: 30.0,
        sleep=slept.append,
    )
    with pytest.raises(DeliveryError) as caught:
        sender.send(MESSAGE)
    assert not isinstance(caught.value, DeliveryUnknownError), "refused = provably not sent"
    assert (caught.value.retryable, caught.value.reason) == (True, "connection")
    assert (sender.attempts, slept) == (3, [1.0, 2.0])
    out, err = capsys.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (str(caught.value), repr(caught.value), caught.value.detail, out, err, logged):
        assert "SECRETPATH" not in text
        assert "SECRETtoken" not in text


# --------------------------------------------------------------------------------------------------
# raw sockets: what no HTTP server does on purpose
# --------------------------------------------------------------------------------------------------
class RawServer:
    """Accepts connections on loopback and runs `behave(connection)` for each, in a thread."""

    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._behave = behave
        self.received = b""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self._listener.accept()
        except OSError:
            return
        with connection:
            self._behave(connection)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(behave: Callable[[socket.socket], None]) -> RawServer:
        servers.append(RawServer(behave))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def read_request(connection: socket.socket) -> bytes:
    data = b""
    connection.settimeout(5)
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def test_tls_handshake_failure_is_not_sent(raw: Callable[[Callable[[socket.socket], None]], RawServer]) -> None:
    server = raw(lambda connection: connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\nnot TLS at all\r\n"))
    with pytest.raises(NotSentError) as caught:
        post_once(f"https://127.0.0.1:{server.port}/services/x", b"{}", {}, timeout_s=2.0)
    assert caught.value.reason == "tls"


def test_tls_handshake_that_never_completes_is_a_connect_timeout(
    raw: Callable[[Callable[[socket.socket], None]], RawServer],
) -> None:
    release = threading.Event()

    def stall(connection: socket.socket) -> None:
        release.wait(5)  # TCP accepted, TLS never answered

    server = raw(stall)
    try:
        started = time.monotonic()
        with pytest.raises(NotSentError) as caught:
            post_once(f"https://127.0.0.1:{server.port}/x", b"{}", {}, timeout_s=2.0, connect_timeout_s=0.3)
        assert caught.value.reason == "connect_timeout"
        assert time.monotonic() - started < 1.0
    finally:
        release.set()


def test_answer_dripped_past_the_deadline_is_cut_at_the_deadline(
    raw: Callable[[Callable[[socket.socket], None]], RawServer],
) -> None:
    """Each byte comes well within the socket timeout, so only the whole-request deadline can stop it."""

    def drip(connection: socket.socket) -> None:
        read_request(connection)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(0.1)

    server = raw(drip)
    started = time.monotonic()
    with pytest.raises(OutcomeUnknownError) as caught:
        post_once(f"http://127.0.0.1:{server.port}/services/x", b"{}", {}, timeout_s=1.0)
    assert caught.value.reason == "read_timeout"
    assert 0.9 < time.monotonic() - started < 1.5


def test_request_is_sent_in_one_piece_with_its_body(
    raw: Callable[[Callable[[socket.socket], None]], RawServer],
) -> None:
    seen: list[bytes] = []

    def answer(connection: socket.socket) -> None:
        seen.append(read_request(connection))
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")

    server = raw(answer)
    answer_ = post_once(
        f"http://127.0.0.1:{server.port}/services/T/B/x?a=1", b'{"text":"hi"}', {"X-Test": "1"}, timeout_s=2.0
    )
    assert (answer_.status, answer_.body) == (200, b"ok")
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /services/T/B/x?a=1 HTTP/1.1")
    assert b"Connection: close" in head and b"X-Test: 1" in head
    assert body == b'{"text":"hi"}'
