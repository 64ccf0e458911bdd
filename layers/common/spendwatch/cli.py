"""The `spendwatch` command line: demo, config validate/push/bundle, poll, check, test-alert.

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

from spendwatch.errors import ConfigError, SpendwatchError

if TYPE_CHECKING:
    from spendwatch.config import SpendwatchConfig
    from spendwatch.snapshot import Snapshot

DEFAULT_CONFIG_PARAMETER = "/spendwatch/config"
POLL_BUDGET_S = 120.0
"""`spendwatch poll`: the time one organization's poll may take, retries included (as a Lambda's timeout)."""
SSM_STANDARD_LIMIT_BYTES = 4096
BUNDLED_CONFIG_FILE = Path("layers/common/spendwatch/bundled_config.json")
"""Where `config bundle` writes by default: next to spendwatch.runtime in the layer (run from the checkout)."""


def _print_err(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_demo(_: argparse.Namespace) -> int:
    try:
        from spendwatch.devtools.demo import run_demo  # noqa: PLC0415
    except ImportError as exc:
        _print_err(f"spendwatch demo needs the development extras ({exc.name} missing): pip install -e '.[dev]'")
        return 2
    return run_demo()


def cmd_config_validate(args: argparse.Namespace) -> int:
    from spendwatch.config import load_config_file  # noqa: PLC0415

    try:
        config = load_config_file(Path(args.file))
    except ConfigError as exc:
        _print_err(str(exc))
        return 1
    orgs = ", ".join(o.id for o in config.organizations)
    channels = ", ".join(config.channels) or "none"
    print(f"{args.file}: valid ({len(config.organizations)} organization(s): {orgs}; channels: {channels})")
    return 0


def _canonical_config(path: Path, *, not_done: str) -> str | None:
    """The validated config file as the canonical JSON the functions read, or None (error printed)."""
    from spendwatch.config import canonical_config_text, load_document, validate_config  # noqa: PLC0415

    try:
        text = path.read_text(encoding="utf-8")
        data = load_document(text, str(path))
        validate_config(data, str(path))
    except FileNotFoundError:
        _print_err(f"{path}: file not found")
        return None
    except ConfigError as exc:
        _print_err(f"{exc}\n{not_done}")
        return None
    # The functions read this canonical JSON without a YAML parser; comments and layout are not stored.
    return canonical_config_text(data)


def cmd_config_push(args: argparse.Namespace) -> int:
    path = Path(args.file)
    canonical = _canonical_config(path, not_done="not pushed: the deployed functions keep their current config")
    if canonical is None:
        return 1
    size = len(canonical.encode())
    if size > SSM_STANDARD_LIMIT_BYTES:
        _print_err(f"{path}: {size} bytes as stored, over the 4 KB of a standard SSM parameter")
        return 1
    import boto3  # noqa: PLC0415

    boto3.client("ssm").put_parameter(Name=args.parameter, Value=canonical, Type="String", Overwrite=True)
    print(f"pushed {path} ({size} bytes) to SSM parameter {args.parameter}; the functions pick it up within a minute")
    return 0


def cmd_config_bundle(args: argparse.Namespace) -> int:
    """Write the config file's canonical JSON where the layer build ships it (the cold-start fallback)."""
    path, out = Path(args.file), Path(args.out)
    canonical = _canonical_config(path, not_done=f"not written: {out} is unchanged")
    if canonical is None:
        return 1
    out.write_text(canonical + "\n", encoding="utf-8")
    print(f"wrote {path} as {out}; it ships with the next `sam build` (docs/deploy.md)")
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    """One poll per organization, printed; no AWS needed (keys and config from the environment).

    With --json, stdout holds exactly one JSON document (an object for one organization, a list for
    several); diagnostics go to stderr. Exit 0 when a snapshot holds any data (failed sources are listed
    in it), 1 when nothing could be collected, 2 on a config error.
    """
    from spendwatch.config import resolve_local_config  # noqa: PLC0415
    from spendwatch.money import dumps_exact  # noqa: PLC0415
    from spendwatch.openai_api import DEFAULT_BASE_URL, Deadline, OpenAIClient  # noqa: PLC0415
    from spendwatch.poll import collect_snapshot  # noqa: PLC0415
    from spendwatch.secrets import EnvSecrets  # noqa: PLC0415

    try:
        config = resolve_local_config(os.environ)
    except ConfigError as exc:
        _print_err(str(exc))
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
        client = OpenAIClient.for_org(org, secrets, base_url=base_url, deadline=Deadline(budget_s=POLL_BUDGET_S))
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
    """Failed sources grouped by cause: a rejected key fails every source with the same message."""
    by_cause: dict[tuple[str, str], list[str]] = {}
    for failure in snap.failures:
        by_cause.setdefault((failure.kind, failure.detail), []).append(failure.source)
    lines = [f"  failed [{kind}] {detail}: {', '.join(sources)}" for (kind, detail), sources in by_cause.items()]
    lines += [f"  condition: {condition}" for condition in snap.conditions]
    return lines


