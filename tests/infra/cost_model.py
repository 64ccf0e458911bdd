"""The monthly cost table of docs/deploy.md ("What it costs"), computed from what the stack really creates.

Counts come from the translated template (alarms, dashboards, the SQS event source mapping) and from the
code (the custom metrics it emits: `add_metric` every time, `single_metric` with a `reason` dimension
only in hours when that failure happens). Usage (invocations, durations, bytes) follows the stated
assumptions. `python -m tests.infra.cost_model` prints the table; tests/infra/test_cost.py fails when the
table in docs/deploy.md is not this one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "layers" / "common" / "spendwatch"

# us-east-1 list prices (late 2026), without any free tier.
ALARM_USD = Decimal("0.10")  # standard-resolution alarm, per alarm-month
METRIC_USD = Decimal("0.30")  # custom metric, per metric-month (prorated by the hour)
DASHBOARD_USD = Decimal("3.00")  # beyond the account's first three
SQS_PER_MILLION_USD = Decimal("0.40")
IDLE_POLLERS = 5  # Lambda's long-polling connections to an idle SQS queue (AWS does not publish the number)
LONG_POLLS_A_MONTH = IDLE_POLLERS * 3 * 60 * 24 * 30  # one 20-second ReceiveMessage after another
LAMBDA_GB_SECOND_USD = Decimal("0.0000133334")  # arm64
LAMBDA_REQUESTS_USD = Decimal("0.20")  # per million
# Invocations a month and the billed seconds each is assumed to take (hourly schedules; the poller's schedule
# invocation only queues the organization's poll, so the poller has two requests per poll).
LAMBDA_RUNS = (
    ("PollerFunction", "polls", 720, Decimal(5)),
    ("AlerterFunction", "alerter runs", 720, Decimal(1)),
    ("WatchdogFunction", "watchdog runs", 720, Decimal("0.5")),
    ("DigestFunction", "digest runs", 720, Decimal("0.3")),
)
LAMBDA_REQUESTS = 3600


@dataclass(frozen=True)
class Row:
    item: str
    assumption: str
    usd: Decimal


def alarms(template: dict[str, Any]) -> list[str]:
    return sorted(n for n, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm")


def dashboards(template: dict[str, Any]) -> list[str]:
    return sorted(n for n, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Dashboard")


def sqs_mappings(template: dict[str, Any]) -> list[str]:
    return sorted(
        n
        for n, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::EventSourceMapping" and "Queue" in str(r["Properties"].get("EventSourceArn"))
    )


def emitted_metrics() -> tuple[list[str], list[str]]:
    """(metrics emitted as a matter of course, metrics emitted per failure `reason` only)."""
    steady: set[str] = set()
    per_reason: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            function = getattr(node.func, "attr", getattr(node.func, "id", None))
            names = {str(k.value.value) for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)}
            if function == "add_metric":
                steady |= names
            elif function == "single_metric":
                per_reason |= names
    return sorted(steady), sorted(per_reason)


def memory_mb(template: dict[str, Any]) -> dict[str, int]:
    """Each function's MemorySize as the translated template sets it (Globals applied)."""
    return {
        name: int(r["Properties"]["MemorySize"])
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
    }


def lambda_row(template: dict[str, Any]) -> Row:
    """GB-seconds from each function's own MemorySize: Lambda bills memory x billed duration."""
    memory = memory_mb(template)
    gb_seconds = sum(
        (count * seconds * Decimal(memory[name]) / 1024 for name, _, count, seconds in LAMBDA_RUNS), Decimal(0)
    )
    runs = " + ".join(
        f"{count} {what} × ~{seconds} s at {memory[name]} MB" for name, what, count, seconds in LAMBDA_RUNS
    )
    return Row(
        "Lambda (arm64)",
        f"{runs} ≈ {gb_seconds:,.0f} GB-s at $0.0000133; ~{LAMBDA_REQUESTS:,} requests",
        gb_seconds * LAMBDA_GB_SECOND_USD + LAMBDA_REQUESTS * LAMBDA_REQUESTS_USD / 1_000_000,
    )


def cost_rows(template: dict[str, Any]) -> list[Row]:
    alarm_names = alarms(template)
    steady, per_reason = emitted_metrics()
    boards = dashboards(template)
    queues = sqs_mappings(template)
    polls = Decimal(LONG_POLLS_A_MONTH * len(queues))
    return [
        Row(
            "CloudWatch alarms",
            f"{len(alarm_names)} standard alarms × $0.10 ({', '.join(a.removesuffix('Alarm') for a in alarm_names)})",
            len(alarm_names) * ALARM_USD,
        ),
        Row(
            "CloudWatch custom metrics",
            f"{len(steady)} metric(s) emitted by every poll ({', '.join(steady)}) × $0.30; "
            f"{' and '.join(per_reason)} only in the hours a delivery fails or goes unconfirmed (one metric per "
            "`reason`, prorated by the hour); everything else the dashboard shows comes from the logs",
            len(steady) * METRIC_USD,
        ),
        Row(
            "CloudWatch dashboard",
            f"{len(boards)} dashboard: free within the account's first three, else $3.00 each; its Logs Insights "
            "widgets scan the functions' logs when viewed ($0.005/GB, ~10 MB a month)",
            Decimal(0),
        ),
        Row(
            "SQS long polling",
            f"Lambda long-polls the poll queue around the clock, idle or not: ~{IDLE_POLLERS} pollers × a 20 s "
            f"ReceiveMessage ≈ {int(polls):,} requests × $0.40 per million (an estimate: AWS does not publish the "
            "poller count)",
            polls * SQS_PER_MILLION_USD / 1_000_000,
        ),
        lambda_row(template),
        Row(
            "DynamoDB on-demand",
            "≤ 10 KB snapshots: ~7,200 write units + reads and alert state; ~25 MB stored, PITR on it; stream "
            "reads by Lambda are free",
            Decimal("0.02"),
        ),
        Row("CloudWatch Logs", "~10 MB/month ingested at $0.50/GB, 30-day retention", Decimal("0.01")),
        Row("KMS (AWS-managed keys for SSM and DynamoDB)", "a few thousand decrypts at $0.03/10,000", Decimal("0.01")),
        Row("S3 (SAM artifacts)", "~20 MB per deployed version", Decimal("0.01")),
        Row("X-Ray", "~2,900 traces at $5.00 per million", Decimal("0.01")),
        Row("SSM, SNS, EventBridge", "standard parameters and throughput; a handful of requests", Decimal(0)),
    ]


def money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def render_table(rows: list[Row]) -> str:
    lines = ["| Item | Assumption | ≈ USD / month |", "|---|---|---|"]
    lines += [f"| {r.item} | {r.assumption} | {money(r.usd)} |" for r in rows]
    total = sum((r.usd for r in rows), Decimal(0))
    lines.append(f"| **Total** | | **≈ {money(total)}** ({money(total + DASHBOARD_USD)} with a fourth dashboard) |")
    return "\n".join(lines)


def total(rows: list[Row]) -> Decimal:
    return sum((r.usd for r in rows), Decimal(0))


if __name__ == "__main__":
    from tests.infra.sam_translate import translate

    print(render_table(cost_rows(translate(REPO / "template.yaml"))))
