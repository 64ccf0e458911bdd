"""FakeSlack speaks the external file upload exactly as slack-sdk's own `files_upload_v2` uses it
(files.getUploadURLExternal, the upload URL, files.completeUploadExternal), errors included."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from spendwatch.devtools.fake_slack import SIM_SLACK_TOKEN, FakeSlack


def client(slack: FakeSlack, token: str = SIM_SLACK_TOKEN) -> WebClient:
    return WebClient(token, base_url=slack.api_base_url)


def test_fake_slack_upload_v2_shares_the_file_with_the_message(slack: FakeSlack) -> None:
    response = client(slack).files_upload_v2(
        channel="C0SIMALERT", file=b"\x89PNG picture", filename="spend.png", title="Daily spend", initial_comment="hi"
    )
    assert response["ok"] is True
    [uploaded] = slack.files
    assert (uploaded.content, uploaded.filename, uploaded.title, uploaded.channel) == (
        b"\x89PNG picture",
        "spend.png",
        "Daily spend",
        "C0SIMALERT",
    )
    [message] = slack.messages
    assert (message.channel, message.text) == ("C0SIMALERT", "hi")


@pytest.mark.parametrize(
    ("channel", "token", "error"),
    [("spend-alerts", SIM_SLACK_TOKEN, "channel_not_found"), ("C0SIMALERT", "xoxb-wrong", "invalid_auth")],
)
def test_fake_slack_upload_v2_errors(slack: FakeSlack, channel: str, token: str, error: str) -> None:
    with pytest.raises(SlackApiError) as caught:
        client(slack, token).files_upload_v2(channel=channel, file=b"x", filename="a.png")
    assert caught.value.response["error"] == error
    assert slack.messages == []


def test_fake_slack_refuses_an_upload_of_another_length(slack: FakeSlack) -> None:
    import urllib.error
    import urllib.request

    ticket = client(slack).files_getUploadURLExternal(filename="a.png", length=10)
    request = urllib.request.Request(str(ticket["upload_url"]), data=b"short", method="POST")  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)  # noqa: S310 - the fake's loopback URL
    assert caught.value.code == 400
    with pytest.raises(SlackApiError, match="file_not_found"):
        client(slack).files_completeUploadExternal(files=[{"id": ticket["file_id"]}], channel_id="C0SIMALERT")
