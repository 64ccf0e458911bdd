"""Frozen, validated models without pydantic: the subset of its API spendwatch's models use.

Why not pydantic: every cold start of every function paid for it. Importing pydantic took 0.4x an
`import boto3`, and building the config's and the snapshot's ~50 model classes (pydantic generates a
core schema per class at import) another 0.5-0.7x, more than the functions' own code; pydantic and
pydantic-core were also 6.5 MB of the 10 MB layer (docs/performance.md, "Cold start"). A class here
costs what a plain class costs; its validator is built the first time the class validates something.

What it keeps of pydantic, so the models read as they did and the error translation
(`core.config_messages`) keeps its wording: `BaseModel` subclasses with annotated fields and defaults,
`Annotated` constraints through `Field(...)`, before/after validators, `field_validator` and
`model_validator`, discriminated unions, `extra` forbid/ignore, frozen instances, `model_validate`,
`model_dump` (python and json modes), `model_copy`, and errors as pydantic reports them: every problem
with its location, its `type` (`missing`, `greater_than`, `string_pattern_mismatch`, ...), message,
input and context. Conversions are pydantic's lax mode where the models rely on it (a number in text
for an int or a Decimal, an integral Decimal for an int: DynamoDB returns every number as a Decimal)
and strict where a field says so. The JSON Schema of a model is in `core.model_schema` (only the
command-line tool needs it).
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import operator
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from types import CodeType
from typing import Any, ClassVar, Literal, TypedDict, TypeVar

_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "MISSING"})()
_M = TypeVar("_M", bound="BaseModel")
_T = TypeVar("_T")


class ErrorDetails(TypedDict, total=False):
    type: str
    loc: tuple[int | str, ...]
    msg: str
    input: Any
    ctx: dict[str, Any]


class ValidationError(ValueError):
    """Every problem found in one validation, each located (pydantic's `ValidationError` shape)."""

    def __init__(self, title: str, errors: list[ErrorDetails]) -> None:
        self.title = title
        self._errors = errors
        count = len(errors)
        lines = [f"{count} validation error{'s' if count != 1 else ''} for {title}"]
        for error in errors:
            where = ".".join(str(step) for step in error["loc"]) or "(top level)"
            lines.append(f"{where}\n  {error['msg']} [type={error['type']}]")
        super().__init__("\n".join(lines))

    def errors(self) -> list[ErrorDetails]:
        return list(self._errors)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.title, self._errors))

    def error_count(self) -> int:
        return len(self._errors)


class _Invalid(Exception):  # internal signal, never escapes this module
    """Raised inside validation with the problems found so far (locations relative to the raiser)."""

    def __init__(self, errors: list[ErrorDetails]) -> None:
        self.errors = errors


def _error(kind: str, msg: str, value: Any, ctx: dict[str, Any] | None = None) -> _Invalid:
    error: ErrorDetails = {"type": kind, "loc": (), "msg": msg, "input": value}
    if ctx is not None:
        error["ctx"] = ctx
    return _Invalid([error])


def _prefixed(errors: list[ErrorDetails], *steps: int | str) -> list[ErrorDetails]:
    return [{**error, "loc": (*steps, *error["loc"])} for error in errors]


# --- declarations --------------------------------------------------------------------------------------


class FieldInfo:
    """A field's default and constraints: what `Field(...)` returns, as a default or inside `Annotated`."""

    # Class-level defaults, set on an instance only when given: the models declare ~200 of these at import.
    annotation: Any = None
    decimal_places: int | None = None
    default: Any = _MISSING
    default_factory: Callable[[], Any] | None = None
    discriminator: str | None = None
    ge: Any = None
    gt: Any = None
    le: Any = None
    lt: Any = None
    max_length: int | None = None
    min_length: int | None = None
    pattern: str | None = None
    strict: bool | None = None
    CONSTRAINTS = (
        "decimal_places",
        "discriminator",
        "ge",
        "gt",
        "le",
        "lt",
        "max_length",
        "min_length",
        "pattern",
        "strict",
    )

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    @property
    def required(self) -> bool:
        return self.default is _MISSING and self.default_factory is None

    def get_default(self) -> Any:
        if self.default_factory is not None:
            return self.default_factory()
        if isinstance(self.default, dict | list | set):
            return copy.deepcopy(self.default)  # each instance its own, as pydantic copies mutable defaults
        return self.default

    @property
    def constrained(self) -> bool:
        return any(name in self.__dict__ for name in self.CONSTRAINTS)

    def merged(self, other: FieldInfo) -> None:
        """Takes `other`'s constraints (a later `Field(...)` in the same `Annotated` wins)."""
        self.__dict__.update({name: value for name, value in other.__dict__.items() if name in self.CONSTRAINTS})


