"""The deployed artifacts, built and unpacked the way Lambda runs them, for the cold-start benchmark.

- `build_artifacts`: runs each artifact's own Makefile as `sam build` does (a scratch copy of the
  CodeUri directory, `ARTIFACTS_DIR` set), for x86_64 so that this machine can import the layer's
  compiled extensions (`PIP_TARGET_FLAGS` overridden; everything else, bytecode included, as deployed).
- `unpack_read_only`: zips each artifact and extracts it with the zip's own file times (2 s resolution,
  as `unzip` leaves them), then removes write permission, as Lambda's /opt and /var/task.
- `runtime_python`: a python3.13 venv holding only boto3 and its dependencies, with their bytecode: what
  the Lambda runtime ships besides the standard library.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = {
    "poller": "PollerFunction",
    "alerter": "AlerterFunction",
    "watchdog": "WatchdogFunction",
    "digest": "DigestFunction",
}
# Pillow's wheels (the digest's artifact) are manylinux_2_28 only, as functions/digest/Makefile says for
# aarch64; a second platform tag costs the other artifacts nothing.
X86_64_FLAGS = (
    "--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --only-binary=:all: --python-version 3.13"
    " --implementation cp --abi cp313"
)
RUNTIME_VENV = ROOT / ".tools" / "bench-runtime-py313"


@dataclass(frozen=True)
class Artifacts:
    layer: Path
    """the layer's root (its `python/` is /opt/python)"""
    functions: dict[str, Path]
    """function name -> its root (/var/task)"""
    build_logs: dict[str, str]
    """artifact (`layer` or a function name) -> what its build printed"""


def find_python313() -> Path | None:
    """pyenv's or PATH's python3.13, as the Makefiles look for it (pyenv's shim alone is not one)."""
    candidates = [os.environ.get("PY313", ""), shutil.which("python3.13") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(str(p) for p in Path(pyenv_root).glob("versions/3.13*/bin/python3.13"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 13))"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return Path(candidate)
    return None


def _scratch_copy(source: Path, into: Path) -> Path:
    shutil.copytree(source, into, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return into


def _make(directory: Path, target: str, artifacts_dir: Path) -> str:
    artifacts_dir.mkdir(parents=True)
    env = dict(os.environ)
    # The Makefiles call `python3 -m pip`: this interpreter's environment is known to have pip.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["make", "--no-print-directory", target, f"ARTIFACTS_DIR={artifacts_dir}", f"PIP_TARGET_FLAGS={X86_64_FLAGS}"],
        cwd=directory,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"make {target} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def build_artifacts(source: Path, work: Path) -> Artifacts:
    """Build the layer and every function from the checkout at `source` into `work`."""
    scratch = work / "scratch"
    logs = {
        "layer": _make(_scratch_copy(source / "layers/common", scratch / "layer"), "build-CommonLayer", work / "layer")
    }
    functions = {}
    for name, logical_id in FUNCTIONS.items():
        if not (source / "functions" / name).is_dir():  # an older checkout, before that function existed
            continue
        directory = _scratch_copy(source / "functions" / name, scratch / name)
        logs[name] = _make(directory, f"build-{logical_id}", work / "functions" / name)
        functions[name] = work / "functions" / name
    shutil.rmtree(scratch)
    return Artifacts(layer=work / "layer", functions=functions, build_logs=logs)


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def zip_size(root: Path, into: Path) -> int:
    """The artifact zipped (deflate), as `sam package` uploads it; returns the zip's size in bytes."""
    with zipfile.ZipFile(into, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            archive.write(path, path.relative_to(root))
    return into.stat().st_size


def unpack_read_only(root: Path, into: Path) -> Path:
    """`root` zipped and extracted at `into` with the zip's file times, then made read-only."""
    into.parent.mkdir(parents=True, exist_ok=True)
    archive_path = into.with_suffix(".zip")
    zip_size(root, archive_path)
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            target = Path(archive.extract(info, into))
            moment = time.mktime((*info.date_time, 0, 0, -1))
            os.utime(target, (moment, moment))
    archive_path.unlink()
    for path in [into, *into.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return into


def make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def runtime_python(python313: Path) -> Path:
    """The venv's interpreter; created on first use with the boto3 this checkout develops against."""
    boto3_version = importlib.metadata.version("boto3")
    marker = RUNTIME_VENV / f".boto3-{boto3_version}"
    python = RUNTIME_VENV / "bin" / "python"
    if not marker.exists():
        shutil.rmtree(RUNTIME_VENV, ignore_errors=True)
        subprocess.run([str(python313), "-m", "venv", str(RUNTIME_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"boto3=={boto3_version}"],
            check=True,
        )
        marker.touch()
    return python


def file_count(root: Path) -> int:
    return sum(1 for _ in root.rglob("*"))
