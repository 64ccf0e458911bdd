"""The `spendwatch` command line: demo, config validate/push/bundle/schema, poll, check, report, test-alert, verify.

Command output goes to stdout; logs and diagnostics go to stderr. Exit status is non-zero on error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spendwatch.core.errors import ConfigError, SpendwatchError

if TYPE_CHECKING:
    from spendwatch.aws.store import SnapshotStore
    from spendwatch.core.config import SpendwatchConfig
    from spendwatch.core.snapshot import Snapshot

DEFAULT_CONFIG_PARAMETER = "/spendwatch/config"
POLL_BUDGET_S = 120.0
"""`spendwatch poll`/`check`: the time one organization's poll may take, retries included, as the poller
Lambda's timeout; like the Lambda's, the poll stops asking `WRITE_RESERVE_S` (5 s) before it. `--budget`
overrides it (e.g. tests, or a quick look)."""
MIN_BUDGET_S = 6.0
SSM_STANDARD_LIMIT_BYTES = 4096
SSM_ADVANCED_LIMIT_BYTES = 8192
ADVANCED_PARAMETER_USD_MONTH = "0.05"
"""SSM's list price of one Advanced-tier parameter (Standard parameters are free)."""
BUNDLED_CONFIG_FILE = Path("layers/common/spendwatch/bundled_config.json")
"""Where `config bundle` writes by default: next to spendwatch.aws.runtime in the layer (run from the checkout)."""


def _print_err(message: str) -> None:
    print(message, file=sys.stderr)


def _print_problem(exc: Exception) -> None:
    """A config error as `source: line N: field: problem`, one line per problem; any other error as one line."""
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            _print_err(f"{exc.source}: {problem}")
    else:
        _print_err(" ".join(str(exc).split()))


def cmd_demo(_: argparse.Namespace) -> int:
    try:
        from spendwatch.devtools.demo import run_demo  # noqa: PLC0415
    except ImportError as exc:
        _print_err(f"spendwatch demo needs the demo extra ({exc.name} missing): make demo, or pip install -e '.[demo]'")
        return 2
    return run_demo()


