"""The config against hostile and mistaken input: every case is a `ConfigError` naming file, line, field and
problem (never a traceback), and the mistakes that used to be accepted silently are refused."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from spendwatch.core.config import (
    config_from_environment,
    load_config_file,
    local_problems,
    parse_config,
    resolve_local_config,
    webhook_url_problem,
)
from spendwatch.core.config_input import MAX_CONFIG_BYTES
from spendwatch.core.errors import ConfigError

BASE = """\
organizations:
  - id: acme
    name: Acme
    budget: {monthly_usd: 500}
    channels: [slack]
channels:
  slack: {type: slack}
"""


@pytest.fixture(autouse=True, params=["libyaml", "pure-python"])
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every case with libyaml's parser (when PyYAML has it) and with PyYAML's own."""
    from spendwatch.core import config_yaml

    if request.param == "pure-python":
        monkeypatch.setattr(config_yaml, "_LOADER", config_yaml._PureLoader)
    return str(request.param)


def problems_of(text: str, source: str = "t.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source)
    assert caught.value.source == source
    assert caught.value.problems, "a ConfigError names at least one problem"
    return caught.value.problems


def file_problems(tmp_path: Path, raw: bytes) -> list[str]:
    path = tmp_path / "spendwatch.yaml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    assert caught.value.source == str(path)
    return caught.value.problems


# --- encodings (issue 7, item 10) -------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32", "utf-32-be"])
def test_config_file_in_utf8_with_bom_or_utf16_32_with_bom_is_read(tmp_path: Path, encoding: str) -> None:
    raw = BASE.replace("Acme", "Acmé ✓").encode(encoding)
    if encoding == "utf-16-be":
        raw = b"\xfe\xff" + raw
    if encoding == "utf-32-be":
        raw = b"\x00\x00\xfe\xff" + raw
    path = tmp_path / "c.yaml"
    path.write_bytes(raw)
    assert load_config_file(path).organizations[0].name == "Acmé ✓"


def test_config_latin1_file_names_the_byte_offset_and_says_to_save_as_utf8(tmp_path: Path) -> None:
    raw = BASE.replace("Acme", "Acmé").encode("latin-1")
    [problem] = file_problems(tmp_path, raw)
    offset = raw.index("é".encode("latin-1"))
    assert problem == (
        f"byte offset {offset}: byte 0xE9 is not UTF-8 (latin-1 or another encoding?): save the file as UTF-8"
    )


def test_config_utf16_without_bom_is_named_not_parsed(tmp_path: Path) -> None:
    [problem] = file_problems(tmp_path, BASE.encode("utf-16-le"))
    assert problem.startswith("byte offset 1: a NUL byte; the file looks like UTF-16 or UTF-32 without a byte-order")


def test_config_file_larger_than_the_bound_is_refused_before_reading(tmp_path: Path) -> None:
    orgs = "".join(f"  - {{id: org-{i}, name: Org {i}}}\n" for i in range(30_000))
    [problem] = file_problems(tmp_path, f"organizations:\n{orgs}".encode())
    assert re.fullmatch(
        r"\(top level\): [\d,]+ bytes, more than the 65,536 a config may have \(a real one is a few KB\).*", problem
    )


def test_config_text_larger_than_the_bound_is_refused_on_the_json_route_too() -> None:
    text = '{"organizations": [' + ",".join(['{"id": "a", "name": "A"}'] * 3000) + "]}"
    assert len(text) > MAX_CONFIG_BYTES
    [problem] = problems_of(text, "SSM parameter /spendwatch/config")
    assert "more than the 65,536 a config may have" in problem


# --- YAML scalars, keys and structure (item 10) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        ("monthly_usd: .inf", "line 4: organizations[0].budget.monthly_usd: must be a finite number, not '.inf'"),
        ("monthly_usd: .nan", "line 4: organizations[0].budget.monthly_usd: must be a finite number, not '.nan'"),
        ("monthly_usd: -.inf", "line 4: organizations[0].budget.monthly_usd: must be a finite number, not '-.inf'"),
        ("monthly_usd: 1:30.5", "line 4: organizations[0].budget.monthly_usd: '1:30.5' is not a number"),
        ("monthly_usd: 1:30", "line 4: organizations[0].budget.monthly_usd: '1:30' is not a number"),
    ],
)
def test_config_inf_nan_and_sexagesimal_numbers_are_named_errors(replace: str, expected: str) -> None:
    assert problems_of(BASE.replace("monthly_usd: 500", replace)) == [expected]


