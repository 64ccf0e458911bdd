"""The config as text and as plain data, before any field is validated: bounds, decoding, JSON, paths.

Owns what every route into the config shares, whoever wrote it (a user's YAML file, the canonical JSON
that `config push` stores, a hand-edited SSM parameter): the input is bounded before it is parsed, bytes
are decoded or refused with the offset of the first bad byte, and every problem is reported as
`line N: field.path: problem` (the line where the text has lines). No pydantic and no YAML here: the
deployed functions import this module on every cold start.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from spendwatch.core.errors import ConfigError

MAX_CONFIG_BYTES = 64 * 1024
"""A real config is a few KB (the SSM parameter it is pushed to holds 4 KB); this is 16 times that."""
MAX_DEPTH = 32
"""Nesting levels of lists and mappings; the deepest field of the format is 7 levels down."""
MAX_ITEMS = 1000
"""Entries of any one list or mapping (the models set tighter limits per field)."""
MAX_VALUES = 50_000
"""Values in the whole document, each YAML alias counted every time it is used (no "billion laughs")."""
MAX_STRING_CHARS = 1000
"""Characters of any one text value or key."""
MAX_NUMBER_CHARS = 100
"""Characters of a number as written; DynamoDB keeps 38 significant digits."""
MAX_PROBLEMS = 20

Path = tuple[str | int, ...]
_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


@dataclass(frozen=True)
class ConfigDocument:
    """Plain data (dicts, lists, str, int, Decimal, bool, None, dates) and where each value was written."""

    data: Any
    source: str
    lines: Mapping[Path, int] = field(default_factory=dict)
    """1-based line of each mapping key and list item, by data path (YAML only; JSON is one line)"""

    def line_of(self, path: Path) -> int | None:
        """The line of `path`, else of its nearest ancestor that has one."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def problem(self, path: Path, message: str) -> str:
        return located(self.line_of(path), path, message)


class ConfigProblemError(Exception):
    """One problem found while turning text into data; the caller adds the source and raises `ConfigError`."""

    def __init__(self, line: int | None, path: Path, message: str) -> None:
        self.line = line
        self.path = path
        self.message = message
        super().__init__(located(line, path, message))


