"""The JSON Schema (draft 2020-12) of a `spendwatch.core.model` model, for editors to complete and check a file.

Written in the layout pydantic gave the committed `config/spendwatch.schema.json` (a `$defs` entry per
model, `title`s, `default`s as a user writes them, keys sorted within each schema), so that editors
and the schema's own tests see the same document. Only the command-line tool imports this module.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from spendwatch.core.model import BaseModel, FieldInfo, WithJsonSchema, resolved_fields

_UNORDERED = ("properties", "default", "patternProperties", "mapping", "const", "enum")
"""Keys whose value keeps its own order (field order, a default's data), where the rest are sorted."""


def model_json_schema(root: type[BaseModel], encode_default: Callable[[Any], Any]) -> dict[str, Any]:
    """The schema of `root`, with the models it uses under `$defs`; `encode_default` writes a default value."""
    builder = _Builder(encode_default)
    schema = builder.model(root)
    defs = {name: builder.defs[name] for name in sorted(builder.defs) if name != root.__name__}
    ordered: dict[str, Any] = _sorted({**schema, **({"$defs": defs} if defs else {})})
    return ordered


class _Builder:
    def __init__(self, encode_default: Callable[[Any], Any]) -> None:
        self.encode_default = encode_default
        self.defs: dict[str, dict[str, Any]] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        if model.__name__ not in self.defs:
            self.defs[model.__name__] = {}  # reserved first: a model may refer to itself
            self.defs[model.__name__] = self.model(model)
        return {"$ref": f"#/$defs/{model.__name__}"}

    def model(self, model: type[BaseModel]) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required = []
        for name, annotation in resolved_fields(model).items():
            info = model.model_fields[name]
            schema = self.annotated(annotation)
            if not _refers(schema):
                schema["title"] = name.replace("_", " ").title()
            if info.required:
                required.append(name)
            else:
                schema["default"] = self.encode_default(info.get_default())
            properties[name] = schema
        out: dict[str, Any] = {"properties": properties, "title": model.__name__, "type": "object"}
        if model.__doc__ and model.__doc__ is not BaseModel.__doc__:
            out["description"] = inspect.cleandoc(model.__doc__)
        if model.model_config.get("extra") == "forbid":
            out["additionalProperties"] = False
        if required:
            out["required"] = required
        return out

    def annotated(self, annotation: Any) -> dict[str, Any]:
        limits = FieldInfo()
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, *metadata = typing.get_args(annotation)
            for item in metadata:
                if isinstance(item, WithJsonSchema):
                    return dict(item.json_schema)
                if isinstance(item, FieldInfo):
                    limits.merged(item)
        return self.plain(annotation, limits)

    def plain(self, annotation: Any, limits: FieldInfo) -> dict[str, Any]:  # noqa: PLR0911 - one case per kind
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin in (typing.Union, types.UnionType):
            members = [m for m in args if m is not type(None)]
            if limits.discriminator is not None:
                inner = self.tagged(members, limits.discriminator)
            elif len(members) == 1:
                inner = self.plain(members[0], limits)
            else:
                inner = {"anyOf": [self.plain(m, limits) for m in members]}
            if type(None) not in args:
                return inner
            choices = inner["anyOf"] if set(inner) == {"anyOf"} else [inner]
            return {"anyOf": [*choices, {"type": "null"}]}
        if origin is typing.Annotated:
            return self.annotated(annotation)
        if origin is Literal:
            return _literal(args)
        if origin in (tuple, list):
            items = self.annotated(args[0])
            return _drop_none(
                {"type": "array", "items": items, "minItems": limits.min_length, "maxItems": limits.max_length}
            )
        if origin is dict:
            return self.mapping(args, limits)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.ref(annotation)
        return _scalar(annotation, limits)

    def tagged(self, members: list[Any], field: str) -> dict[str, Any]:
        refs = [self.ref(m) for m in members]
        mapping = {}
        for member, ref in zip(members, refs, strict=True):
            for tag in typing.get_args(typing.get_type_hints(member, include_extras=True)[field]):
                mapping[tag] = ref["$ref"]
        return {"discriminator": {"mapping": dict(sorted(mapping.items())), "propertyName": field}, "oneOf": refs}

    def mapping(self, args: tuple[Any, ...], limits: FieldInfo) -> dict[str, Any]:
        key_schema = self.annotated(args[0]) if args else {}
        value_schema = self.annotated(args[1]) if args else {}
        out: dict[str, Any] = {"type": "object"}
        pattern = key_schema.pop("pattern", None)
        key_schema.pop("type", None)
        if pattern is not None:
            out["patternProperties"] = {pattern: value_schema}
        else:
            out["additionalProperties"] = value_schema
        if key_schema:
            out["propertyNames"] = key_schema
        if limits.max_length is not None:
            out["maxProperties"] = limits.max_length
        return out


def _refers(schema: dict[str, Any]) -> bool:
    """A field that is a model (or a model or null) takes its title from the model, as in pydantic's layout."""
    return "$ref" in schema or any("$ref" in choice for choice in schema.get("anyOf", ()))


def _literal(values: tuple[Any, ...]) -> dict[str, Any]:
    kinds = {type(v) for v in values}
    kind = {str: "string", int: "integer", bool: "boolean"}.get(next(iter(kinds))) if len(kinds) == 1 else None
    out: dict[str, Any] = {"const": values[0]} if len(values) == 1 else {"enum": list(values)}
    if kind is not None:
        out["type"] = kind
    return out


def _scalar(annotation: Any, limits: FieldInfo) -> dict[str, Any]:  # noqa: PLR0911 - one case per type
    if annotation is str:
        lengths = {"minLength": limits.min_length, "maxLength": limits.max_length}
        return _drop_none({"type": "string", **lengths, "pattern": limits.pattern})
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return _drop_none({"type": "integer", **_bounds(limits, float_bounds=False)})
    if annotation is float:
        return _drop_none({"type": "number", **_bounds(limits, float_bounds=True)})
    if annotation is Decimal:
        # A number, or the same number written as text with at most `decimal_places` places (pydantic's form).
        places = "*" if limits.decimal_places is None else f"{{0,{limits.decimal_places}}}"
        text = {"pattern": rf"^(?!^[-+.]*$)[+-]?0*\d*\.?\d{places}0*$", "type": "string"}
        return {"anyOf": [_drop_none({"type": "number", **_bounds(limits, float_bounds=True)}), text]}
    if annotation is datetime:
        return {"type": "string", "format": "date-time"}
    if annotation is date:
        return {"type": "string", "format": "date"}
    if annotation is timedelta:
        return {"type": "string", "format": "duration"}
    if annotation is Any or annotation is object:
        return {}
    raise TypeError(f"no JSON Schema for {annotation!r}")


def _bounds(limits: FieldInfo, *, float_bounds: bool) -> dict[str, Any]:
    def number(value: Any) -> Any:
        return None if value is None else float(value) if float_bounds else value

    return {
        "exclusiveMinimum": number(limits.gt),
        "minimum": number(limits.ge),
        "exclusiveMaximum": number(limits.lt),
        "maximum": number(limits.le),
    }


def _drop_none(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if value is not None}


def _sorted(value: Any, *, keep: bool = False) -> Any:
    if isinstance(value, dict):
        items = value.items() if keep else sorted(value.items())
        return {key: _sorted(item, keep=key in _UNORDERED and not keep) for key, item in items}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