def test_config_sexagesimal_looking_name_is_kept_as_written() -> None:
    assert parse_config(BASE.replace("name: Acme", "name: 1:30"), "t.yaml").organizations[0].name == "1:30"


def test_config_leading_zero_integer_is_decimal_not_octal() -> None:
    config = parse_config(BASE.replace("monthly_usd: 500", "monthly_usd: 0100"), "t.yaml")
    assert config.organizations[0].budget is not None
    assert config.organizations[0].budget.monthly_usd == Decimal(100)


@pytest.mark.parametrize(
    ("grant", "expected"),
    [
        (
            "{id: g, amount_usd: 10, expires_at: 2026-02-30}",
            "line 6: organizations[0].credit_grants[0].expires_at: '2026-02-30' is not a real date or time "
            "(day is out of range for month)",
        ),
        (
            "{id: g, amount_usd: 10, expires_at: '2026-02-30'}",
            "line 6: organizations[0].credit_grants[0].expires_at: '2026-02-30' is not a real date "
            "(day is out of range for month)",
        ),
    ],
)
def test_config_impossible_dates_are_named_errors(grant: str, expected: str) -> None:
    text = BASE.replace("    channels: [slack]\n", f"    channels: [slack]\n    credit_grants: [{grant}]\n")
    assert problems_of(text) == [expected]


def test_config_impossible_time_is_a_named_error() -> None:
    text = BASE + "silences:\n  - {org: acme, until: 2026-12-01T25:00:00Z}\n"
    assert problems_of(text) == [
        "line 9: silences[0].until: '2026-12-01T25:00:00Z' is not a real date or time (hour must be in 0..23)"
    ]


def test_config_complex_key_is_a_named_error() -> None:
    assert problems_of(BASE + "? [a, b]\n: 1\n") == [
        "line 8: (top level): a key must be plain text, not a list or a mapping"
    ]


def test_config_very_deep_nesting_is_refused_while_reading() -> None:
    [problem] = problems_of("organizations: " + "[" * 20_000 + "]" * 20_000 + "\n")
    # Our composer stops at 33 levels; libyaml's scanner, reading ahead, may stop first at its own 1,000.
    assert re.fullmatch(
        r"line 1, column \d+: (nested more than 32 levels deep|exceeded maximum nesting depth)", problem
    )


def test_config_very_deep_nesting_is_refused_on_the_json_route() -> None:
    assert problems_of('{"organizations": ' + "[" * 30_000 + "]" * 30_000 + "}", "ssm") == [
        "(top level): nested 30,001 levels deep, more than 32"
    ]


def test_config_alias_bomb_is_refused() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):
        previous = chr(ord("a") + n - 1)
        levels.append(f"{chr(ord('a') + n)}: &{chr(ord('a') + n)} [" + ", ".join([f"*{previous}"] * 10) + "]")
    [problem] = problems_of("\n".join(levels) + "\n")
    assert "the document expands to more than 50,000 values (aliases included)" in problem


def test_config_yaml_tags_other_than_the_plain_types_are_refused() -> None:
    assert problems_of(BASE.replace("name: Acme", "name: !!binary QWNtZQ==")) == [
        "line 3: organizations[0].name: the YAML tag !!binary is not supported (write the value without a tag)"
    ]


def test_config_keys_are_text_as_written() -> None:
    # YAML 1.1 reads `on:` as the boolean true; as a key it is the text "on", an unknown field.
    assert problems_of(BASE.replace("    name: Acme\n", "    name: Acme\n    on: 1\n")) == [
        "line 4: organizations[0].on: unknown field 'on' (known: admin_key, admin_key_id, budget, channels, "
        "credit_grants, digests, fallback_channel, hard_limit_usd, id, name, rules, session_key)"
    ]


# --- merge keys (item 10) -------------------------------------------------------------------------


