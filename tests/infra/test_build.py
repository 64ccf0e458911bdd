"""`sam build` of the real python3.13/arm64 artifacts (makefile builds, no Docker): layout, size budgets,
bytecode that Lambda's python3.13 uses as shipped, and imports that still resolve after pruning.

The build downloads the pinned aarch64 wheels from the package index, so those tests are marked slow.
The bytecode step of the Makefiles is also checked on its own, quickly, with and without a python3.13.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .load_imports import Resolver, check_artifact, module_name
from .test_template_iam import FUNCTIONS, PACKAGE, function_modules

LAYER_BUDGET_BYTES = 4_000_000
"""The CommonLayer unzipped: 18.1 MB before issue 8, 9.9 MB with pydantic, ~2.9 MB without it (the issue's
goal was 10 MB; docs/performance.md has the current figure)."""
FUNCTION_BUDGET_BYTES = 3_000_000
"""Each function's own artifact unzipped: its handler and the packages only it imports, with bytecode."""
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
AARCH64_CP313_SO = "*.cpython-313-aarch64-linux-gnu.so"
FUNCTION_ONLY = {
    "PollerFunction": {"requests", "urllib3", "certifi", "idna", "charset-normalizer"},
    "AlerterFunction": set(),
    "WatchdogFunction": set(),
    "DigestFunction": {"pillow"},
}
"""What only some functions import, so it ships with them and not in the layer."""
MAKE_BYTECODE = ("make", "-s", "bytecode")
ARTIFACT_DIRS = ["layers/common", *(f"functions/{name}" for name in FUNCTIONS.values())]
"""The directories `sam build` runs a Makefile in."""


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def pins(path: Path) -> dict[str, str]:
    """Normalised name -> version of an exactly pinned requirements file."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        pin = line.split("#", 1)[0].strip()
        if not pin:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)", pin)
        assert match, f"{path}: not an exact pin without extras or markers: {pin!r}"
        name = re.sub(r"[-_.]+", "-", match[1]).lower()
        assert name not in found, f"{path}: {name} pinned twice"
        found[name] = match[2]
    return found


def find_python313() -> str | None:
    candidates = [shutil.which("python3.13") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(str(p) for p in Path(pyenv_root).glob("versions/3.13*/bin/python3.13"))
    for candidate in filter(None, candidates):
        probe = [candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 13))"]
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return candidate
    return None


PYTHON313 = find_python313()

# Run by python3.13: every source under argv[1] has bytecode that 3.13 loads without looking at file times
# (unchecked-hash: flags 0b01, the source's hash, 3.13's magic number) and names the deployed path.
CHECK_PYC = r"""
import _imp, importlib._bootstrap_external as bootstrap, importlib.util, marshal, pathlib, sys
root, prefix = pathlib.Path(sys.argv[1]), sys.argv[2]
bad = []
sources = sorted(root.rglob("*.py"))
for source in sources:
    pyc = pathlib.Path(importlib.util.cache_from_source(str(source)))
    if not pyc.is_file():
        bad.append(f"{source}: no {pyc.name}")
        continue
    data = pyc.read_bytes()
    expected_hash = _imp.source_hash(bootstrap._RAW_MAGIC_NUMBER, source.read_bytes())
    if data[:4] != importlib.util.MAGIC_NUMBER:
        bad.append(f"{pyc}: magic {data[:4].hex()}")
    elif int.from_bytes(data[4:8], "little") != 0b01:
        bad.append(f"{pyc}: flags {int.from_bytes(data[4:8], 'little')} (want unchecked-hash)")
    elif data[8:16] != expected_hash:
        bad.append(f"{pyc}: source hash differs")
    elif marshal.loads(data[16:]).co_filename != prefix + "/" + source.relative_to(root).as_posix():
        bad.append(f"{pyc}: co_filename {marshal.loads(data[16:]).co_filename}")
