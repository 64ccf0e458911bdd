"""Cold-start cost of each handler: import time in a fresh interpreter, as a ratio to importing boto3.

Lambda's init phase pays for every import a handler makes; boto3 is the runtime's own baseline.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 7

SNIPPETS = {"bare interpreter": "pass", "boto3": "import boto3"} | {
    f"{function} handler": f"import sys; sys.path.insert(0, {str(ROOT / 'functions' / function)!r}); import handler"
    for function in ("poller", "alerter", "watchdog", "digest")
}


def time_import(code: str) -> float:
    timed = f"import time; t=time.perf_counter(); {code}; print(time.perf_counter()-t)"
    env = {"POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    results = {name: statistics.median(time_import(code) for _ in range(RUNS)) for name, code in SNIPPETS.items()}
    baseline = results["boto3"]
    print(f"cold import, median of {RUNS} fresh interpreters ({sys.version.split()[0]}):")
    for name, seconds in results.items():
        print(f"  {name:<18} {seconds * 1000:7.1f} ms   {seconds / baseline:5.2f}x boto3")


if __name__ == "__main__":
    main()
