"""`spendwatch config push`: validated first, the change shown against the deployed config, the canonical form
stored (Standard tier when it fits, Advanced with its cost stated when not), and every AWS failure one line
with its fix: against SSM on moto's server, a local SSM that answers AccessDeniedException in SSM's wire
format, a closed port, and an environment without region or credentials."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from spendwatch.cli.main import main
from spendwatch.devtools.aws_local import free_port
from spendwatch.devtools.fake_openai import HttpRequest, HttpResponse, LoopbackService
from spendwatch.devtools.pipeline import LocalPipeline

PARAMETER = "/spendwatch/config"


def org(index: int) -> str:
    """One organization as the sample file writes it: every setting explained by a comment."""
    return f"""
  - id: team-{index}                  # lowercase letters, digits and dashes; used in keys and SSM names
    name: Team {index} production
    # Secrets are never written here. Deployed: SSM SecureString parameters; local runs: env variables.
    admin_key:
      parameter: /spendwatch/team-{index}/openai-admin-key
      env: TEAM_{index}_OPENAI_ADMIN_KEY
    admin_key_id: key_{index:03d}abcdefghijklmnop   # so each poll reads the key's expiry
    budget:
      monthly_usd: {index}500.00          # exact decimal, US dollars
      thresholds_percent: [50, 80, 100]
    channels: [slack, mail]
    # Alert rules: every field is optional; defaults and methods in docs/rules.md.
    rules:
      budget:
        projects: [{{id: proj_team{index}a, monthly_usd: 100}}, {{id: proj_team{index}b, monthly_usd: 250}}]
      forecast: {{thresholds_percent: [100], min_days: 5}}
      hard_limit: {{percent: 90, repeat_interval: 6h}}
      grant_expiry: {{lead_days: [30, 7, 1]}}
      spike: {{factor: 3, baseline_days: 7, min_usd: 10}}
    # Spend digests with a chart, once per period (README, "See your spend"):
    digests: [{{every: day, hour_utc: 8}}, {{every: week, weekday: monday, hour_utc: 7, channels: [mail]}}]
"""


SAMPLE = (Path(__file__).resolve().parents[2] / "config" / "spendwatch.yaml").read_text(encoding="utf-8")
HEADER = SAMPLE.split("version: 1")[0]  # the sample's explanatory comments
THREE_ORGS = (
    HEADER
    + "version: 1\norganizations:"
    + "".join(org(i) for i in range(1, 4))
    + """
channels:
  slack:
    type: slack
    channel: C0ALERTS
    mention: "<!here>"
  mail:
    type: email
    sender: spendwatch@example.com
    recipients: [finance@example.com, oncall@example.com]
    subject_prefix: "[spendwatch]"      # one line; the sender is a verified SES identity
