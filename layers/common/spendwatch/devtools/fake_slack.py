"""A local HTTP server speaking Slack's Web API (``chat.postMessage``, ``auth.test``, the external file upload of
``files_upload_v2``: ``files.getUploadURLExternal``, the upload URL, ``files.completeUploadExternal``) and
webhook wire format.

``slack_sdk`` uses ``urllib``, so HTTP mocking libraries cannot intercept it; point a real client at
:class:`FakeSlack` instead::

    with FakeSlack() as slack:
        WebClient(slack.valid_token, base_url=slack.api_base_url).chat_postMessage(channel="C0SIMALERT", text="hi")
        WebhookClient(slack.webhook_url).send(text="hi")
        assert len(slack.wait_for(2)) == 2

Wire behaviour follows Slack's documentation: Web API failures are HTTP 200 with ``{"ok": false, "error": …}``
(429 + ``Retry-After`` when rate limited); webhooks answer ``ok`` (text/plain) or an HTTP error status with the
error code as the body (400 ``invalid_payload``, 404 ``no_service``, 410 ``channel_is_archived`` …).

Faults for the delivery tests: :meth:`FakeSlack.fail_next` (an error answer: 5xx, 504, 429 with
``Retry-After``, any Slack error code), :meth:`FakeSlack.answer_late` (the message is posted, then the answer
comes after the client's timeout: Slack slow under load), :meth:`FakeSlack.drop_connection` (the request is read,
optionally posted, and the connection closed without an answer) and :func:`refused_url` (nothing listens).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, Self
from urllib.parse import parse_qs

from spendwatch.devtools.fake_openai import HttpRequest, HttpResponse, LoopbackService
from spendwatch.devtools.faults import drop_current_connection, refused_url, serve_connection_aware

__all__ = [
    "DEFAULT_CHANNELS",
    "MAX_TEXT_LENGTH",
    "SIM_SLACK_TOKEN",
    "FakeSlack",
    "ReceivedMessage",
    "SlackRequest",
    "UploadedFile",
    "refused_url",
]

SIM_SLACK_TOKEN: Final = "xoxb-test-0000000000-spendwatch"  # noqa: S105 - a fake credential for the loopback fake
DEFAULT_CHANNELS: Final[Mapping[str, str]] = {"C0SIMALERT": "spend-alerts", "C0SIMGENRL": "general"}
DEFAULT_WEBHOOK_PATH: Final = "/services/T000SIM/B000SIM/SIMULATEDwebhook0000000000"
MAX_TEXT_LENGTH: Final = 40_000
"""``chat.postMessage`` rejects longer ``text`` with ``msg_too_long``."""

_FILE_METHODS: Final = frozenset({"files.getUploadURLExternal", "files.completeUploadExternal"})
_JSON_UTF8: Final = "application/json; charset=utf-8"
_TEXT: Final = "text/plain; charset=utf-8"
_WEBHOOK_ERROR_STATUS: Final = {
    "invalid_payload": 400,
    "no_text": 400,
    "user_not_found": 400,
    "action_prohibited": 403,
    "channel_not_found": 404,
    "no_service": 404,
    "channel_is_archived": 410,
    "rate_limited": 429,
    "rollup_error": 500,
}

Target = Literal["any", "api", "webhook"]


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message Slack accepted, in arrival order."""

    via: Literal["api", "webhook"]
    channel: str
    """Channel id."""
    text: str | None
    blocks: list[Any] | None
    payload: dict[str, Any]
    """Every parsed field the client sent (minus ``token``)."""
    ts: str


@dataclass(slots=True)
class UploadedFile:
    """A file announced with ``files.getUploadURLExternal``; ``content`` is set by the upload,
    ``channel`` when ``files.completeUploadExternal`` shares it."""

    id: str
    filename: str
    length: int
    alt_txt: str | None
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None


class SlackRequest(NamedTuple):
    method: str
    path: str
    status: int
    error: str | None
    """Slack error code returned (``None`` on success)."""


