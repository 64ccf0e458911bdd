"""Cold start as Lambda runs it: the built artifacts, python3.13, read-only, no bytecode written.

1. Builds the CommonLayer and the four functions with their own Makefiles, as `sam build` does, for
   x86_64 (bench/lambda_artifacts.py), and prints the layer's size and whether it carries bytecode.
2. Zips and extracts each artifact read-only; a python3.13 venv with only boto3 plays the runtime.
3. Init: each handler's import in a fresh `python -I -B` (no bytecode written, only the runtime's
   site-packages plus /var/task and /opt/python), as a ratio to `import boto3` alone in the same run;
   several rounds, medians.
4. One invocation per handler (the poller's SQS poll of the simulated organization, the alerter's stream
   record of that snapshot posting to Slack, the watchdog finding it stale, the digest drawing and uploading
   a daily digest's chart from a month of snapshots) against the local stand-ins
   (moto's server, the OpenAI and Slack stand-ins): init and invocation time, and the peak RSS of the
   process, which is what Lambda reports as "Max Memory Used" and what MemorySize must cover.

`--source DIR` measures another checkout's artifacts (e.g. a `git worktree` of main, for before/after);
`--profile` prints where each handler's import time goes (`-X importtime`, by package). Figures, not assertions:
docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.lambda_artifacts import (
    FUNCTIONS,
    ROOT,
    Artifacts,
    build_artifacts,
    file_count,
    find_python313,
    make_writable,
    runtime_python,
    tree_size,
    unpack_read_only,
    zip_size,
)
from spendwatch.devtools.stream import snapshot_inserts

CHILD = Path(__file__).resolve().parent / "lambda_child.py"
ROUNDS = 7
INVOCATIONS = 3
GOAL_RATIO = 1.5
NOW = datetime(2026, 11, 21, 23, tzinfo=UTC)
ADMIN_KEY = "sk-admin-bench-key"
CONFIG = """
organizations:
  - {id: sim, name: Bench Org, budget: {monthly_usd: 500}, channels: [slack]}
channels:
  slack: {type: slack}
"""
DIGEST_AT = datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
DIGEST_CONFIG = """
organizations:
  - {id: sim, name: Simulated Org, budget: {monthly_usd: 500}, channels: [slack], digests: [{every: day, hour_utc: 8}]}
channels:
  slack: {type: slack, channel: C0SIMALERT}
"""
TEMPLATE_GLOBALS = {
    "POWERTOOLS_SERVICE_NAME": "spendwatch",
    "POWERTOOLS_METRICS_NAMESPACE": "Spendwatch",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_LOGGER_LOG_EVENT": "false",
}


@dataclass(frozen=True)
class Unpacked:
    """The artifacts as Lambda sees them: /opt/python and each function's /var/task."""

    layer_python: Path
    tasks: dict[str, Path]


@dataclass
class Run:
    import_s: list[float] = field(default_factory=list)
    invoke_s: list[float] = field(default_factory=list)
    peak_rss_kb: list[int] = field(default_factory=list)
    rss_after_import_kb: list[int] = field(default_factory=list)
    modules: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