def test_config_merge_key_from_an_anchor_inside_the_file() -> None:
    text = (
        "organizations:\n"
        "  - &acme {id: acme, name: Acme, budget: {monthly_usd: 100}, channels: [slack]}\n"
        "  - <<: *acme\n"
        "    id: beta\n"
        "    name: Beta\n"
        "    budget: {monthly_usd: 250}\n"
        "channels:\n"
        "  slack: {type: slack}\n"
    )
    acme, beta = parse_config(text, "t.yaml").organizations
    assert (beta.id, beta.name, beta.channels) == ("beta", "Beta", ("slack",))
    assert beta.budget is not None and beta.budget.monthly_usd == Decimal(250)  # explicit keys override merged ones
    assert acme.budget is not None and acme.budget.monthly_usd == Decimal(100)


def test_config_merge_of_several_mappings_earlier_ones_win() -> None:
    text = (
        "organizations:\n"
        "  - &a {id: a, name: First, channels: [slack]}\n"
        "  - &b {id: b, name: Second, fallback_channel: mail}\n"
        "  - {<<: [*a, *b], id: c}\n"
        "channels:\n"
        "  slack: {type: slack}\n"
        "  mail: {type: email, sender: a@example.com, recipients: [b@example.com]}\n"
    )
    merged = parse_config(text, "t.yaml").organizations[2]
    assert (merged.id, merged.name, merged.channels, merged.fallback_channel) == ("c", "First", ("slack",), "mail")


def test_config_key_repeated_explicitly_next_to_a_merge_is_still_a_duplicate() -> None:
    text = "organizations:\n  - &a {id: a, name: A}\n  - <<: *a\n    id: b\n    id: c\n"
    assert problems_of(text) == ["line 5: organizations[1]: duplicate key 'id'"]


# --- accepted though wrong (item 10) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ("forecast: {min_days: true}", "organizations[0].rules.forecast.min_days: expected a whole number, got true"),
        ("health: {failing_polls: 2.0}", "organizations[0].rules.health.failing_polls: expected a whole number"),
        ("spike: {factor: true}", "organizations[0].rules.spike.factor: expected a number, got true"),
        ("budget: {enabled: 1}", "organizations[0].rules.budget.enabled: expected true or false, got the number 1"),
    ],
)
def test_config_booleans_are_not_numbers_and_numbers_not_booleans(rules: str, expected: str) -> None:
    text = BASE.replace("    channels: [slack]\n", f"    channels: [slack]\n    rules: {{{rules}}}\n")
    [problem] = problems_of(text)
    assert problem.startswith("line 6: " + expected)


@pytest.mark.parametrize("prefix", ["[spendwatch]\\r\\nBcc: victim@example.com", "x\\ny", "tab\\there"])
def test_config_email_subject_prefix_with_a_line_break_is_refused(prefix: str) -> None:
    text = (
        "organizations: [{id: a, name: A, channels: [mail]}]\n"
        "channels:\n"
        f'  mail: {{type: email, sender: a@example.com, recipients: [b@example.com], subject_prefix: "{prefix}"}}\n'
    )
    [problem] = problems_of(text)
    assert problem.startswith("line 3: channels.mail.subject_prefix: contains ")
    assert "a config value is one line of text" in problem


def test_config_hard_limit_is_bounded_like_budgets() -> None:
    text = BASE.replace("    channels: [slack]\n", "    channels: [slack]\n    hard_limit_usd: 1e30\n")
    assert problems_of(text.replace("1e30", "1.0e+30")) == [
        "line 6: organizations[0].hard_limit_usd: must be at most 100000000"
    ]
    assert problems_of(text.replace("1e30", "0.001")) == [
        "line 6: organizations[0].hard_limit_usd: must be at least 0.01"
    ]


def test_config_grant_used_more_than_its_amount_is_refused() -> None:
    grant = "{id: g, amount_usd: 100, used_usd: 120, expires_at: 2027-01-01}"
    text = BASE.replace("    channels: [slack]\n", f"    channels: [slack]\n    credit_grants:\n      - {grant}\n")
    assert problems_of(text) == ["line 7: organizations[0].credit_grants[0]: used_usd 120 exceeds amount_usd 100"]