def _poll_summary(snap: Snapshot) -> str:
    from spendwatch.money import format_usd  # noqa: PLC0415

    def usd(amount: Decimal | None) -> str:
        return "unknown" if amount is None else format_usd(amount)

    lines = [
        f"{snap.org_name} ({snap.org_id}) {snap.period}: month-to-date {usd(snap.month_to_date_usd)}, "
        f"data through {snap.data_through}, previous month {usd(snap.previous_month_usd)}",
        f"  sources: {len(snap.sources_ok)} ok, {len(snap.failures)} failed"
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

    from spendwatch.snapshot import Snapshot  # noqa: PLC0415

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), [f"not a snapshot JSON file: {exc}"]) from None
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
    from spendwatch.config import resolve_local_config  # noqa: PLC0415
    from spendwatch.money import dumps_exact  # noqa: PLC0415

    try:
        config = resolve_local_config(os.environ)
        snapshots = _load_snapshots(Path(args.snapshot)) if args.snapshot else None
    except SpendwatchError as exc:
        _print_err(str(exc))
        return 2
    known = [o.id for o in config.organizations]
    if args.org is not None and args.org not in known:
        _print_err(f"no organization {args.org!r} in the config (known: {', '.join(known)})")
        return 2
    if snapshots is None:
        snapshots = _fresh_snapshots(config, args.org)
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
    from spendwatch.alerting import policy_for  # noqa: PLC0415
    from spendwatch.decide import Action, Reason, should_notify  # noqa: PLC0415
    from spendwatch.render import Alert, describe  # noqa: PLC0415
    from spendwatch.rules import evaluate  # noqa: PLC0415
    from spendwatch.snapshot import isoformat_utc  # noqa: PLC0415

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


def _fresh_snapshots(config: SpendwatchConfig, org_id: str | None) -> list[Snapshot]:
    from spendwatch.openai_api import DEFAULT_BASE_URL, Deadline, OpenAIClient  # noqa: PLC0415
    from spendwatch.poll import collect_snapshot  # noqa: PLC0415
    from spendwatch.secrets import EnvSecrets  # noqa: PLC0415

    secrets = EnvSecrets()
    base_url = os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)
    poll_time = datetime.now(UTC).replace(microsecond=0)
    return [
        collect_snapshot(
            org,
            OpenAIClient.for_org(org, secrets, base_url=base_url, deadline=Deadline(budget_s=POLL_BUDGET_S)),
            poll_time=poll_time,
            now=lambda: datetime.now(UTC),
        )
        for org in config.organizations
        if org_id in (None, org.id)
    ]


def cmd_test_alert(args: argparse.Namespace) -> int:
    """Send a clearly marked test message to every configured channel (or one), with local credentials.

    Exit 0 when every channel accepted it; 1 naming each channel that failed; 2 on a config error.
    """
    from spendwatch.channels import sender_factory  # noqa: PLC0415
    from spendwatch.config import resolve_local_config  # noqa: PLC0415
    from spendwatch.errors import DeliveryError  # noqa: PLC0415
    from spendwatch.notices import notice_message  # noqa: PLC0415
    from spendwatch.secrets import EnvSecrets  # noqa: PLC0415
    from spendwatch.snapshot import isoformat_utc  # noqa: PLC0415

    try:
        config = resolve_local_config(os.environ)
    except ConfigError as exc:
        _print_err(str(exc))
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
                f"Alerts for {', '.join(orgs) or 'no organization'} are sent here.",
            ],
            context=f"Sent {sent_at} by `spendwatch test-alert`.",
        )
        try:
            build(name, config.channels[name]).send(message)
        except DeliveryError as exc:
            failed.append(name)
            kind = "retryable" if exc.retryable else "permanent"
            print(f"{name}: FAILED ({exc.reason}, {kind}): {exc.detail}")
            continue
        print(f"{name}: sent")
    if failed:
        _print_err(f"test message not delivered to: {', '.join(failed)}")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spendwatch", description="Watch an OpenAI organization's money.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the whole pipeline locally (no AWS account or OpenAI key needed)")
    demo.set_defaults(func=cmd_demo)
    config = sub.add_parser("config", help="check or deploy the config file")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    validate = config_sub.add_parser("validate", help="validate a config file; non-zero exit when invalid")
    validate.add_argument("file")
    validate.set_defaults(func=cmd_config_validate)
    push = config_sub.add_parser("push", help="validate, then store the config in SSM for the deployed functions")
    push.add_argument("file")
    push.add_argument("--parameter", default=DEFAULT_CONFIG_PARAMETER)
    push.set_defaults(func=cmd_config_push)
    bundle = config_sub.add_parser(
        "bundle", help="validate, then write the config into the layer as the functions' cold-start fallback"
    )
    bundle.add_argument("file")
    bundle.add_argument("--out", default=str(BUNDLED_CONFIG_FILE), help="default: %(default)s")
    bundle.set_defaults(func=cmd_config_bundle)
    poll = sub.add_parser("poll", help="poll OpenAI once and print the snapshot (no AWS needed)")
    poll.add_argument("--org", help="only this organization id")
    poll.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    poll.set_defaults(func=cmd_poll)
    check = sub.add_parser("check", help="print the alerts the rules would fire now, without sending anything")
    check.add_argument("--org", help="only this organization id")
    check.add_argument("--snapshot", metavar="FILE", help="a snapshot as printed by `poll --json` instead of a poll")
    check.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    check.set_defaults(func=cmd_check)
    test_alert = sub.add_parser("test-alert", help="send a test message to every configured channel")
    test_alert.add_argument("--channel", help="only this channel")
    test_alert.set_defaults(func=cmd_test_alert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SpendwatchError as exc:
        _print_err(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
