"""DynamoDB access: the snapshots table (written by the poller) and the alert-state table (the alerter's
notification log). The only module that talks to DynamoDB; it returns domain models, not raw items.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from spendwatch.alerts import AlertState
from spendwatch.snapshot import Snapshot, org_pk

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_attribute_map(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def from_attribute_map(image: dict[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(value) for key, value in image.items()}


def _client() -> DynamoDBClient:
    import boto3  # noqa: PLC0415 - created on first use so importing the module stays cheap

    return boto3.client("dynamodb")


class SnapshotStore:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self._table = table_name
        self._client = client or _client()

    def put_snapshot(self, snapshot: Snapshot, *, expires_at: int) -> bool:
        """Write the snapshot once per (org, poll time). Returns False when it already existed.

        A retried invocation for the same scheduled time therefore produces no second stream INSERT.
        """
        try:
            self._client.put_item(
                TableName=self._table,
                Item=to_attribute_map(snapshot.to_item(expires_at=expires_at)),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    # What the alerter's history needs (streaks of failed sources, key conditions, newer polls): not the
    # breakdowns, usage and daily series, which make a full snapshot ~10 KB and the current one carries.
    HISTORY_FIELDS = (
        "pk",
        "sk",
        "kind",
        "schema_version",
        "org_id",
        "org_name",
        "poll_time",
        "collected_at",
        "month_to_date_usd",
        "failures",
        "sources_ok",
        "conditions",
        "verify",
    )

    def recent_snapshots(
        self, org_id: str, *, since: datetime, limit: int = 48, summary_only: bool = True
    ) -> list[Snapshot]:
        """The org's newest snapshots since `since`, newest first, at most `limit` of them.

        With `summary_only` (the alerter's case) only `HISTORY_FIELDS` are read, so a day of hourly
        polls costs a few KB of reads instead of a few hundred.
        """
        from spendwatch.snapshot import snapshot_sk  # noqa: PLC0415

        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk >= :since",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(org_id)}, ":since": {"S": snapshot_sk(since)}},
            "ScanIndexForward": False,
        }
        if summary_only:
            names = {f"#f{i}": name for i, name in enumerate(self.HISTORY_FIELDS)}
            request["ProjectionExpression"] = ", ".join(names)
            request["ExpressionAttributeNames"] = names
        items: list[dict[str, Any]] = []
        while len(items) < limit:
            response = self._client.query(**request, Limit=limit - len(items))
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return [Snapshot.from_item(from_attribute_map(item)) for item in items]

    def newest_poll_time(self, org_id: str) -> datetime | None:
        """The poll time of the org's newest snapshot (keys only: one small Query), or None if there is none."""
        from spendwatch.snapshot import parse_utc  # noqa: PLC0415

        response = self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :snap)",
            ExpressionAttributeValues={":pk": {"S": org_pk(org_id)}, ":snap": {"S": "SNAP#"}},
            ProjectionExpression="sk",
            ScanIndexForward=False,
            Limit=1,
        )
        items = response.get("Items", [])
        return parse_utc(items[0]["sk"]["S"].removeprefix("SNAP#")) if items else None

    def snapshot_at_or_before(self, org_id: str, moment: datetime) -> Snapshot | None:
        """The org's newest whole snapshot polled at or before `moment` (one Query, `Limit: 1`), or None.

        The digest and the report read the month-to-date breakdowns at period and day boundaries this way.
        """
        from spendwatch.snapshot import snapshot_sk  # noqa: PLC0415

        response = self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :until",
            ExpressionAttributeValues={
                ":pk": {"S": org_pk(org_id)},
                ":first": {"S": "SNAP#"},
                ":until": {"S": snapshot_sk(moment)},
            },
            ScanIndexForward=False,
            Limit=1,
        )
        items = response.get("Items", [])
        return Snapshot.from_item(from_attribute_map(items[0])) if items else None

    def snapshots_between(self, org_id: str, start: datetime, end: datetime) -> list[Snapshot]:
        """Every poll of the org in [start, end), oldest first, as `HISTORY_FIELDS` only (a few hundred
        bytes each): what the health figures of a digest or report count."""
        from spendwatch.snapshot import snapshot_sk  # noqa: PLC0415

        names = {f"#f{i}": name for i, name in enumerate(self.HISTORY_FIELDS)}
        request: dict[str, Any] = {
            "TableName": self._table,
            # `sk < end`: BETWEEN is inclusive, so the end bound is the last second before `end`.
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :start AND :end",
            "ExpressionAttributeValues": {
                ":pk": {"S": org_pk(org_id)},
                ":start": {"S": snapshot_sk(start)},
                ":end": {"S": snapshot_sk(end - timedelta(seconds=1))},
            },
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
        }
        items: list[dict[str, Any]] = []
        while True:
            response = self._client.query(**request)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return [Snapshot.from_item(from_attribute_map(item)) for item in items]