def test_config_fallback_channel_equal_to_a_main_channel_is_refused() -> None:
    text = BASE.replace("    channels: [slack]\n", "    channels: [slack]\n    fallback_channel: slack\n")
    assert problems_of(text) == [
        "line 6: organizations[0].fallback_channel: 'slack' is also one of the organization's channels: a failure "
        "of that channel cannot be reported through itself; name another channel or drop fallback_channel"
    ]


def test_config_channel_listed_twice_is_refused() -> None:
    assert problems_of(BASE.replace("channels: [slack]", "channels: [slack, slack]")) == [
        "line 5: organizations[0].channels[1]: channel 'slack' is listed twice: it would get every alert twice"
    ]


def test_config_unknown_channel_suggests_the_closest_name() -> None:
    assert problems_of(BASE.replace("channels: [slack]", "channels: [slak]")) == [
        "line 5: organizations[0].channels[0]: unknown channel 'slak' (did you mean 'slack'?)"
    ]


def test_config_unknown_field_suggests_the_closest_name() -> None:
    assert problems_of(BASE.replace("channels: [slack]", "chanels: [slack]")) == [
        "line 5: organizations[0].chanels: unknown field 'chanels' (did you mean 'channels'?)"
    ]
    assert problems_of(BASE.replace("{type: slack}", "{type: slack, webhok_url: x}")) == [
        "line 7: channels.slack.webhok_url: unknown field 'webhok_url' (did you mean 'webhook_url'?)"
    ]


# --- numbers DynamoDB must be able to store (issue 7, item 7) -------------------------------------------


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (
            "{monthly_usd: 500, thresholds_percent: [50.000000000000000000000000000000000000001]}",
            "thresholds_percent[0]: a number with 41 significant digits, more than DynamoDB's 38: DynamoDB cannot "
            "store it",
        ),
        (
            "{monthly_usd: 500, thresholds_percent: [50.00000000001]}",
            "organizations[0].budget.thresholds_percent[0]: has more than 10 decimal places",
        ),
        ("{monthly_usd: 1e120}", "organizations[0].budget.monthly_usd: must be at most 100000000"),
        ("{monthly_usd: 1e200}", "1.000e+200, outside DynamoDB's range (magnitude 1E-130 to 9.99E+125)"),
        ("{monthly_usd: 1e-200}", "outside DynamoDB's range (magnitude 1E-130 to 9.99E+125): DynamoDB cannot store it"),
        (
            # Fits DynamoDB itself, but its percent-of-budget level, the alert state's level, would not.
            "{monthly_usd: 100000000, thresholds_usd: [1e-125]}",
            "organizations[0].budget.thresholds_usd[0]: has more than 10 decimal places",
        ),
    ],
)
def test_config_numbers_dynamodb_cannot_store_are_refused(budget: str, expected: str) -> None:
    [problem] = problems_of(BASE.replace("{monthly_usd: 500}", budget))
    assert expected in problem


def test_config_numbers_are_stored_in_the_form_dynamodb_keeps() -> None:
    config = parse_config(BASE.replace("{monthly_usd: 500}", "{monthly_usd: 500.000000}"), "t.yaml")
    assert config.organizations[0].budget is not None
    assert str(config.organizations[0].budget.monthly_usd) == "500.000000"


def test_config_nan_and_infinity_on_the_json_route_name_the_field() -> None:
    text = '{"organizations": [{"id": "a", "name": "A", "budget": {"monthly_usd": NaN}}]}'
    assert problems_of(text, "ssm") == ["organizations[0].budget.monthly_usd: must be a finite number, not NaN"]
    text = '{"organizations": [{"id": "a", "name": "A", "hard_limit_usd": -Infinity}]}'
    assert problems_of(text, "ssm") == ["organizations[0].hard_limit_usd: must be a finite number, not -Infinity"]


def test_config_huge_integer_on_the_json_route_is_a_config_error() -> None:
    text = '{"organizations": [{"id": "a", "name": "A", "budget": {"monthly_usd": ' + "9" * 5000 + "}}]}"
    [problem] = problems_of(text, "ssm")
    assert problem.startswith("organizations[0].budget.monthly_usd: a number of 5,000 characters")


