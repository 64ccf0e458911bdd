"""Static check that built artifacts can load what they import, for artifacts this machine cannot import.

The layer is built for arm64, so its compiled extensions cannot be loaded here; instead every module in
the artifacts is parsed and each import that runs when the module is loaded (module level, including
`if` and `try` bodies and class bodies, but not function bodies, `if TYPE_CHECKING:` blocks or imports
guarded by `except ImportError`) must resolve to a module in the artifacts Lambda puts on sys.path, in
the runtime's own packages or in the standard library. That catches a pruning rule that removed a
module something still imports (tests/infra/test_build.py).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

RUNTIME_PACKAGES = frozenset({"boto3", "botocore", "s3transfer", "dateutil", "six", "jmespath", "urllib3"})
"""What the Lambda python3.13 runtime ships besides the standard library (boto3 and its dependencies)."""
TARGET_VERSION = (3, 13)
IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
OPTIONAL = {
    ("requests.compat", "simplejson"): "under `if has_simplejson:`, set by a guarded import",
    ("urllib3.http2.connection", "h2.config"): "loaded only once urllib3.http2.probe found h2 installed",
    ("urllib3.http2.connection", "h2.connection"): "loaded only once urllib3.http2.probe found h2 installed",
    ("urllib3.http2.connection", "h2.events"): "loaded only once urllib3.http2.probe found h2 installed",
    ("PIL.FpxImagePlugin", "olefile"): "Pillow's Image.init() imports each plugin under `except ImportError`",
    ("PIL.MicImagePlugin", "olefile"): "Pillow's Image.init() imports each plugin under `except ImportError`",
    ("spendwatch.core.config_yaml", "yaml"): "only for YAML text, which runtime.parse_stored_config refuses first",
}
"""(importing module, imported module) pairs that a static reading cannot see are never loaded, and why; a
top-level package name stands for its submodules too."""


@dataclass(frozen=True)
class Unresolved:
    module: str
    """the importing module"""
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _guarded(handlers: list[ast.ExceptHandler]) -> bool:
    for handler in handlers:
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if handler.type is None or any(isinstance(n, ast.Name) and n.id in IMPORT_ERRORS for n in names):
            return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _branch(test: ast.expr) -> bool | None:
    """The value of `sys.version_info <op> (3, N)` on the target python, or None for any other test."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.comparators[0], ast.Tuple)):
        return None
    left = test.left
    if not (isinstance(left, ast.Attribute) and left.attr == "version_info"):
        return None
    try:
        bound = tuple(ast.literal_eval(test.comparators[0]))
    except ValueError:
        return None
    compare = {ast.GtE: tuple.__ge__, ast.Gt: tuple.__gt__, ast.Lt: tuple.__lt__, ast.LtE: tuple.__le__}
    operation = compare.get(type(test.ops[0]))
    return None if operation is None else bool(operation(TARGET_VERSION[: len(bound)], bound))


def load_time_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is loaded and must succeed."""
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            taken = False if _is_type_checking(node.test) else _branch(node.test)
            if taken is not False:
                todo += node.body
            if taken is not True:
                todo += node.orelse
        elif isinstance(node, ast.Try):
            if not _guarded(node.handlers):  # a guarded import (and its else: clause) may fail
                todo += node.body + node.orelse
            todo += node.finalbody
        elif isinstance(node, ast.ClassDef | ast.With):
            todo += node.body


def all_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run, function bodies included (spendwatch's own lazy imports must resolve too)."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo += node.orelse
        else:
            todo += ast.iter_child_nodes(node)


class Resolver:
    """Modules available on a function's sys.path: its artifact, the layer's python/, the runtime, stdlib."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = list(roots)

    def exists(self, dotted: str) -> bool:
        top = dotted.split(".", maxsplit=1)[0]
        if top in sys.stdlib_module_names or top in RUNTIME_PACKAGES or top == "__future__":
            return True
        parts = dotted.split(".")
        for root in self.roots:
            base = root.joinpath(*parts)
            if (base / "__init__.py").is_file() or base.with_suffix(".py").is_file():
                return True
            if base.parent.is_dir() and any(base.parent.glob(f"{parts[-1]}.*.so")):
                return True
        return False

    def package_dir(self, dotted: str) -> Path | None:
        for root in self.roots:
            base = root.joinpath(*dotted.split("."))
            if (base / "__init__.py").is_file():
                return base
        return None

    def unresolved(self, module: str, node: ast.Import | ast.ImportFrom, *, is_package: bool) -> Iterator[str]:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if not self.exists(alias.name))
            return
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        if not self.exists(base):
            yield base
            return
        package = self.package_dir(base)
        if package is None:
            return  # names from a plain module are attributes, which a static check cannot see
        init = (package / "__init__.py").read_text(encoding="utf-8", errors="replace")
        for alias in node.names:
            if alias.name != "*" and not self.exists(f"{base}.{alias.name}") and alias.name not in init:
                yield f"{base}.{alias.name}"


def check_artifact(root: Path, resolver: Resolver, *, every_import_of: str | None = None) -> list[Unresolved]:
    """Unresolved load-time imports of every module under `root` (and every import at all of the
    modules in package `every_import_of`)."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(root, path)
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"), str(path))
        strict = every_import_of is not None and module.split(".")[0] == every_import_of
        for node in all_imports(tree) if strict else load_time_imports(tree):
            for imported in resolver.unresolved(module, node, is_package=path.name == "__init__.py"):
                if (module, imported) not in OPTIONAL and (module, imported.split(".")[0]) not in OPTIONAL:
                    problems.append(Unresolved(module, imported, node.lineno))
    return problems
