"""Validation errors in plain words: one problem per field, its path as written, did-you-mean.

The validator (`spendwatch.core.model`, whose errors have pydantic's shape) names what *it* expected
("Input should be a valid tuple", "Input tag 'pager' found using 'type' does not match…") and adds
steps of its own to the location (the tag of a union, `[key]`); a person editing a YAML file needs the
field as they wrote it and what to write instead.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from spendwatch.core.config_input import Path
from spendwatch.core.model import BaseModel, ErrorDetails, resolved_fields

PATTERNS = {
    r"^[a-z0-9][a-z0-9-]{0,62}$": "must be lowercase letters, digits and dashes (at most 63), e.g. acme-prod",
    r"^/[A-Za-z0-9_.\-/]+$": "must be an SSM parameter name: a / then letters, digits and _ . - /",
    r"^[A-Z_][A-Z0-9_]*$": "must be an environment variable name in capitals, e.g. OPENAI_ADMIN_KEY",
    r"^(<!(here|channel)>|<@[A-Z0-9]+>|<!subteam\^[A-Z0-9]+>)$": (
        "must be one whole Slack mention: <!here>, <!channel>, <@U…> or <!subteam^…>"
    ),
    r"^[^@\s]+@[^@\s]+\.[^@\s]+$": "must be an e-mail address such as alerts@example.com",
    r"^[A-Za-z0-9_-]+$": "may use letters, digits, _ and - only",
    r"^[A-Za-z0-9_-]{1,64}$": "may use letters, digits, _ and - only (at most 64)",
    r"^[^\x00-\x1f\x7f]*$": "must be one line of text (no line breaks or control characters)",
}


def describe_value(value: object) -> str:  # noqa: PLR0911 - one wording per kind of value
    """A value as the user wrote it, briefly (never a whole list or mapping)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | Decimal):
        text = str(value)
        return f"the number {text if len(text) <= 24 else format(Decimal(value), '.3e')}"
    if isinstance(value, str):
        return f"the text {value[:40] + ('…' if len(value) > 40 else '')!r}"
    if isinstance(value, datetime):
        return f"the time {value.isoformat()}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"{value}"


def _limit(value: object) -> str:
    return str(value) if not isinstance(value, float) or not value.is_integer() else str(int(value))


_PLAIN: dict[str, str] = {
    "missing": "is required but missing",
    "string_type": "expected text, got {got}",
    "string_too_short": "must not be empty",
    "string_too_long": "is too long: at most {max_length} characters",
    "too_short": "needs at least {min_length} item(s)",
    "too_long": "has too many items: at most {max_length}",
    "tuple_type": "expected a list, got {got}",
    "list_type": "expected a list, got {got}",
    "model_type": "expected a mapping of fields, got {got}",
    "model_attributes_type": "expected a mapping of fields, got {got}",
    "dict_type": "expected a mapping, got {got}",
    "int_type": "expected a whole number, got {got}",
    "int_parsing": "expected a whole number, got {got}",
    "int_from_float": "expected a whole number, got {got}",
    "int_parsing_size": "is far too large, got {got}",
    "finite_number": "must be a finite number, got {got}",
    "bool_type": "expected true or false, got {got}",
    "bool_parsing": "expected true or false, got {got}",
    "decimal_type": "expected a number, got {got}",
    "decimal_parsing": "expected a number, got {got}",
    "decimal_max_places": "has more than {decimal_places} decimal places",
    "decimal_max_digits": "has more than {max_digits} digits",
    "greater_than": "must be more than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "date_type": "expected a date such as 2026-12-31, got {got}",
    "date_parsing": "expected a date such as 2026-12-31, got {got}",
    "date_from_datetime_inexact": "expected a date such as 2026-12-31, got {got}",
    "datetime_type": "expected a time such as 2026-12-01T09:00:00Z, got {got}",
    "datetime_parsing": "expected a time such as 2026-12-01T09:00:00Z, got {got}",
    "timedelta_type": "expected a duration such as 30m, 6h or 1d, got {got}",
    "union_tag_not_found": "is missing its type (one of {tags})",
    "extra_forbidden": "unknown field",
}


def translate(errors: Sequence[ErrorDetails], data: Any, root: type[BaseModel]) -> list[tuple[Path, str]]:
    """(path in the user's data, problem in plain words) for each validation error, doubles removed."""
    problems: list[tuple[Path, str]] = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "too_short" and any(
            len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc for e in errors
        ):
            continue  # a list whose items all failed also reports "too short": the item errors say it better
        path = data_path(loc, data, keep_last=error["type"] in {"missing", "union_tag_not_found"})
        message = _message(error, loc, root)
        if (path, message) not in problems:
            problems.append((path, message))
    return problems


def _message(  # noqa: PLR0911 - the special cases first, then the table
    error: ErrorDetails, loc: tuple[int | str, ...], root: type[BaseModel]
) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    got = describe_value(error.get("input"))
    if kind in {"value_error", "assertion_error"}:
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "extra_forbidden":
        name = str(loc[-1])
        known = field_names(root, loc[:-1])
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})" if known else ""
        return f"unknown field {name!r}{hint}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return f"{PATTERNS.get(pattern, f'has the wrong form (expected {pattern})')}, got {got}"
    if kind == "union_tag_invalid":
        tags = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"type must be one of {tags}, got {ctx.get('tag')!r}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        given = error.get("input")
        options = [o.strip("' ") for o in expected.replace(" or ", ", ").split(",")]
        close = difflib.get_close_matches(given, options, n=1, cutoff=0.6) if isinstance(given, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"must be {expected}, got {got}{hint}"
    template = _PLAIN.get(kind)
    if template is None:
        message = str(error["msg"])
        return message[:1].lower() + message[1:]
    values = {k: _limit(v) for k, v in ctx.items()}
    if kind == "union_tag_not_found":
        values["tags"] = "slack, email, webhook, pagerduty, teams, sns"
    return template.format(got=got, **values)


def data_path(loc: tuple[int | str, ...], data: Any, *, keep_last: bool = False) -> Path:
    """The validator's location reduced to the steps that exist in the data (drops union tags and `[key]`)."""
    path: list[str | int] = []
    node = data
    for index, step in enumerate(loc):
        in_mapping = isinstance(node, dict) and isinstance(step, str) and step in node
        in_list = isinstance(node, list | tuple) and isinstance(step, int) and 0 <= step < len(node)
        if in_mapping or in_list:
            path.append(step)
            node = node[step]
        elif keep_last and index == len(loc) - 1 and isinstance(step, str):
            path.append(step)
    return tuple(path)


def field_names(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The fields of the model found at `loc` (following the validator's steps, union tags included)."""
    current: Any = root
    for step in loc:
        current = _step(current, step)
        if current is None:
            return []
    model = _model_of(current, None)
    return sorted(resolved_fields(model)) if model is not None else []


def _step(annotation: Any, step: int | str) -> Any:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return resolved_fields(annotation).get(str(step))
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is tuple and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (typing.Union, types.UnionType):
        return _model_of(annotation, str(step))
    return None


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _model_of(annotation: Any, tag: str | None) -> type[BaseModel] | None:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for candidate in typing.get_args(annotation):
        member = _unwrap(candidate)
        if isinstance(member, type) and issubclass(member, BaseModel):
            type_field = resolved_fields(member).get("type")
            if tag is None or (type_field is not None and tag in typing.get_args(type_field)):
                return member
    return None