print(len(sources))
print("\n".join(bad))
"""


def check_bytecode(root: Path, prefix: str) -> tuple[int, list[str]]:
    assert PYTHON313 is not None
    done = subprocess.run([PYTHON313, "-c", CHECK_PYC, str(root), prefix], capture_output=True, text=True, check=True)
    count, *bad = done.stdout.splitlines()
    return int(count), [line for line in bad if line]


# --------------------------------------------------------------------------------------------------
# requirements and Makefiles (fast)
# --------------------------------------------------------------------------------------------------
def test_layer_requirements_are_what_every_function_imports(repo_root: Path) -> None:
    layer = pins(repo_root / "layers/common/requirements.txt")
    assert "aws-lambda-powertools" in set(layer)
    # The models are spendwatch.core.model's: pydantic's import and model building cost ~0.9x an
    # `import boto3` of every cold start (docs/performance.md).
    assert not {"pydantic", "pydantic-core"} & set(layer)
    assert not set(layer) & set(RUNTIME_PROVIDED), "the Lambda runtime provides boto3/botocore/s3transfer"
    # The X-Ray SDK cost ~370 ms of cold start for no data Lambda's own tracing lacks (docs/performance.md);
    # PyYAML: the functions read the pushed config as JSON.
    assert not {"aws-xray-sdk", "wrapt", "pyyaml"} & set(layer)
    assert not set(layer) & set().union(*FUNCTION_ONLY.values()), "function-only packages ship with their functions"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_function_requirements_are_exactly_what_only_it_imports(repo_root: Path, function: str) -> None:
    own = pins(repo_root / "functions" / FUNCTIONS[function] / "requirements.txt")
    assert set(own) == FUNCTION_ONLY[function]
    layer = pins(repo_root / "layers/common/requirements.txt")
    assert not set(own) & set(layer), "a package in both would be loaded from the function, shadowing the layer's"


@pytest.mark.parametrize("directory", ARTIFACT_DIRS)
def test_makefile_cross_installs_pinned_wheels_and_compiles_for_313(repo_root: Path, directory: str) -> None:
    text = (repo_root / directory / "Makefile").read_text(encoding="utf-8")
    assert "--invalidation-mode unchecked-hash" in text
    assert "NO BYTECODE" in text, "a build without python3.13 must say so"
    if not pins(repo_root / directory / "requirements.txt"):
        assert "pip install" not in text, "nothing of its own to install"
        return
    assert "--no-deps" in text, "resolving would pull a second botocore into the artifact"
    for flag in ("--platform manylinux2014_aarch64", "--python-version 3.13", "--abi cp313", "--only-binary=:all:"):
        assert flag in text, flag
    assert "--invalidation-mode unchecked-hash" in text
    assert "NO BYTECODE" in text, "a build without python3.13 must say so"


def _bytecode_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment in which the Makefiles find no python3.13 unless `PY313` is given."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "PYENV_ROOT": str(tmp_path / "nopyenv"), **extra}


@pytest.mark.parametrize("directory", ARTIFACT_DIRS)
def test_bytecode_step_without_python313_says_so_and_still_succeeds(
    repo_root: Path, tmp_path: Path, directory: str
) -> None:
    target = tmp_path / "python"
    shutil.copytree(PACKAGE, target / "spendwatch", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [*MAKE_BYTECODE, f"BYTECODE_DIR={target}", "BYTECODE_PREFIX=/opt/python"],
        cwd=repo_root / directory,
        env=_bytecode_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("NO BYTECODE: no python3.13 found"), done.stdout
    assert not list(target.rglob("*.pyc"))


@pytest.mark.skipif(PYTHON313 is None, reason="no python3.13 on this machine")
@pytest.mark.parametrize("directory", ARTIFACT_DIRS)
def test_bytecode_step_is_what_313_loads_as_shipped_and_reproducible(
    repo_root: Path, tmp_path: Path, directory: str
) -> None:
    builds = []
    for name in ("first", "second"):
        target = tmp_path / name / "python"
        shutil.copytree(PACKAGE, target / "spendwatch", ignore=shutil.ignore_patterns("__pycache__", "devtools"))
        done = subprocess.run(
            [*MAKE_BYTECODE, f"BYTECODE_DIR={target}", "BYTECODE_PREFIX=/opt/python"],
            cwd=repo_root / directory,
            env=_bytecode_env(tmp_path, PY313=str(PYTHON313)),
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.startswith("bytecode: 3.13"), done.stdout
        builds.append({p.relative_to(target): p.read_bytes() for p in sorted(target.rglob("*.pyc"))})
    assert builds[0] == builds[1], "the same sources must compile to the same bytes"
    count, bad = check_bytecode(tmp_path / "first" / "python", "/opt/python")
    assert count > 20
    assert bad == []


def test_layer_build_refuses_a_bundled_yaml_config(repo_root: Path, tmp_path: Path) -> None:
    """The functions read the bundled fallback as JSON only: a YAML one must stop the build, not ship."""
    source = tmp_path / "common"
    shutil.copytree(repo_root / "layers/common", source, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "spendwatch" / "bundled_config.yaml").write_text("organizations: []\n", encoding="utf-8")
    done = subprocess.run(
        ["make", "-s", "build-CommonLayer", f"ARTIFACTS_DIR={tmp_path / 'out'}"],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "run `spendwatch config bundle`" in done.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# the real `sam build` (slow)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(
    sam_binary: Path, sam_env: dict[str, str], repo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """Run `sam build` once for this module; artifacts land in a temp dir, never in the repo's .aws-sam."""
    out = tmp_path_factory.mktemp("sam") / "build"  # SAM writes build.toml next to --build-dir
    env = dict(sam_env)
    # The makefiles call `python3 -m pip`: use this interpreter's environment, which is known to have pip.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    started = time.monotonic()
    result = subprocess.run(
        [str(sam_binary), "build", "--region", "us-east-1", "--build-dir", str(out), "--template", "template.yaml"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    print(f"sam build took {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out, result.stdout + result.stderr


@pytest.fixture(scope="module")
def build_dir(built: tuple[Path, str]) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def layer_python(build_dir: Path) -> Path:
    return build_dir / "CommonLayer" / "python"


@pytest.mark.slow
@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_build_function_artifact_has_handler_and_only_its_own_packages(
    build_dir: Path, repo_root: Path, function: str
) -> None:
    artifact = build_dir / function
    assert (artifact / "handler.py").is_file()
    assert not (artifact / "Makefile").exists()
    installed = {re.sub(r"[-_.]+", "-", p.name.split("-")[0]).lower() for p in artifact.glob("*.dist-info")}
    assert installed == FUNCTION_ONLY[function]
    extensions = list(artifact.rglob("*.so"))
    if function == "DigestFunction":  # Pillow's compiled imaging core, for aarch64 and 3.13 only
        assert extensions and all(p.name.endswith("cpython-313-aarch64-linux-gnu.so") for p in extensions)
    else:
        assert not extensions, "function-only packages are pure Python"


@pytest.mark.slow
def test_build_layer_has_spendwatch_without_devtools(layer_python: Path) -> None:
    package = layer_python / "spendwatch"
    assert (package / "__init__.py").is_file()
    assert not (package / "devtools").exists(), "local-only test servers must not ship"
    assert not (package / "cli").exists() and not (package / "views" / "report.py").exists(), "local-only"
    assert not list(package.rglob("*.yaml")), "a bundled config is JSON"


@pytest.mark.slow
def test_build_layer_has_no_runtime_provided_packages(layer_python: Path) -> None:
    for name in RUNTIME_PROVIDED:
        assert not (layer_python / name).exists(), f"{name} comes from the Lambda runtime"
        assert not list(layer_python.glob(f"{name}-*.dist-info")), name


@pytest.mark.slow
def test_build_layer_has_aarch64_cp313_extensions(layer_python: Path) -> None:
    assert not (layer_python / "pydantic").exists() and not (layer_python / "pydantic_core").exists()
    foreign = [p.name for p in layer_python.rglob("*.so") if not p.match(AARCH64_CP313_SO)]
    assert foreign == [], "every extension module must be built for python3.13 on arm64"
    assert not (layer_python / "yaml").exists(), "the functions read the pushed config as JSON"


@pytest.mark.slow
def test_build_every_load_time_import_resolves_after_pruning(build_dir: Path, layer_python: Path) -> None:
    layer_only = Resolver([layer_python])
    problems = [p for p in check_artifact(layer_python, layer_only) if not p.module.startswith("spendwatch")]
    for function, name in FUNCTIONS.items():
        artifact = build_dir / function
        resolver = Resolver([artifact, layer_python])
        problems += check_artifact(artifact, resolver)
        # spendwatch's own imports, lazy ones included, of every module the function's handler reaches.
        reached = {module_name(PACKAGE.parent, path) for path in function_modules(name) if path.is_relative_to(PACKAGE)}
        problems += [
            p for p in check_artifact(layer_python, resolver, every_import_of="spendwatch") if p.module in reached
        ]
    assert [str(p) for p in problems] == []


@pytest.mark.slow
def test_build_artifacts_carry_bytecode_that_313_loads_as_shipped(built: tuple[Path, str], layer_python: Path) -> None:
    build_dir, log = built
    if PYTHON313 is None:
        assert "NO BYTECODE: no python3.13 found" in log
        pytest.skip("no python3.13 on this machine: the build said it shipped sources only")
    count, bad = check_bytecode(layer_python, "/opt/python")
    assert count > 100  # spendwatch, Powertools, jmespath, typing_extensions: ~140 modules, each checked
    assert bad == []
    for function in FUNCTIONS:
        count, bad = check_bytecode(build_dir / function, "/var/task")
        assert count >= 1
        assert bad == []


@pytest.mark.slow
def test_build_sizes_within_budget(build_dir: Path, layer_python: Path) -> None:
    size = tree_size(layer_python.parent)
    print(f"CommonLayer unzipped: {size} bytes ({size / 1e6:.2f} MB, budget {LAYER_BUDGET_BYTES / 1e6:.0f} MB)")
    assert size <= LAYER_BUDGET_BYTES
    for function in sorted(set(FUNCTIONS) - {"DigestFunction"}):  # Pillow's budget: the test below
        own = tree_size(build_dir / function)
        print(f"{function} unzipped: {own} bytes ({own / 1e6:.2f} MB; with the layer {(own + size) / 1e6:.2f} MB)")
        assert own <= FUNCTION_BUDGET_BYTES


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
