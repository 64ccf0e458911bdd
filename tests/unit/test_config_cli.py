"""`spendwatch config validate` and `spendwatch config schema`: one problem per line, warnings, the schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from spendwatch.cli.main import main
from spendwatch.core.config import canonical_config_text, load_document

REPO = Path(__file__).resolve().parents[2]
GOOD = """\
organizations:
  - id: acme
    name: Acme
    budget: {monthly_usd: 500}
    channels: [slack]
channels:
  slack: {type: slack}
"""


@pytest.fixture(autouse=True)
def _no_local_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)


def validate(tmp_path: Path, text: str | bytes, *extra: str) -> tuple[int, Path]:
    path = tmp_path / "spendwatch.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return main(["config", "validate", str(path), *extra]), path


def test_config_validate_prints_one_problem_per_line_with_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace("monthly_usd: 500", "monthly_usd: 1:30.5").replace("channels: [slack]", "chanels: [slack]")
    code, path = validate(tmp_path, text)
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"{path}: line 4: organizations[0].budget.monthly_usd: '1:30.5' is not a number",
        f"{path}: line 5: organizations[0].chanels: unknown field 'chanels' (did you mean 'channels'?)",
    ]
    assert "Traceback" not in err and "Input should" not in err and "valid tuple" not in err


@pytest.mark.parametrize(
    "raw",
    [
        b"organizations: [{id: a, name: A, budget: {monthly_usd: .nan}}]\n",
        GOOD.encode("latin-1").replace(b"Acme", b"Acm\xe9"),
        GOOD.encode("utf-16-le"),
        b"? [a, b]\n: 1\n",
        b"organizations: " + b"[" * 10_000 + b"]" * 10_000,
        b"organizations: [{id: a, name: A, credit_grants: [{id: g, amount_usd: 1, expires_at: 2026-02-30}]}]\n",
        b"\x00\x01\x02",
        b"",
    ],
)
def test_config_validate_never_shows_a_traceback(
    tmp_path: Path, raw: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    code, path = validate(tmp_path, raw)
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.strip() and all(line.startswith(f"{path}: ") for line in err.splitlines())
    assert "Traceback" not in err


def test_config_validate_warns_on_the_placeholder_org_and_a_missing_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace("name: Acme", "name: My OpenAI organization").replace("    channels: [slack]\n", "")
    code, path = validate(tmp_path, text)
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith(f"{path}: valid")
    assert err.splitlines() == [
        f"{path}: warning: line 2: organizations[0].channels: no channel: this organization's alerts go nowhere "
        "(its spend is still recorded)",
        f"{path}: warning: line 3: organizations[0].name: still the sample's placeholder organization ('acme', "
        "'My OpenAI organization'): give it your organization's id and name",
    ]
    assert validate(tmp_path, text, "--strict")[0] == 1


def test_config_validate_checks_the_webhook_url_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/T000/B000/secret-part")
    code, path = validate(tmp_path, GOOD)
    _, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [
        f"{path}: channels.slack.webhook_url: the environment variable SLACK_WEBHOOK_URL is not a Slack "
        "incoming-webhook URL (https://hooks.slack.com/services/T…/B…/…): its path is not /services/T…/B…/… as "
        "Slack issues it"
    ]
    assert "secret-part" not in err


def test_config_validate_accepts_the_shipped_sample_with_its_placeholder_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "validate", str(REPO / "config" / "spendwatch.yaml")]) == 0
    _, err = capsys.readouterr()
    assert "placeholder organization" in err


def test_config_schema_is_the_committed_file_referenced_from_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    out, _ = capsys.readouterr()
    assert out == (REPO / "config" / "spendwatch.schema.json").read_text(), "regenerate: spendwatch config schema"
    sample = (REPO / "config" / "spendwatch.yaml").read_text()
    assert sample.startswith("# yaml-language-server: $schema=spendwatch.schema.json\n")


def test_config_schema_accepts_the_sample_and_flags_what_the_validator_refuses() -> None:
    schema = json.loads((REPO / "config" / "spendwatch.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    checker = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    sample = (REPO / "config" / "spendwatch.yaml").read_text()
    data = json.loads(canonical_config_text(load_document(sample, "sample")))
    assert list(checker.iter_errors(data)) == []
    data["organizations"][0]["budjet"] = 1
    data["organizations"][0]["rules"] = {"forecast": {"min_days": True}}
    data["channels"]["slack"]["type"] = "pager"
    assert len(list(checker.iter_errors(data))) >= 3
