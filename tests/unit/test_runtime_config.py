"""The deployed functions read the config as canonical JSON only: the layer carries no YAML parser, so YAML
text in the SSM parameter or a YAML bundled file must be a clear `ConfigError`, never an ImportError."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from spendwatch.aws.runtime import BUNDLED_CONFIG_PATH, SsmConfigSource, load_bundled_config, parse_stored_config
from spendwatch.cli.main import main
from spendwatch.core.errors import ConfigError

JSON_CONFIG = '{"organizations":[{"id":"acme","name":"Acme"}]}'
YAML_CONFIG = "organizations:\n  - {id: acme, name: Acme}\n"


@pytest.fixture
def without_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """This interpreter as the layer has it: `import yaml` fails."""
    monkeypatch.setitem(sys.modules, "yaml", None)
    monkeypatch.delitem(sys.modules, "spendwatch.core.config_yaml", raising=False)


class FakeParameters:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
        from aws_lambda_powertools.utilities import parameters

        self.value = value
        self._error = parameters.exceptions.GetParameterError
        monkeypatch.setattr("spendwatch.aws.runtime.read_parameter", self.get)

    def get(self, name: str, **kwargs: Any) -> str:
        if self.value is None:
            raise self._error("An error occurred (ParameterNotFound) when calling the GetParameter operation")
        return self.value


@pytest.mark.usefixtures("without_yaml")
def test_config_source_yaml_in_ssm_is_a_config_error_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeParameters(monkeypatch, YAML_CONFIG)
    source = SsmConfigSource("/spendwatch/config", bundled_path=None)
    with pytest.raises(ConfigError) as raised:
        source.get()
    assert str(raised.value) == (
        "invalid config SSM parameter /spendwatch/config:\n  - stored as YAML: run `spendwatch config push` again"
    )


@pytest.mark.usefixtures("without_yaml")
def test_config_source_yaml_pushed_later_keeps_the_last_valid_config(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeParameters(monkeypatch, JSON_CONFIG)
    source = SsmConfigSource("/spendwatch/config", bundled_path=None)
    assert source.get().organizations[0].id == "acme"
    fake.value = YAML_CONFIG
    assert source.get().organizations[0].id == "acme"
    assert source.source == "last_valid"
    assert source.last_error is not None and "stored as YAML" in str(source.last_error)


@pytest.mark.usefixtures("without_yaml")
def test_config_source_reads_the_bundled_json_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    FakeParameters(monkeypatch, None)
    bundled = tmp_path / "bundled_config.json"
    bundled.write_text(JSON_CONFIG, encoding="utf-8")
    source = SsmConfigSource("/spendwatch/config", bundled_path=bundled)
    assert source.get().organizations[0].id == "acme"
    assert source.source == "bundled"


@pytest.mark.usefixtures("without_yaml")
def test_config_source_legacy_yaml_bundled_file_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    FakeParameters(monkeypatch, None)
    (tmp_path / "bundled_config.yaml").write_text(YAML_CONFIG, encoding="utf-8")
    source = SsmConfigSource("/spendwatch/config", bundled_path=tmp_path / "bundled_config.json")
    with pytest.raises(ConfigError, match=r"bundled_config\.yaml:\n  - stored as YAML: run `spendwatch config bundle`"):
        source.get()


@pytest.mark.usefixtures("without_yaml")
def test_bundled_json_file_holding_yaml_text_is_a_config_error(tmp_path: Path) -> None:
    bundled = tmp_path / "bundled_config.json"
    bundled.write_text(YAML_CONFIG, encoding="utf-8")
    with pytest.raises(ConfigError, match="stored as YAML: run `spendwatch config bundle` again"):
        load_bundled_config(bundled)


def test_bundled_config_absent_is_none(tmp_path: Path) -> None:
    assert load_bundled_config(tmp_path / "bundled_config.json") is None


def test_bundled_config_path_is_the_json_file_config_bundle_writes() -> None:
    import spendwatch
    from spendwatch.cli.main import BUNDLED_CONFIG_FILE

    assert BUNDLED_CONFIG_PATH.name == "bundled_config.json"
    assert BUNDLED_CONFIG_PATH.parent == Path(spendwatch.__file__).parent
    assert BUNDLED_CONFIG_PATH.parts[-3:] == BUNDLED_CONFIG_FILE.parts[-3:]


def test_config_bundle_writes_what_the_functions_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "spendwatch.yaml"
    source.write_text(
        "# a comment the stored form drops\n"
        "organizations:\n  - {id: acme, name: Acme, budget: {monthly_usd: 250.10}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "bundled_config.json"
    assert main(["config", "bundle", str(source), "--out", str(out)]) == 0
    assert f"wrote {source} as {out}" in capsys.readouterr().out
    config = parse_stored_config(out.read_text(encoding="utf-8"), str(out), remedy="-")
    assert config.organizations[0].budget is not None
    assert str(config.organizations[0].budget.monthly_usd) == "250.10"
    assert "comment" not in out.read_text(encoding="utf-8")


def test_config_bundle_of_an_invalid_file_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "spendwatch.yaml"
    source.write_text("organizations:\n  - {id: BAD}\n", encoding="utf-8")
    out = tmp_path / "bundled_config.json"
    out.write_text(JSON_CONFIG, encoding="utf-8")
    assert main(["config", "bundle", str(source), "--out", str(out)]) == 1
    assert "not written" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == JSON_CONFIG