class ClaimLostError(Exception):
    """Another invocation changed or is sending this alert; the caller must not send."""


DYNAMODB_MAX_DIGITS = 38
"""DynamoDB numbers: at most 38 significant digits, magnitude 1E-130 to under 1E+126."""
_DYNAMODB_MIN_ADJUSTED = -130
_DYNAMODB_MAX_ADJUSTED = 125
_PLAIN_NUMBER_CHARS = 48


def level_attributes(level: Decimal) -> tuple[str, dict[str, str]]:
    """Where and how a notified level is stored so that it always round-trips exactly.

    A number DynamoDB can hold goes in `notified_level` (N, normalized); any other Decimal (more than
    38 significant digits, out of DynamoDB's range, not finite) goes in `notified_level_s` as its exact
    string. Writing the level therefore can never fail on its value: a failure there used to come after
    the message was sent, so the alert was sent again on every poll.
    """
    if level.is_finite():
        # The default context (28 digits) would round while normalizing: give it every digit there is.
        exact = Context(prec=max(1, len(level.as_tuple().digits)), Emax=MAX_EMAX, Emin=MIN_EMIN)
        normal = level.normalize(exact)
        digits = len(normal.as_tuple().digits)
        if normal.is_zero():
            return "notified_level", {"N": "0"}
        if digits <= DYNAMODB_MAX_DIGITS and _DYNAMODB_MIN_ADJUSTED <= normal.adjusted() <= _DYNAMODB_MAX_ADJUSTED:
            plain = format(normal, "f")  # "80", not "8E+1", for whoever reads the table
            return "notified_level", {"N": plain if len(plain) <= _PLAIN_NUMBER_CHARS else str(normal)}
    return "notified_level_s", {"S": str(level)}


