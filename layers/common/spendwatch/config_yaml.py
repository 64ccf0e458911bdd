"""The YAML form of the config, as users write it: exact decimals, no duplicate keys.

Only local commands import this module (`spendwatch config validate|push`, `poll`, the demo); the
deployed functions read the canonical JSON that `config push` stores, so they need no YAML parser.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import yaml

from spendwatch.errors import ConfigError


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that keeps decimals exact and refuses duplicate keys (a silent override hides typos)."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = loader.construct_scalar(node)
    return Decimal(str(text).replace("_", ""))


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if key in result:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node)
    return result


_ConfigLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, source: str) -> Any:
    """Config YAML as plain data; a syntax error is a `ConfigError` naming the line and column."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - _ConfigLoader is a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(source, [f"{where}: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
