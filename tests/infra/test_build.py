"""`sam build` of the real python3.13/arm64 artifacts (makefile builds, no Docker) and their layout.

The build downloads the pinned aarch64 wheels from the package index, so it is marked slow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Unzipped layer size bound. The layer was 18.7 MB (17.8 MiB) for python3.13/arm64 in Nov 2026. Lambda allows 250 MB
# for function + layers unzipped; the bound is far below that so a dependency that drags in botocore
# (~25 MB) or a second copy of something shows up here first.
LAYER_SIZE_LIMIT_BYTES = 30 * 1024 * 1024
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
AARCH64_CP313_SO = "*.cpython-313-aarch64-linux-gnu.so"


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def build_dir(
    sam_binary: Path, sam_env: dict[str, str], repo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Run `sam build` once for this module; artifacts land in a temp dir, never in the repo's .aws-sam."""
    out = tmp_path_factory.mktemp("sam") / "build"  # SAM writes build.toml next to --build-dir
    env = dict(sam_env)
    # The makefiles call `python3 -m pip`: use this interpreter's environment, which is known to have pip.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    started = time.monotonic()
    result = subprocess.run(
        [
            str(sam_binary),
            "build",
            "--region",
            "us-east-1",
            "--build-dir",
            str(out),
            "--template",
            str(repo_root / "template.yaml"),
        ],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    print(f"sam build took {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def layer_python(build_dir: Path) -> Path:
    return build_dir / "CommonLayer" / "python"


def test_layer_requirements_are_exact_pins_without_runtime_packages(repo_root: Path) -> None:
    lines = (repo_root / "layers/common/requirements.txt").read_text(encoding="utf-8").splitlines()
    pins = [line.split("#", 1)[0].strip() for line in lines]
    pins = [p for p in pins if p]
    assert pins, "the layer requirements are empty"
    names = []
    for pin in pins:
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)", pin)
        assert match, f"not an exact pin without extras or markers: {pin!r}"
        names.append(re.sub(r"[-_.]+", "-", match[1]).lower())
    assert len(names) == len(set(names)), "duplicate pins"
    assert not set(names) & set(RUNTIME_PROVIDED), "the Lambda runtime provides boto3/botocore/s3transfer"
    assert {"aws-lambda-powertools", "pydantic", "pydantic-core", "pyyaml", "slack-sdk", "requests"} <= set(names)
    # The X-Ray SDK cost ~370 ms of cold start for no data Lambda's own tracing lacks (docs/performance.md).
    assert not {"aws-xray-sdk", "wrapt"} & set(names)


def test_layer_makefile_installs_without_dependency_resolution(repo_root: Path) -> None:
    makefile = (repo_root / "layers/common/Makefile").read_text(encoding="utf-8")
    assert "--no-deps" in makefile, "resolving would pull a second botocore into the layer"
    for flag in ("--platform manylinux2014_aarch64", "--python-version 3.13", "--abi cp313", "--only-binary=:all:"):
        assert flag in makefile, flag


@pytest.mark.slow
@pytest.mark.parametrize("function", ["PollerFunction", "AlerterFunction", "WatchdogFunction"])
def test_build_function_artifact_has_handler(build_dir: Path, function: str) -> None:
    artifact = build_dir / function
    assert (artifact / "handler.py").is_file()
    assert not (artifact / "Makefile").exists()
    assert not any(artifact.rglob("*.dist-info")), "third-party code belongs in the CommonLayer"


@pytest.mark.slow
def test_build_layer_has_spendwatch_without_devtools(layer_python: Path) -> None:
    package = layer_python / "spendwatch"
    assert (package / "__init__.py").is_file()
    assert not (package / "devtools").exists(), "local-only test servers must not ship"
    assert not list(package.rglob("__pycache__"))
    assert not list(package.rglob("*.pyc"))


@pytest.mark.slow
def test_build_layer_has_no_runtime_provided_packages(layer_python: Path) -> None:
    for name in RUNTIME_PROVIDED:
        assert not (layer_python / name).exists(), f"{name} comes from the Lambda runtime"
        assert not list(layer_python.glob(f"{name}-*.dist-info")), name


@pytest.mark.slow
def test_build_layer_has_aarch64_cp313_extensions(layer_python: Path) -> None:
    for package in ("pydantic_core", "yaml"):
        assert list((layer_python / package).glob(AARCH64_CP313_SO)), f"{package} lacks an aarch64 cp313 extension"
    foreign = [p.name for p in layer_python.rglob("*.so") if not p.match(AARCH64_CP313_SO)]
    assert foreign == [], "every extension module must be built for python3.13 on arm64"


@pytest.mark.slow
def test_build_layer_imports_resolve_to_layer_packages(layer_python: Path) -> None:
    for module in ("aws_lambda_powertools", "slack_sdk", "requests", "pydantic", "jmespath", "yaml"):
        assert (layer_python / module).is_dir(), module


@pytest.mark.slow
def test_build_layer_size_within_bound(layer_python: Path) -> None:
    size = tree_size(layer_python.parent)
    print(f"CommonLayer unzipped: {size} bytes ({size / 1024 / 1024:.1f} MiB)")
    assert size < LAYER_SIZE_LIMIT_BYTES


@pytest.mark.slow
def test_build_digest_artifact_has_its_own_pillow_for_arm64(build_dir: Path, layer_python: Path) -> None:
    """The digest function alone carries Pillow (its chart picture); nothing of the layer is duplicated."""
    artifact = build_dir / "DigestFunction"
    assert (artifact / "handler.py").is_file()
    assert not (artifact / "Makefile").exists()
    assert (artifact / "PIL" / "ImageFont.py").is_file()
    extensions = list((artifact / "PIL").glob(AARCH64_CP313_SO))
    assert any(p.name.startswith("_imagingft") for p in extensions), "FreeType, for the chart's text"
    assert not (artifact / "spendwatch").exists() and not (artifact / "pydantic").exists(), "those are the layer's"
    assert not (layer_python / "PIL").exists(), "never in the layer the other functions load"
    size = tree_size(artifact)
    print(f"DigestFunction unzipped: {size} bytes ({size / 1024 / 1024:.1f} MiB)")
    assert size + tree_size(layer_python.parent) < 250 * 1024 * 1024, "Lambda's limit for function + layers"
