"""One Lambda cold start, run by the python3.13 "runtime" interpreter of bench/lambda_artifacts.py.

Not imported by the benchmarks: they run it as a script (`python -I -B lambda_child.py ...`), so it sees
only the runtime's site-packages (boto3) plus the paths it is given, as a Lambda function does:
/var/task (the function artifact) first, then /opt/python (the layer).

    lambda_child.py MODE TASK_DIR LAYER_DIR EVENT_FILE RESULT_FILE

MODE `boto3` imports boto3 alone with neither path (the runtime's own baseline); `import` imports the
handler; `invoke` imports it and calls `handler.lambda_handler(event, context)` once. The result file gets
the times, the process's peak RSS and the modules loaded from the artifacts.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import uuid
from pathlib import Path


class Context:
    """The attributes Powertools and the handlers read from a Lambda context."""

    function_name = "spendwatch-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:spendwatch-bench"
    log_group_name = "/aws/lambda/spendwatch-bench"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + 60

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def peak_rss_kb() -> int:
    """This interpreter's peak resident set: VmHWM (getrusage's ru_maxrss keeps the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    mode, task_dir, layer_dir, event_file, result_file = sys.argv[1:6]
    result: dict[str, object] = {}
    # Wall time is what Lambda bills; CPU time is the steadier estimate of it on a shared machine, where a
    # process also waits for a core (the import and most of an invocation here are CPU-bound).
    if mode == "boto3":
        started, cpu = time.perf_counter(), time.process_time()
        import boto3  # noqa: F401

        result["import_s"], result["import_cpu_s"] = time.perf_counter() - started, time.process_time() - cpu
    else:
        sys.path[0:0] = [task_dir, layer_dir]
        started, cpu = time.perf_counter(), time.process_time()
        import handler  # type: ignore[import-not-found]

        result["import_s"], result["import_cpu_s"] = time.perf_counter() - started, time.process_time() - cpu
        result["rss_after_import_kb"] = peak_rss_kb()
        if mode == "invoke":
            event = json.loads(Path(event_file).read_text(encoding="utf-8"))
            started, cpu = time.perf_counter(), time.process_time()
            try:
                result["response"] = handler.lambda_handler(event, Context())
            except Exception as exc:  # reported to the benchmark, which shows it
                result["error"] = f"{type(exc).__name__}: {exc}"
            result["invoke_s"], result["invoke_cpu_s"] = time.perf_counter() - started, time.process_time() - cpu
    result["peak_rss_kb"] = peak_rss_kb()
    roots = (task_dir, layer_dir)
    result["modules"] = sorted(
        name
        for name, module in list(sys.modules.items())
        if str(getattr(module, "__file__", None) or "").startswith(roots)
    )
    Path(result_file).write_text(json.dumps(result, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
