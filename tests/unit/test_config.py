from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from spendwatch.core.config import config_from_environment, load_config_file, parse_config, resolve_local_config
from spendwatch.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

VALID = """
version: 1
organizations:
  - id: acme
    name: Acme
    budget: {monthly_usd: 250.10, thresholds_percent: [80, 50, 100]}
    channels: [slack]
channels:
  slack: {type: slack, channel: "#spend"}
"""


def test_config_shipped_file_is_valid() -> None:
    config = load_config_file(REPO / "config" / "spendwatch.yaml")
    assert config.organizations[0].budget is not None


def test_config_amounts_are_exact_decimals_and_thresholds_sorted() -> None:
    config = parse_config(VALID, "t.yaml")
    budget = config.organizations[0].budget
    assert budget is not None
    assert budget.monthly_usd == Decimal("250.10")
    assert isinstance(budget.monthly_usd, Decimal)
    assert budget.thresholds_percent == (Decimal(50), Decimal(80), Decimal(100))


def test_config_default_secret_refs_use_org_id() -> None:
    org = parse_config(VALID, "t.yaml").organizations[0]
    assert org.admin_key_ref().parameter == "/spendwatch/acme/openai-admin-key"
    assert org.admin_key_ref().env == "OPENAI_ADMIN_KEY"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            VALID.replace("[80, 50, 100]", "[50, 50]"),
            "organizations[0].budget.thresholds_percent: thresholds must be unique",
        ),
        (
            VALID.replace("[80, 50, 100]", "[0, 50]"),
            "line 6: organizations[0].budget.thresholds_percent[0]: must be more than 0",
        ),
        (
            VALID.replace("[80, 50, 100]", "[50, 1001]"),
            "thresholds_percent[1]: must be at most 1000",
        ),
        (VALID.replace("250.10", "-5"), "organizations[0].budget.monthly_usd: must be more than 0"),
        (VALID.replace("250.10", "lots"), "organizations[0].budget.monthly_usd: 'lots' is not a number"),
        (
            VALID.replace("id: acme", "id: Acme Corp"),
            "line 4: organizations[0].id: must be lowercase letters, digits and dashes",
        ),
        (VALID.replace("channels: [slack]", "channels: [teams]"), "unknown channel 'teams'"),
        (
            VALID.replace("name: Acme", "name: Acme\n    budjet: 5"),
            "line 6: organizations[0].budjet: unknown field 'budjet' (did you mean 'budget'?)",
        ),
        (
            VALID.replace("type: slack", "type: pager"),
            "line 9: channels.slack: type must be one of slack, email, webhook, pagerduty, teams, sns, got 'pager'",
        ),
        ("organizations: []\n", "line 1: organizations: needs at least 1 item"),
        ("- just a list\n", "(top level): expected a mapping"),
        (VALID + "organizations: []\n", "duplicate key 'organizations'"),
        ("organizations: [\n", "line 2, column 1"),
    ],
)
def test_config_invalid_names_file_field_and_problem(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "config/bad.yaml")
    message = str(caught.value)
    assert message.startswith("invalid config config/bad.yaml:")
    assert expected in message


def test_config_duplicate_org_ids_rejected() -> None:
    text = VALID.replace("organizations:\n", "organizations:\n  - {id: acme, name: Other}\n")
    expected = "organizations[1].id: duplicate id 'acme' (also organizations[0])"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse_config(text, "t.yaml")


def test_config_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config_file(tmp_path / "nope.yaml")


def test_config_from_environment_describes_one_org() -> None:
    config = config_from_environment(
        {"OPENAI_ADMIN_KEY": "sk-admin-x", "SPENDWATCH_MONTHLY_BUDGET_USD": "120.5", "SLACK_WEBHOOK_URL": "http://x"}
    )
    org = config.organizations[0]
    assert org.id == "default"
    assert org.budget is not None and org.budget.monthly_usd == Decimal("120.5")
    assert org.channels == ("slack",)