def cmd_config_validate(args: argparse.Namespace) -> int:
    """Each problem on its own line, `FILE: line N: field.path: problem`; exit 1 on any error.

    Warnings (valid but probably wrong: no channel, the sample's placeholder organization) are printed the
    same way and exit 0, or 1 with `--strict`. Slack webhook URLs in the environment are checked for shape.
    """
    from spendwatch.core.config import (  # noqa: PLC0415
        config_warnings,
        local_problems,
        read_config_file,
        validate_document,
    )

    path = Path(args.file)
    try:
        doc = read_config_file(path)
        config = validate_document(doc)
        errors = local_problems(config, os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            _print_err(f"{exc.source}: {problem}")
        return 1
    for problem in errors:
        _print_err(f"{path}: {problem}")
    warnings = config_warnings(config, doc)
    for warning in warnings:
        _print_err(f"{path}: warning: {warning}")
    if errors or (warnings and args.strict):
        return 1
    orgs = ", ".join(o.id for o in config.organizations)
    channels = ", ".join(config.channels) or "none"
    print(f"{args.file}: valid ({len(config.organizations)} organization(s): {orgs}; channels: {channels})")
    return 0


def cmd_config_schema(_: argparse.Namespace) -> int:
    """The config's JSON Schema on stdout (config/spendwatch.schema.json is this output)."""
    import json  # noqa: PLC0415

    from spendwatch.core.config import config_json_schema  # noqa: PLC0415

    print(json.dumps(config_json_schema(), indent=2, ensure_ascii=False))
    return 0


def _canonical_config(path: Path, *, not_done: str) -> tuple[Any, str] | None:
    """The validated config file and the canonical JSON the functions read, or None (the errors printed)."""
    from spendwatch.core.config import (  # noqa: PLC0415
        canonical_config_text,
        config_warnings,
        parse_config,
        read_config_file,
        validate_document,
    )

    try:
        doc = read_config_file(path)
        config = validate_document(doc)
    except ConfigError as exc:
        for problem in exc.problems:
            _print_err(f"{exc.source}: {problem}")
        _print_err(not_done)
        return None
    for warning in config_warnings(config, doc):
        _print_err(f"{path}: warning: {warning}")
    # The functions read this canonical JSON without a YAML parser; comments and layout are not stored.
    canonical = canonical_config_text(doc.data)
    try:
        # What the functions will read must be the config just validated, or nothing is stored.
        stored = parse_config(canonical, f"{path} as stored")
    except ConfigError as exc:
        _print_err(f"{path}: cannot be stored faithfully ({'; '.join(exc.problems)}); {not_done}")
        return None
    if stored != config:
        _print_err(f"{path}: its stored form reads differently (please report this); {not_done}")
        return None
    return doc.data, canonical


def cmd_config_push(args: argparse.Namespace) -> int:
    """Validate, show what changes against the deployed config, then store its canonical JSON in SSM.

    Exit 0 when pushed (or unchanged, or `--dry-run`), 1 when the file is invalid or too large, or AWS
    refused or could not be reached (one line saying what happened and what to do; nothing is half-written).
    """
    from spendwatch.cli.aws import AwsCallError, describe  # noqa: PLC0415

    path = Path(args.file)
    valid = _canonical_config(path, not_done="not pushed: the deployed functions keep their current config")
    if valid is None:
        return 1
    data, canonical = valid
    size = len(canonical.encode())
    if size > SSM_ADVANCED_LIMIT_BYTES:
        _print_err(
            f"{path}: {size:,} bytes as stored, over the 8 KB of even an Advanced SSM parameter; not pushed. "
            "Split the organizations between two stacks, each with its own ConfigParameterName (docs/deploy.md)"
        )
        return 1
    try:
        return _push(args, path, data, canonical)
    except AwsCallError as exc:
        _print_problem(exc)
    except Exception as exc:
        if not _is_aws_error(exc):
            raise
        where = args.parameter
        permission = "ssm:GetParameter and ssm:PutParameter"
        _print_err(describe(exc, action=f"push the config to {where}", permission=permission, resource=where))
    _print_err("not pushed: the deployed functions keep their current config")
    return 1


def _push(args: argparse.Namespace, path: Path, data: Any, canonical: str) -> int:
    from spendwatch.cli.aws import Aws, error_code  # noqa: PLC0415

    name, size = args.parameter, len(canonical.encode())
    tier = "Standard" if size <= SSM_STANDARD_LIMIT_BYTES else "Advanced"
    ssm = Aws.connect(region=args.region, profile=args.profile).client("ssm")
    try:
        deployed: str | None = str(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except Exception as exc:
        if error_code(exc) != "ParameterNotFound":
            raise
        deployed = None
    if deployed == canonical:
        print(f"{name} already holds this config ({size:,} bytes): nothing to push")
        return 0
    print(f"{path} -> SSM parameter {name}:" if deployed is not None else f"{path} -> new SSM parameter {name}")
    for line in _config_changes(deployed, data):
        print(f"  {line}")
    if tier == "Advanced":
        print(
            f"  {size:,} bytes as stored: over the 4 KB of a standard parameter, so it uses the Advanced tier "
            f"(${ADVANCED_PARAMETER_USD_MONTH} a month, plus $0.05 per 10,000 reads; AWS cannot move it back to "
            "Standard without deleting it)"
        )
    if args.dry_run:
        print("dry run: not pushed")
        return 0
    # Standard is asked for by leaving the tier out: an explicit downgrade of a parameter that is already
    # Advanced would be refused.
    extra = {"Tier": tier} if tier == "Advanced" else {}
    ssm.put_parameter(Name=name, Value=canonical, Type="String", Overwrite=True, **extra)
    print(f"pushed {path} ({size:,} bytes) to {name}; the functions pick it up within a minute")
    return 0


def _config_changes(deployed: str | None, new: Any) -> list[str]:
    from spendwatch.cli.config_diff import config_changes  # noqa: PLC0415
    from spendwatch.core.config import load_document  # noqa: PLC0415

    if deployed is None:
        return ["(first push)"]
    try:
        old = load_document(deployed, "the deployed config")
    except Exception:  # whatever is there (hand-written, an old format) is replaced; say so
        return ["(the deployed value is not a readable config: it is replaced whole)"]
    return config_changes(old, new) or ["(same settings; only the stored form changes)"]


def _snapshot_store(table: str) -> SnapshotStore | None:
    """The deployed snapshots table's store, or None after saying why it cannot be had (no region, …)."""
    from spendwatch.aws.store import SnapshotStore  # noqa: PLC0415

    try:
        return SnapshotStore(table)
    except Exception as exc:  # no region, an unknown profile: before any call
        if not _is_aws_error(exc):
            raise
        _print_err(_table_problem(exc, table))
        return None


def _table_problem(exc: Exception, table: str) -> str:
    from spendwatch.cli.aws import describe  # noqa: PLC0415

    return describe(exc, action=f"read the snapshots table {table}", permission="dynamodb:Query", resource=table)


def _is_aws_error(exc: Exception) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    return isinstance(exc, BotoCoreError | ClientError)


def cmd_config_bundle(args: argparse.Namespace) -> int:
    """Write the config file's canonical JSON where the layer build ships it (the cold-start fallback)."""
    path, out = Path(args.file), Path(args.out)
    valid = _canonical_config(path, not_done=f"not written: {out} is unchanged")
    if valid is None:
        return 1
    _, canonical = valid
    out.write_text(canonical + "\n", encoding="utf-8")
    print(f"wrote {path} as {out}; it ships with the next `sam build` (docs/deploy.md)")
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    """One poll per organization, printed; no AWS needed (keys and config from the environment).

    With --json, stdout holds exactly one JSON document (an object for one organization, a list for
    several); diagnostics go to stderr. Exit 0 when a snapshot holds any data (failed sources are listed
    in it), 1 when nothing could be collected, 2 on a config error. Each organization's poll has
    --budget seconds, of which the last `WRITE_RESERVE_S` are kept back, as the poller Lambda keeps them.
    """
    from spendwatch.aws.secrets import EnvSecrets  # noqa: PLC0415
    from spendwatch.core.config import resolve_local_config  # noqa: PLC0415
    from spendwatch.core.money import dumps_exact  # noqa: PLC0415
    from spendwatch.poller.collect import collect_snapshot  # noqa: PLC0415
    from spendwatch.poller.openai_api import DEFAULT_BASE_URL, Deadline, OpenAIClient  # noqa: PLC0415

    try:
        config = resolve_local_config(os.environ)
    except ConfigError as exc:
        _print_problem(exc)
        return 2
    orgs = [o for o in config.organizations if args.org in (None, o.id)]
    if not orgs:
        _print_err(
            f"no organization {args.org!r} in the config (known: {', '.join(o.id for o in config.organizations)})"
        )
        return 2
    secrets = EnvSecrets()
    base_url = os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)
    poll_time = datetime.now(UTC).replace(microsecond=0)
    snapshots = []
    for org in orgs:
        client = OpenAIClient.for_org(org, secrets, base_url=base_url, deadline=Deadline(budget_s=args.budget))
        snapshots.append(collect_snapshot(org, client, poll_time=poll_time, now=lambda: datetime.now(UTC)))
    if args.json:
        docs = [s.to_json_dict() for s in snapshots]
        print(dumps_exact(docs[0] if len(docs) == 1 else docs, indent=2))
        # stdout is the document alone; the failures (also inside it) are repeated on stderr for people.
        for snap in snapshots:
            for line in _failure_lines(snap):
                _print_err(f"{snap.org_id}: {line.strip()}")
    else:
        for snap in snapshots:
            print(_poll_summary(snap))
    return 0 if any(s.sources_ok for s in snapshots) else 1


def _failure_lines(snap: Snapshot) -> list[str]:
    """Failed sources grouped by cause (a rejected key fails every source with the same message), then
    what sources that answered skipped (kind `skipped_rows`: not failures)."""
    from spendwatch.poller.collect import SKIPPED_ROWS  # noqa: PLC0415

    by_cause: dict[tuple[str, str], list[str]] = {}
    for failure in snap.failures:
        by_cause.setdefault((failure.kind, failure.detail), []).append(failure.source)
    lines = [
        f"  failed [{kind}] {detail}: {', '.join(sources)}"
        for (kind, detail), sources in by_cause.items()
        if kind != SKIPPED_ROWS
    ]
    lines += [
        f"  skipped in {', '.join(sources)}: {detail}"
        for (kind, detail), sources in by_cause.items()
        if kind == SKIPPED_ROWS
    ]
    lines += [f"  condition: {condition}" for condition in snap.conditions]
    return lines


def _failed(snap: Snapshot) -> list[str]:
    """Sources that failed (a source that only skipped rows is ok: it is also in `sources_ok`)."""
    return [f.source for f in snap.failures if f.source not in snap.sources_ok]


def _poll_summary(snap: Snapshot) -> str:
    from spendwatch.core.money import format_usd  # noqa: PLC0415

    def usd(amount: Decimal | None) -> str:
        return "unknown" if amount is None else format_usd(amount)

    lines = [
        f"{snap.org_name} ({snap.org_id}) {snap.period}: month-to-date {usd(snap.month_to_date_usd)}, "
        f"data through {snap.data_through}, previous month {usd(snap.previous_month_usd)}",
        f"  sources: {len(snap.sources_ok)} ok, {len(_failed(snap))} failed"
        + (f"; conditions: {', '.join(snap.conditions)}" if snap.conditions else ""),
    ]
    for share in snap.costs_by_project_usd[:5]:
        lines.append(f"  project {share.name or share.key}: {usd(share.amount_usd)}")
    for limit in snap.spend_limits:
        scope = limit.scope if limit.scope == "organization" else f"project {snap.project_name(limit.scope)}"
        lines.append(f"  hard limit, {scope} ({limit.source}): {usd(limit.threshold_usd)}")
    if snap.credit_summary is not None:
        lines.append(f"  credit available: {usd(snap.credit_summary.total_available_usd)}")
    lines += _failure_lines(snap)
    return "\n".join(lines)


def _load_snapshots(path: Path) -> list[Snapshot]:
    """Snapshots from a file as printed by `spendwatch poll --json` (one object, or a list of them)."""
    import json  # noqa: PLC0415

    from spendwatch.core.snapshot import Snapshot  # noqa: PLC0415

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), [f"not a snapshot JSON file: {exc}"]) from None
    except RecursionError:
        raise ConfigError(str(path), ["not a snapshot JSON file: nested too deeply"]) from None
    docs = data if isinstance(data, list) else [data]
    if not docs or not all(isinstance(doc, dict) for doc in docs):
        raise ConfigError(
            str(path), ["expected a snapshot object or a list of them, as `spendwatch poll --json` prints"]
        )
    return [Snapshot.from_json_dict(doc) for doc in docs]


