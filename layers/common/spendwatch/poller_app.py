"""The poller's work for one scheduled invocation: poll each organization and store one snapshot each.

Kept out of the handler so the handler stays a few lines and tests can inject the store, secrets and clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from spendwatch.config import OrganizationConfig, SpendwatchConfig
from spendwatch.errors import NothingCollectedError, SecretNotFoundError
from spendwatch.observability import logger, metrics
from spendwatch.openai_api import Deadline, OpenAIClient
from spendwatch.poll import collect_snapshot
from spendwatch.runtime import PollerEnv, SsmConfigSource, utc_now
from spendwatch.secrets import SecretSource, SsmSecrets, require
from spendwatch.snapshot import Snapshot, isoformat_utc, parse_utc
from spendwatch.store import SnapshotStore, ttl_epoch


def poll_time_from_event(event: Mapping[str, Any], now: datetime) -> datetime:
    """The scheduled time of the invocation (a retry carries the same one); manual invokes use the minute."""
    scheduled = event.get("time") if isinstance(event, Mapping) else None
    if isinstance(scheduled, str):
        return parse_utc(scheduled)
    return now.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass
class PollerApp:
    env: PollerEnv
    config: Callable[[], SpendwatchConfig]
    secrets: SecretSource
    store: SnapshotStore
    now: Callable[[], datetime] = utc_now

    @classmethod
    def from_environment(cls) -> PollerApp:
        env = PollerEnv.from_environ()
        return cls(
            env=env,
            config=SsmConfigSource(env.spendwatch_config_parameter).get,
            secrets=SsmSecrets(),
            store=SnapshotStore(env.snapshots_table),
        )

    def client_for(self, org: OrganizationConfig, remaining_ms: Callable[[], int] | None) -> OpenAIClient:
        secrets = self.secrets

        def admin_key(force: bool) -> str:
            return require(secrets, org.admin_key_ref(), f"OpenAI admin key of {org.id}", force_fetch=force)

        def session_key(force: bool) -> str:
            return require(secrets, org.session_key_ref(), f"OpenAI session key of {org.id}", force_fetch=force)

        try:
            has_session = secrets.get(org.session_key_ref()) is not None
        except SecretNotFoundError:
            has_session = False
        return OpenAIClient(
            admin_key=admin_key,
            session_key=session_key if has_session else None,
            base_url=self.env.openai_base_url,
            deadline=Deadline(remaining_ms),
        )

    def poll_one(
        self, org: OrganizationConfig, poll_time: datetime, remaining_ms: Callable[[], int] | None
    ) -> Snapshot:
        snapshot = collect_snapshot(org, self.client_for(org, remaining_ms), poll_time=poll_time, now=self.now)
        written = self.store.put_snapshot(
            snapshot, expires_at=ttl_epoch(snapshot.collected_at, self.env.snapshot_retention_days)
        )
        for failure in snapshot.failures:
            logger.warning(
                "source failed", org_id=org.id, source=failure.source, kind=failure.kind, detail=failure.detail
            )
        metrics.add_metric(name="SourceFailures", unit="Count", value=len(snapshot.failures))
        if written:
            metrics.add_metric(name="SnapshotsWritten", unit="Count", value=1)
        logger.info(
            "snapshot stored" if written else "snapshot already stored for this poll time",
            org_id=org.id,
            poll_time=isoformat_utc(poll_time),
            month_to_date_usd=str(snapshot.month_to_date_usd),
            sources_ok=list(snapshot.sources_ok),
        )
        return snapshot

    def run(self, event: Mapping[str, Any], remaining_ms: Callable[[], int] | None = None) -> dict[str, Any]:
        poll_time = poll_time_from_event(event, self.now())
        config = self.config()
        wanted = event.get("org_id") if isinstance(event, Mapping) else None
        orgs = [o for o in config.organizations if wanted in (None, o.id)]
        results: dict[str, Any] = {}
        empty: list[str] = []
        for org in orgs:
            snapshot = self.poll_one(org, poll_time, remaining_ms)
            results[org.id] = {
                "month_to_date_usd": None if snapshot.month_to_date_usd is None else str(snapshot.month_to_date_usd),
                "failed_sources": [f.source for f in snapshot.failures],
            }
            if not snapshot.sources_ok:
                empty.append(org.id)
        if empty:
            # The snapshots listing the failures are stored; failing the invocation raises the Errors alarm.
            raise NothingCollectedError(f"nothing could be collected for: {', '.join(empty)}")
        return {"poll_time": isoformat_utc(poll_time), "organizations": results}