def test_config_resolve_prefers_explicit_then_default_then_environment(tmp_path: Path) -> None:
    explicit = tmp_path / "x.yaml"
    explicit.write_text(VALID)
    assert resolve_local_config({"SPENDWATCH_CONFIG": str(explicit)}, cwd=tmp_path).organizations[0].id == "acme"
    assert resolve_local_config({"OPENAI_ADMIN_KEY": "k"}, cwd=tmp_path).organizations[0].id == "default"
    with pytest.raises(ConfigError, match="OPENAI_ADMIN_KEY is not set"):
        resolve_local_config({}, cwd=tmp_path)
    assert resolve_local_config({}, cwd=REPO).organizations[0].id == "default"


def test_config_item_errors_are_not_doubled_by_a_list_length_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("organizations:\n  - {id: Bad Id, name: a}\n", "t.yaml")
    assert caught.value.problems == [
        "line 2: organizations[0].id: must be lowercase letters, digits and dashes (at most 63), e.g. acme-prod, "
        "got the text 'Bad Id'"
    ]


def test_config_from_environment_takes_the_admin_key_id() -> None:
    config = config_from_environment({"OPENAI_ADMIN_KEY": "k", "OPENAI_ADMIN_KEY_ID": "key_abc123"})
    assert config.organizations[0].admin_key_id == "key_abc123"


def test_config_org_id_slack_is_reserved() -> None:
    with pytest.raises(ConfigError, match=re.escape("organizations[0].id: 'slack' is reserved")):
        parse_config("organizations: [{id: slack, name: S}]", "t.yaml")


def test_config_canonical_json_round_trips_to_the_same_config() -> None:
    from spendwatch.core.config import canonical_config_text, load_document, validate_config

    text = (REPO / "config" / "spendwatch.yaml").read_text(encoding="utf-8") + (
        "silences:\n  - {org: default, rule: spike, until: 2026-12-01T00:00:00Z}\n"
    )
    data = load_document(text, "t.yaml")
    canonical = canonical_config_text(data)
    assert canonical.startswith("{") and "\n" not in canonical and "Field reference" not in canonical
    assert parse_config(canonical, "ssm") == validate_config(data, "t.yaml")


def test_config_canonical_json_keeps_exact_decimals() -> None:
    from spendwatch.core.config import canonical_config_text, load_document

    canonical = canonical_config_text(load_document(VALID, "t.yaml"))
    assert '"monthly_usd":250.10' in canonical
    budget = parse_config(canonical, "ssm").organizations[0].budget
    assert budget is not None and budget.monthly_usd == Decimal("250.10")


def test_config_json_duplicate_key_is_named() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'organizations'"):
        parse_config('{"organizations": [], "organizations": []}', "ssm")


def test_config_json_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ConfigError, match="line 2, column"):
        parse_config('{"organizations":\n ]', "ssm")


def test_config_json_is_read_without_importing_yaml() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from spendwatch.core.config import parse_config; "
        'parse_config(\'{"organizations": [{"id": "a", "name": "A"}]}\', \'ssm\'); '
        "print('yaml' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_config_canonical_json_keeps_a_grant_day_written_as_a_midnight_time() -> None:
    from spendwatch.core.config import canonical_config_text, load_document

    text = (
        "organizations:\n"
        "  - id: acme\n    name: Acme\n"
        "    credit_grants: [{id: g1, amount_usd: 100, expires_at: 2027-01-31T00:00:00Z}]\n"
    )
    canonical = canonical_config_text(load_document(text, "t.yaml"))
    assert parse_config(canonical, "ssm") == parse_config(text, "t.yaml")


def test_config_a_time_before_the_first_utc_moment_is_a_config_error_not_a_crash() -> None:
    text = (
        "organizations: [{id: acme, name: Acme}]\n"
        "silences:\n  - {org: acme, rule: spike, until: '0001-01-01T00:00:00+01:00'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.yaml")
    assert "outside the times that can be represented" in str(caught.value)
