"""Config validation: how fast absurd input is refused, and what a real config costs on each route.

The deployed functions parse the canonical JSON once per distinct parameter value; `config validate`
reads the user's YAML. Bounds are checked before parsing, so a huge file costs a `stat`, not a parse.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from spendwatch.core.config import canonical_config_text, load_config_file, load_document, parse_config
from spendwatch.core.config_input import MAX_CONFIG_BYTES
from spendwatch.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RUNS = 5


def timed(action: Callable[[], object]) -> float:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        with contextlib.suppress(ConfigError):
            action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    sample_text = (ROOT / "config" / "spendwatch.yaml").read_text()
    canonical = canonical_config_text(load_document(sample_text, "sample"))
    with tempfile.TemporaryDirectory() as tmp:
        huge = Path(tmp) / "30k.yaml"
        huge.write_text("organizations:\n" + "".join(f"  - id: org-{i}\n    name: Org {i}\n" for i in range(30_000)))
        sample = Path(tmp) / "sample.yaml"
        sample.write_text(sample_text)
        figures = {
            f"refuse a 30,000-organization file ({huge.stat().st_size:,} bytes)": timed(lambda: load_config_file(huge)),
            "validate the shipped sample (YAML)": timed(lambda: load_config_file(sample)),
            f"validate the sample as canonical JSON ({len(canonical)} bytes)": timed(
                lambda: parse_config(canonical, "ssm")
            ),
        }
        worst = "organizations:\n" + "".join(
            f"  - {{id: org-{i}, name: Org {i}}}\n" for i in range(MAX_CONFIG_BYTES // 40)
        )
        worst = worst[: MAX_CONFIG_BYTES - 1]
        figures[f"refuse a {len(worst):,}-byte YAML file just under the bound"] = timed(
            lambda: parse_config(worst, "worst")
        )
        nested = "organizations: " + "[" * 30_000
        figures["refuse 30,000 levels of YAML flow nesting"] = timed(lambda: parse_config(nested, "deep"))
    print(f"config validation, median of {RUNS} runs:")
    for name, seconds in figures.items():
        print(f"  {name:<62} {seconds * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