class AlertStateStore:
    """Conditional writes make "send once" hold across redeliveries and concurrent invocations.

    Protocol per alert and channel: `claim` (optimistic on `version`, refused while another claim is
    live), send, then `mark_sent` (bumps `version`) or `release` on failure. A send whose outcome is
    unknown is recorded by `mark_sent` too, with `resend_after` (see `decide.should_notify`). A send
    that cannot be recorded is `hold`-ed: the claim is extended for a long lease and marked, so no
    retry sends it again while the table misbehaves. A crash between send and `mark_sent` leaves a claim
    that lapses after its (short) lease, so the alert is retried: a rare duplicate rather than a miss.
    """

    def __init__(self, table_name: str, client: DynamoDBClient | None = None, *, lease_s: int = 180) -> None:
        self._table = table_name
        self._client = client or _client()
        self._lease_s = lease_s

    @staticmethod
    def _key(org_id: str, key: str) -> dict[str, Any]:
        return {"pk": {"S": org_pk(org_id)}, "sk": {"S": f"ALERT#{key}"}}

    def get_many(self, org_id: str, keys: list[str]) -> dict[str, AlertState]:
        if not keys:
            return {}
        states: dict[str, AlertState] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):
            # Strongly consistent: a decision taken on a stale version would lose its claim.
            request: Any = {
                self._table: {
                    "Keys": [self._key(org_id, k) for k in unique[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                response = self._client.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self._table, []):
                    item = from_attribute_map(raw)
                    state = _state_from_item(item)
                    states[state.key] = state
                request = response.get("UnprocessedKeys") or None
        return states

    def claim(
        self,
        org_id: str,
        key: str,
        *,
        expected_version: int,
        now: datetime,
        expires_at: int,
        lease_s: int | None = None,
    ) -> None:
        """Take the alert for sending. `lease_s` should end with the claimant's invocation (its remaining
        time plus a margin): a claimant that dies leaves a claim that lapses when its retry can start."""
        now_s = int(now.timestamp())
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(org_id, key),
                UpdateExpression="SET pending_until = :until, expires_at = :exp, alert_key = :key REMOVE held_at",
                ConditionExpression=(
                    "(attribute_not_exists(version) OR version = :version) "
                    "AND (attribute_not_exists(pending_until) OR pending_until < :now)"
                ),
                ExpressionAttributeValues={
                    ":until": {"N": str(now_s + (lease_s if lease_s is not None else self._lease_s))},
                    ":now": {"N": str(now_s)},
                    ":version": {"N": str(expected_version)},
                    ":exp": {"N": str(expires_at)},
                    ":key": {"S": key},
                },
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            raise ClaimLostError(key) from None

    def mark_sent(
        self,
        org_id: str,
        key: str,
        *,
        level: Decimal | None,
        firing: bool,
        now: datetime,
        reason: str,
        resend_after: int | None = None,
    ) -> None:
        """Record a message as sent (and release the claim). `resend_after` (epoch seconds): the delivery
        was not confirmed; from then on the alert is re-sent once if still due (`decide.should_notify`)."""
        values: dict[str, Any] = {
            ":at": {"S": now.isoformat()},
            ":firing": {"BOOL": firing},
            ":one": {"N": "1"},
            ":zero": {"N": "0"},
            ":reason": {"S": reason},
        }
        sets = ["notified_at = :at", "firing = :firing", "last_reason = :reason"]
        removes = ["pending_until", "held_at"]
        if level is None:
            sets.append("notified_level = :level")
            values[":level"] = {"NULL": True}
            removes.append("notified_level_s")
        else:
            name, value = level_attributes(level)
            sets.append(f"{name} = :level")
            values[":level"] = value
            removes.append("notified_level_s" if name == "notified_level" else "notified_level")
        if resend_after is not None:
            sets += ["unconfirmed_at = :at", "resend_after = :resend"]
            values[":resend"] = {"N": str(resend_after)}
        else:
            removes += ["unconfirmed_at", "resend_after"]
        sets.append("version = if_not_exists(version, :zero) + :one")
        self._client.update_item(
            TableName=self._table,
            Key=self._key(org_id, key),
            UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            ExpressionAttributeValues=values,
        )

    def hold(self, org_id: str, key: str, *, now: datetime, lease_s: int) -> None:
        """Keep the claim of a sent alert that could not be recorded, for `lease_s`, marked as held: an
        evaluation that finds it live skips the alert instead of sending it again."""
        now_s = int(now.timestamp())
        self._client.update_item(
            TableName=self._table,
            Key=self._key(org_id, key),
            UpdateExpression="SET pending_until = :until, held_at = :now",
            ExpressionAttributeValues={":until": {"N": str(now_s + lease_s)}, ":now": {"N": str(now_s)}},
        )

    def release(self, org_id: str, key: str) -> None:
        self._client.update_item(
            TableName=self._table, Key=self._key(org_id, key), UpdateExpression="REMOVE pending_until, held_at"
        )

    def record_check(self, org_id: str, key: str, *, ok: bool, reason: str, detail: str, now: datetime) -> None:
        """Record the outcome of a `spendwatch verify` message (after its send, like `mark_sent`): the version
        bumps and the claim is released, so a redelivered record never posts it again. Kept a day."""
        self._client.update_item(
            TableName=self._table,
            Key=self._key(org_id, key),
            UpdateExpression=(
                "SET notified_at = :at, check_ok = :ok, last_reason = :reason, check_detail = :detail, "
                "expires_at = :exp, version = if_not_exists(version, :zero) + :one REMOVE pending_until, held_at"
            ),
            ExpressionAttributeValues={
                ":at": {"S": now.isoformat()},
                ":ok": {"BOOL": ok},
                ":reason": {"S": reason},
                ":detail": {"S": detail[:2000]},
                ":exp": {"N": str(int(now.timestamp()) + 86400)},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
            },
        )

    def check_result(self, org_id: str, key: str) -> dict[str, Any] | None:
        """What `record_check` stored for `key`, or None while nothing is recorded (`spendwatch verify` reads it)."""
        item = self._client.get_item(TableName=self._table, Key=self._key(org_id, key), ConsistentRead=True).get("Item")
        if not item or "check_ok" not in item:
            return None
        return from_attribute_map(item)

    def notified_between(self, org_id: str, start: datetime, end: datetime) -> list[AlertState]:
        """The org's notification-log entries whose last notification was in [start, end) (one Query,
        paginated): what a digest reports as "alerts sent this period"."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :alert)",
            # `spendwatch verify`'s messages (check_ok) are not alerts.
            "FilterExpression": "notified_at >= :start AND notified_at < :end AND attribute_not_exists(check_ok)",
            "ExpressionAttributeValues": {
                ":pk": {"S": org_pk(org_id)},
                ":alert": {"S": "ALERT#"},
                ":start": {"S": start.isoformat()},
                ":end": {"S": end.isoformat()},
            },
        }
        states: list[AlertState] = []
        while True:
            response = self._client.query(**request)
            states.extend(_state_from_item(from_attribute_map(item)) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return states


def _state_from_item(item: dict[str, Any]) -> AlertState:
    level = item.get("notified_level")
    exact = item.get("notified_level_s")
    notified_at = item.get("notified_at")
    pending = item.get("pending_until")
    resend_after = item.get("resend_after")
    reason = item.get("last_reason")
    return AlertState(
        key=str(item["alert_key"]),
        version=int(item.get("version", 0)),
        notified_level=Decimal(str(exact)) if exact is not None else Decimal(level) if level is not None else None,
        notified_at=datetime.fromisoformat(str(notified_at)) if notified_at else None,
        firing=bool(item.get("firing", False)),
        pending_until=int(pending) if pending is not None else None,
        resend_after=int(resend_after) if resend_after is not None else None,
        last_reason=str(reason) if reason is not None else None,
        held=item.get("held_at") is not None,
    )


def ttl_epoch(now: datetime, days: int) -> int:
    return int(now.timestamp()) + days * 86400


def epoch_now() -> int:
    return int(time.time())
