"""DynamoDB access: the snapshots table (written by the poller) and the alert-state table (the alerter's
notification log). The only module that talks to DynamoDB; it returns domain models, not raw items.

The snapshots table holds, per organization, each poll's snapshot (`ORG#<id>` / `SNAP#<poll time>`) and,
written in the same transaction, its history summary (`ORG#<id>#HISTORY` / `HIST#<poll time>`,
`snapshot.SnapshotSummary`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, Binary, TypeSerializer

from spendwatch.core.alerts import AlertState
from spendwatch.core.errors import SpendwatchError
from spendwatch.core.snapshot import (
    HISTORY_SK_PREFIX,
    DailyCost,
    Snapshot,
    SnapshotSummary,
    daily_costs_from_item,
    history_pk,
    history_sk,
    org_pk,
    snapshot_sk,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_serializer = TypeSerializer()


def to_attribute_map(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def from_attribute_map(image: dict[str, Any]) -> dict[str, Any]:
    """An item from DynamoDB's attribute-value JSON: what boto3's `TypeDeserializer` returns, value for value
    and error for error (`tests/unit/test_attribute_values.py` holds them to it), at about a third of its
    cost. Its per-value method lookup by name was a fifth of the alerter's CPU per stream record (a
    snapshot image has ~400 values). Numbers go through the same exact context: never rounded."""
    return {key: deserialize(value) for key, value in image.items()}


_NOT_A_VALUE = "Value must be a nonempty dictionary whose key is a valid dynamodb type."
_number = DYNAMODB_CONTEXT.create_decimal


def _binary_set(values: Any) -> set[Binary]:
    return set(map(Binary, values))


def _number_set(values: Any) -> set[Decimal]:
    return set(map(_number, values))


# As boto3 resolves a type: `_deserialize_<type>` with the type lowercased ("s" and "Null" are accepted).
_RARE_TYPES: dict[str, Callable[[Any], Any]] = {
    "null": lambda value: None,
    "bool": lambda value: value,
    "b": Binary,
    "ns": _number_set,
    "ss": set,
    "bs": _binary_set,
}


def deserialize(value: Any) -> Any:
    """One attribute value, as `TypeDeserializer.deserialize` (only its first key is read, as there)."""
    if not value:
        raise TypeError(_NOT_A_VALUE)
    kind = next(iter(value.keys()))
    # The common types first, by exact name; anything else is resolved exactly as boto3 does.
    if kind == "S":
        return value[kind]
    if kind == "N":
        return _number(value[kind])
    if kind == "M":
        return {name: deserialize(inner) for name, inner in value[kind].items()}
    if kind == "L":
        return [deserialize(inner) for inner in value[kind]]
    lowered = f"{kind}".lower()
    if lowered in ("s", "n", "m", "l"):
        return deserialize({lowered.upper(): value[kind]})
    convert = _RARE_TYPES.get(lowered)
    if convert is None:
        raise TypeError(f"Dynamodb type {kind} is not supported")
    return convert(value[kind])


DYNAMODB_CONNECT_TIMEOUT_S = 3
DYNAMODB_READ_TIMEOUT_S = 10
DYNAMODB_MAX_ATTEMPTS = 4
"""botocore's defaults (60 s timeouts) would let one hung call outlive a whole invocation; a failed call
fails its record, which the stream or queue retries."""


def _client() -> DynamoDBClient:
    import boto3  # noqa: PLC0415 - created on first use so importing the module stays cheap
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        connect_timeout=DYNAMODB_CONNECT_TIMEOUT_S,
        read_timeout=DYNAMODB_READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": DYNAMODB_MAX_ATTEMPTS},
        # botocore's client-side check walks every attribute value of every request (a fifth of the CPU of
        # a 29-key BatchGetItem). This module builds every request itself, and DynamoDB validates each
        # one anyway: a malformed request still fails, as a ValidationException instead.
        parameter_validation=False,
    )
    return boto3.client("dynamodb", config=config)


class SnapshotStore:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self._table = table_name
        self._client = client or _client()
        self._nothing_older: dict[str, datetime] = {}
        """org -> a `since` for which no snapshot without a summary was found (see `recent_history`)"""

    def put_snapshot(self, snapshot: Snapshot, *, expires_at: int) -> bool:
        """Write the snapshot and its history summary, once per (org, poll time). Returns False when the
        snapshot already existed.

        One transaction with both conditional puts: a snapshot is never stored without its summary, and a
        retried invocation for the same scheduled time writes neither and causes no second stream INSERT.
        (A transaction costs twice the write units of the two puts: ~26 per poll for a 12 KB snapshot.)
        """
        summary = SnapshotSummary.of(snapshot)
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_attribute_map(item),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                    for item in (snapshot.to_item(expires_at=expires_at), summary.to_item(expires_at=expires_at))
                ]
            )
        except self._client.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            # Both items are written together, so either condition failing means this poll is stored
            # already. DynamoDB Local reports only the first failure it meets, in no fixed order.
            if "ConditionalCheckFailed" in reasons:
                return False
            raise
        return True

    # What the fallback reads of a snapshot written before summaries existed: the summary's fields plus
    # the daily costs (a projection saves transfer and parsing; DynamoDB bills the whole item anyway).
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
        "daily_costs_usd",
        "failures",
        "sources_ok",
        "conditions",
        "verify",
    )

    def history(
        self, org_id: str, *, since: datetime, limit: int = 64, first_pages: tuple[int, ...] = (4,)
    ) -> Iterator[Snapshot]:
        """The org's polls since `since` as history entries, newest first, at most `limit`, read lazily:
        a caller that stops iterating (`snapshot.history_is_enough`) reads no further page.

        Read from the history summaries (~200 bytes each): Queries of `first_pages` items, then of the
        rest (the usual read, the record's own poll and the one before, is one Query of four). Polls stored
        before summaries existed have none: past the oldest summary, the snapshots older than it are read
        whole (until a container finds there are none). Daily costs are not in a summary: `daily_costs`
        reads them for the polls `cost_donors` names.
        """
        oldest: datetime | None = None
        count = 0
        pk, low, high = history_pk(org_id), history_sk(since), f"{HISTORY_SK_PREFIX}~"
        for item in self._pages(pk, low, high, limit, sizes=first_pages):
            entry = SnapshotSummary.from_item(item).as_history()
            oldest, count = entry.poll_time, count + 1
            yield entry
        before = oldest - timedelta(seconds=1) if oldest else None
        searched = self._nothing_older.get(org_id)
        if count < limit and (before is None or before >= since) and (searched is None or since < searched):
            upper = "SNAP#~" if before is None else snapshot_sk(before)
            found = False
            older = self._pages(
                org_pk(org_id), snapshot_sk(since), upper, limit - count, sizes=first_pages, fields=self.HISTORY_FIELDS
            )
            for item in older:
                found = True
                yield Snapshot.from_item(item)
            if not found and before is not None:
                # Snapshots without a summary predate the first summary, which is no newer than this
                # window's oldest one: a later window (a later `since`) cannot find any either.
                self._nothing_older[org_id] = since

    def recent_history(self, org_id: str, *, since: datetime, limit: int = 64) -> list[Snapshot]:
        """Every entry `history` yields: the org's newest `limit` polls since `since` (64 summaries are one
        ~13 KB read, 1.5 read units, against 96 for 64 whole snapshots)."""
        return list(self.history(org_id, since=since, limit=limit, first_pages=()))

    def daily_costs(self, org_id: str, poll_times: Iterable[datetime]) -> dict[datetime, tuple[DailyCost, ...]]:
        """The daily costs of these polls' snapshots (one key Query each; a poll whose snapshot is gone is left out)."""
        found: dict[datetime, tuple[DailyCost, ...]] = {}
        for poll_time in poll_times:
            sk = snapshot_sk(poll_time)
            for item in self._query(org_pk(org_id), sk, sk, 1, ("pk", "sk", "daily_costs_usd")):
                found[poll_time] = daily_costs_from_item(item)
        return found

    def recent_snapshots(self, org_id: str, *, since: datetime, limit: int = 48) -> list[Snapshot]:
        """The org's newest snapshots since `since` in full, newest first, at most `limit` of them."""
        return [Snapshot.from_item(item) for item in self._query(org_pk(org_id), snapshot_sk(since), "SNAP#~", limit)]

    def _pages(
        self, pk: str, low: str, high: str, limit: int, *, sizes: tuple[int, ...], fields: tuple[str, ...] = ()
    ) -> Iterator[dict[str, Any]]:
        """`_query`'s items, read lazily: Queries of `sizes` items, then of the rest."""
        request = self._request(pk, low, high, fields)
        done = 0
        for page in (*sizes, limit):
            size = min(page, limit - done)
            if size <= 0:
                return
            response = self._client.query(**request, Limit=size)
            items = response.get("Items", [])
            done += len(items)
            yield from (from_attribute_map(item) for item in items)
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        yield from self._query_from(request, limit - done)

    def _request(self, pk: str, low: str, high: str, fields: tuple[str, ...]) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":low": {"S": low}, ":high": {"S": high}},
            "ScanIndexForward": False,
        }
        if fields:
            names = {f"#f{i}": name for i, name in enumerate(fields)}
            request["ProjectionExpression"] = ", ".join(names)
            request["ExpressionAttributeNames"] = names
        return request

    def _query(self, pk: str, low: str, high: str, limit: int, fields: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Items of partition `pk` with `low <= sk <= high`, newest first, at most `limit`, following pagination."""
        return list(self._query_from(self._request(pk, low, high, fields), limit))

    def _query_from(self, request: dict[str, Any], limit: int) -> Iterator[dict[str, Any]]:
        got = 0
        while got < limit:
            response = self._client.query(**request, Limit=limit - got)
            items = response.get("Items", [])
            got += len(items)
            yield from (from_attribute_map(item) for item in items)
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def newest_poll_time(self, org_id: str) -> datetime | None:
        """The poll time of the org's newest snapshot (keys only: one small Query), or None if there is none."""
        from spendwatch.core.snapshot import parse_utc  # noqa: PLC0415

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
        from spendwatch.core.snapshot import snapshot_sk  # noqa: PLC0415

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
        from spendwatch.core.snapshot import snapshot_sk  # noqa: PLC0415

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


UNPROCESSED_ATTEMPTS = 6
UNPROCESSED_BACKOFF_S = 0.1
"""BatchGetItem's unprocessed keys are re-asked after 0.1, 0.2, 0.4, 0.8 and 1.6 s (about 3 s in all)."""


class StoreThrottledError(SpendwatchError):
    """DynamoDB kept leaving keys unprocessed: the caller's record fails and is retried, never decided blind."""


class AlertStateStore:
    """Conditional writes make "send once" hold across redeliveries and concurrent invocations.

    Protocol per alert and channel: `claim` (optimistic on `version`, refused while another claim is
    live), send, then `mark_sent` (bumps `version`) or `release` on failure. A send whose outcome is
    unknown is recorded by `mark_sent` too, with `resend_after` (see `decide.should_notify`). A send
    that cannot be recorded is `hold`-ed: the claim is extended for a long lease and marked, so no
    retry sends it again while the table misbehaves. A crash between send and `mark_sent` leaves a claim
    that lapses after its (short) lease, so the alert is retried: a rare duplicate rather than a miss.
    """

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        *,
        lease_s: int = 180,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._table = table_name
        self._client = client or _client()
        self._lease_s = lease_s
        self._sleep = sleep

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
            for attempt in range(UNPROCESSED_ATTEMPTS):
                if attempt:
                    # Unprocessed keys mean throttling: back off (as AWS advises) instead of spinning.
                    self._sleep(UNPROCESSED_BACKOFF_S * 2 ** (attempt - 1))
                response = self._client.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self._table, []):
                    item = from_attribute_map(raw)
                    state = _state_from_item(item)
                    states[state.key] = state
                request = response.get("UnprocessedKeys") or None
                if not request:
                    break
            else:
                # The record fails and is retried by its stream: deciding without the state could resend.
                raise StoreThrottledError(
                    f"{self._table}: alert states still unprocessed after {UNPROCESSED_ATTEMPTS} reads (throttled)"
                )
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
