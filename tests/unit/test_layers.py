"""The package's imports run one way: from the entry points down to the logic, the adapters and the core.

Layers, lowest first (a module may import its own layer and those below, never one above):
core < aws, channels < poller, alerter, views < digest, watchdog < devtools < cli < `spendwatch.__main__`.
Every import counts, including those inside functions (the lazy imports of the CLI and the senders).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "common" / "spendwatch"

LAYERS: dict[str, int] = {
    "core": 0,
    "aws": 1,
    "channels": 1,
    "poller": 2,
    "alerter": 2,
    "views": 2,
    "digest": 3,
    "watchdog": 3,
    "devtools": 4,
    "cli": 5,
    "__main__": 6,
}


def _layer_of(module: str) -> str | None:
    """`spendwatch.alerter.render` -> `alerter`; the bare package (its version) belongs to no layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "spendwatch" else None


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from spendwatch import alerter` names a subpackage (`__version__` is an attribute)
            if node.module == "spendwatch":
                found += [(node.lineno, f"spendwatch.{a.name}") for a in node.names if a.name in LAYERS]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name == "spendwatch" or name.startswith("spendwatch.")]


def layer_violations(package: Path) -> list[str]:
    """Every import in `package` of a package above the importing module's layer, as `file:line -> module`."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        own = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        if own not in LAYERS:
            continue  # spendwatch/__init__.py holds the version only
        for line, module in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            target = _layer_of(module)
            if target is None:
                continue
            if target not in LAYERS:
                problems.append(f"{relative}:{line} -> {module} (a package with no layer: add it to LAYERS)")
            elif LAYERS[target] > LAYERS[own]:
                problems.append(f"{relative}:{line} -> {module} ({own} may not import {target})")
    return problems


def test_layers_every_package_has_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), f"packages without a layer: {sorted(packages - set(LAYERS))}"


def test_layers_imports_never_run_back_up() -> None:
    assert layer_violations(PACKAGE) == []


def test_layers_an_upward_import_is_caught(tmp_path: Path) -> None:
    # The check itself must be able to fail: a channel importing the alerter's renderer (as
    # channels/senders.py once did) and a lazy import of the CLI from core are both reported.
    (tmp_path / "core").mkdir()
    (tmp_path / "channels").mkdir()
    (tmp_path / "core" / "x.py").write_text("def f():\n    from spendwatch.cli import main\n")
    (tmp_path / "channels" / "y.py").write_text("from spendwatch.alerter.render import Message\n")
    (tmp_path / "channels" / "z.py").write_text("from spendwatch.core.alerts import Message\n")
    assert layer_violations(tmp_path) == [
        "channels/y.py:1 -> spendwatch.alerter.render (channels may not import alerter)",
        "core/x.py:2 -> spendwatch.cli (core may not import cli)",
    ]


def test_layers_the_alerter_loads_only_the_channels_it_sends_through() -> None:
    """An alerter posting to Slack does not import the webhook, Teams, PagerDuty or SNS modules on a cold
    start (the factory imports each when a channel of its type is built), nor the reason set spanning them."""
    import subprocess
    import sys

    code = (
        "import sys; import spendwatch.alerter.app, spendwatch.watchdog.app; "
        "print(sorted(m for m in sys.modules if m.startswith('spendwatch.channels.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = result.stdout.strip()
    assert loaded == (
        "['spendwatch.channels.base', 'spendwatch.channels.email', 'spendwatch.channels.factory', "
        "'spendwatch.channels.slack']"
    )
