"""`spendwatch demo`: the whole pipeline on this machine, end to end, then exit.

Simulated OpenAI organization and a local Slack stand-in by default; the real OpenAI API when
`OPENAI_ADMIN_KEY` is set, and real Slack when `SLACK_WEBHOOK_URL` or `SLACK_BOT_TOKEN` + `SLACK_CHANNEL`
are set. It ends with the digest function's run (a daily digest of the simulated organization) and
`spendwatch report`'s page, written to `.demo/`. The handlers' own output (JSON logs and EMF metrics, as
CloudWatch would show them) goes to `.demo/handlers.log`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from spendwatch.aws.store import SnapshotStore
from spendwatch.core.config import SlackChannelConfig, SpendwatchConfig, parse_config, resolve_local_config
from spendwatch.core.money import format_percent, format_usd, percent_of
from spendwatch.core.snapshot import Snapshot
from spendwatch.devtools.pipeline import LocalPipeline, config_text

SIMULATED_ADMIN_KEY = "sk-admin-simulated-demo-key"
LOG_PATH = Path(".demo/handlers.log")


@dataclass
class DemoSetup:
    config: SpendwatchConfig
    secrets: dict[str, str] = field(default_factory=dict)
    handler_env: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


def simulated_config_text() -> str:
    from spendwatch.devtools.simulated_org import ADMIN_KEY_ID, DEFAULT_MONTHLY_BUDGET_USD  # noqa: PLC0415

    return (
        "version: 1\n"
        "organizations:\n"
        "  - id: simulated\n"
        "    name: Simulated Org (demo)\n"
        f"    admin_key_id: {ADMIN_KEY_ID}\n"
        f"    budget: {{monthly_usd: {DEFAULT_MONTHLY_BUDGET_USD}, thresholds_percent: [50, 80, 100]}}\n"
        "    channels: [slack]\n"
        "    digests: [{every: day, hour_utc: 0}]\n"
        "channels:\n"
        "  slack: {type: slack}\n"
    )


def openai_setup(env: Mapping[str, str], fake_openai: Any) -> DemoSetup:
    if fake_openai is not None:
        config = parse_config(simulated_config_text(), "demo config")
        setup = DemoSetup(config, handler_env={"OPENAI_BASE_URL": fake_openai.base_url})
        from spendwatch.devtools.fake_openai import SIM_SESSION_KEY  # noqa: PLC0415

        org = config.organizations[0]
        setup.secrets[org.admin_key_ref().parameter] = SIMULATED_ADMIN_KEY
        # The legacy session key unlocks credit grants and the subscription (the grant-expiry rule).
        setup.secrets[org.session_key_ref().parameter] = SIM_SESSION_KEY
        setup.sources.append(
            f"OpenAI:   simulated organization at {fake_openai.base_url} (set OPENAI_ADMIN_KEY for yours)"
        )
        return setup
    config = resolve_local_config(env)
    base_url = env.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
    setup = DemoSetup(config, handler_env={"OPENAI_BASE_URL": base_url})
    for org in config.organizations:
        for ref in (org.admin_key_ref(), org.session_key_ref()):
            if env.get(ref.env):
                setup.secrets[ref.parameter] = env[ref.env]
    setup.sources.append(f"OpenAI:   the real API at {base_url} (keys from the environment)")
    return setup


def slack_setup(setup: DemoSetup, env: Mapping[str, str], fake_slack: Any) -> None:
    for channel in setup.config.channels.values():
        if not isinstance(channel, SlackChannelConfig):
            continue
        if fake_slack is not None:
            setup.secrets[channel.webhook_url.parameter] = fake_slack.webhook_url
        elif env.get("SLACK_WEBHOOK_URL"):
            setup.secrets[channel.webhook_url.parameter] = env["SLACK_WEBHOOK_URL"]
        else:
            setup.secrets[channel.bot_token.parameter] = env["SLACK_BOT_TOKEN"]
            setup.handler_env["SLACK_CHANNEL"] = env["SLACK_CHANNEL"]
    setup.sources.append(
        "Slack:    a local Slack stand-in; set SLACK_WEBHOOK_URL (or SLACK_BOT_TOKEN + SLACK_CHANNEL) to post for real"
        if fake_slack is not None
        else "Slack:    posting for real to your workspace"
    )


@contextlib.contextmanager
def handler_output(log: TextIO) -> Iterator[None]:
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def stored_snapshots(pipeline: LocalPipeline, config: SpendwatchConfig, poll_time: datetime) -> dict[str, Snapshot]:
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    found: dict[str, Snapshot] = {}
    for org in config.organizations:
        newest = store.recent_snapshots(org.id, since=poll_time, limit=1)
        if newest:
            found[org.id] = newest[0]
    return found


def notified_alerts(pipeline: LocalPipeline) -> int:
    """Alerts recorded as sent in the notification log (what was posted when the Slack is real)."""
    import boto3  # noqa: PLC0415

    items = boto3.client("dynamodb").scan(TableName=pipeline.tables["AlertStateTable"]).get("Items", [])
    return sum(1 for item in items if "notified_at" in item)


def describe_poll(snapshots: dict[str, Snapshot], config: SpendwatchConfig, queue: Any) -> list[str]:
    lines = [
        f"1. Poller: the scheduled run queued one poll per organization; {queue.succeeded} poll invocation(s) "
        f"from the SQS poll queue stored {len(snapshots)} snapshot(s):"
    ]
    for org in config.organizations:
        snapshot = snapshots.get(org.id)
        if snapshot is None:
            lines.append(f"   {org.name}: no snapshot stored (see {LOG_PATH})")
            continue
        spent = None if snapshot.month_to_date_usd is None else str(snapshot.month_to_date_usd)
        line = f"   {org.name}: month-to-date {format_usd(Decimal(spent)) if spent else 'unknown'}"
        if spent and org.budget:
            share = percent_of(Decimal(spent), org.budget.monthly_usd)
            line += f" = {format_percent(share)} of the {format_usd(org.budget.monthly_usd)} monthly budget"
        elif not org.budget:
            line += " (no budget configured, so no budget rule to evaluate)"
        if snapshot.failures:
            line += f"; failed sources: {', '.join(f.source for f in snapshot.failures)}"
        lines.append(line)
    return lines


def show_digest_and_report(
    pipeline: LocalPipeline, config: SpendwatchConfig, moment: datetime, fake_slack: Any, log: TextIO
) -> list[str]:
    """Step 5: the digest function's run for this hour, its chart, and `spendwatch report`'s page."""
    from spendwatch.digest.compose import build_digest  # noqa: PLC0415
    from spendwatch.digest.schedule import due_period  # noqa: PLC0415
    from spendwatch.views.chart import layout_daily  # noqa: PLC0415
    from spendwatch.views.chart_png import render_png  # noqa: PLC0415
    from spendwatch.views.history import TableHistory  # noqa: PLC0415
    from spendwatch.views.report import OrgReport, render_report  # noqa: PLC0415

    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    before = len(fake_slack.messages) if fake_slack else 0
    with handler_output(log):
        result = pipeline.run_digest(moment)
    sent = [e for entries in result["organizations"].values() for e in entries if e["status"] == "sent"]
    lines = []
    if not any(org.digests for org in config.organizations):
        lines.append("5. Digest: no `digests:` in the config (add `digests: [{every: day}]` to an organization).")
    elif fake_slack is not None:
        lines.append(f"5. Digest: the digest function sent {len(sent)} daily digest(s). Slack shows:\n")
        for message in fake_slack.messages[before:]:
            lines.append("\n".join(f"   | {line}" for line in str(message.text or "").splitlines()) + "\n")
    else:
        lines.append(f"5. Digest: the digest function sent {len(sent)} daily digest(s) to your channels.")
    for org in config.organizations:
        for entry in org.digests[:1]:
            digest = build_digest(
                org, due_period(entry, moment), TableHistory(store, org.id), now=moment, alerts_sent=None
            )
            picture = LOG_PATH.parent / f"digest-chart-{org.id}.png"
            picture.write_bytes(render_png(layout_daily(digest.chart)))
            lines.append(
                f"   Its chart (what a bot-token channel gets as an upload; a webhook gets the sparkline): {picture}"
            )
    month = moment.strftime("%Y-%m")
    reports = [OrgReport(org, TableHistory(store, org.id)) for org in config.organizations]
    page = render_report(reports, month, now=moment, source=f"the demo's {pipeline.dynamodb_kind} table")
    path = (LOG_PATH.parent / f"spendwatch-report-{month}.html").resolve()
    path.write_text(page, encoding="utf-8")
    lines.append(f"6. Report: `spendwatch report` wrote the month's page (open it in a browser): {path}")
    return lines


def run_demo(environ: Mapping[str, str] | None = None, out: Callable[[str], None] = print) -> int:
    from spendwatch.devtools.fake_openai import FakeOpenAI  # noqa: PLC0415
    from spendwatch.devtools.fake_slack import FakeSlack  # noqa: PLC0415
    from spendwatch.devtools.simulated_org import SimulatedOrg  # noqa: PLC0415

    env = dict(os.environ if environ is None else environ)
    poll_time = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    real_slack = bool(env.get("SLACK_WEBHOOK_URL") or (env.get("SLACK_BOT_TOKEN") and env.get("SLACK_CHANNEL")))
    LOG_PATH.parent.mkdir(exist_ok=True)
    out("spendwatch demo: poller -> DynamoDB -> stream -> alerter -> Slack, all on this machine\n")
    with contextlib.ExitStack() as stack, LOG_PATH.open("w", encoding="utf-8") as log:
        fake_openai = None
        if not env.get("OPENAI_ADMIN_KEY"):
            org = SimulatedOrg.default(poll_time)
            fake_openai = stack.enter_context(FakeOpenAI(org, admin_key=SIMULATED_ADMIN_KEY))
        fake_slack = None if real_slack else stack.enter_context(FakeSlack())
        pipeline = stack.enter_context(LocalPipeline())
        setup = openai_setup(env, fake_openai)
        slack_setup(setup, env, fake_slack)
        setup.sources.append(
            f"DynamoDB: {pipeline.dynamodb_kind} at {pipeline.dynamodb_endpoint}, tables from template.yaml"
        )
        for line in setup.sources:
            out(f"  {line}")
        out(f"  Handler logs and metrics (as CloudWatch would show them): {LOG_PATH}\n")
        pipeline.configure(config_text(setup.config), setup.secrets, setup.handler_env)
        with handler_output(log):
            queue = pipeline.poll_all(poll_time)
        snapshots = stored_snapshots(pipeline, setup.config, poll_time)
        for line in describe_poll(snapshots, setup.config, queue):
            out(line)
        if not any(s.sources_ok for s in snapshots.values()):
            out(f"   Nothing could be collected; the failures are listed above and in {LOG_PATH}.")
            return 1
        with handler_output(log):
            stats = pipeline.deliver()
        out(f"2. Stream: {stats.delivered} snapshot INSERT(s) delivered to the alerter handler as Lambda-shaped events")
        before = len(fake_slack.messages) if fake_slack else 0
        if fake_slack is None:
            sent = notified_alerts(pipeline)
            out(
                f"3. Alerter posted {sent} alert(s) to your Slack channel."
                if sent
                else "3. Alerter: no threshold is crossed, so no message was sent."
            )
        elif fake_slack.messages:
            out(f"3. Alerter posted {len(fake_slack.messages)} Slack message(s). This is what Slack shows:\n")
            for message in fake_slack.messages:
                out("\n".join(f"   | {line}" for line in str(message.text or "").splitlines()) + "\n")
        else:
            out("3. Alerter: no threshold is crossed, so no message was sent.")
        with handler_output(log):
            pipeline.poll_all(poll_time)
            again = pipeline.deliver()
        repeats = (len(fake_slack.messages) - before) if fake_slack else 0
        out(
            f"4. Same scheduled poll again (a retry): {again.delivered - stats.delivered} new snapshot(s), "
            f"{repeats} new message(s). One alert per state change."
        )
        dead = pipeline.dead_letters()
        if dead:
            out(f"   {len(dead)} record(s) reached the dead-letter queue; see {LOG_PATH}")
            return 1
        for line in show_digest_and_report(pipeline, setup.config, poll_time, fake_slack, log):
            out(line)
    out("\nDone. To deploy: `make deploy`, then `spendwatch config push` and `spendwatch verify` (README, Deploy).")
    return 0