# --- silent mistakes (issue 9) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (
            "budget: {monthly_usd: 500, thresholds_percent: [0.5, 0.8, 1.0]}",
            "organizations[0].budget.thresholds_percent: ['0.5', '0.8', '1.0'] look like fractions, but "
            "thresholds_percent are percentages: write [50, 80, 100] (use thresholds_usd for tiny amounts)",
        ),
        (
            "budget: {monthly_usd: 500}\n    rules: {forecast: {thresholds_percent: [0.9]}}",
            "organizations[0].rules.forecast.thresholds_percent: ['0.9'] look like fractions",
        ),
        (
            "budget: {monthly_usd: 500}\n    rules: {hard_limit: {percent: 0.75}}",
            "organizations[0].rules.hard_limit.percent: 0.75 looks like a fraction, but percent is a percentage: "
            "write 75",
        ),
    ],
)
def test_config_thresholds_that_look_like_fractions_are_refused(where: str, expected: str) -> None:
    [problem] = problems_of(BASE.replace("budget: {monthly_usd: 500}", where))
    assert expected in problem


def test_config_a_one_percent_threshold_is_not_taken_for_a_fraction() -> None:
    text = BASE.replace("{monthly_usd: 500}", "{monthly_usd: 500, thresholds_percent: [1, 50]}")
    assert parse_config(text, "t.yaml").organizations[0].budget is not None


def test_config_two_organizations_sharing_an_admin_key_parameter_are_refused() -> None:
    text = (
        "organizations:\n"
        "  - {id: a, name: A}\n"
        "  - id: b\n"
        "    name: B\n"
        "    admin_key: {parameter: /spendwatch/a/openai-admin-key, env: OPENAI_ADMIN_KEY}\n"
    )
    assert problems_of(text) == [
        "line 5: organizations[1].admin_key.parameter: SSM parameter /spendwatch/a/openai-admin-key is also the "
        "admin key of organizations[0]: each organization needs its own key (one key would be polled, and billed, "
        "twice)"
    ]


def test_config_error_lines_point_at_the_field() -> None:
    text = BASE + "silences:\n  - {org: acme, rule: spike, until: 2026-12-01}\n  - {org: nobody, until: 2026-12-01}\n"
    assert problems_of(text) == ["line 10: silences[1].org: unknown organization 'nobody' (known: acme)"]


# --- webhook URLs the local environment holds (issue 9) --------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.slack.com/services/T000/B000/XXXX", None),
        ("http://127.0.0.1:8080/services/T000SIM/B000SIM/abc", None),  # a local stand-in
        ("http://hooks.slack.com/services/T000/B000/XXXX", "it does not start with https://"),
        ("https://hooks.slack.com/services/T000/B000/XXXX\n", "it contains spaces or line breaks"),
        ("https://example.com/services/T000/B000/XXXX", "its host is not hooks.slack.com"),
        ("https://hooks.slack.com/workflows/T000/A000/1/x", "its path is not /services/T…/B…/… as Slack issues it"),
        ("hooks.slack.com/services/T000/B000/XXXX", "it does not start with https://"),
        ("https://[::1", "it is not a URL"),
    ],
)
def test_config_webhook_url_shape(url: str, problem: str | None) -> None:
    assert webhook_url_problem(url) == problem


def test_config_local_commands_refuse_a_malformed_webhook_url_without_printing_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE)
    secret = "https://hooks.slack.com/services/T000/B000/secretpart?x=1"
    with pytest.raises(ConfigError) as caught:
        resolve_local_config({"SPENDWATCH_CONFIG": str(path), "SLACK_WEBHOOK_URL": secret})
    assert caught.value.problems == [
        "channels.slack.webhook_url: the environment variable SLACK_WEBHOOK_URL is not a Slack incoming-webhook URL "
        "(https://hooks.slack.com/services/T…/B…/…): its path is not /services/T…/B…/… as Slack issues it"
    ]
    assert "secretpart" not in str(caught.value)
    config = config_from_environment({"OPENAI_ADMIN_KEY": "k", "SLACK_WEBHOOK_URL": secret})
    assert local_problems(config, {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T1/B1/x"}) == []


def test_config_control_character_is_located_by_line_and_column_whatever_the_parser() -> None:
    assert problems_of("name: x\nnamé: a\x02b\n") == [
        "line 2, column 8: character U+0002 is not allowed (a control character)"
    ]
