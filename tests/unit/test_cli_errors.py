"""Every error path of the command line: one clear line per problem, no traceback, the documented exit
status; `--version`; help texts that name the environment variables each command reads."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

import spendwatch
from spendwatch.cli.main import main

AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "SNAPSHOTS_TABLE")


@pytest.fixture(autouse=True)
def _bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No config, no keys, no AWS region or credentials: what a fresh shell has."""
    for name in (*AWS_VARIABLES, "SPENDWATCH_CONFIG", "OPENAI_ADMIN_KEY", "SLACK_WEBHOOK_URL", "SPENDWATCH_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)  # no config/spendwatch.yaml here


def test_cli_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"spendwatch {spendwatch.__version__}\n"
    assert version("spendwatch") == spendwatch.__version__, "one version: pyproject reads it from the package"


@pytest.mark.parametrize(
    ("argv", "variables"),
    [
        (["demo"], ["OPENAI_ADMIN_KEY", "SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "SPENDWATCH_CONFIG"]),
        (["config", "validate"], ["SLACK_WEBHOOK_URL"]),
        (["config", "push"], ["AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL"]),
        (["verify"], ["AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL_<SERVICE>"]),
        (["poll"], ["SPENDWATCH_CONFIG", "OPENAI_ADMIN_KEY", "OPENAI_BASE_URL"]),
        (["check"], ["SPENDWATCH_CONFIG", "OPENAI_ADMIN_KEY"]),
        (["report"], ["SNAPSHOTS_TABLE", "AWS_PROFILE", "SPENDWATCH_CONFIG"]),
        (["test-alert"], ["SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "SLACK_CHANNEL", "SPENDWATCH_SLACK_TIMEOUT_S"]),
    ],
)
def test_cli_help_names_the_environment_variables_and_exit_statuses(
    argv: list[str], variables: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "environment:" in out and "exit status:" in out and "SPENDWATCH_DEBUG" in out
    for name in variables:
        assert name in out, f"{argv}: {name}"


@pytest.mark.parametrize(
    ("argv", "code", "first_line"),
    [
        (["config", "validate", "missing.yaml"], 1, "missing.yaml: file not found"),
        (["poll"], 2, "config/spendwatch.yaml: file not found, SPENDWATCH_CONFIG is not set"),
        (["check"], 2, "config/spendwatch.yaml: file not found"),
        (["test-alert"], 2, "config/spendwatch.yaml: file not found"),
        (["report", "--month", "2026-13"], 2, "--month '2026-13': expected YYYY-MM"),
        (["verify"], 1, "error: no AWS region: pass --region, set AWS_REGION"),
        (["verify", "--timeout", "0"], 2, "--timeout must be a positive number of seconds"),
        (["config", "push", "missing.yaml"], 1, "missing.yaml: file not found"),
    ],
)
def test_cli_error_paths_are_one_line_without_traceback(
    argv: list[str], code: int, first_line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert lines and first_line in lines[0], err
    assert len(lines) <= 2, err  # the problem, and for config push what did not happen


def test_cli_report_from_a_table_without_a_region_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "spendwatch.yaml"
    config.write_text("organizations: [{id: acme, name: Acme}]\nchannels: {}\n", encoding="utf-8")
    monkeypatch.setenv("SPENDWATCH_CONFIG", str(config))
    assert main(["report", "--table", "SnapshotsTable"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.splitlines() == [
        "no AWS region: pass --region, set AWS_REGION (or AWS_DEFAULT_REGION), or give your AWS profile a region "
        "(aws configure)"
    ]


def test_cli_unexpected_error_is_one_line_and_the_traceback_only_on_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(_: object) -> int:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("spendwatch.cli.main.cmd_config_schema", crash)
    assert main(["config", "schema"]) == 1
    _, err = capsys.readouterr()
    assert err.splitlines() == [
        "error: unexpected RuntimeError: boom second line (set SPENDWATCH_DEBUG=1 for the traceback)"
    ]
    monkeypatch.setenv("SPENDWATCH_DEBUG", "1")
    assert main(["config", "schema"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_cli_check_of_a_deeply_nested_snapshot_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    nested = tmp_path / "snapshot.json"
    nested.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("organizations: [{id: acme, name: Acme}]\n", encoding="utf-8")
    monkeypatch.setenv("SPENDWATCH_CONFIG", str(config))
    assert main(["check", "--snapshot", str(nested)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nested too deeply" in err.splitlines()[0]