def cmd_check(args: argparse.Namespace) -> int:
    """Evaluate the rules on a fresh poll (or a snapshot file) and print the alerts that would fire.

    Nothing is sent and no alert state is read or written: the decision is the one a channel with no
    notification history would get. Exit 0 whether or not alerts would fire; 1 when nothing could be
    polled, 2 on a config or input error. With --json, stdout holds exactly one JSON document.
    """
    from spendwatch.core.config import resolve_local_config  # noqa: PLC0415
    from spendwatch.core.money import dumps_exact  # noqa: PLC0415

    try:
        config = resolve_local_config(os.environ)
        snapshots = _load_snapshots(Path(args.snapshot)) if args.snapshot else None
    except SpendwatchError as exc:
        _print_problem(exc)
        return 2
    known = [o.id for o in config.organizations]
    if args.org is not None and args.org not in known:
        _print_err(f"no organization {args.org!r} in the config (known: {', '.join(known)})")
        return 2
    if snapshots is None:
        snapshots = _fresh_snapshots(config, args.org, args.budget)
        if not any(s.sources_ok for s in snapshots):
            for snap in snapshots:
                for failure in snap.failures:
                    _print_err(f"{snap.org_id}: source {failure.source} failed [{failure.kind}]: {failure.detail}")
            _print_err("nothing could be polled; nothing to check")
            return 1
    snapshots = [s for s in snapshots if args.org in (None, s.org_id)]
    unknown = sorted({s.org_id for s in snapshots} - set(known))
    if unknown:
        _print_err(f"snapshot of unknown organization(s) {', '.join(unknown)} (known: {', '.join(known)})")
        return 2
    now = datetime.now(UTC)
    report = [_check_one(config, snap, now) for snap in snapshots]
    if args.json:
        print(dumps_exact({"organizations": report}, indent=2))
        return 0
    for entry in report:
        alerts: list[dict[str, Any]] = entry["alerts"]
        channels = ", ".join(entry["channels"]) or "no channels"
        verdict = f"{len(alerts)} alert(s) would fire -> {channels}" if alerts else "no alert would fire"
        print(f"{entry['org_name']} ({entry['org_id']}), polled {entry['poll_time']}: {verdict}")
        for alert in alerts:
            print(f"  - [{alert['rule_id']}] {alert['text']}")
        for item in entry["silenced"]:
            print(f"  - [{item['rule_id']}] silenced")
    return 0


