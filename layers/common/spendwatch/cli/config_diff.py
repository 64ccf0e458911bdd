"""What a `config push` changes: the deployed config against the new one, as one line per change.

Both sides are plain config data (`config.load_document`). Organizations are matched by `id` and
channels by name, so reordering is no change and a renamed budget is one line, not a new organization.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

_LIMIT = 80


def config_changes(old: Any, new: Any) -> list[str]:
    """`+ path: value`, `- path`, `~ path: old -> new`, in the new file's order."""
    lines: list[str] = []
    _walk(_keyed(old), _keyed(new), "", lines)
    return lines


def _keyed(data: Any) -> Any:
    """Lists of mappings with an `id` become mappings by id (organizations), recursively."""
    if isinstance(data, dict):
        return {str(k): _keyed(v) for k, v in data.items()}
    if isinstance(data, list) and data and all(isinstance(v, dict) and "id" in v for v in data):
        keyed = {f"[{v['id']}]": _keyed(v) for v in data}
        if len(keyed) == len(data):
            return _Keyed(keyed)
    if isinstance(data, list):
        return [_keyed(v) for v in data]
    return data


class _Keyed(dict[str, Any]):
    """A list of mappings indexed by id: paths read `organizations[acme].budget`."""


def _join(path: str, key: str, parent: Any) -> str:
    if isinstance(parent, _Keyed):
        return f"{path}{key}"
    return f"{path}.{key}" if path else key


def _walk(old: Any, new: Any, path: str, lines: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict) and isinstance(old, _Keyed) == isinstance(new, _Keyed):
        for key, value in new.items():
            where = _join(path, key, new)
            if key not in old:
                lines.append(f"+ {where}: {_show(value)}")
            else:
                _walk(old[key], value, where, lines)
        lines.extend(f"- {_join(path, key, old)}" for key in old if key not in new)
        return
    if _plain(old) != _plain(new):
        lines.append(f"~ {path or '(whole config)'}: {_show(old)} -> {_show(new)}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return format(Decimal(value).normalize(), "f")  # 500 and 500.00 are one amount
    return str(value) if value is not None and not isinstance(value, bool | str) else value


def _show(value: Any) -> str:
    if isinstance(value, _Keyed):
        value = list(value.values())
    text = str(_plain(value)) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= _LIMIT else text[: _LIMIT - 1] + "…"