@dataclass(slots=True)
class _Failure:
    remaining: int
    target: Target
    status: int | None
    body: str | bytes | None
    retry_after: int | None
    error: str | None
    kind: Literal["answer", "late", "drop"] = "answer"
    """``answer``: an error answer instead of the post; ``late``: post, then answer after ``delay_s``;
    ``drop``: close the connection without an answer (after posting when ``post`` is set)"""
    delay_s: float = 0.0
    post: bool = False


class FakeSlack(LoopbackService):
    """Slack Web API + one incoming webhook over loopback HTTP.

    Parameters
    ----------
    valid_token:
        The bot token ``chat.postMessage``/``auth.test`` accept (Bearer header or ``token`` field).
    channels:
        Known channels, id -> name; posts may name a channel by id, ``name`` or ``#name``.
    webhook_path:
        The webhook's secret path; ``webhook_url`` is the root URL plus this path.
    webhook_channel:
        Channel id the webhook posts to (default: the first channel).
    """

    def __init__(
        self,
        *,
        valid_token: str = SIM_SLACK_TOKEN,
        channels: Mapping[str, str] | None = None,
        webhook_path: str = DEFAULT_WEBHOOK_PATH,
        webhook_channel: str | None = None,
    ) -> None:
        super().__init__()
        self.valid_token = valid_token
        self.channels: dict[str, str] = dict(channels if channels is not None else DEFAULT_CHANNELS)
        if not self.channels:
            msg = "FakeSlack needs at least one channel"
            raise ValueError(msg)
        self.webhook_path = webhook_path
        self.webhook_channel = webhook_channel or next(iter(self.channels))
        self._cond = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._log: list[SlackRequest] = []
        self._failures: list[_Failure] = []
        self._archived: set[str] = set()
        self._token_revoked = False
        self._webhook_revoked = False
        self._epoch = int(time.time())
        self._counter = 0
        self._files: dict[str, UploadedFile] = {}

    # ---- public API -----------------------------------------------------------------------------

    @property
    def api_base_url(self) -> str:
        """``http://127.0.0.1:<port>/api/`` — for ``slack_sdk.WebClient(token, base_url=...)``."""
        return f"{self.root_url}/api/"

    @property
    def webhook_url(self) -> str:
        """The incoming-webhook URL (its path is the credential)."""
        return f"{self.root_url}{self.webhook_path}"

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._cond:
            return list(self._messages)

    @property
    def requests_log(self) -> list[SlackRequest]:
        """Every request with the status and Slack error code it got, in order."""
        with self._cond:
            return list(self._log)

    @property
    def files(self) -> list[UploadedFile]:
        """Files announced for upload, in order (shared ones have a ``channel``)."""
        with self._cond:
            return list(self._files.values())

    def wait_for(self, n: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``n`` messages arrived; return them all. Raises ``TimeoutError``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= n, timeout=timeout):
                msg = f"expected {n} Slack messages within {timeout}s, got {len(self._messages)}"
                raise TimeoutError(msg)
            return list(self._messages)

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int | None = None,
        body: str | bytes | None = None,
        retry_after: int | None = None,
        error: str | None = None,
        target: Target = "any",
    ) -> None:
        """Fail the next ``n`` requests (to ``target``: the Web API, the webhook or either).

        ``status`` defaults to 429 when ``retry_after`` is given, else 200 for a Web API ``error`` (Slack's
        ``ok: false`` style) or the webhook status matching ``error``, else 500. The Web API body is
        ``{"ok": false, "error": error}``, by default ``ratelimited`` (429), ``service_unavailable`` (503),
        ``fatal_error`` (200) or ``internal_error``; the webhook body is the bare error code; ``body``
        overrides either. ``Retry-After`` is sent when given. Failed requests are not in :attr:`messages`.
        """
        with self._cond:
            self._failures.append(_Failure(n, target, status, body, retry_after, error))

    def answer_late(self, n: int = 1, *, delay_s: float, target: Target = "any") -> None:
        """The next ``n`` requests are processed as usual (a post is recorded), then answered after ``delay_s``:
        a client whose timeout is shorter cannot know the message arrived."""
        with self._cond:
            self._failures.append(_Failure(n, target, None, None, None, None, kind="late", delay_s=delay_s))

    def drop_connection(self, n: int = 1, *, post: bool = False, target: Target = "any") -> None:
        """The next ``n`` requests are read in full, then the connection is closed without an answer; with
        ``post`` the message is recorded first (posted, answer lost), else it is not (lost in transit)."""
        with self._cond:
            self._failures.append(_Failure(n, target, None, None, None, None, kind="drop", post=post))

    def start(self) -> Self:
        super().start()
        serve_connection_aware(self)
        return self

    def revoke_token(self) -> None:
        """From now on the valid token gets ``token_revoked``."""
        with self._cond:
            self._token_revoked = True

    def revoke_webhook(self) -> None:
        """From now on the webhook URL answers 404 ``no_service``."""
        with self._cond:
            self._webhook_revoked = True

    def archive_channel(self, channel: str | None = None) -> None:
        """Archive a channel (default: the webhook's): posts get ``is_archived`` / webhook 410."""
        channel_id = self._resolve(channel) if channel is not None else self.webhook_channel
        if channel_id is None:
            msg = f"unknown channel {channel!r}"
            raise KeyError(msg)
        with self._cond:
            self._archived.add(channel_id)

    def reset(self) -> None:
        """Forget messages, log and pending failures; un-revoke and un-archive."""
        with self._cond:
            self._messages.clear()
            self._files.clear()
            self._log.clear()
            self._failures.clear()
            self._archived.clear()
            self._token_revoked = self._webhook_revoked = False

    # ---- request handling -----------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        target: Literal["api", "webhook"] | None = None
        if request.path.startswith("/api/"):
            target = "api"
        elif request.path.startswith("/services/"):
            target = "webhook"
        with self._cond:
            failure = self._take_failure(target) if target else None
        if failure is not None and failure.kind == "answer" and target is not None:
            response, error = _failure_response(failure, target)
        elif failure is not None and failure.kind == "drop" and not failure.post:
            response, error = HttpResponse(200), None
        elif target == "api":
            response, error = self._api(request)
        elif target == "webhook":
            response, error = self._webhook(request)
        elif request.path.startswith("/upload/v1/"):
            response, error = self._upload(request)
        else:
            response, error = HttpResponse(404, b"not_found", _TEXT), "not_found"
        if failure is not None and failure.kind == "drop":
            response, error = HttpResponse(0), "connection_dropped"
        with self._cond:
            self._log.append(SlackRequest(request.method, request.path, response.status, error))
        if failure is not None and failure.kind == "drop":
            drop_current_connection()  # after logging: the client may look at the log as soon as it is cut off
        if failure is not None and failure.kind == "late":
            self._sleep(failure.delay_s)  # the client gave up meanwhile; the base handler drops the write
        return response

    def _take_failure(self, target: Literal["api", "webhook"]) -> _Failure | None:
        for failure in self._failures:
            if failure.remaining > 0 and failure.target in {"any", target}:
                failure.remaining -= 1
                return failure
        return None

    def _resolve(self, channel: str) -> str | None:
        if channel in self.channels:
            return channel
        name = channel.removeprefix("#")
        return next((cid for cid, cname in self.channels.items() if cname == name), None)

    def _api(self, request: HttpRequest) -> tuple[HttpResponse, str | None]:
        method = request.path.removeprefix("/api/")
        params = _api_params(request)
        if params is None:
            return _api_error("invalid_json"), "invalid_json"
        token = _bearer(request.headers) or params.pop("token", None)
        auth_error = self._auth_error(token if isinstance(token, str) else None)
        if method not in {"chat.postMessage", "auth.test", *_FILE_METHODS}:
            return _api_error("unknown_method"), "unknown_method"
        if auth_error:
            return _api_error(auth_error), auth_error
        if method in _FILE_METHODS:
            return self._file_method(method, params)
        if method == "auth.test":
            return _api_ok(
                {
                    "url": "https://simulated-workspace.slack.com/",
                    "team": "Simulated Workspace",
                    "user": "spendwatch",
                    "team_id": "T000SIM",
                    "user_id": "U0SIMBOT",
                    "bot_id": "B0SIMBOT",
                    "is_enterprise_install": False,
                }
            ), None
        return self._post_message(params)

    def _auth_error(self, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        if token != self.valid_token:
            return "invalid_auth"
        with self._cond:
            return "token_revoked" if self._token_revoked else None

    def _post_message(self, params: dict[str, Any]) -> tuple[HttpResponse, str | None]:
        channel_id = self._resolve(str(params.get("channel") or ""))
        error = self._message_error(params, channel_id)
        if error is None and channel_id is not None:
            blocks = params.get("blocks")
            text = params.get("text")
            with self._cond:
                ts = self._next_ts()
                self._messages.append(ReceivedMessage("api", channel_id, text, blocks, dict(params), ts))
                self._cond.notify_all()
            message: dict[str, Any] = {
                "type": "message",
                "text": text or "",
                "user": "U0SIMBOT",
                "bot_id": "B0SIMBOT",
                "team": "T000SIM",
                "ts": ts,
            }
            if blocks:
                message["blocks"] = blocks
            return _api_ok({"channel": channel_id, "ts": ts, "message": message}), None
        code = error or "channel_not_found"
        return _api_error(code), code

    def _message_error(self, params: dict[str, Any], channel_id: str | None) -> str | None:
        if not _normalise_blocks(params):
            return "invalid_blocks"
        if channel_id is None:
            return "channel_not_found"
        with self._cond:
            archived = channel_id in self._archived
        text = params.get("text")
        checks = (
            (archived, "is_archived"),
            (not text and not params.get("blocks") and not params.get("attachments"), "no_text"),
            (isinstance(text, str) and len(text) > MAX_TEXT_LENGTH, "msg_too_long"),
        )
        return next((code for failed, code in checks if failed), None)

    def _webhook(self, request: HttpRequest) -> tuple[HttpResponse, str | None]:
        with self._cond:
            revoked, archived = self._webhook_revoked, self.webhook_channel in self._archived
        if request.path != self.webhook_path or revoked:
            return _webhook_error("no_service"), "no_service"
        if request.method != "POST":
            return _webhook_error("invalid_payload"), "invalid_payload"
        payload = _webhook_payload(request)
        if payload is None:
            return _webhook_error("invalid_payload"), "invalid_payload"
        if archived:
            return _webhook_error("channel_is_archived"), "channel_is_archived"
        text, blocks = payload.get("text"), payload.get("blocks")
        if not text and not blocks and not payload.get("attachments"):
            return _webhook_error("no_text"), "no_text"
        with self._cond:
            message = ReceivedMessage(
                "webhook",
                self.webhook_channel,
                text if isinstance(text, str) else None,
                blocks if isinstance(blocks, list) else None,
                payload,
                self._next_ts(),
            )
            self._messages.append(message)
            self._cond.notify_all()
        return HttpResponse(200, b"ok", _TEXT), None

    def _file_method(self, method: str, params: dict[str, Any]) -> tuple[HttpResponse, str | None]:
        """``files.getUploadURLExternal`` (announce) and ``files.completeUploadExternal`` (share)."""
        if method == "files.getUploadURLExternal":
            filename, length = params.get("filename"), str(params.get("length") or "")
            if not filename or not length.isdigit():
                return _api_error("invalid_arguments"), "invalid_arguments"
            with self._cond:
                file_id = f"F0SIM{len(self._files) + 1:06d}"
                self._files[file_id] = UploadedFile(file_id, str(filename), int(length), params.get("alt_txt"))
            upload_url = f"{self.root_url}/upload/v1/{file_id}"
            return _api_ok({"upload_url": upload_url, "file_id": file_id}), None
        try:
            shared = json.loads(str(params.get("files") or "[]"))
            blocks = json.loads(params["blocks"]) if isinstance(params.get("blocks"), str) else params.get("blocks")
        except ValueError:
            return _api_error("invalid_arguments"), "invalid_arguments"
        channel_id = params.get("channel_id")
        if channel_id is not None and channel_id not in self.channels:
            return _api_error("channel_not_found"), "channel_not_found"  # IDs only, never a name
        with self._cond:
            found = [self._files.get(str(f.get("id"))) for f in shared if isinstance(f, dict)]
            if not found or any(f is None or f.content is None for f in found):
                return _api_error("file_not_found"), "file_not_found"
            for entry, uploaded in zip(shared, found, strict=True):
                assert uploaded is not None
                uploaded.title, uploaded.channel = entry.get("title"), channel_id
            if channel_id is not None:
                comment = params.get("initial_comment")
                payload = {**params, "blocks": blocks}
                self._messages.append(ReceivedMessage("api", channel_id, comment, blocks, payload, self._next_ts()))
                self._cond.notify_all()
        files = [{"id": f.id, "title": f.title} for f in found if f is not None]
        return _api_ok({"files": files}), None

    def _upload(self, request: HttpRequest) -> tuple[HttpResponse, str | None]:
        """The upload URL: the raw bytes of an announced file, of exactly the announced length."""
        file_id = request.path.removeprefix("/upload/v1/")
        with self._cond:
            uploaded = self._files.get(file_id)
            if request.method != "POST" or uploaded is None:
                return HttpResponse(404, b"not_found", _TEXT), "not_found"
            if len(request.body) != uploaded.length:
                return HttpResponse(400, b"length_mismatch", _TEXT), "length_mismatch"
            uploaded.content = bytes(request.body)
        return HttpResponse(200, b"OK - " + str(len(request.body)).encode(), _TEXT), None

    def _next_ts(self) -> str:
        self._counter += 1
        return f"{self._epoch + self._counter // 1_000_000}.{self._counter % 1_000_000:06d}"


def _bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _normalise_blocks(params: dict[str, Any]) -> bool:
    """Decode form-encoded ``blocks``; ``False`` when they are not a JSON list."""
    blocks = params.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = params["blocks"] = json.loads(blocks)
        except ValueError:
            return False
    return blocks is None or isinstance(blocks, list)


def _api_params(request: HttpRequest) -> dict[str, Any] | None:
    """Query string + JSON or form body; ``None`` when a JSON body does not parse to an object."""
    params: dict[str, Any] = {k: v[0] for k, v in request.query.items()}
    if not request.body:
        return params
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = json.loads(request.body)
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        params.update({k: v for k, v in body.items() if v is not None})
    else:
        params.update({k: v[0] for k, v in parse_qs(request.body.decode(errors="replace")).items()})
    return params


def _webhook_payload(request: HttpRequest) -> dict[str, Any] | None:
    raw: str | bytes = request.body
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raw = parse_qs(request.body.decode(errors="replace")).get("payload", [""])[0]
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _api_ok(fields: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse(200, json.dumps({"ok": True, **fields}).encode(), _JSON_UTF8)


def _api_error(error: str, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, json.dumps({"ok": False, "error": error}).encode(), _JSON_UTF8, headers or {})


def _webhook_error(error: str) -> HttpResponse:
    return HttpResponse(_WEBHOOK_ERROR_STATUS.get(error, 400), error.encode(), _TEXT)


def _failure_response(failure: _Failure, target: Literal["api", "webhook"]) -> tuple[HttpResponse, str | None]:
    headers = {} if failure.retry_after is None else {"Retry-After": str(failure.retry_after)}
    status = failure.status
    if status is None:
        if failure.retry_after is not None:
            status = 429
        elif failure.error is not None:
            status = 200 if target == "api" else _WEBHOOK_ERROR_STATUS.get(failure.error, 400)
        else:
            status = 500
    if target == "api":
        default = {429: "ratelimited", 200: "fatal_error", 503: "service_unavailable"}.get(status, "internal_error")
        error = failure.error or default
        body = json.dumps({"ok": False, "error": error}).encode()
        content_type = _JSON_UTF8
    else:
        default = {429: "rate_limited", 404: "no_service", 410: "channel_is_archived"}.get(status, "rollup_error")
        error = failure.error or default
        body = error.encode()
        content_type = _TEXT
    if failure.body is not None:
        body = failure.body.encode() if isinstance(failure.body, str) else failure.body
    return HttpResponse(status, body, content_type, headers), error