def format_path(path: Path) -> str:
    """`organizations[0].budget.thresholds_percent[1]`; unusual keys are quoted: `channels['my chan']`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            text += ("." if text else "") + part
        else:
            text += f"[{part!r}]"
    return text or "(top level)"


def located(line: int | None, path: Path, message: str) -> str:
    where = f"line {line}: " if line is not None else ""
    return f"{where}{format_path(path)}: {message}"


# --- bytes and text ------------------------------------------------------------------------------


def decode_config_bytes(raw: bytes, source: str) -> str:
    """UTF-8 (with or without BOM), or UTF-16/32 with a BOM; anything else names the first bad byte."""
    check_size(len(raw), source)
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                return raw[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    source, [f"byte offset {exc.start + len(bom)}: not valid {codec.upper()}: save the file as UTF-8"]
                ) from None
    if b"\x00" in raw:
        offset = raw.index(b"\x00")
        raise ConfigError(
            source,
            [
                f"byte offset {offset}: a NUL byte; the file looks like UTF-16 or UTF-32 without a byte-order "
                "mark: save it as UTF-8"
            ],
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source,
            [
                f"byte offset {exc.start}: byte 0x{raw[exc.start]:02X} is not UTF-8 (latin-1 or another "
                "encoding?): save the file as UTF-8"
            ],
        ) from None


def check_size(size: int, source: str) -> None:
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            source,
            [
                f"(top level): {size:,} bytes, more than the {MAX_CONFIG_BYTES:,} a config may have (a real one "
                "is a few KB): "
                "is this the right file?"
            ],
        )


def check_text_size(text: str, source: str) -> None:
    """Bound text that arrives as `str` (an SSM parameter) before anything parses it."""
    check_size(len(text), source)  # characters <= bytes: refuses the absurd without encoding it
    check_size(len(text.encode("utf-8", "surrogatepass")), source)


# --- JSON (the canonical form the deployed functions read) --------------------------------------------


@dataclass(frozen=True)
class DuplicateKey:
    """A JSON key written twice in one object (the value it held is dropped: neither is trusted)."""

    key: str


@dataclass(frozen=True)
class NonFinite:
    """`NaN` or `Infinity` in JSON: kept as a marker so the field that holds it is named in the error."""

    text: str

    def __str__(self) -> str:
        return self.text


def load_json(text: str, source: str) -> ConfigDocument:
    """Canonical JSON as plain data: numbers as exact `Decimal`/`int`, duplicate keys and deep nesting refused."""
    check_text_size(text, source)
    depth = _json_depth(text)
    if depth > MAX_DEPTH:
        raise ConfigError(source, [f"(top level): nested {depth:,} levels deep, more than {MAX_DEPTH}"])

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            # Marked rather than raised here, where the path is unknown: `shape_problems` names the field.
            result[key] = DuplicateKey(key) if key in result else value
        return result

    try:
        data = json.loads(
            text, parse_float=_json_number, parse_int=_json_int, parse_constant=NonFinite, object_pairs_hook=pairs
        )
    except json.JSONDecodeError as exc:
        raise ConfigError(source, [f"line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    return ConfigDocument(data, source)


def _json_int(text: str) -> int | Decimal:
    # Past Python's int-from-text limit (4,300 digits) int() raises; a Decimal is named by the field check.
    return int(text) if len(text) <= MAX_NUMBER_CHARS else Decimal(text)


def _json_number(text: str) -> Decimal:
    return Decimal(text)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _json_depth(text: str) -> int:
    """The deepest nesting of `[`/`{` outside strings, found before `json.loads` (which recurses)."""
    depth = deepest = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest


# --- the shape of the data, whatever route it came by ---------------------------------------------------


def shape_problems(doc: ConfigDocument) -> list[str]:
    """Bounds and text hygiene for every value: sizes, nesting, control characters, invalid Unicode."""
    problems: list[str] = []
    counter = [0]
    for path, message in _walk(doc.data, (), 0, counter):
        problems.append(doc.problem(path, message))
        if len(problems) >= MAX_PROBLEMS:
            problems.append(f"(top level): more problems than these {MAX_PROBLEMS}: fix these first")
            break
    return problems


def _walk(value: Any, path: Path, depth: int, counter: list[int]) -> Iterator[tuple[Path, str]]:
    counter[0] += 1
    if counter[0] > MAX_VALUES:
        yield path, f"the document holds more than {MAX_VALUES:,} values"
    elif depth > MAX_DEPTH:
        yield path, f"nested more than {MAX_DEPTH} levels deep"
    elif isinstance(value, str):
        problem = text_problem(value)
        if problem:
            yield path, problem
    elif isinstance(value, DuplicateKey):
        yield path, f"duplicate key {value.key!r}"
    elif isinstance(value, dict):
        yield from _walk_mapping(value, path, depth, counter)
    elif isinstance(value, list | tuple):
        if len(value) > MAX_ITEMS:
            yield path, f"{len(value):,} items, more than the {MAX_ITEMS:,} a config may have"
            return
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index), depth + 1, counter)
    elif isinstance(value, Decimal) and len(str(value)) > MAX_NUMBER_CHARS:
        yield path, f"a number of {len(str(value)):,} characters, longer than any amount ({MAX_NUMBER_CHARS} at most)"


def _walk_mapping(value: dict[Any, Any], path: Path, depth: int, counter: list[int]) -> Iterator[tuple[Path, str]]:
    if len(value) > MAX_ITEMS:
        yield path, f"{len(value):,} entries, more than the {MAX_ITEMS:,} a config may have"
        return
    for key, item in value.items():
        if not isinstance(key, str):
            yield path, f"key {key!r} is not text"
            continue
        problem = text_problem(key)
        if problem:
            yield (*path, key[:40]), f"key {problem}"
            continue
        yield from _walk(item, (*path, key), depth + 1, counter)


def text_problem(text: str) -> str | None:
    """Why a text value cannot be in a config (too long, a control character, invalid Unicode), or None."""
    if len(text) > MAX_STRING_CHARS:
        return f"is {len(text):,} characters long, more than {MAX_STRING_CHARS:,}"
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc":
            name = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab"}.get(char, "a control character")
            return f"contains {name} (U+{ord(char):04X}); a config value is one line of text"
        if category == "Cs":
            return f"contains U+{ord(char):04X}, half of a surrogate pair: not valid Unicode"
    return None


def exact_decimal(text: str) -> Decimal | None:
    """`text` as a Decimal when it is a number as written in a config (no float detour), else None."""
    if len(text) > MAX_NUMBER_CHARS:
        return None
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        return None