def _check_one(config: SpendwatchConfig, snap: Snapshot, now: datetime) -> dict[str, Any]:
    """What a channel with no notification history would be sent for this snapshot."""
    from spendwatch.alerter.decide import Action, should_notify  # noqa: PLC0415
    from spendwatch.alerter.process import policy_for  # noqa: PLC0415
    from spendwatch.alerter.render import describe  # noqa: PLC0415
    from spendwatch.alerter.rules import evaluate  # noqa: PLC0415
    from spendwatch.core.alerts import Alert, Reason  # noqa: PLC0415
    from spendwatch.core.snapshot import isoformat_utc  # noqa: PLC0415

    org = config.organization(snap.org_id)
    firing: list[dict[str, Any]] = []
    silenced: list[dict[str, Any]] = []
    for obs in evaluate(snap, org, now=now):
        decision = should_notify(None, obs, policy_for(obs.rule_id, org, config, now), now)
        entry: dict[str, Any] = {"rule_id": obs.rule_id, "key": obs.key, "level": decision.level}
        if decision.action is Action.NOTIFY and decision.reason is not None:
            text = describe(Alert(obs, decision.reason, decision.level))
            firing.append({**entry, "reason": decision.reason.value, "text": text})
        elif decision.reason is Reason.SILENCED:
            silenced.append(entry)
    return {
        "org_id": org.id,
        "org_name": org.name,
        "poll_time": isoformat_utc(snap.poll_time),
        "month_to_date_usd": snap.month_to_date_usd,
        "channels": list(org.channels),
        "alerts": firing,
        "silenced": silenced,
    }


