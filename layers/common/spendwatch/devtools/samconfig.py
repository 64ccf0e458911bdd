"""Does `sam deploy` need `--guided`? `make deploy` asks this before deploying.

The first deploy is guided: SAM asks for the region and the stack's parameters and saves the answers in
samconfig.toml (`[<env>.deploy.parameters]`). The committed file pins no region on purpose, so a file
whose deploy parameters (or global parameters) have no `region` has never been through a guided deploy.

Runs as a plain script with any Python >= 3.11 (`tomllib`) and imports nothing else, so `make deploy`
can call it with the SAM tool environment's interpreter:

    python samconfig.py needs-guided samconfig.toml [CONFIG_ENV]    # exit 0: guided, 1: not, 2: bad file
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any


def deploy_parameters(path: Path, config_env: str = "default") -> dict[str, Any]:
    """The parameters `sam deploy` reads for `config_env`: the global ones, overridden by the deploy ones."""
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    env = data.get(config_env, {})
    merged: dict[str, Any] = dict(env.get("global", {}).get("parameters", {}))
    merged.update(env.get("deploy", {}).get("parameters", {}))
    return merged


def needs_guided(path: Path, config_env: str = "default") -> bool:
    """True until a guided deploy has saved the stack's region (and parameters) for `config_env`."""
    parameters = deploy_parameters(path, config_env)
    return not (parameters.get("region") and parameters.get("stack_name"))


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] != "needs-guided":
        print("usage: samconfig.py needs-guided SAMCONFIG_TOML [CONFIG_ENV]", file=sys.stderr)
        return 2
    try:
        return 0 if needs_guided(Path(argv[1]), *argv[2:]) else 1
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"{argv[1]}: cannot be read as samconfig TOML: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
