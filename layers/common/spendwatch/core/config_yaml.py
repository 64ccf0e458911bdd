"""The YAML form of the config, as users write it: bounded, exact, and with the line of every value.

Only local commands import this module (`spendwatch config validate|push`, `poll`, the demo); the
deployed functions read the canonical JSON that `config push` stores, so they need no YAML parser.

PyYAML composes the node graph (with depth, size and alias bounds checked as it goes); the values are
built here rather than by PyYAML's constructors, so that:
- decimals stay exact (`Decimal` from the text, never a float);
- sexagesimal numbers (`1:30.5`), `.inf` and `.nan` are read as text: a name keeps what was written and a
  number field says "not a number";
- integers are decimal as in YAML 1.2 (`0100` is one hundred, not YAML 1.1's octal 64);
- impossible dates and times (`2026-02-30`, hour 25) and unsupported tags are errors naming the line;
- keys are text as written (`yes:` is the key "yes", not `True`), complex keys (`? [a, b]`) are refused;
- merge keys (`<<: *defaults`) work as YAML 1.1 defines them: explicit keys override merged ones, earlier
  merged mappings override later ones, and only a key written twice explicitly is a duplicate.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from spendwatch.core.config_input import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_NUMBER_CHARS,
    MAX_VALUES,
    ConfigDocument,
    ConfigProblemError,
    Path,
    check_text_size,
)
from spendwatch.core.errors import ConfigError

_TAG = "tag:yaml.org,2002:"
STR, NULL, BOOL, INT, FLOAT, TIMESTAMP = (f"{_TAG}{t}" for t in ("str", "null", "bool", "int", "float", "timestamp"))
SEQ, MAP, MERGE = f"{_TAG}seq", f"{_TAG}map", f"{_TAG}merge"
_BOOLS = yaml.constructor.SafeConstructor.bool_values
_NOT_FINITE = {".inf", ".nan", "inf", "nan", "infinity"}


class _Bounded(yaml.composer.Composer):
    """A composer that refuses deep nesting, long collections and too many nodes as it reads, before
    PyYAML's recursive composer could exhaust the stack. Events come from libyaml when PyYAML has it (about
    four times faster on a large file), else from PyYAML's own parser."""

    _depth = 0
    _nodes = 0
    byte_positions = False
    """whether a reader error's position counts UTF-8 bytes (libyaml) or characters (PyYAML)"""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        mark = self.peek_event().start_mark  # type: ignore[attr-defined]
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            if self._nodes > MAX_VALUES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_VALUES:,} values", mark)
            if isinstance(parent, SequenceNode | MappingNode) and len(parent.value) >= MAX_ITEMS:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_ITEMS:,} entries in one list or mapping", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _PureLoader(_Bounded, yaml.SafeLoader):
    pass


try:
    from yaml._yaml import CParser

    class _FastLoader(_Bounded, CParser, yaml.resolver.Resolver):
        byte_positions = True

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _LOADER: type[_Bounded] = _FastLoader
except ImportError:  # PyYAML built without libyaml
    _LOADER = _PureLoader


def load_yaml(text: str, source: str) -> Any:
    """Config YAML as plain data; any problem is a `ConfigError` naming the line."""
    return load_yaml_document(text, source).data