def _fresh_snapshots(config: SpendwatchConfig, org_id: str | None, budget_s: float) -> list[Snapshot]:
    from spendwatch.aws.secrets import EnvSecrets  # noqa: PLC0415
    from spendwatch.poller.collect import collect_snapshot  # noqa: PLC0415
    from spendwatch.poller.openai_api import DEFAULT_BASE_URL, Deadline, OpenAIClient  # noqa: PLC0415

    secrets = EnvSecrets()
    base_url = os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)
    poll_time = datetime.now(UTC).replace(microsecond=0)
    return [
        collect_snapshot(
            org,
            OpenAIClient.for_org(org, secrets, base_url=base_url, deadline=Deadline(budget_s=budget_s)),
            poll_time=poll_time,
            now=lambda: datetime.now(UTC),
        )
        for org in config.organizations
        if org_id in (None, org.id)
    ]


def cmd_test_alert(args: argparse.Namespace) -> int:
    """Send a clearly marked test message to every configured channel (or one), with local credentials.

    Exit 0 when every channel accepted it; 1 naming each channel that failed or did not confirm it; 2 on
    a config error.
    """
    from spendwatch.alerter.notices import notice_message  # noqa: PLC0415
    from spendwatch.aws.secrets import EnvSecrets  # noqa: PLC0415
    from spendwatch.channels.factory import sender_factory  # noqa: PLC0415
    from spendwatch.core.config import resolve_local_config  # noqa: PLC0415
    from spendwatch.core.errors import DeliveryError  # noqa: PLC0415
    from spendwatch.core.snapshot import isoformat_utc  # noqa: PLC0415
    from spendwatch.core.text import untrusted  # noqa: PLC0415

    try:
        config = resolve_local_config(os.environ)
    except ConfigError as exc:
        _print_problem(exc)
        return 2
    names = [args.channel] if args.channel else list(config.channels)
    unknown = [n for n in names if n not in config.channels]
    if unknown or not names:
        _print_err(f"no channel {unknown[0]!r} in the config" if unknown else "the config defines no channels")
        _print_err(f"known channels: {', '.join(config.channels) or 'none'}")
        return 2
    build = sender_factory(EnvSecrets(), api_base_url=os.environ.get("SLACK_API_BASE_URL"), environ=os.environ)
    sent_at = isoformat_utc(datetime.now(UTC))
    failed = []
    for name in names:
        orgs = [o.name for o in config.organizations if name in o.channels or o.fallback_channel == name]
        message = notice_message(
            f"spendwatch: test message ({name})",
            [
                f"This is a test of channel {name}. No action is needed.",
                f"Alerts for {', '.join(untrusted(o) for o in orgs) or 'no organization'} are sent here.",
            ],
            context=f"Sent {sent_at} by `spendwatch test-alert`.",
            transient=True,
        )
        try:
            build(name, config.channels[name]).send(message)
        except DeliveryError as exc:
            failed.append(name)
            if exc.outcome == "unknown":  # it may be there: look before sending another
                print(f"{name}: NOT CONFIRMED ({exc.reason}): {exc.detail}; check the channel")
                continue
            kind = "retryable" if exc.retryable else "permanent"
            print(f"{name}: FAILED ({exc.reason}, {kind}): {exc.detail}" + (f"; fix: {exc.fix}" if exc.fix else ""))
            continue
        print(f"{name}: sent")
    if failed:
        _print_err(f"test message not delivered to: {', '.join(failed)}")
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write one self-contained HTML page of a month's spend (docs: README.md, "See your spend").

    From the deployed snapshots table (`--table`, else `SNAPSHOTS_TABLE`), or from a fresh local poll when
    no table is given. Exit 0 when the page is written; 1 when it is written but no organization had any
    data (the page says why); 2 on a config, input or table error.
    """
    import re  # noqa: PLC0415

    from spendwatch.core.config import resolve_local_config  # noqa: PLC0415
    from spendwatch.views.history import MemoryHistory, SnapshotHistory, TableHistory  # noqa: PLC0415
    from spendwatch.views.report import OrgReport, org_totals, render_report  # noqa: PLC0415

    now = datetime.now(UTC)
    month = args.month or now.strftime("%Y-%m")
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        _print_err(f"--month {month!r}: expected YYYY-MM, e.g. {now.strftime('%Y-%m')}")
        return 2
    try:
        config = resolve_local_config(os.environ)
    except ConfigError as exc:
        _print_problem(exc)
        return 2
    orgs = [o for o in config.organizations if args.org in (None, o.id)]
    if not orgs:
        known = ", ".join(o.id for o in config.organizations)
        _print_err(f"no organization {args.org!r} in the config (known: {known})")
        return 2
    table = args.table or os.environ.get("SNAPSHOTS_TABLE")
    reports: list[OrgReport] = []
    if table:
        store = _snapshot_store(table)
        if store is None:
            return 2
        source = f"DynamoDB table {table}"
        for org in orgs:
            history: SnapshotHistory = TableHistory(store, org.id)
            reports.append(OrgReport(org, history))
    else:
        source = "a fresh local poll"
        snapshots = {s.org_id: s for s in _fresh_snapshots(config, args.org, POLL_BUDGET_S)}
        for org in orgs:
            reports.append(
                OrgReport(
                    org,
                    MemoryHistory([snapshots[org.id]]),
                    "Built from one poll made now, without history: per-day splits and earlier months need "
                    "the deployed table (--table or SNAPSHOTS_TABLE).",
                )
            )
            for failure in snapshots[org.id].failures:
                _print_err(f"{org.id}: source {failure.source} failed [{failure.kind}]: {failure.detail}")
    now = datetime.now(UTC)  # after the local poll, so its snapshot is not in the future
    try:
        page = render_report(reports, month, now=now, source=source)
        totals = org_totals(reports, month, now)
    except Exception as exc:
        if not _is_aws_error(exc):
            raise
        _print_err(_table_problem(exc, str(table)))
        return 2
    out = Path(args.out or f"spendwatch-report-{month}.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    for org_id, total in totals.items():
        print(f"{org_id} {month}: month to date {'unknown' if total is None else f'${total:,.2f}'}")
    print(f"report written to {out.resolve()}")
    return 0 if any(total is not None for total in totals.values()) else 1


def _budget(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not MIN_BUDGET_S <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text} s: the budget must be {MIN_BUDGET_S:.0f} to 3600 s")
    return seconds


def _budget_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget",
        type=_budget,
        default=POLL_BUDGET_S,
        metavar="SECONDS",
        help=f"time for each organization's poll, retries included; requests stop 5 s before it "
        f"(default {POLL_BUDGET_S:.0f}, as the deployed poller)",
    )


def cmd_verify(args: argparse.Namespace) -> int:
    """Prove the deployed stack works end to end (`spendwatch.cli.verify`); exit 0 all ✓, 1 any ✗, 2 usage."""
    from spendwatch.cli.aws import Aws  # noqa: PLC0415
    from spendwatch.cli.verify import Report, Verifier, default_marks  # noqa: PLC0415

    if args.timeout <= 0:
        _print_err("--timeout must be a positive number of seconds")
        return 2
    report = Report(out=lambda line: print(line, flush=True), marks=default_marks())
    aws = Aws.connect(region=args.region, profile=args.profile)
    return Verifier(aws, args.stack, report, timeout_s=args.timeout).run(args.org)


AWS_ENV = (
    "AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN "
    "(or your profile's credentials), AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> (local stand-ins)"
)
LOCAL_CONFIG_ENV = (
    "SPENDWATCH_CONFIG (else config/spendwatch.yaml; with neither, one organization from OPENAI_ADMIN_KEY, "
    "OPENAI_ADMIN_KEY_ID, SPENDWATCH_ORG_ID, SPENDWATCH_ORG_NAME, SPENDWATCH_MONTHLY_BUDGET_USD, "
    "SPENDWATCH_THRESHOLDS_PERCENT)"
)
OPENAI_ENV = "the keys' variables the config names (OPENAI_ADMIN_KEY, OPENAI_SESSION_KEY by default), OPENAI_BASE_URL"
SLACK_ENV = (
    "the Slack variables the config names (SLACK_WEBHOOK_URL, SLACK_BOT_TOKEN by default), SLACK_CHANNEL, "
    "SLACK_API_BASE_URL"
)


def _epilog(*lines: str) -> str:
    """The environment variables a command reads (every line but the last), then its exit statuses."""
    *env, status = lines
    env.append("SPENDWATCH_DEBUG=1: print the traceback of an unexpected error")
    return "environment:\n" + "\n".join(f"  {line}" for line in env) + f"\n\n{status}"


def _aws_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="AWS region (default: AWS_REGION, or your profile's region)")
    parser.add_argument("--profile", help="AWS profile from ~/.aws/config (default: AWS_PROFILE)")


def _sub(sub: Any, name: str, help_text: str, *epilog: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=_epilog(*epilog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    from spendwatch import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="spendwatch",
        description="Watch an OpenAI organization's money.",
        epilog="exit status: 0 success; 1 the command ran and found a problem (or failed); 2 bad usage or input. "
        "`spendwatch COMMAND --help` lists the environment variables each command reads.",
    )
    parser.add_argument("--version", action="version", version=f"spendwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = _sub(
        sub,
        "demo",
        "run the whole pipeline locally (no AWS account or OpenAI key needed)",
        "OPENAI_ADMIN_KEY (poll your organization instead of the simulated one), OPENAI_BASE_URL, SPENDWATCH_CONFIG",
        "SLACK_WEBHOOK_URL, or SLACK_BOT_TOKEN and SLACK_CHANNEL (post to your Slack instead of a local stand-in)",
        "exit status: 0 the pipeline ran; 1 nothing polled or a record dead-lettered; 2 config error, no extra",
    )
    demo.set_defaults(func=cmd_demo)
    config = sub.add_parser("config", help="check, describe or deploy the config file")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    validate = _sub(
        config_sub,
        "validate",
        "validate a config file; non-zero exit when invalid",
        "the Slack webhook variables the config names (SLACK_WEBHOOK_URL by default): checked for shape, never printed",
        "exit status: 0 valid (warnings allowed); 1 invalid, or a warning with --strict",
    )
    validate.add_argument("file")
    validate.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    validate.set_defaults(func=cmd_config_validate)
    schema = _sub(config_sub, "schema", "print the config's JSON Schema (for editors)", "exit status: 0")
    schema.set_defaults(func=cmd_config_schema)
    push = _sub(
        config_sub,
        "push",
        "validate, show the changes against the deployed config, then store the config in SSM",
        AWS_ENV,
        "exit status: 0 pushed, unchanged or --dry-run; 1 invalid, too large, or AWS refused or was unreachable",
    )
    push.add_argument("file")
    push.add_argument(
        "--parameter",
        default=DEFAULT_CONFIG_PARAMETER,
        help=f"the stack's ConfigParameterName (default {DEFAULT_CONFIG_PARAMETER})",
    )
    push.add_argument("--dry-run", action="store_true", help="validate and show the changes; store nothing")
    _aws_options(push)
    push.set_defaults(func=cmd_config_push)
    bundle = _sub(
        config_sub,
        "bundle",
        "validate, then write the config into the layer as the functions' cold-start fallback",
        "exit status: 0 written; 1 the file is invalid (nothing written)",
    )
    bundle.add_argument("file")
    bundle.add_argument("--out", default=str(BUNDLED_CONFIG_FILE), help="default: %(default)s")
    bundle.set_defaults(func=cmd_config_bundle)
    verify = _sub(
        sub,
        "verify",
        "prove the deployed stack works: poll now, follow the snapshot to the alerter, post to every channel",
        AWS_ENV,
        "exit status: 0 every step passed; 1 a step failed (its fix is printed); 2 bad usage",
    )
    verify.add_argument("--stack", default="spendwatch", help="the CloudFormation stack (default: spendwatch)")
    verify.add_argument("--org", help="only this organization id")
    verify.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for the alerter's report (default 120)",
    )
    _aws_options(verify)
    verify.set_defaults(func=cmd_verify)
    poll = _sub(
        sub,
        "poll",
        "poll OpenAI once and print the snapshot (no AWS needed)",
        LOCAL_CONFIG_ENV,
        OPENAI_ENV,
        "exit status: 0 some data was collected; 1 nothing could be collected; 2 a config error",
    )
    poll.add_argument("--org", help="only this organization id")
    poll.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    _budget_option(poll)
    poll.set_defaults(func=cmd_poll)
    check = _sub(
        sub,
        "check",
        "print the alerts the rules would fire now, without sending anything",
        LOCAL_CONFIG_ENV,
        OPENAI_ENV,
        "exit status: 0 checked (whether or not alerts would fire); 1 nothing could be polled; 2 config or input error",
    )
    check.add_argument("--org", help="only this organization id")
    check.add_argument("--snapshot", metavar="FILE", help="a snapshot as printed by `poll --json` instead of a poll")
    check.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    _budget_option(check)
    check.set_defaults(func=cmd_check)
    report = _sub(
        sub,
        "report",
        "write one self-contained HTML page of a month's spend",
        "SNAPSHOTS_TABLE (the deployed table when --table is not given), " + AWS_ENV,
        LOCAL_CONFIG_ENV,
        OPENAI_ENV + " (without a table: a fresh local poll)",
        "exit status: 0 written; 1 written but no organization had data; 2 bad input or an unreadable table",
    )
    report.add_argument("--org", help="only this organization id")
    report.add_argument("--month", metavar="YYYY-MM", help="the UTC month (default: this month)")
    report.add_argument(
        "--out", metavar="FILE", help="where to write the page (default: spendwatch-report-<month>.html)"
    )
    report.add_argument(
        "--table",
        metavar="NAME",
        help="the deployed snapshots table (default: SNAPSHOTS_TABLE; none: a fresh local poll)",
    )
    report.set_defaults(func=cmd_report)
    test_alert = _sub(
        sub,
        "test-alert",
        "send a test message to every configured channel, with local credentials",
        LOCAL_CONFIG_ENV,
        SLACK_ENV + "; AWS credentials and region for e-mail (SES)",
        "SPENDWATCH_SLACK_TIMEOUT_S, SPENDWATCH_SLACK_CONNECT_TIMEOUT_S, SPENDWATCH_SES_CONNECT_TIMEOUT_S, "
        "SPENDWATCH_SES_READ_TIMEOUT_S",
        "exit status: 0 every channel accepted it; 1 a channel failed or did not confirm; 2 a config error",
    )
    test_alert.add_argument("--channel", help="only this channel")
    test_alert.set_defaults(func=cmd_test_alert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Everything the tool prints, tracebacks included, passes through the secret scrubber: a key a reply
    # echoed into a message is never printed (`spendwatch.core.redact`).
    from spendwatch.core.redact import ScrubbingStream  # noqa: PLC0415

    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = ScrubbingStream(out), ScrubbingStream(err)
    try:
        return _run(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = out, err


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        _print_problem(exc)
        return 2
    except SpendwatchError as exc:
        _print_err(f"error: {' '.join(str(exc).split())}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A bug: one scrubbed line (the traceback only on request), never a secret-bearing trace dump.
        if os.environ.get("SPENDWATCH_DEBUG"):
            import traceback  # noqa: PLC0415

            traceback.print_exc(file=sys.stderr)
        detail = " ".join(str(exc).split())
        _print_err(f"error: unexpected {type(exc).__name__}: {detail} (set SPENDWATCH_DEBUG=1 for the traceback)")
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