def lambda_environ(function: str, extra: Mapping[str, str] = {}) -> dict[str, str]:
    """What Lambda's python3.13 runtime sets that the code may read, plus the template's globals."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": f"spendwatch-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        **TEMPLATE_GLOBALS,
        **extra,
    }


def run_child(
    python: Path,
    mode: str,
    function: str,
    unpacked: Unpacked,
    env: Mapping[str, str],
    *,
    event: dict[str, Any] | None = None,
    importtime: bool = False,
) -> tuple[dict[str, Any], str]:
    task = unpacked.tasks.get(function, Path("/nonexistent"))
    with tempfile.TemporaryDirectory() as tmp:
        event_file, result_file = Path(tmp) / "event.json", Path(tmp) / "result.json"
        event_file.write_text(json.dumps(event or {}), encoding="utf-8")
        flags = ["-X", "importtime"] if importtime else []
        command = [str(python), "-I", "-B", *flags, str(CHILD), mode, str(task), str(unpacked.layer_python)]
        done = subprocess.run(
            [*command, str(event_file), str(result_file)], capture_output=True, text=True, env=dict(env), check=False
        )
        if done.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"{mode} {function}: exit {done.returncode}\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
        return result, done.stderr


def measure_imports(
    python: Path, builds: dict[str, Unpacked], rounds: int
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Each round: boto3 alone, then each build's handlers, every one in a fresh interpreter.

    Keys are (build, function), with ("", "boto3") for the baseline; values (wall, CPU) seconds per round.
    """
    keys = [("", "boto3"), *((build, name) for build, unpacked in builds.items() for name in unpacked.tasks)]
    times: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in keys}
    any_build = next(iter(builds.values()))
    for _ in range(rounds):
        for (build, name), measured in times.items():
            mode, unpacked = ("boto3", any_build) if name == "boto3" else ("import", builds[build])
            result = run_child(python, mode, name, unpacked, lambda_environ(name))[0]
            measured.append((result["import_s"], result["import_cpu_s"]))
    return times


def ratio(times: list[tuple[float, float]], baseline: list[tuple[float, float]], which: int) -> float:
    """Median over the rounds of this import's time / boto3's in the same round."""
    return statistics.median(t[which] / b[which] for t, b in zip(times, baseline, strict=True))


GROUPS = {
    "boto3": "boto3 (+ the stdlib it loads)",
    "botocore": "boto3 (+ the stdlib it loads)",
    "s3transfer": "boto3 (+ the stdlib it loads)",
    "dateutil": "boto3 (+ the stdlib it loads)",
    "six": "boto3 (+ the stdlib it loads)",
    "urllib3": "boto3 (+ the stdlib it loads)",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "annotated_types": "pydantic",
    "typing_inspection": "pydantic",
    "typing_extensions": "Powertools",  # pydantic's too, in a build before pydantic was removed
    "aws_lambda_powertools": "Powertools",
    "jmespath": "Powertools",
    "requests": "requests",
    "charset_normalizer": "requests",
    "idna": "requests",
    "certifi": "requests",
    "slack_sdk": "slack_sdk",
}


def attribute(importtime: str) -> dict[str, float]:
    """Self time (ms) of every import, charged to the package whose import caused it: a stdlib module goes
    to the nearest importer that is not stdlib, so `inspect` first loaded by Powertools counts there."""
    rows: list[tuple[int, str, float]] = []
    for line in importtime.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, _, module = line.removeprefix("import time:").split("|")
            rows.append((len(module) - len(module.lstrip()), module.strip(), int(self_us) / 1000))
    charged: dict[str, float] = {}
    stack: list[tuple[int, str]] = []
    for depth, name, own in reversed(rows):  # the output is post-order: reversed, parents come first
        while stack and stack[-1][0] >= depth:
            stack.pop()
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top.startswith("_"):
            group = stack[-1][1] if stack else "stdlib (interpreter start)"
        elif top in {"spendwatch", "handler"}:
            group = name
        else:
            group = GROUPS.get(top, top)
        stack.append((depth, group))
        charged[group] = charged.get(group, 0.0) + own
    return charged


def profile(python: Path, unpacked: Unpacked, function: str, rounds: int) -> list[tuple[str, float]]:
    """Median attributed self time per package over `rounds` imports of the handler, costliest first."""
    runs = []
    for _ in range(rounds):
        _, stderr = run_child(python, "import", function, unpacked, lambda_environ(function), importtime=True)
        runs.append(attribute(stderr))
    groups = set().union(*runs)
    medians = {g: statistics.median(run.get(g, 0.0) for run in runs) for g in groups}
    return sorted(medians.items(), key=lambda item: -item[1])


