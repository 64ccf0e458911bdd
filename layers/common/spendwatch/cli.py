"""The `spendwatch` command line: demo, config validate/push, poll.

Command output goes to stdout; logs and diagnostics go to stderr. Exit status is non-zero on error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from spendwatch.errors import ConfigError, SpendwatchError

DEFAULT_CONFIG_PARAMETER = "/spendwatch/config"
SSM_STANDARD_LIMIT_BYTES = 4096


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


def cmd_config_push(args: argparse.Namespace) -> int:
    from spendwatch.config import load_config_file  # noqa: PLC0415

    path = Path(args.file)
    try:
        load_config_file(path)
    except ConfigError as exc:
        _print_err(f"{exc}\nnot pushed: the deployed functions keep their current config")
        return 1
    text = path.read_text(encoding="utf-8")
    if len(text.encode()) > SSM_STANDARD_LIMIT_BYTES:
        _print_err(f"{path}: {len(text.encode())} bytes, over the 4 KB of a standard SSM parameter; shorten comments")
        return 1
    import boto3  # noqa: PLC0415

    boto3.client("ssm").put_parameter(Name=args.parameter, Value=text, Type="String", Overwrite=True)
    print(f"pushed {path} to SSM parameter {args.parameter}; the functions pick it up within a minute")
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    from spendwatch.config import resolve_local_config  # noqa: PLC0415
    from spendwatch.money import dumps_exact  # noqa: PLC0415
    from spendwatch.openai_api import DEFAULT_BASE_URL, OpenAIClient  # noqa: PLC0415
    from spendwatch.poll import collect_snapshot  # noqa: PLC0415
    from spendwatch.secrets import EnvSecrets, require  # noqa: PLC0415

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
    now = datetime.now(UTC)
    snapshots = []
    for org in orgs:
        admin_ref, session_ref = org.admin_key_ref(), org.session_key_ref()
        client = OpenAIClient(
            admin_key=lambda force, ref=admin_ref: require(secrets, ref, "OpenAI admin key"),  # type: ignore[misc]
            session_key=(lambda force, ref=session_ref: require(secrets, ref, "session key"))  # type: ignore[misc]
            if secrets.get(session_ref)
            else None,
            base_url=os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL),
        )
        snapshots.append(collect_snapshot(org, client, poll_time=now.replace(microsecond=0), now=lambda: now))
    if args.json:
        docs = [s.to_json_dict() for s in snapshots]
        print(dumps_exact(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        for snap in snapshots:
            spent = "unknown" if snap.month_to_date_usd is None else f"${snap.month_to_date_usd}"
            through = snap.data_through
            print(f"{snap.org_name} ({snap.org_id}) {snap.period}: month-to-date {spent}, data through {through}")
            for failure in snap.failures:
                print(f"  failed source {failure.source} [{failure.kind}]: {failure.detail}")
    for snap in snapshots:
        for failure in snap.failures:
            _print_err(f"{snap.org_id}: source {failure.source} failed [{failure.kind}]: {failure.detail}")
    return 0 if any(s.sources_ok for s in snapshots) else 1


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
    poll = sub.add_parser("poll", help="poll OpenAI once and print the snapshot (no AWS needed)")
    poll.add_argument("--org", help="only this organization id")
    poll.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    poll.set_defaults(func=cmd_poll)
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