def Field(
    default: Any = _MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    gt: Any = None,
    ge: Any = None,
    lt: Any = None,
    le: Any = None,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    decimal_places: int | None = None,
    strict: bool | None = None,
    discriminator: str | None = None,
) -> Any:
    given = {
        "default": default,
        "default_factory": default_factory,
        "gt": gt,
        "ge": ge,
        "lt": lt,
        "le": le,
        "min_length": min_length,
        "max_length": max_length,
        "pattern": pattern,
        "decimal_places": decimal_places,
        "strict": strict,
        "discriminator": discriminator,
    }
    kept = {name: value for name, value in given.items() if value is not None and name != "default"}
    return FieldInfo(**kept) if default is _MISSING else FieldInfo(default=default, **kept)


class BeforeValidator:
    """Inside `Annotated`: runs on the raw input before the type's own validation (the last one first)."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func


class AfterValidator:
    """Inside `Annotated`: runs on the validated value."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func


class PlainSerializer:
    """Inside `Annotated`: how `model_dump(mode="json")` writes the value."""

    __slots__ = ("func", "return_type", "when_used")

    def __init__(self, func: Callable[[Any], Any], return_type: Any = None, when_used: str = "always") -> None:
        self.func, self.return_type, self.when_used = func, return_type, when_used


class WithJsonSchema:
    """Inside `Annotated`: the JSON Schema written for the value instead of the generated one."""

    __slots__ = ("json_schema",)

    def __init__(self, json_schema: dict[str, Any]) -> None:
        self.json_schema = json_schema


StrictBool = typing.Annotated[bool, FieldInfo(strict=True)]


def ConfigDict(**settings: Any) -> dict[str, Any]:
    """`extra`: "forbid" (an unknown field is an error) or "ignore" (dropped); `frozen` is always true."""
    return settings


_VALIDATOR_MARK = "__spendwatch_validator__"


def field_validator(*fields: str, mode: Literal["after"] = "after") -> Callable[[_T], _T]:
    """Marks a classmethod `(cls, value) -> value` that runs after these fields' own validation."""

    def mark(method: _T) -> _T:
        setattr(method, _VALIDATOR_MARK, ("field", fields, mode))
        return method

    return mark


def model_validator(*, mode: Literal["before", "after"]) -> Callable[[_T], _T]:
    """Marks a classmethod `(cls, data) -> data` (before) or a method `(self) -> self` (after)."""

    def mark(method: _T) -> _T:
        setattr(method, _VALIDATOR_MARK, ("model", (), mode))
        return method

    return mark


# --- the model -----------------------------------------------------------------------------------------


class BaseModel:
    """A frozen record whose fields are validated on construction (`Model(**fields)`, `model_validate`)."""

    model_config: ClassVar[dict[str, Any]] = {}
    model_fields: ClassVar[dict[str, FieldInfo]] = {}
    __spendwatch_plan__: ClassVar[_Plan | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, FieldInfo] = {}
        for base in reversed(cls.__mro__[1:]):
            if issubclass(base, BaseModel) and base is not BaseModel:
                fields.update(base.model_fields)
        for name, annotation in inspect.get_annotations(cls).items():
            if _is_class_var(annotation) or name.startswith("_"):
                continue
            declared = cls.__dict__.get(name, _MISSING)
            info = declared if isinstance(declared, FieldInfo) else FieldInfo(default=declared)
            if isinstance(declared, FieldInfo):
                delattr(cls, name)  # an instance always has the attribute; the class keeps no FieldInfo
            fields[name] = info  # a redeclared field keeps its base's place, as in pydantic
        cls.model_fields = fields
        cls.__spendwatch_plan__ = None

    def __init__(self, **data: Any) -> None:
        validated = type(self)._run(data)
        object.__setattr__(self, "__dict__", validated.__dict__)

    @classmethod
    def model_validate(cls: type[_M], data: Any) -> _M:
        return cls._run(data)

    @classmethod
    def model_validate_json(cls: type[_M], text: str | bytes) -> _M:
        try:
            data = json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            raise ValidationError(cls.__name__, [_json_error(text, exc)]) from None
        return cls._run(data)

    @classmethod
    def _run(cls: type[_M], data: Any) -> _M:
        try:
            result: _M = _plan_of(cls).validate(data)
        except _Invalid as invalid:
            raise ValidationError(cls.__name__, invalid.errors) from None
        return result

    def model_dump(self, *, mode: Literal["python", "json"] = "python", exclude_none: bool = False) -> dict[str, Any]:
        return _plan_of(type(self)).dump(self, mode == "json", exclude_none)

    def model_copy(self: _M, *, update: Mapping[str, Any] | None = None) -> _M:
        """A copy with `update` applied as given (not validated, as pydantic's)."""
        copy = object.__new__(type(self))
        object.__setattr__(copy, "__dict__", {**self.__dict__, **(update or {})})
        return copy

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """(name, value) of each field, so `dict(model)` is its fields (as pydantic's)."""
        return iter(self.__dict__.items())

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"{type(self).__name__} is frozen: {name} cannot be assigned")

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"{type(self).__name__} is frozen: {name} cannot be deleted")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), *self.__dict__.values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.__dict__.items())
        return f"{type(self).__name__}({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(self.__dict__)))