@contextlib.contextmanager
def stand_ins() -> Iterator[Any]:
    """moto's server, the OpenAI and Slack stand-ins, configured for the simulated organization."""
    from spendwatch.devtools.fake_openai import FakeOpenAI
    from spendwatch.devtools.fake_slack import FakeSlack
    from spendwatch.devtools.pipeline import LocalPipeline
    from spendwatch.devtools.simulated_org import SimulatedOrg

    with (
        FakeOpenAI(SimulatedOrg.default(NOW), admin_key=ADMIN_KEY) as openai,
        FakeSlack() as slack,
        contextlib.redirect_stderr(io.StringIO()),
        LocalPipeline() as pipe,
    ):
        pipe.openai_base_url = openai.base_url  # type: ignore[attr-defined]
        pipe.slack = slack  # type: ignore[attr-defined]
        yield pipe


def configure(pipe: Any) -> None:
    pipe.reset()
    pipe.slack.reset()
    secrets = {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/webhook-url": pipe.slack.webhook_url}
    pipe.configure(CONFIG, secrets)


def invocation_env(pipe: Any, function: str) -> dict[str, str]:
    names = (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "SNAPSHOTS_TABLE",
        "ALERT_STATE_TABLE",
        "SPENDWATCH_CONFIG_PARAMETER",
    )
    extra = {name: os.environ[name] for name in names if os.environ.get(name)}
    if function == "poller":
        extra["OPENAI_BASE_URL"] = pipe.openai_base_url
    if function == "digest":
        extra["SLACK_API_BASE_URL"] = pipe.slack.api_base_url
    return lambda_environ(function, extra)


def measure_invocations(python: Path, unpacked: Unpacked, runs: int) -> dict[str, Run]:
    """Poll -> alert -> watchdog, each a fresh process (import + one invocation), on fresh tables each run."""
    results = {name: Run() for name in FUNCTIONS}

    def invoke(function: str, event: dict[str, Any]) -> None:
        env = invocation_env(pipe, function)
        record(results[function], run_child(python, "invoke", function, unpacked, env, event=event))

    with stand_ins() as pipe:
        for _ in range(runs):
            configure(pipe)
            body = json.dumps({"org_id": "sim", "poll_time": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")})
            sqs = json.loads((ROOT / "events" / "sqs_poll_request.json").read_text(encoding="utf-8"))
            sqs["Records"][0]["body"] = body
            invoke("poller", sqs)
            invoke("alerter", {"Records": snapshot_inserts(pipe.pump.read_new())})
            schedule = json.loads((ROOT / "events" / "watchdog_schedule.json").read_text(encoding="utf-8"))
            schedule["time"] = (NOW + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            invoke("watchdog", schedule)
            try:
                pipe.slack.wait_for(2, timeout=10)
            except TimeoutError as exc:
                results["alerter"].errors.append(f"the alert and the stale notice should both reach Slack: {exc}")
            if "digest" in unpacked.tasks:
                configure_digest(pipe)
                invoke("digest", scheduled(DIGEST_AT))
                try:
                    pipe.slack.wait_for(1, timeout=10)
                except TimeoutError as exc:
                    results["digest"].errors.append(f"the daily digest should reach Slack: {exc}")
                if not pipe.slack.files:
                    results["digest"].errors.append("the daily digest should upload its chart picture")
    return results


def scheduled(moment: datetime) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "schedule.json").read_text(encoding="utf-8"))
    event["time"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def configure_digest(pipe: Any) -> None:
    """A daily digest due at DIGEST_AT, to a Slack channel by bot token so that its chart picture is drawn
    and uploaded (Pillow loaded: the digest's peak), over a month of stored snapshots at every midnight."""
    from spendwatch.aws.store import SnapshotStore
    from spendwatch.devtools.fake_slack import SIM_SLACK_TOKEN
    from spendwatch.devtools.snapshot_series import SeriesOrg

    pipe.reset()
    pipe.slack.reset()
    pipe.configure(DIGEST_CONFIG, {"/spendwatch/slack/bot-token": SIM_SLACK_TOKEN})
    series, store = SeriesOrg(), SnapshotStore(pipe.tables["SnapshotsTable"])
    first = DIGEST_AT.replace(day=1, hour=0, minute=0)
    moments = [first + timedelta(days=i) for i in range((DIGEST_AT - first).days + 1)]
    for moment in [*moments, DIGEST_AT.replace(minute=0)]:
        store.put_snapshot(series.snapshot(moment), expires_at=int(DIGEST_AT.timestamp()) + 86400)


def measure_large_poll(python: Path, unpacked: Unpacked) -> Run:
    """One poll of a large organization (200 projects x 30 line items, 419 requests): the poller's peak."""
    from spendwatch.devtools.fake_openai import FakeOpenAI
    from spendwatch.devtools.pipeline import LocalPipeline
    from spendwatch.devtools.simulated_org import SimulatedOrg

    run = Run()
    large = SimulatedOrg.generate(NOW, project_count=200, line_items_per_project=30)
    with (
        FakeOpenAI(large, admin_key=ADMIN_KEY) as openai,
        contextlib.redirect_stderr(io.StringIO()),
        LocalPipeline() as pipe,
    ):
        pipe.configure(
            "organizations:\n  - {id: big, name: Big Org}\n", {"/spendwatch/big/openai-admin-key": ADMIN_KEY}
        )
        pipe.openai_base_url = openai.base_url  # type: ignore[attr-defined]
        env = invocation_env(pipe, "poller")
        sqs = json.loads((ROOT / "events" / "sqs_poll_request.json").read_text(encoding="utf-8"))
        sqs["Records"][0]["body"] = json.dumps({"org_id": "big", "poll_time": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")})
        record(run, run_child(python, "invoke", "poller", unpacked, env, event=sqs))
    return run


def record(run: Run, child: tuple[dict[str, Any], str]) -> None:
    result, _ = child
    run.import_s.append(result["import_s"])
    run.invoke_s.append(result["invoke_s"])
    run.peak_rss_kb.append(result["peak_rss_kb"])
    run.rss_after_import_kb.append(result["rss_after_import_kb"])
    run.modules.update(result["modules"])
    if "error" in result:
        run.errors.append(result["error"])


def unpack(artifacts: Artifacts, into: Path) -> Unpacked:
    opt = unpack_read_only(artifacts.layer, into / "opt")
    tasks = {name: unpack_read_only(path, into / "task" / name) for name, path in artifacts.functions.items()}
    return Unpacked(layer_python=opt / "python", tasks=tasks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout to build (default: this one)")
    parser.add_argument("--before", type=Path, help="another checkout, measured in the same rounds (e.g. main)")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--invocations", type=int, default=INVOCATIONS)
    parser.add_argument("--profile", action="store_true", help="print where each handler's import time goes")
    args = parser.parse_args(argv)
    python313 = find_python313()
    if python313 is None:
        print("cold start: SKIPPED, no python3.13 found (PATH, pyenv): the Lambda runtime's version is needed")
        return
    python = runtime_python(python313)
    sources = {"after": args.source} | ({"before": args.before} if args.before else {})
    with tempfile.TemporaryDirectory(prefix="spendwatch-cold-") as tmp:
        work = Path(tmp)
        builds: dict[str, Unpacked] = {}
        for build, source in sources.items():
            started = time.perf_counter()
            artifacts = build_artifacts(source.resolve(), work / build / "build")
            print(f"{build}: artifacts of {source} (x86_64 copy, built in {time.perf_counter() - started:.0f} s):")
            describe(artifacts, work / build)
            builds[build] = unpack(artifacts, work / build / "lambda")
        files_before = file_count(work)
        try:
            report(python, builds, args)
            print(f"  files written into the artifacts while measuring: {file_count(work) - files_before}")
        finally:
            for build in builds:
                make_writable(work / build / "lambda")


def describe(artifacts: Artifacts, work: Path) -> None:
    for name, log in artifacts.build_logs.items():
        for line in log.splitlines():
            if line.startswith(("bytecode:", "NO BYTECODE")):
                print(f"  {name}: {line}")
    layer = tree_size(artifacts.layer)
    pyc = sum(1 for _ in artifacts.layer.rglob("*.cpython-313.pyc"))
    sources = sum(1 for _ in artifacts.layer.rglob("*.py"))
    print(
        f"  layer: {layer / 1e6:.2f} MB unzipped, {zip_size(artifacts.layer, work / 'layer.zip') / 1e6:.2f} MB zipped;",
        end=" ",
    )
    print(f"{pyc} of {sources} modules with cpython-313 bytecode")
    for name, root in artifacts.functions.items():
        own, zipped = tree_size(root), zip_size(root, work / f"{name}.zip")
        print(
            f"  {name}: {own / 1e6:.2f} MB unzipped, {zipped / 1e6:.2f} MB zipped;"
            f" {(own + layer) / 1e6:.2f} MB with the layer"
        )


def report(python: Path, builds: dict[str, Unpacked], args: argparse.Namespace) -> None:
    times = measure_imports(python, builds, args.rounds)
    base = times[("", "boto3")]
    print(f"init: import in a fresh python3.13 -I -B, read-only artifacts, {args.rounds} rounds:")
    print(f"  {'':<26} {'wall':>8} {'x boto3':>8} {'CPU x boto3':>12}   (median of per-round ratios)")
    for (build, name), measured in times.items():
        label = "import boto3" if name == "boto3" else f"{build + ': ' if len(builds) > 1 else ''}{name} handler"
        wall = statistics.median(t[0] for t in measured)
        print(f"  {label:<26} {wall * 1000:6.0f}ms {ratio(measured, base, 0):7.2f}x {ratio(measured, base, 1):11.2f}x")
    print(f"  goal: every handler <= {GOAL_RATIO}x import boto3")
    if args.profile:
        for name in FUNCTIONS:
            attributed = profile(python, builds["after"], name, args.rounds)
            total = sum(ms for _, ms in attributed)
            print(f"  {name} handler, -X importtime self time by the package that caused it (median ms):")
            for group, ms in attributed[:14]:
                print(f"    {ms:7.1f}  {ms / total:4.0%}  {group}")
    if args.invocations > 0:
        baseline = statistics.median(t[0] for t in base)
        for build, unpacked in builds.items():
            report_invocations(python, unpacked, args.invocations, baseline, f"{build}: " if len(builds) > 1 else "")


def report_invocations(python: Path, unpacked: Unpacked, count: int, baseline: float, label: str) -> None:
    runs = measure_invocations(python, unpacked, count)
    print(f"{label}one invocation after the import, against the local stand-ins (median of {count}):")
    print(f"  {'':<10} {'init':>8} {'invoke':>8} {'init+invoke':>12} {'x boto3':>8} {'RSS init':>9} {'peak RSS':>9}")
    for name, run in runs.items():
        init, invoke = statistics.median(run.import_s), statistics.median(run.invoke_s)
        print(
            f"  {name:<10} {init * 1000:6.0f}ms {invoke * 1000:6.0f}ms {(init + invoke) * 1000:10.0f}ms"
            f" {(init + invoke) / baseline:7.2f}x {max(run.rss_after_import_kb) / 1024:7.0f}MB"
            f" {max(run.peak_rss_kb) / 1024:7.0f}MB"
        )
        for error in sorted(set(run.errors)):
            print(f"    ERROR: {error}")
    large = measure_large_poll(python, unpacked)
    print(
        f"  poller, large organization (200 projects x 30 line items): init + invoke"
        f" {(large.import_s[0] + large.invoke_s[0]) * 1000:.0f} ms, peak RSS {large.peak_rss_kb[0] / 1024:.0f} MB"
        + "".join(f"  ERROR: {error}" for error in large.errors)
    )
    print("  (x boto3: init + invocation / this run's median `import boto3`, wall; RSS: VmHWM in MiB)")
    if os.environ.get("SPENDWATCH_BENCH_MODULES"):
        Path(os.environ["SPENDWATCH_BENCH_MODULES"]).write_text(
            json.dumps({name: sorted(run.modules) for name, run in runs.items()}, indent=1), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
