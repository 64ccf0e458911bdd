"""The `digests:` entries of an organization: validated with the file, field and problem named."""

from __future__ import annotations

import pytest

from spendwatch.core.config import canonical_config_text, load_document, parse_config
from spendwatch.core.errors import ConfigError

BASE = """
organizations:
  - id: acme
    name: Acme
    channels: [slack]
    digests: {digests}
channels:
  slack: {{type: slack}}
  finance: {{type: email, sender: spend@example.com, recipients: [finance@example.com]}}
"""


def config(digests: str) -> str:
    return BASE.format(digests=digests)


def test_config_digest_defaults_and_channels() -> None:
    parsed = parse_config(
        config("[{every: day}, {every: week, weekday: friday, hour_utc: 16, channels: [finance]}]"), "t"
    )
    daily, weekly = parsed.organizations[0].digests
    assert (daily.every, daily.hour_utc, daily.weekday, daily.channels) == ("day", 8, None, ())
    assert (weekly.hour_utc, weekly.send_weekday, weekly.channels) == (16, 4, ("finance",))


def test_config_digest_weekly_defaults_to_monday() -> None:
    (weekly,) = parse_config(config("[{every: week}]"), "t").organizations[0].digests
    assert weekly.send_weekday == 0


def test_config_without_digests_has_none() -> None:
    text = config("[]").replace("    digests: []\n", "")
    assert parse_config(text, "t").organizations[0].digests == ()


@pytest.mark.parametrize(
    ("digests", "expected"),
    [
        ("[{every: month}]", "organizations[0].digests[0].every: must be 'day' or 'week', got the text 'month'"),
        (
            "[{every: day, hour_utc: 24}]",
            "organizations[0].digests[0].hour_utc: must be at most 23",
        ),
        ("[{every: day, weekday: monday}]", "weekday is only for a weekly digest"),
        ("[{every: week, weekday: funday}]", "organizations[0].digests[0].weekday: must be 'monday', 'tuesday'"),
        ("[{every: day, channels: [teams]}]", "organizations[0].digests[0].channels: unknown channel 'teams'"),
        ("[{every: day, channels: [slack, slack]}]", "digest channels must be unique"),
        ("[{every: day, at: 8}]", "organizations[0].digests[0].at: unknown field 'at'"),
    ],
)
def test_config_digest_invalid_names_field_and_problem(digests: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config(digests), "config/bad.yaml")
    assert str(caught.value).startswith("invalid config config/bad.yaml:")
    assert expected in str(caught.value)


def test_config_digest_needs_a_channel() -> None:
    text = config("[{every: day}]").replace("    channels: [slack]\n", "")
    with pytest.raises(ConfigError, match=r"organizations\[0\]\.digests\[0\]: no channel to send it to"):
        parse_config(text, "t")


def test_config_digest_survives_the_canonical_json_push() -> None:
    text = config("[{every: week, weekday: sunday, hour_utc: 0, channels: [finance]}]")
    assert parse_config(canonical_config_text(load_document(text, "t")), "ssm") == parse_config(text, "t")