def _rebuild(cls: type[_M], state: dict[str, Any]) -> _M:
    instance = object.__new__(cls)
    object.__setattr__(instance, "__dict__", state)
    return instance


def _is_class_var(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return typing.get_origin(annotation) is ClassVar


def _json_error(text: str | bytes, exc: ValueError) -> ErrorDetails:
    return {"type": "json_invalid", "loc": (), "msg": f"Invalid JSON: {exc}", "input": text}


# --- validation plans ----------------------------------------------------------------------------------

Validate = Callable[[Any], Any]
Dump = Callable[[Any, bool, bool], Any]


class _Plan:
    """A model class's compiled validator and serializer (built on first use, then cached on the class)."""

    def __init__(self, cls: type[BaseModel]) -> None:
        self.cls = cls
        self.forbid = cls.model_config.get("extra", "ignore") == "forbid"
        hints = _field_hints(cls)
        self.fields: list[tuple[str, FieldInfo, Validate, Dump]] = []
        validators = _validators_of(cls)
        for name, info in cls.model_fields.items():
            annotation = hints[name]
            if info.constrained:  # `x: int = Field(3, le=5)`: the constraints of the default's Field apply too
                annotation = typing.Annotated[annotation, info]
            info.annotation = annotation
            check = _field_chain(_build(annotation), [v for v in validators["field"] if name in v[0]], cls)
            self.fields.append((name, info, check, _dumper(annotation)))
        self.names = frozenset(cls.model_fields)
        self.steps = [(name, info.required, info, check) for name, info, check, _ in self.fields]
        self.before = [getattr(cls, attr) for _, attr in validators["before"]]
        self.after = [attr for _, attr in validators["after"]]

    def validate(self, data: Any) -> Any:  # noqa: PLR0912 - the steps of one validation, in order
        cls = self.cls
        if type(data) is not dict and isinstance(data, cls):
            return data
        for before in self.before:
            data = _call(before, data)
        if type(data) is not dict and isinstance(data, cls):
            return data
        if type(data) is not dict and not isinstance(data, Mapping):
            raise _error(
                "model_type",
                f"Input should be a valid dictionary or instance of {cls.__name__}",
                data,
                {"class_name": cls.__name__},
            )
        values: dict[str, Any] = {}
        errors: list[ErrorDetails] = []
        for name, required, info, check in self.steps:
            if name in data:
                try:
                    values[name] = check(data[name])
                except _Invalid as invalid:
                    errors.extend(_prefixed(invalid.errors, name))
            elif required:
                errors.append({"type": "missing", "loc": (name,), "msg": "Field required", "input": data})
            else:
                values[name] = info.get_default()
        if self.forbid:
            for key in data:
                if key not in self.names:
                    loc = (key,) if isinstance(key, str | int) else (str(key),)
                    errors.append(
                        {
                            "type": "extra_forbidden",
                            "loc": loc,
                            "msg": "Extra inputs are not permitted",
                            "input": data[key],
                        }
                    )
        if errors:
            raise _Invalid(errors)
        instance = object.__new__(cls)
        object.__setattr__(instance, "__dict__", values)
        for name in self.after:
            instance = _call(getattr(instance, name), None, bound=True)
        return instance

    def dump(self, instance: Any, json_mode: bool, exclude_none: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        values = instance.__dict__
        for name, _, _, dump in self.fields:
            value = values.get(name)
            if value is None:
                if not exclude_none:
                    out[name] = None
                continue
            out[name] = dump(value, json_mode, exclude_none)
        return out


_ANNOTATION_CODE: dict[str, CodeType] = {}


def _field_hints(cls: type[BaseModel]) -> dict[str, Any]:
    """The fields' annotations evaluated, each class's in its own module (a subclass may live elsewhere).

    What `typing.get_type_hints(cls, include_extras=True)` gives for the fields, but each annotation text
    (`from __future__ import annotations` keeps them as text) is compiled once for all the models and each
    class's own annotations evaluated once for all its subclasses: get_type_hints compiles every text again
    for every class that inherits it, a third of the config's validators' build time.
    """
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if issubclass(klass, BaseModel) and klass is not BaseModel:
            hints.update(_own_hints(klass))
    return {name: hints[name] for name in cls.model_fields}


def _own_hints(klass: type[BaseModel]) -> dict[str, Any]:
    cached: dict[str, Any] | None = klass.__dict__.get("__spendwatch_hints__")
    if cached is not None:
        return cached
    module = vars(sys.modules[klass.__module__])
    names = dict(vars(klass))
    cached = {}
    for name, written in inspect.get_annotations(klass).items():
        if name.startswith("_") or _is_class_var(written):
            continue
        value = written
        if isinstance(written, str):
            code = _ANNOTATION_CODE.get(written)
            if code is None:
                code = _ANNOTATION_CODE.setdefault(written, compile(written, "<annotation>", "eval"))
            # Module names first, then the class's own, as typing does: in `date: date | None = None` the
            # annotation's `date` is the type, not the field's default.
            value = eval(code, names, module)  # noqa: S307 - the class's own annotation
        cached[name] = type(None) if value is None else value
    type.__setattr__(klass, "__spendwatch_hints__", cached)
    return cached


def _plan_of(cls: type[BaseModel]) -> _Plan:
    plan = cls.__dict__.get("__spendwatch_plan__")
    if plan is None:
        plan = _Plan(cls)
        cls.__spendwatch_plan__ = plan
    return plan


def resolved_fields(cls: type[BaseModel]) -> dict[str, Any]:
    """Each field's resolved annotation (with its `Annotated` metadata), in declaration order."""
    return {name: info.annotation for name, info, _, _ in _plan_of(cls).fields}


def _validators_of(cls: type) -> dict[str, list[Any]]:
    """The decorated validators of the class and its bases (a redefinition replaces the base's), in order."""
    found: dict[str, tuple[str, tuple[str, ...], str]] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            mark = getattr(value, _VALIDATOR_MARK, None)
            if mark is not None:
                found.pop(attr, None)
                found[attr] = mark
            elif attr in found:
                del found[attr]
    out: dict[str, list[Any]] = {"field": [], "before": [], "after": []}
    for attr, (kind, fields, mode) in found.items():
        if kind == "field":
            out["field"].append((fields, attr))
        else:
            out[mode].append(((), attr))
    return out


def _call(func: Callable[..., Any], value: Any, *, bound: bool = False) -> Any:
    """A validator's result; its ValueError or AssertionError is a located problem, anything else propagates."""
    try:
        return func() if bound else func(value)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            raise _Invalid(exc.errors()) from None
        raise _error("value_error", f"Value error, {exc}", value, {"error": str(exc)}) from None
    except AssertionError as exc:
        raise _error("assertion_error", f"Assertion failed, {exc}", value, {"error": str(exc)}) from None


def _field_chain(check: Validate, validators: list[tuple[tuple[str, ...], str]], cls: type) -> Validate:
    if not validators:
        return check
    methods = [getattr(cls, attr) for _, attr in validators]

    def chained(value: Any) -> Any:
        value = check(value)
        for method in methods:
            value = _call(method, value)
        return value

    return chained


# --- building a validator from an annotation ----------------------------------------------------------


def _build(annotation: Any) -> Validate:
    """The validator of one annotation: its type, then its `Annotated` metadata in order (each wraps)."""
    metadata: tuple[Any, ...] = ()
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *rest = typing.get_args(annotation)
        metadata = tuple(rest)
    # Constraints written before any validator belong to the type's own validation; one written after a
    # validator checks that validator's result, where pydantic applies it too.
    first_validator = next(
        (i for i, item in enumerate(metadata) if isinstance(item, BeforeValidator | AfterValidator)), len(metadata)
    )
    limits = FieldInfo()
    for item in metadata[:first_validator]:
        if isinstance(item, FieldInfo):
            limits.merged(item)
    check = _build_type(annotation, limits)
    for position, item in enumerate(metadata):
        if isinstance(item, BeforeValidator):
            check = _before(item.func, check)
        elif isinstance(item, AfterValidator):
            check = _after(item.func, check)
        elif isinstance(item, FieldInfo) and position > first_validator:
            check = _then(_build_type(annotation, item), check)
    return check


def _then(second: Validate, first: Validate) -> Validate:
    return lambda value: second(first(value))


def _before(func: Callable[[Any], Any], inner: Validate) -> Validate:
    return lambda value: inner(_call(func, value))


def _after(func: Callable[[Any], Any], inner: Validate) -> Validate:
    return lambda value: _call(func, inner(value))


def _build_type(annotation: Any, limits: FieldInfo) -> Validate:  # noqa: PLR0911, PLR0912 - one branch per kind
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return lambda value: value
    if origin in (typing.Union, types.UnionType):
        return _union(args, limits)
    if origin is Literal:
        return _literal(args)
    if origin is typing.Annotated:
        return _build(annotation)
    if origin is tuple or origin is list:
        return _sequence(args, limits, tuple if origin is tuple else list)
    if origin is dict:
        return _mapping(args, limits)
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return _nested(annotation)
        if annotation is bool:
            return _boolean(strict=bool(limits.strict))
        if annotation is int:
            return _bounded(_integer(strict=bool(limits.strict)), limits)
        if annotation is float:
            return _bounded(_floating, limits)
        if annotation is Decimal:
            return _bounded(_decimal(limits.decimal_places), limits)
        if annotation is str:
            return _text(limits)
        if annotation is datetime:
            return _datetime
        if annotation is date:
            return _date
        if annotation is timedelta:
            return _timedelta
        if annotation is type(None):
            return _none
    raise TypeError(f"spendwatch.core.model cannot validate {annotation!r}")


def _nested(model: type[BaseModel]) -> Validate:
    """A model inside a model; its plan is looked up on first use (the class may still be incomplete now)."""
    plan: list[_Plan] = []

    def nested(value: Any) -> Any:
        if not plan:
            plan.append(_plan_of(model))
        return plan[0].validate(value)

    return nested


def _none(value: Any) -> None:
    if value is not None:
        raise _error("none_required", "Input should be None", value)


def _union(members: tuple[Any, ...], limits: FieldInfo) -> Validate:
    nullable = type(None) in members
    others = [m for m in members if m is not type(None)]
    if limits.discriminator is not None:
        inner = _tagged(others, limits.discriminator)
    elif len(others) == 1:
        inner = _build_type(others[0], limits)
    else:
        inner = _first_of([_build_type(m, limits) for m in others], others)
    if not nullable:
        return inner
    return lambda value: None if value is None else inner(value)


def _first_of(checks: list[Validate], members: list[Any]) -> Validate:
    def first(value: Any) -> Any:
        errors: list[ErrorDetails] = []
        for check, member in zip(checks, members, strict=True):
            try:
                return check(value)
            except _Invalid as invalid:
                errors.extend(_prefixed(invalid.errors, getattr(member, "__name__", str(member))))
        raise _Invalid(errors)

    return first


def _tagged(members: list[Any], field: str) -> Validate:
    """A union told apart by one literal field (`type: slack`), as pydantic's discriminated unions."""
    by_tag: dict[Any, type[BaseModel]] = {}
    for member in members:
        annotation = _field_hints(member)[field]
        for tag in typing.get_args(annotation):
            by_tag[tag] = member
    expected = ", ".join(repr(tag) for tag in by_tag)
    quoted = repr(field)

    def tagged(value: Any) -> Any:
        if type(value) is not dict:
            for model in by_tag.values():
                if isinstance(value, model):
                    return value
        if type(value) is not dict and not isinstance(value, Mapping):
            raise _error("model_attributes_type", "Input should be a valid dictionary or object", value)
        if field not in value:
            raise _error(
                "union_tag_not_found",
                f"Unable to extract tag using discriminator {quoted}",
                value,
                {"discriminator": quoted},
            )
        tag = value[field]
        found = by_tag.get(tag) if isinstance(tag, str) else None
        if found is None:
            raise _error(
                "union_tag_invalid",
                f"Input tag {tag!r} found using {quoted} does not match any of the expected tags: {expected}",
                value,
                {"discriminator": quoted, "tag": str(tag), "expected_tags": expected},
            )
        try:
            return _plan_of(found).validate(value)
        except _Invalid as invalid:
            raise _Invalid(_prefixed(invalid.errors, tag)) from None

    return tagged


def _literal(allowed: tuple[Any, ...]) -> Validate:
    expected = ", ".join(repr(a) for a in allowed[:-1]) + (" or " if len(allowed) > 1 else "") + repr(allowed[-1])
    pairs = {(type(a), a) for a in allowed}
    numbers = {a for a in allowed if type(a) is int}

    def literal(value: Any) -> Any:
        try:
            if (type(value), value) in pairs:
                return value
            # Lax, as pydantic: 1.0 or Decimal("1") from YAML or JSON is the literal 1 (never True).
            finite = isinstance(value, float | Decimal) and (
                value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
            )
            if numbers and finite and value in numbers:
                return int(value)
        except (TypeError, ArithmeticError):  # unhashable, or a signalling NaN
            pass
        raise _error("literal_error", f"Input should be {expected}", value, {"expected": expected})

    return literal


def _sequence(args: tuple[Any, ...], limits: FieldInfo, kind: type) -> Validate:
    if kind is tuple and (len(args) != 2 or args[1] is not Ellipsis):
        raise TypeError(f"only variable-length tuples (tuple[X, ...]) are supported, not tuple{list(args)}")
    item = _build(args[0]) if args else (lambda value: value)
    name = "Tuple" if kind is tuple else "List"
    type_error = f"Input should be a valid {name.lower()}"
    low, high = limits.min_length, limits.max_length

    def sequence(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise _error(f"{name.lower()}_type", type_error, value)
        if high is not None and len(value) > high:
            raise _error(
                "too_long",
                f"{name} should have at most {high} item{'s' if high != 1 else ''} after validation, not {len(value)}",
                value,
                {"field_type": name, "max_length": high, "actual_length": len(value)},
            )
        out = []
        errors: list[ErrorDetails] = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except _Invalid as invalid:
                errors.extend(_prefixed(invalid.errors, index))
        if low is not None and len(value) < low:
            errors.append(
                {
                    "type": "too_short",
                    "loc": (),
                    "msg": f"{name} should have at least {low} item{'s' if low != 1 else ''} after validation, "
                    f"not {len(out)}",
                    "input": value,
                    "ctx": {"field_type": name, "min_length": low, "actual_length": len(out)},
                }
            )
        if errors:
            raise _Invalid(errors)
        return kind(out)

    return sequence


def _mapping(args: tuple[Any, ...], limits: FieldInfo) -> Validate:
    key_check = _build(args[0]) if args else (lambda value: value)
    value_check = _build(args[1]) if args else (lambda value: value)
    high = limits.max_length

    def mapping(value: Any) -> Any:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise _error("dict_type", "Input should be a valid dictionary", value)
        if high is not None and len(value) > high:
            raise _error(
                "too_long",
                f"Dictionary should have at most {high} item{'s' if high != 1 else ''} after validation, "
                f"not {len(value)}",
                value,
                {"field_type": "Dictionary", "max_length": high, "actual_length": len(value)},
            )
        out = {}
        errors: list[ErrorDetails] = []
        for key, element in value.items():
            try:
                checked_key = key_check(key)
            except _Invalid as invalid:
                errors.extend(_prefixed(invalid.errors, key, "[key]"))
                checked_key = _MISSING
            try:
                checked = value_check(element)
            except _Invalid as invalid:
                errors.extend(_prefixed(invalid.errors, key))
                continue
            if checked_key is not _MISSING:
                out[checked_key] = checked
        if errors:
            raise _Invalid(errors)
        return out

    return mapping


def _text(limits: FieldInfo) -> Validate:
    low, high, pattern = limits.min_length, limits.max_length, limits.pattern
    compiled = re.compile(end_of_text(pattern)) if pattern is not None else None

    def text(value: Any) -> Any:
        if not isinstance(value, str):
            raise _error("string_type", "Input should be a valid string", value)
        if low is not None and len(value) < low:
            raise _error(
                "string_too_short",
                f"String should have at least {low} character{'s' if low != 1 else ''}",
                value,
                {"min_length": low},
            )
        if high is not None and len(value) > high:
            raise _error(
                "string_too_long",
                f"String should have at most {high} character{'s' if high != 1 else ''}",
                value,
                {"max_length": high},
            )
        if compiled is not None and not compiled.search(value):
            raise _error(
                "string_pattern_mismatch", f"String should match pattern '{pattern}'", value, {"pattern": pattern}
            )
        return value

    return text


def end_of_text(pattern: str) -> str:
    """`pattern` with each `$` meaning the end of the text, as in pydantic's regex engine: Python's `$` also
    matches before a final line break, which would let "name\\n" through a one-line pattern."""
    out: list[str] = []
    escaped = in_class = False
    class_start = -1  # where the open class's members start: a `]` there is a member, not its end
    for index, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[" and not in_class:
            in_class = True
            class_start = index + 2 if pattern[index + 1 : index + 2] == "^" else index + 1
        elif char == "]" and in_class and index != class_start:
            in_class = False
        elif char == "$" and not in_class:
            out.append(r"\Z")
            continue
        out.append(char)
    return "".join(out)


_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})


def _finite(value: int | float | Decimal) -> bool:
    """Whether a number is finite, without raising: a signalling NaN raises when compared, and an int past
    a float's range raises in `math.isfinite`."""
    if isinstance(value, Decimal):
        return value.is_finite()
    return isinstance(value, int) or math.isfinite(value)


def _boolean(*, strict: bool) -> Validate:
    def boolean(value: Any) -> Any:
        if value is True or value is False:
            return value
        if strict:
            raise _error("bool_type", "Input should be a valid boolean", value)
        if isinstance(value, str):
            text = value.lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise _error("bool_parsing", "Input should be a valid boolean, unable to interpret input", value)
        if isinstance(value, int | float | Decimal):
            if _finite(value) and value in (0, 1):
                return bool(value)
            raise _error("bool_parsing", "Input should be a valid boolean, unable to interpret input", value)
        raise _error("bool_type", "Input should be a valid boolean", value)

    return boolean


_INTEGER = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0*)?", re.ASCII)
_INT_LIMIT = 2**63
"""A float or Decimal converts to an int below this (pydantic's i64 range for those inputs): a number
such as 1E+1000000 must not be expanded to its million digits just to compare it."""


def _integer(*, strict: bool) -> Validate:
    def integer(value: Any) -> Any:
        kind = type(value)
        if kind is int:
            return value
        if strict:
            raise _error("int_type", "Input should be a valid integer", value)
        if kind is bool:
            return int(value)
        if isinstance(value, float | Decimal):
            finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
            if not finite:  # checked first: a signalling NaN raises when compared
                raise _error("finite_number", "Input should be a finite number", value)
            if (value.copy_abs() if isinstance(value, Decimal) else abs(value)) >= _INT_LIMIT:  # no rounding
                raise _error("int_parsing_size", "Unable to parse input as an integer, exceeded maximum size", value)
            if value != int(value):
                raise _error(
                    "int_from_float", "Input should be a valid integer, got a number with a fractional part", value
                )
            return int(value)
        if isinstance(value, str):
            text = value.strip()
            if len(text) <= 4300 and _INTEGER.fullmatch(text):
                return int(text.split(".")[0])
            raise _error("int_parsing", "Input should be a valid integer, unable to parse string as an integer", value)
        raise _error("int_type", "Input should be a valid integer", value)

    return integer


def _floating(value: Any) -> Any:
    if type(value) is float:
        return value
    if isinstance(value, bool):
        raise _error("float_type", "Input should be a valid number", value)
    if isinstance(value, int | Decimal):
        if not _finite(value):
            raise _error("finite_number", "Input should be a finite number", value)
        try:
            return float(value)
        except OverflowError:
            raise _error("finite_number", "Input should be a finite number", value) from None
    if isinstance(value, str):
        try:
            if not value.isascii():  # float() reads any script's digits; pydantic reads ASCII only
                raise ValueError(value)
            return float(value.strip())
        except ValueError:
            raise _error(
                "float_parsing", "Input should be a valid number, unable to parse string as a number", value
            ) from None
    raise _error("float_type", "Input should be a valid number", value)


def _decimal(places: int | None) -> Validate:
    def decimal(value: Any) -> Any:
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, bool):
            raise _error("decimal_type", "Decimal input should be an integer, float, string or Decimal object", value)
        elif isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(str(value))
        elif isinstance(value, str):
            try:
                number = Decimal(value.strip()) if len(value) <= 4300 else Decimal("NaN")
            except InvalidOperation:
                raise _error("decimal_parsing", "Input should be a valid decimal", value) from None
            if number.is_nan() and len(value) > 4300:
                raise _error("decimal_parsing", "Input should be a valid decimal", value)
        else:
            raise _error("decimal_type", "Decimal input should be an integer, float, string or Decimal object", value)
        if not number.is_finite():
            raise _error("finite_number", "Input should be a finite number", value)
        if places is not None and _places(number) > places:
            raise _error(
                "decimal_max_places",
                f"Decimal input should have no more than {places} decimal place{'s' if places != 1 else ''}",
                value,
                {"decimal_places": places},
            )
        return number

    return decimal


