"""Headless Chromium for the report's browser test. `make test` installs Debian's `chromium` and names it in
SPENDWATCH_CHROMIUM, so there a missing browser fails the run; a bare `pytest` without it skips."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cdp import Browser, chromium

REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = REPO / "test-artefacts"


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    named = os.environ.get("SPENDWATCH_CHROMIUM")
    if named:
        if not (Path(named).is_file() and os.access(named, os.X_OK)):
            pytest.fail(f"SPENDWATCH_CHROMIUM={named} is not an executable (make test installs Debian's chromium)")
        return named
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no chromium: run `make test` (it installs Debian's chromium) or set SPENDWATCH_CHROMIUM")
    return found


@pytest.fixture(scope="session")
def browser(chromium_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with chromium(chromium_binary, tmp_path_factory.mktemp("chromium")) as running:
        yield running


@pytest.fixture(scope="session")
def artefacts() -> Path:
    ARTEFACTS.mkdir(exist_ok=True)
    return ARTEFACTS