"""
    + SAMPLE.split('channel: "#openai-spend"')[1]  # the sample's closing comments (silences)
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spendwatch.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def stored() -> tuple[str, str]:
    ssm = boto3.client("ssm")
    value = ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"]
    [meta] = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [PARAMETER]}])["Parameters"]
    return value, meta.get("Tier", "Standard")


def test_config_push_three_organizations_fit_a_standard_parameter_and_changes_are_shown(
    pipeline: LocalPipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, THREE_ORGS)
    assert len(THREE_ORGS.encode()) > 4096, "as written (comments, layout) the file would not fit"
    assert main(["config", "push", str(path)]) == 0
    out, err = capsys.readouterr()
    value, tier = stored()
    assert len(value.encode()) <= 4096 and tier == "Standard"
    assert value.startswith("{") and "#" not in value and "\n" not in value
    assert f"-> new SSM parameter {PARAMETER}" in out and "(first push)" in out
    assert f"pushed {path} ({len(value.encode()):,} bytes)" in out and err == ""

    assert main(["config", "push", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert "already holds this config" in out

    changed = THREE_ORGS.replace("monthly_usd: 2500.00", "monthly_usd: 2750").replace("C0ALERTS", "C0OTHER")
    changed = changed.replace("  - id: team-3", "  - id: team-3x")
    path.write_text(changed, encoding="utf-8")
    assert main(["config", "push", str(path), "--dry-run"]) == 0
    out, _ = capsys.readouterr()
    assert "  ~ organizations[team-2].budget.monthly_usd: 2500.00 -> 2750" in out
    assert "  ~ channels.slack.channel: C0ALERTS -> C0OTHER" in out
    assert "  + organizations[team-3x]: " in out and "  - organizations[team-3]" in out
    assert "dry run: not pushed" in out
    assert stored()[0] == value, "a dry run stores nothing"


def test_config_push_over_4_kb_uses_the_advanced_tier_and_says_what_it_costs(
    pipeline: LocalPipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    many = THREE_ORGS.replace("\norganizations:", "\norganizations:" + "".join(org(i) for i in range(4, 10)))
    path = write(tmp_path, many)
    assert main(["config", "push", str(path)]) == 0
    out, _ = capsys.readouterr()
    value, tier = stored()
    assert 4096 < len(value.encode()) <= 8192 and tier == "Advanced"
    assert "uses the Advanced tier ($0.05 a month" in out


def test_config_push_invalid_file_pushes_nothing(
    pipeline: LocalPipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, THREE_ORGS.replace("thresholds_percent: [50, 80, 100]", "thresholds_percent: [0.5]", 1))
    assert main(["config", "push", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "thresholds_percent" in err and "not pushed: the deployed functions keep their current config" in err
    with pytest.raises(boto3.client("ssm").exceptions.ParameterNotFound):
        boto3.client("ssm").get_parameter(Name=PARAMETER)


class DenyingSsm(LoopbackService):
    """SSM's JSON protocol answering every call as an IAM policy without ssm:* would."""

    def handle(self, request: HttpRequest) -> HttpResponse:
        action = request.headers.get("x-amz-target", "").rsplit(".", 1)[-1]
        body = {
            "__type": "AccessDeniedException",
            "message": f"User: arn:aws:iam::123456789012:user/dev is not authorized to perform: ssm:{action} on "
            f"resource: arn:aws:ssm:us-east-1:123456789012:parameter{PARAMETER}",
        }
        return HttpResponse(400, json.dumps(body).encode(), "application/x-amz-json-1.1")


@pytest.mark.parametrize("failure", ["access_denied", "no_connection", "no_region", "no_credentials"])
def test_config_push_aws_failures_are_one_line_with_the_fix(
    failure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, THREE_ORGS)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    server = DenyingSsm().start()
    try:
        if failure != "no_credentials":
            for name, value in credentials.items():
                monkeypatch.setenv(name, value)
        else:
            for name in (*credentials, "AWS_SESSION_TOKEN"):
                monkeypatch.delenv(name, raising=False)
        if failure != "no_region":
            monkeypatch.setenv("AWS_REGION", "us-east-1")
        if failure == "access_denied":
            monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", server.root_url)
        if failure == "no_connection":
            monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", f"http://127.0.0.1:{free_port()}")
        assert main(["config", "push", str(path)]) == 1
    finally:
        server.stop()
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    first, second = err.splitlines()
    assert second == "not pushed: the deployed functions keep their current config"
    expected = {
        "access_denied": "cannot push the config to /spendwatch/config: access denied: your AWS identity needs "
        "ssm:GetParameter and ssm:PutParameter on /spendwatch/config",
        "no_connection": "cannot push the config to /spendwatch/config: no connection to http://127.0.0.1:",
        "no_region": "no AWS region: pass --region, set AWS_REGION",
        "no_credentials": "cannot push the config to /spendwatch/config: no AWS credentials found: run `aws configure`",
    }[failure]
    assert first.startswith(expected), first


def test_config_push_unknown_profile_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    assert main(["config", "push", str(write(tmp_path, THREE_ORGS)), "--profile", "nope", "--region", "eu-west-1"]) == 1
    _, err = capsys.readouterr()
    assert err.splitlines()[0].startswith(
        "cannot read your AWS configuration: The config profile (nope) could not be found"
    )
