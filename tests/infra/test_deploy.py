"""`make deploy`: `make build`'s SAM invocation, then `sam deploy --guided` until samconfig.toml holds the
stack's saved answers, then plain `sam deploy`; always with the project's SAM tool environment. Run with a
recording stand-in for `sam` (no AWS here) through make itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spendwatch.devtools.samconfig import main as samconfig_main
from spendwatch.devtools.samconfig import needs_guided

REPO = Path(__file__).resolve().parents[2]
SAVED = """
[default.deploy.parameters]
stack_name = "spendwatch"
region = "eu-west-1"
capabilities = "CAPABILITY_IAM"
parameter_overrides = "AlarmEmail=\\"ops@example.com\\""
"""


@pytest.fixture
def fake_sam(tmp_path: Path) -> tuple[Path, Path]:
    """A SAM tool environment whose `sam` records its arguments, and whose python is this one."""
    tools = tmp_path / "sam-venv"
    (tools / "bin").mkdir(parents=True)
    log = tmp_path / "sam.log"
    sam = tools / "bin" / "sam"
    sam.write_text(f'#!/bin/sh\necho "$@" >> {log}\n', encoding="utf-8")
    sam.chmod(0o755)
    (tools / "bin" / "python").symlink_to(sys.executable)
    (tools / ".installed").touch()
    return tools, log


def make_deploy(tools: Path, samconfig: Path) -> subprocess.CompletedProcess[str]:
    venv = tools.parent / "venv"  # the spendwatch command's venv, already installed
    venv.mkdir(exist_ok=True)
    (venv / ".cli-installed").touch()
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(REPO),
            "deploy",
            f"SAM_VENV={tools}",
            f"SAMCONFIG={samconfig}",
            f"VENV={venv}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_deploy_is_guided_until_samconfig_holds_the_stack(fake_sam: tuple[Path, Path], tmp_path: Path) -> None:
    tools, log = fake_sam
    samconfig = tmp_path / "samconfig.toml"
    shutil.copy(REPO / "samconfig.toml", samconfig)  # as committed: no region pinned

    first = make_deploy(tools, samconfig)
    assert first.returncode == 0, first.stdout + first.stderr
    assert log.read_text().splitlines() == [
        "build --region us-east-1",
        f"deploy --guided --config-file {samconfig} --config-env default",
    ]
    assert "first deploy" in first.stdout
    assert "/bin/spendwatch config push config/spendwatch.yaml" in first.stdout and "spendwatch verify" in first.stdout

    samconfig.write_text(samconfig.read_text().replace("[default.deploy.parameters]\n", "") + SAVED)
    log.unlink()
    again = make_deploy(tools, samconfig)
    assert again.returncode == 0, again.stdout + again.stderr
    assert log.read_text().splitlines() == [
        "build --region us-east-1",
        f"deploy --config-file {samconfig} --config-env default",
    ]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_deploy_stops_on_an_unreadable_samconfig(fake_sam: tuple[Path, Path], tmp_path: Path) -> None:
    tools, log = fake_sam
    samconfig = tmp_path / "samconfig.toml"
    samconfig.write_text("[default.deploy.parameters\n")
    result = make_deploy(tools, samconfig)
    assert result.returncode != 0
    assert "cannot be read as samconfig TOML" in result.stderr
    assert log.read_text().splitlines() == ["build --region us-east-1"], "nothing is deployed"


def test_samconfig_needs_guided(tmp_path: Path) -> None:
    path = tmp_path / "samconfig.toml"
    assert needs_guided(path), "no file yet"
    path.write_text((REPO / "samconfig.toml").read_text())
    assert needs_guided(path), "the committed file pins no region"
    path.write_text(path.read_text().replace("[default.deploy.parameters]\n", "") + SAVED)
    assert not needs_guided(path)
    assert needs_guided(path, "prod"), "another config env has no saved answers"
    assert samconfig_main(["needs-guided", str(path)]) == 1
    assert samconfig_main(["nonsense"]) == 2