def _places(number: Decimal) -> int:
    """Decimal places without trailing zeros (1.500 has one), without `normalize()`: it overflows at 1E+1000000."""
    _, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return 0
    trailing = 0
    for digit in reversed(digits):
        if digit != 0 or trailing >= -exponent:
            break
        trailing += 1
    return -exponent - trailing


def _bounded(inner: Validate, limits: FieldInfo) -> Validate:
    checks = [
        (bound, compare, name, kind, words)
        for bound, compare, name, kind, words in (
            (limits.gt, operator.gt, "gt", "greater_than", "greater than"),
            (limits.ge, operator.ge, "ge", "greater_than_equal", "greater than or equal to"),
            (limits.lt, operator.lt, "lt", "less_than", "less than"),
            (limits.le, operator.le, "le", "less_than_equal", "less than or equal to"),
        )
        if bound is not None
    ]
    if not checks:
        return inner

    def bounded(value: Any) -> Any:
        number = inner(value)
        for bound, compare, name, kind, words in checks:
            if not compare(number, bound):
                raise _error(kind, f"Input should be {words} {bound}", value, {name: bound})
        return number

    return bounded


def _datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _error("datetime_parsing", "Input should be a valid datetime", value) from None
    raise _error("datetime_type", "Input should be a valid datetime", value)


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def _date(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.time() != datetime.min.time() or value.utcoffset():
            raise _error(
                "date_from_datetime_inexact",
                "Datetimes provided to dates should have zero time - e.g. be exact dates",
                value,
            )
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            if _ISO_DATE.fullmatch(value):
                return date.fromisoformat(value)
            # A midnight written as a time (pydantic reads "2026-12-01T00:00:00Z" as that day too).
            moment = _datetime(value) if "T" in value and len(value) <= 40 else None
        except (ValueError, _Invalid):
            moment = None
        if moment is not None:
            return _date(moment)
        raise _error("date_parsing", "Input should be a valid date in the format YYYY-MM-DD", value)
    raise _error("date_type", "Input should be a valid date", value)


def _timedelta(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    raise _error("timedelta_type", "Input should be a valid timedelta", value)


# --- serializing ---------------------------------------------------------------------------------------


def _dumper(annotation: Any) -> Dump:
    """How one annotated value is written by `model_dump`: as is (python) or as JSON-ready data (json)."""
    serializer = None
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *metadata = typing.get_args(annotation)
        serializer = next((m for m in metadata if isinstance(m, PlainSerializer)), None)
    if serializer is not None:
        plain = _dumper(annotation)
        func, when = serializer.func, serializer.when_used
        return lambda value, json_mode, exclude_none: (
            func(value) if json_mode or when == "always" else plain(value, json_mode, exclude_none)
        )
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [_dumper(m) for m in args if m is not type(None)]
        if len(members) == 1:
            return members[0]
        return _dump_any
    if origin is tuple or origin is list:
        item = _dumper(args[0]) if args else _dump_any
        kind = tuple if origin is tuple else list
        return lambda value, json_mode, exclude_none: (
            [item(v, json_mode, exclude_none) for v in value]
            if json_mode
            else kind(item(v, json_mode, exclude_none) for v in value)
        )
    if origin is dict:
        inner = _dumper(args[1]) if args else _dump_any
        return lambda value, json_mode, exclude_none: {k: inner(v, json_mode, exclude_none) for k, v in value.items()}
    return _dump_any


def _dump_any(value: Any, json_mode: bool, exclude_none: bool) -> Any:  # noqa: PLR0911 - one case per kind
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json" if json_mode else "python", exclude_none=exclude_none)
    if not json_mode:
        if isinstance(value, dict):
            return {k: _dump_any(v, json_mode, exclude_none) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(_dump_any(v, json_mode, exclude_none) for v in value)
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _iso_duration(value)
    if isinstance(value, dict):
        return {k: _dump_any(v, json_mode, exclude_none) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_dump_any(v, json_mode, exclude_none) for v in value]
    return value


def _iso_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    return f"P{days}DT{rest}S" if days else f"PT{rest}S"