def load_yaml_document(text: str, source: str) -> ConfigDocument:
    """Config YAML as plain data plus the line of every key and list item."""
    check_text_size(text, source)
    loader: Any = None
    try:
        loader = _LOADER(text)  # type: ignore[call-arg] # the reader refuses control characters here
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        message = exc.problem or exc.context or "not valid YAML"
        if exc.context and exc.problem and exc.problem.startswith("but "):
            message = f"{exc.context}, {exc.problem}"  # "expected a single document…, but found another…"
        raise ConfigError(source, [f"{where}: {message}"]) from None
    except yaml.reader.ReaderError as exc:
        position = exc.position
        if _LOADER.byte_positions:
            position = len(text.encode("utf-8", "surrogatepass")[:position].decode("utf-8", "ignore"))
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        character = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise ConfigError(
            source,
            [f"line {line}, column {column}: character U+{ord(character):04X} is not allowed (a control character)"],
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {str(exc).splitlines()[0]}"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        return ConfigDocument(None, source)
    builder = _Builder()
    try:
        data = builder.value(node, (), 0)
    except ConfigProblemError as exc:
        raise ConfigError(source, [str(exc)]) from None
    return ConfigDocument(data, source, builder.lines)


class _Builder:
    """Turns composed nodes into plain values, recording the line of each key and item by data path."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self._values = 0
        self._timestamps = yaml.constructor.SafeConstructor()

    def value(self, node: Node, path: Path, depth: int) -> Any:
        self._values += 1
        if self._values > MAX_VALUES:
            # Aliases make a small text expand into a huge document; each use counts.
            raise _problem(node, path, f"the document expands to more than {MAX_VALUES:,} values (aliases included)")
        if depth > MAX_DEPTH:
            raise _problem(node, path, f"nested more than {MAX_DEPTH} levels deep (aliases included)")
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != SEQ:
                raise _problem(node, path, f"the YAML tag {_short(node.tag)} is not supported here")
            items = []
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = item.start_mark.line + 1
                items.append(self.value(item, (*path, index), depth + 1))
            return items
        if isinstance(node, MappingNode):
            if node.tag != MAP:
                raise _problem(node, path, f"the YAML tag {_short(node.tag)} is not supported here")
            return self._mapping(node, path, depth)
        raise _problem(node, path, "unsupported YAML node")  # pragma: no cover - PyYAML has no other kind

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        explicit: dict[str, tuple[Node, Node]] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                if merges:
                    raise _problem(key_node, path, "duplicate key '<<' (merge several mappings with <<: [*a, *b])")
                merges = _merge_sources(value_node, path)
                continue
            if not isinstance(key_node, ScalarNode):
                raise _problem(key_node, path, "a key must be plain text, not a list or a mapping")
            key = key_node.value
            if key in explicit:
                raise _problem(key_node, path, f"duplicate key {key!r}")
            explicit[key] = (key_node, value_node)
        result: dict[str, Any] = {}
        # Merged values first, so that the lines of explicit keys (which win) are the ones recorded.
        merged = [self.value(source, path, depth + 1) for source in merges]
        for key, (key_node, value_node) in explicit.items():
            self.lines[(*path, key)] = int(key_node.start_mark.line) + 1
            result[key] = self.value(value_node, (*path, key), depth + 1)
        for mapping in merged:
            for key, value in mapping.items():
                result.setdefault(key, value)
        return result

    def _scalar(self, node: ScalarNode, path: Path) -> Any:  # noqa: PLR0911 - one return per YAML 1.1 type
        tag, text = node.tag, node.value
        try:
            if tag in (STR, "!"):
                return text
            if tag == NULL:
                return None
            if tag == BOOL:
                return _BOOLS[text.lower()]
            if tag == INT:
                return text if ":" in text else _integer(text)
            if tag == FLOAT:
                if ":" in text or text.lower().lstrip("+-") in _NOT_FINITE:
                    return text  # read as written: a number field then says it is not a (finite) number
                return _decimal(text)
            if tag == TIMESTAMP:
                moment: date | datetime = self._timestamps.construct_yaml_timestamp(node)
                return moment
        except (ValueError, KeyError, InvalidOperation, TypeError, AttributeError, OverflowError) as exc:
            kind = {TIMESTAMP: "a real date or time", BOOL: "true or false"}.get(tag, "a number")
            detail = f" ({exc})" if isinstance(exc, ValueError) and tag == TIMESTAMP else ""
            raise _problem(node, path, f"{_clip(text)!r} is not {kind}{detail}") from None
        raise _problem(node, path, f"the YAML tag {_short(tag)} is not supported (write the value without a tag)")


def _merge_sources(node: Node, path: Path) -> list[Node]:
    """The mappings a `<<` key merges: one mapping, or a list of them (earlier ones win)."""
    if isinstance(node, MappingNode):
        return [node]
    if isinstance(node, SequenceNode) and all(isinstance(item, MappingNode) for item in node.value):
        return list(node.value)
    raise _problem(node, path, "'<<' merges a mapping or a list of mappings (e.g. <<: *defaults)")


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError("too long")
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    if digits.startswith(("0x", "0X")):
        return sign * int(digits[2:], 16)
    if digits.startswith(("0b", "0B")):
        return sign * int(digits[2:], 2)
    if digits.startswith(("0o", "0O")):
        return sign * int(digits[2:], 8)
    return sign * int(digits, 10)  # `0100` is one hundred (YAML 1.2), not YAML 1.1's octal


def _decimal(text: str) -> Decimal:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError("too long")
    return Decimal(text.replace("_", ""))


def _problem(node: Node, path: Path, message: str) -> ConfigProblemError:
    return ConfigProblemError(int(node.start_mark.line) + 1, path, message)


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _clip(text: str) -> str:
    return text if len(text) <= 40 else text[:39] + "…"
