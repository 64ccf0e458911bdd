"""FakeOpenAI and FakeSlack over real loopback HTTP, driven by `requests` and `slack_sdk` clients."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from spendwatch.devtools.fake_openai import FakeOpenAI, dumps_exact, redact_key
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.simulated_org import DAY, USAGE_TYPES, SimulatedOrg

NOW = datetime(2026, 8, 18, 15, 0, tzinfo=UTC)
MONTH_START = int(datetime(2026, 8, 1, tzinfo=UTC).timestamp())
PREVIOUS_MONTH_START = int(datetime(2026, 7, 1, tzinfo=UTC).timestamp())
TODAY = int(datetime(2026, 8, 18, tzinfo=UTC).timestamp())
ADMIN_KEY = "sk-admin-TESTtestTESTtestTESTtestWXYZ"
SESSION_KEY = "sess-TESTtestTESTtestTESTtest1234"
COSTS = "/v1/organization/costs"
TIMEOUT = 5


@pytest.fixture(scope="module")
def org() -> SimulatedOrg:
    return SimulatedOrg.default(NOW)


@pytest.fixture(scope="module")
def openai_server(org: SimulatedOrg) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(org, admin_key=ADMIN_KEY, session_key=SESSION_KEY) as server:
        yield server


@pytest.fixture
def fake_openai(openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    openai_server.reset()
    yield openai_server
    openai_server.reset()


@pytest.fixture
def admin(fake_openai: FakeOpenAI) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield session


@pytest.fixture(scope="module")
def slack_server() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def fake_slack(slack_server: FakeSlack) -> Iterator[FakeSlack]:
    slack_server.reset()
    yield slack_server
    slack_server.reset()


@pytest.fixture
def slack_client(fake_slack: FakeSlack) -> WebClient:
    return WebClient(fake_slack.valid_token, base_url=fake_slack.api_base_url, timeout=TIMEOUT)


def _get(session: requests.Session, fake: FakeOpenAI, path: str, params: Any = None) -> requests.Response:
    return session.get(f"{fake.root_url}{path}", params=params, timeout=TIMEOUT)


def _exact(response: requests.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


def _costs_pages(session: requests.Session, fake: FakeOpenAI, params: dict[str, Any]) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    page: str | None = None
    while True:
        response = _get(session, fake, COSTS, {**params, **({"page": page} if page else {})})
        assert response.status_code == 200, response.text
        pages.append(_exact(response))
        if not pages[-1]["has_more"]:
            return pages
        page = pages[-1]["next_page"]
        assert len(pages) < 100


def _error(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


# ---- exact JSON --------------------------------------------------------------------------------


def test_dumps_exact_round_trips_decimals_and_refuses_floats() -> None:
    values = [Decimal("600.00"), Decimal("3.41826150"), Decimal("1E-8"), Decimal("-0.5"), 7, None, True, "é<"]

    text = dumps_exact({"v": values})

    assert json.loads(text, parse_float=Decimal) == {"v": values}
    assert "E" not in text
    with pytest.raises(TypeError):
        dumps_exact({"v": 0.1})


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("sk-admin-abcdefghijklmnopWXYZ", "sk-admin-****WXYZ"),
        ("sk-proj-abcdefghijkl1234", "sk-proj-****1234"),
        ("sess-abcdefghijklmnop9876", "sess-****9876"),
        ("sk-admin-short", "sk-admin-****"),
        ("garbage", "****"),
    ],
)
def test_redact_key_never_shows_the_whole_key(key: str, expected: str) -> None:
    assert redact_key(key) == expected


# ---- costs -------------------------------------------------------------------------------------


def test_fake_openai_costs_pagination_collects_every_bucket(admin: requests.Session, fake_openai: FakeOpenAI) -> None:
    pages = _costs_pages(admin, fake_openai, {"start_time": PREVIOUS_MONTH_START, "limit": 7})

    buckets = [b for p in pages for b in p["data"]]
    starts = [b["start_time"] for b in buckets]
    assert starts == list(range(PREVIOUS_MONTH_START, TODAY + DAY, DAY))
    assert all(b["end_time"] - b["start_time"] == DAY and b["object"] == "bucket" for b in buckets)
    assert all(len(p["data"]) == 7 for p in pages[:-1])
    assert all(p["object"] == "page" and p["has_more"] and p["next_page"] for p in pages[:-1])
    assert pages[-1]["has_more"] is False
    assert pages[-1]["next_page"] is None
    assert len(fake_openai.requests_log) == len(pages) == 7


@pytest.mark.parametrize(
    "changed",
    [
        {"limit": 8},
        {"group_by": "project_id"},
        {"start_time": PREVIOUS_MONTH_START + DAY},
        {"end_time": TODAY},
        {"project_ids": "proj_other"},
    ],
    ids=["limit", "group_by", "start_time", "end_time", "project_ids"],
)
def test_fake_openai_costs_page_token_is_bound_to_query(
    admin: requests.Session, fake_openai: FakeOpenAI, changed: dict[str, Any]
) -> None:
    params = {"start_time": PREVIOUS_MONTH_START, "limit": 7}
    first = _exact(_get(admin, fake_openai, COSTS, params))

    same = _get(admin, fake_openai, COSTS, {**params, "page": first["next_page"]})
    replay = _get(admin, fake_openai, COSTS, {**params, **changed, "page": first["next_page"]})

    assert same.status_code == 200
    assert replay.status_code == 400
    assert _error(replay)["param"] == "page"


def test_fake_openai_costs_rejects_garbage_page_token(admin: requests.Session, fake_openai: FakeOpenAI) -> None:
    response = _get(admin, fake_openai, COSTS, {"start_time": MONTH_START, "page": "page_AAAA$$"})

    assert response.status_code == 400
    assert _error(response)["param"] == "page"


@pytest.mark.parametrize("key", ["group_by", "group_by[]"])
def test_fake_openai_costs_group_by_accepts_both_array_syntaxes(
    admin: requests.Session, fake_openai: FakeOpenAI, org: SimulatedOrg, key: str
) -> None:
    params = {"start_time": TODAY, key: ["project_id", "line_item"]}

    rows = _exact(_get(admin, fake_openai, COSTS, params))["data"][0]["results"]

    expected = {(r.project_id, r.line_item) for r in org.costs_on(TODAY)}
    assert {(r["project_id"], r["line_item"]) for r in rows} == expected
    for row in rows:
        assert row["object"] == "organization.costs.result"
        assert row["amount"]["currency"] == "usd"
        assert row["api_key_id"] is None
        assert row["quantity"] is not None
        assert "quantity_unit" in row


def test_fake_openai_costs_without_group_by_aggregates_each_day(
    admin: requests.Session, fake_openai: FakeOpenAI, org: SimulatedOrg
) -> None:
    bucket = _exact(_get(admin, fake_openai, COSTS, {"start_time": TODAY}))["data"][0]

    (row,) = bucket["results"]
    assert row["amount"]["value"] == sum((r.amount for r in org.costs_on(TODAY)), Decimal(0))
    assert row["project_id"] is row["line_item"] is row["api_key_id"] is row["quantity"] is None
    assert row["quantity_unit"] is None


def test_fake_openai_costs_group_by_api_key_and_project_filter(
    admin: requests.Session, fake_openai: FakeOpenAI, org: SimulatedOrg
) -> None:
    project = org.projects[0]
    params = {"start_time": MONTH_START, "limit": 31, "group_by[]": "api_key_id", "project_ids[]": project.id}

    buckets = _exact(_get(admin, fake_openai, COSTS, params))["data"]

    rows = [r for b in buckets for r in b["results"]]
    assert {r["api_key_id"] for r in rows} <= set(project.api_key_ids)
    assert all(r["project_id"] is None and r["line_item"] is None for r in rows)
    total = sum((r["amount"]["value"] for r in rows), Decimal(0))
    assert total == org.spend_usd(MONTH_START, TODAY + DAY, [project.id])


@pytest.mark.parametrize("group_by", [[], ["project_id"], ["project_id", "line_item", "api_key_id"]])
def test_fake_openai_costs_amounts_round_trip_exactly(
    admin: requests.Session, fake_openai: FakeOpenAI, org: SimulatedOrg, group_by: list[str]
) -> None:
    pages = _costs_pages(admin, fake_openai, {"start_time": MONTH_START, "limit": 5, "group_by": group_by})

    values = [r["amount"]["value"] for p in pages for b in p["data"] for r in b["results"]]
    assert all(isinstance(v, Decimal) for v in values)
    assert sum(values, Decimal(0)) == org.month_to_date_usd()


def test_fake_openai_costs_partial_first_bucket_and_empty_days(
    admin: requests.Session, fake_openai: FakeOpenAI
) -> None:
    start = PREVIOUS_MONTH_START - 3 * DAY + 3600

    buckets = _exact(_get(admin, fake_openai, COSTS, {"start_time": start, "limit": 5}))["data"]

    assert (buckets[0]["start_time"], buckets[0]["end_time"]) == (start, PREVIOUS_MONTH_START - 2 * DAY)
    assert [b["results"] for b in buckets[:3]] == [[], [], []]
    assert buckets[3]["start_time"] == PREVIOUS_MONTH_START
    assert buckets[3]["results"]


def test_fake_openai_costs_end_time_is_exclusive(admin: requests.Session, fake_openai: FakeOpenAI) -> None:
    body = _exact(_get(admin, fake_openai, COSTS, {"start_time": MONTH_START, "end_time": MONTH_START + 3 * DAY}))

    assert [b["start_time"] for b in body["data"]] == [MONTH_START, MONTH_START + DAY, MONTH_START + 2 * DAY]
    assert body["has_more"] is False


@pytest.mark.parametrize(
    ("params", "message", "param"),
    [
        ({"limit": 181}, "Invalid limit provided: 181. Limit must be less than or equal to 180.", None),
        ({"limit": 0}, "Invalid limit provided: 0.", None),
        ({"bucket_width": "1h"}, "'1d'", "bucket_width"),
        ({"group_by": "model"}, "group_by", "group_by"),
        ({"start_time": None}, "start_time", "start_time"),
        ({"end_time": MONTH_START}, "end_time", "end_time"),
    ],
    ids=["limit-too-big", "limit-zero", "bucket-1h", "group-by-model", "no-start", "empty-window"],
)
def test_fake_openai_costs_rejects_bad_parameters(
    admin: requests.Session, fake_openai: FakeOpenAI, params: dict[str, Any], message: str, param: str | None
) -> None:
    response = _get(admin, fake_openai, COSTS, {"start_time": MONTH_START, **params})

    assert response.status_code == 400
    error = _error(response)
    assert message in error["message"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


# ---- usage -------------------------------------------------------------------------------------


@pytest.mark.parametrize("usage_type", sorted(USAGE_TYPES))
def test_fake_openai_usage_serves_every_type(
    admin: requests.Session, fake_openai: FakeOpenAI, org: SimulatedOrg, usage_type: str
) -> None:
    spec = USAGE_TYPES[usage_type]
    grouped = spec.dims[0]

    ungrouped = _exact(_get(admin, fake_openai, f"/v1/organization/usage/{usage_type}", {"start_time": TODAY}))
    by_dim = _exact(
        _get(admin, fake_openai, f"/v1/organization/usage/{usage_type}", {"start_time": TODAY, "group_by[]": grouped})
    )

    assert ungrouped["object"] == "page"
    assert ungrouped["has_more"] is False
    (row,) = ungrouped["data"][0]["results"]
    assert row["object"] == spec.result_object
    assert list(row) == ["object", *spec.metrics, *spec.dims]
    assert all(row[d] is None for d in spec.dims)
    rows = by_dim["data"][0]["results"]
    assert {r[grouped] for r in rows} == {r.dims[grouped] for r in org.usage_on(usage_type, TODAY)}
    metric = spec.metrics[0]
    assert sum(r[metric] for r in rows) == row[metric]


@pytest.mark.parametrize(("width", "default", "maximum"), [("1d", 7, 31), ("1h", 24, 168), ("1m", 60, 1440)])
def test_fake_openai_usage_bucket_width_default_and_max_limit(
    admin: requests.Session, fake_openai: FakeOpenAI, width: str, default: int, maximum: int
) -> None:
    path = "/v1/organization/usage/completions"
    params = {"start_time": PREVIOUS_MONTH_START, "bucket_width": width}

    page = _exact(_get(admin, fake_openai, path, params))
    at_max = _get(admin, fake_openai, path, {**params, "limit": maximum})
    over = _get(admin, fake_openai, path, {**params, "limit": maximum + 1})

    assert len(page["data"]) == default
    assert page["has_more"] is True
    assert at_max.status_code == 200
    assert over.status_code == 400
    assert f"Limit must be less than or equal to {maximum}." in _error(over)["message"]


def test_fake_openai_usage_hourly_buckets_put_the_day_in_its_first_hour(
    admin: requests.Session, fake_openai: FakeOpenAI
) -> None:
    params = {"start_time": TODAY, "bucket_width": "1h", "limit": 168}

    buckets = _exact(_get(admin, fake_openai, "/v1/organization/usage/completions", params))["data"]

    assert len(buckets) == 16  # open-ended: ends with the hour containing org.now (15:00Z)
    assert all(b["end_time"] - b["start_time"] == 3600 for b in buckets)
    assert buckets[0]["results"]
    assert all(b["results"] == [] for b in buckets[1:])


@pytest.mark.parametrize(
    ("usage_type", "params"),
    [
        ("completions", {"group_by": "line_item"}),
        ("vector_stores", {"group_by": "model"}),
        ("embeddings", {"bucket_width": "1w"}),
        ("completions", {"batch": "maybe"}),
    ],
)
def test_fake_openai_usage_rejects_bad_parameters(
    admin: requests.Session, fake_openai: FakeOpenAI, usage_type: str, params: dict[str, str]
) -> None:
    response = _get(admin, fake_openai, f"/v1/organization/usage/{usage_type}", {"start_time": TODAY, **params})

    assert response.status_code == 400
    assert _error(response)["param"] == next(iter(params))


def test_fake_openai_usage_filters_by_project(
    admin: requests.Session, fake_openai: FakeOpenAI, org: SimulatedOrg
) -> None:
    project = org.projects[1]
    params = {"start_time": TODAY, "project_ids": project.id, "group_by": ["project_id", "model"]}

    rows = _exact(_get(admin, fake_openai, "/v1/organization/usage/completions", params))["data"][0]["results"]

    assert rows
    assert {r["project_id"] for r in rows} == {project.id}


# ---- projects, limits, alerts, keys ------------------------------------------------------------


def test_fake_openai_projects_hide_archived_and_paginate(
    admin: requests.Session, fake_openai: FakeOpenAI, org: SimulatedOrg
) -> None:
    default = _get(admin, fake_openai, "/v1/organization/projects").json()
    first = _get(admin, fake_openai, "/v1/organization/projects", {"include_archived": "true", "limit": 2}).json()
    rest = _get(
        admin, fake_openai, "/v1/organization/projects", {"include_archived": "true", "after": first["last_id"]}
    ).json()

    assert [p["status"] for p in default["data"]] == ["active", "active"]
    assert default["has_more"] is False
    assert first["has_more"] is True
    assert first["first_id"] == org.projects[0].id
    assert [p["id"] for p in first["data"] + rest["data"]] == [p.id for p in org.projects]
    assert rest["data"][0]["status"] == "archived"
    assert rest["data"][0]["archived_at"] is not None
    assert rest["has_more"] is False
    assert _get(admin, fake_openai, "/v1/organization/projects", {"limit": 101}).status_code == 400


def test_fake_openai_spend_limits_exist_for_org_and_one_project(
    admin: requests.Session, fake_openai: FakeOpenAI, org: SimulatedOrg
) -> None:
    org_limit = _get(admin, fake_openai, "/v1/organization/spend_limit")
    with_limit = _get(admin, fake_openai, f"/v1/organization/projects/{org.projects[0].id}/spend_limit")
    without = _get(admin, fake_openai, f"/v1/organization/projects/{org.projects[1].id}/spend_limit")

    assert org_limit.json() == {
        "object": "organization.spend_limit",
        "threshold_amount": 60000,
        "currency": "USD",
        "interval": "month",
        "enforcement": {"status": "enforcing"},
    }
    assert with_limit.json()["object"] == "project.spend_limit"
    assert without.status_code == 404
    assert _error(without)["code"] == "not_found"


def test_fake_openai_spend_limit_404_when_org_has_none(org: SimulatedOrg) -> None:
    from dataclasses import replace

    with FakeOpenAI(replace(org, org_spend_limit=None), admin_key=ADMIN_KEY) as fake:
        response = requests.get(
            f"{fake.base_url}/organization/spend_limit", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5
        )

    assert response.status_code == 404
    assert _error(response)["type"] == "invalid_request_error"


def test_fake_openai_spend_alerts_rate_limits_and_admin_key(
    admin: requests.Session, fake_openai: FakeOpenAI, org: SimulatedOrg
) -> None:
    project_id = org.projects[0].id

    alerts = _get(admin, fake_openai, "/v1/organization/spend_alerts").json()
    project_alerts = _get(admin, fake_openai, f"/v1/organization/projects/{project_id}/spend_alerts").json()
    rate_limits = _get(admin, fake_openai, f"/v1/organization/projects/{project_id}/rate_limits").json()
    key = _get(admin, fake_openai, "/v1/organization/admin_api_keys/key_sim_admin").json()

    assert [a["threshold_amount"] for a in alerts["data"]] == [25000, 40000]
    assert alerts["data"][0]["notification_channel"]["type"] == "email"
    assert project_alerts["data"][0]["object"] == "project.spend_alert"
    assert rate_limits["data"][0]["object"] == "project.rate_limit"
    assert rate_limits["first_id"] == rate_limits["data"][0]["id"]
    assert key["object"] == "organization.admin_api_key"
    assert key["expires_at"] == int(NOW.timestamp()) + 20 * DAY
    assert key["redacted_value"] == "sk-admin...XYZ"
    assert set(key) >= {"id", "name", "created_at", "last_used_at", "owner"}
    assert _get(admin, fake_openai, "/v1/organization/admin_api_keys/key_nope").status_code == 404
    assert _get(admin, fake_openai, "/v1/organization/projects/proj_nope/rate_limits").status_code == 404


# ---- legacy dashboard --------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/v1"])
@pytest.mark.parametrize("endpoint", ["credit_grants", "subscription", "usage"])
def test_fake_openai_dashboard_answers_at_root_and_v1(
    fake_openai: FakeOpenAI, org: SimulatedOrg, prefix: str, endpoint: str
) -> None:
    params = {"start_date": "2026-08-01", "end_date": "2026-08-19"} if endpoint == "usage" else None

    response = requests.get(
        f"{fake_openai.root_url}{prefix}/dashboard/billing/{endpoint}",
        params=params,
        headers={"Authorization": f"Bearer {SESSION_KEY}"},
        timeout=TIMEOUT,
    )

    assert response.status_code == 200
    body = _exact(response)
    if endpoint == "credit_grants":
        grants = body["grants"]["data"]
        assert body["total_granted"] == sum(g["grant_amount"] for g in grants)
        assert body["total_available"] == body["total_granted"] - body["total_used"]
        assert sorted(g["expires_at"] for g in grants)[0] == int(NOW.timestamp()) + 12 * DAY
    elif endpoint == "subscription":
        assert body["hard_limit_usd"] == Decimal("600")
        assert body["plan"] == {"title": "Pay-as-you-go", "id": "payg"}
        assert "auto_recharge_enabled" in body
    else:
        assert body["total_usage"] == org.month_to_date_usd() * 100
        assert len(body["daily_costs"]) == 18


# ---- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "key", "status", "code", "fragment"),
    [
        (COSTS, None, 401, "invalid_api_key", "didn't provide an API key"),
        (COSTS, "sk-admin-WRONGwrongWRONGwrongWXYZ", 401, "invalid_api_key", "sk-admin-****WXYZ"),
        (COSTS, "sk-proj-abcdefghijklmnop", 403, None, "Missing scopes: api.usage.read"),
        ("/v1/organization/projects", SESSION_KEY, 401, "invalid_api_key", "sess-****"),
        ("/dashboard/billing/credit_grants", ADMIN_KEY, 403, None, "must be made with a session key"),
        ("/v1/dashboard/billing/subscription", "sk-proj-abcdefghijklmnop", 403, None, "key type: secret"),
        ("/dashboard/billing/credit_grants", "sess-expiredEXPIREDexpired", 401, "invalid_api_key", "sess-****"),
        ("/dashboard/billing/credit_grants", None, 401, "invalid_api_key", "Incorrect API key"),
    ],
    ids=[
        "missing",
        "wrong-admin",
        "project-key",
        "session-on-admin",
        "admin-on-dashboard",
        "proj-on-dashboard",
        "expired-session",
        "no-session",
    ],
)
def test_fake_openai_auth_errors(
    fake_openai: FakeOpenAI, *, path: str, key: str | None, status: int, code: str | None, fragment: str
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    response = requests.get(
        f"{fake_openai.root_url}{path}", params={"start_time": MONTH_START}, headers=headers, timeout=TIMEOUT
    )

    assert response.status_code == status
    error = _error(response)
    assert error["code"] == code
    assert fragment in error["message"]
    if key:
        assert key not in response.text
    if "session key" in fragment:
        assert error["type"] == "server_error"


def test_fake_openai_requests_log_records_auth_kind(fake_openai: FakeOpenAI) -> None:
    for key in (ADMIN_KEY, SESSION_KEY, "sk-proj-abc", "sk-abc", "whatever", None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        requests.get(f"{fake_openai.base_url}/organization/projects?limit=1", headers=headers, timeout=TIMEOUT)

    log = fake_openai.requests_log

    assert [entry.auth for entry in log] == ["admin", "session", "project", "secret", "invalid", "none"]
    method, path, query, _auth = log[0]
    assert (method, path, query) == ("GET", "/v1/organization/projects", {"limit": ["1"]})


# ---- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("retry_after", "header"), [(1, "1"), (0, "0"), (None, None)])
def test_fake_openai_rate_limit_then_recovers(
    admin: requests.Session, fake_openai: FakeOpenAI, retry_after: int | None, header: str | None
) -> None:
    fault = fake_openai.rate_limit(COSTS, retry_after=retry_after, times=1)

    limited = _get(admin, fake_openai, COSTS, {"start_time": TODAY})
    recovered = _get(admin, fake_openai, COSTS, {"start_time": TODAY})

    assert limited.status_code == 429
    assert limited.headers.get("Retry-After") == header
    assert limited.headers["Content-Type"] == "application/json"
    assert _error(limited)["code"] == "rate_limit_exceeded"
    assert recovered.status_code == 200
    assert (fault.hits, fault.remaining, fault.active) == (1, 0, False)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_fake_openai_server_error_for_n_requests(admin: requests.Session, fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.server_error(COSTS, status=status, times=2)

    statuses = [_get(admin, fake_openai, COSTS, {"start_time": TODAY}).status_code for _ in range(3)]

    assert statuses == [status, status, 200]


@pytest.mark.parametrize(("status", "expected"), [(None, 502), (200, 200)])
def test_fake_openai_malformed_html(
    admin: requests.Session, fake_openai: FakeOpenAI, status: int | None, expected: int
) -> None:
    fake_openai.malformed(COSTS, "html", status=status)

    response = _get(admin, fake_openai, COSTS, {"start_time": TODAY})

    assert response.status_code == expected
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_fake_openai_malformed_truncated(admin: requests.Session, fake_openai: FakeOpenAI) -> None:
    fake_openai.malformed(COSTS, "truncated")

    response = _get(admin, fake_openai, COSTS, {"start_time": TODAY})

    assert response.status_code == 200
    assert response.text.startswith('{"object": "page"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


@pytest.mark.parametrize(
    ("kind", "check"), [("null_fields", lambda v: v is None), ("string_numbers", str.__instancecheck__)]
)
def test_fake_openai_malformed_money_values(
    admin: requests.Session, fake_openai: FakeOpenAI, org: SimulatedOrg, kind: Any, check: Any
) -> None:
    fake_openai.malformed(COSTS, kind)

    rows = _get(admin, fake_openai, COSTS, {"start_time": TODAY, "group_by": "project_id"}).json()["data"][0]["results"]

    assert rows
    assert all(check(r["amount"]["value"]) for r in rows)
    if kind == "string_numbers":
        assert sum(Decimal(r["amount"]["value"]) for r in rows) == sum(r.amount for r in org.costs_on(TODAY))


@pytest.mark.parametrize(
    ("path", "kind", "field"),
    [
        ("/dashboard/billing/credit_grants", "null_fields", "total_available"),
        ("/dashboard/billing/credit_grants", "missing_fields", "grants"),
        ("/v1/organization/usage/completions", "null_fields", "input_tokens"),
    ],
)
def test_fake_openai_malformed_other_payloads(fake_openai: FakeOpenAI, path: str, kind: Any, field: str) -> None:
    fake_openai.malformed(path, kind)
    key = SESSION_KEY if path.startswith("/dashboard") else ADMIN_KEY

    body = requests.get(
        f"{fake_openai.root_url}{path}",
        params={"start_time": TODAY},
        headers={"Authorization": f"Bearer {key}"},
        timeout=TIMEOUT,
    ).json()

    if kind == "missing_fields":
        assert field not in body
    elif "data" in body:
        assert body["data"][0]["results"][0][field] is None
    else:
        assert body[field] is None


def test_fake_openai_malformed_missing_data(admin: requests.Session, fake_openai: FakeOpenAI) -> None:
    fake_openai.malformed(COSTS, "missing_fields")

    body = _get(admin, fake_openai, COSTS, {"start_time": TODAY}).json()

    assert "data" not in body
    assert body["object"] == "page"


def test_fake_openai_hang_times_out_the_client(admin: requests.Session, fake_openai: FakeOpenAI) -> None:
    fake_openai.hang(COSTS, seconds=5)
    started = time.monotonic()

    with pytest.raises(requests.exceptions.ReadTimeout):
        admin.get(f"{fake_openai.root_url}{COSTS}", params={"start_time": TODAY}, timeout=0.2)

    assert time.monotonic() - started < 2
    assert _get(admin, fake_openai, COSTS, {"start_time": TODAY}).status_code == 200


def test_fake_openai_inject_custom_response(admin: requests.Session, fake_openai: FakeOpenAI) -> None:
    fault = fake_openai.inject(
        "/v1/organization/", status=418, body="teapot", headers={"X-Test": "yes"}, times=2, content_type="text/plain"
    )

    first = _get(admin, fake_openai, COSTS, {"start_time": TODAY})
    second = _get(admin, fake_openai, "/v1/organization/projects")
    third = _get(admin, fake_openai, "/v1/organization/projects")

    assert (first.status_code, first.text, first.headers["X-Test"]) == (418, "teapot", "yes")
    assert first.headers["Content-Type"] == "text/plain"
    assert second.status_code == 418
    assert third.status_code == 200
    assert fault.hits == 2


def test_fake_openai_inject_matches_path_prefix_and_can_be_cancelled(
    admin: requests.Session, fake_openai: FakeOpenAI
) -> None:
    fault = fake_openai.inject("/dashboard/", status=503, times=None)

    costs = _get(admin, fake_openai, COSTS, {"start_time": TODAY})
    dashboard = requests.get(f"{fake_openai.root_url}/dashboard/billing/subscription", timeout=TIMEOUT)
    fault.cancel()
    after_cancel = requests.get(f"{fake_openai.root_url}/dashboard/billing/subscription", timeout=TIMEOUT)

    assert costs.status_code == 200
    assert dashboard.status_code == 503
    assert _error(dashboard)["type"] == "server_error"
    assert after_cancel.status_code == 401


def test_fake_openai_inject_delay_only_and_status_override(admin: requests.Session, fake_openai: FakeOpenAI) -> None:
    fake_openai.inject(COSTS, delay_s=0.1)
    fake_openai.inject(COSTS, status=202, headers={"Retry-After": "3"})

    started = time.monotonic()
    delayed = _get(admin, fake_openai, COSTS, {"start_time": TODAY})
    elapsed = time.monotonic() - started
    overridden = _get(admin, fake_openai, COSTS, {"start_time": TODAY})

    assert delayed.status_code == 200
    assert elapsed >= 0.1
    assert overridden.status_code == 202
    assert overridden.headers["Retry-After"] == "3"
    assert overridden.json()["object"] == "page"


def test_fake_openai_set_latency_delays_every_request(admin: requests.Session, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_latency(0.15)
    started = time.monotonic()

    for _ in range(2):
        assert _get(admin, fake_openai, "/v1/organization/projects").status_code == 200

    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/organization/nope"),
        ("GET", "/v1/organization/usage/fine_tuning"),
        ("POST", COSTS),
        ("HEAD", COSTS),
        ("GET", "/"),
    ],
)
def test_fake_openai_unknown_paths_and_methods_get_404(
    admin: requests.Session, fake_openai: FakeOpenAI, method: str, path: str
) -> None:
    response = admin.request(method, f"{fake_openai.root_url}{path}", timeout=TIMEOUT)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    if method == "HEAD":
        assert response.content == b""
    else:
        assert _error(response)["message"] == f"Invalid URL ({method} {path})"


def test_fake_openai_reset_clears_faults_latency_and_log(admin: requests.Session, fake_openai: FakeOpenAI) -> None:
    fake_openai.server_error(COSTS, times=None)
    fake_openai.set_latency(5)
    fake_openai.reset()

    started = time.monotonic()
    response = _get(admin, fake_openai, COSTS, {"start_time": TODAY})

    assert response.status_code == 200
    assert time.monotonic() - started < 2
    assert len(fake_openai.requests_log) == 1


def test_fake_openai_urls_and_lifecycle(org: SimulatedOrg) -> None:
    fake = FakeOpenAI(org)
    with pytest.raises(RuntimeError):
        _ = fake.base_url

    with fake:
        assert fake.running
        assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1"
        assert fake.root_url == f"http://127.0.0.1:{fake.port}"
        fake.hang(COSTS, seconds=30)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"{fake.root_url}{COSTS}", timeout=0.1)
        started = time.monotonic()

    assert time.monotonic() - started < 2
    assert not fake.running


# ---- Slack Web API -----------------------------------------------------------------------------


def test_fake_slack_web_client_posts_message(slack_client: WebClient, fake_slack: FakeSlack) -> None:
    blocks = [{"type": "section", "text": {"type": "plain_text", "text": "Budget at 86%"}}]

    response = slack_client.chat_postMessage(channel="#spend-alerts", text="Budget at 86%", blocks=blocks)
    second = slack_client.chat_postMessage(channel="C0SIMALERT", text="again")

    assert response["ok"] is True
    assert response["channel"] == "C0SIMALERT"
    assert response["message"]["text"] == "Budget at 86%"
    assert response["ts"] != second["ts"]
    first, _ = fake_slack.wait_for(2, timeout=1)
    assert (first.via, first.channel, first.text, first.blocks) == ("api", "C0SIMALERT", "Budget at 86%", blocks)


def test_fake_slack_auth_test(slack_client: WebClient) -> None:
    response = slack_client.auth_test()

    assert response["ok"] is True
    assert response["bot_id"] == "B0SIMBOT"


@pytest.mark.parametrize(
    ("token", "kwargs", "error"),
    [
        ("xoxb-wrong", {"channel": "C0SIMALERT", "text": "hi"}, "invalid_auth"),
        (None, {"channel": "C0DOESNOTEXIST", "text": "hi"}, "channel_not_found"),
        (None, {"channel": "#nowhere", "text": "hi"}, "channel_not_found"),
        (None, {"channel": "C0SIMALERT", "text": "x" * 40_001}, "msg_too_long"),
        (None, {"channel": "C0SIMALERT"}, "no_text"),
    ],
    ids=["invalid-auth", "unknown-channel-id", "unknown-channel-name", "too-long", "no-text"],
)
@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")
def test_fake_slack_web_api_errors_are_http_200_ok_false(
    fake_slack: FakeSlack, token: str | None, kwargs: dict[str, Any], error: str
) -> None:
    client = WebClient(token or fake_slack.valid_token, base_url=fake_slack.api_base_url, timeout=TIMEOUT)

    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(**kwargs)

    assert caught.value.response.status_code == 200
    assert caught.value.response["error"] == error
    assert fake_slack.messages == []
    assert fake_slack.requests_log[-1].error == error


def test_fake_slack_accepts_form_bodies_and_needs_a_token(fake_slack: FakeSlack) -> None:
    url = f"{fake_slack.api_base_url}chat.postMessage"
    blocks = json.dumps([{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}])

    missing = requests.post(url, data={"channel": "general", "text": "hi"}, timeout=TIMEOUT).json()
    posted = requests.post(
        url, data={"token": fake_slack.valid_token, "channel": "general", "blocks": blocks}, timeout=TIMEOUT
    ).json()

    assert missing == {"ok": False, "error": "not_authed"}
    assert posted["ok"] is True
    assert posted["channel"] == "C0SIMGENRL"
    assert fake_slack.messages[0].blocks == json.loads(blocks)
    assert "token" not in fake_slack.messages[0].payload


@pytest.mark.parametrize("retry_after", [0, 1])
def test_fake_slack_rate_limit_surfaces_as_slack_api_error_429(
    slack_client: WebClient, fake_slack: FakeSlack, retry_after: int
) -> None:
    fake_slack.fail_next(1, retry_after=retry_after)

    with pytest.raises(SlackApiError) as caught:
        slack_client.chat_postMessage(channel="C0SIMALERT", text="hi")
    retried = slack_client.chat_postMessage(channel="C0SIMALERT", text="hi")

    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == str(retry_after)
    assert caught.value.response["error"] == "ratelimited"
    assert retried["ok"] is True
    assert len(fake_slack.messages) == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"error": "token_revoked"}, 200, "token_revoked"),
        ({"error": "channel_not_found"}, 200, "channel_not_found"),
        ({"status": 500}, 500, "internal_error"),
        ({"status": 503, "error": "service_unavailable"}, 503, "service_unavailable"),
    ],
)
def test_fake_slack_fail_next_api(
    slack_client: WebClient, fake_slack: FakeSlack, kwargs: dict[str, Any], status: int, error: str
) -> None:
    fake_slack.fail_next(1, target="api", **kwargs)

    with pytest.raises(SlackApiError) as caught:
        slack_client.chat_postMessage(channel="C0SIMALERT", text="hi")

    assert caught.value.response.status_code == status
    assert caught.value.response["error"] == error
    assert slack_client.chat_postMessage(channel="C0SIMALERT", text="hi")["ok"] is True


@pytest.mark.parametrize(("action", "error"), [("revoke_token", "token_revoked"), ("archive_channel", "is_archived")])
def test_fake_slack_revoke_token_and_archive_channel(
    slack_client: WebClient, fake_slack: FakeSlack, action: str, error: str
) -> None:
    getattr(fake_slack, action)()

    with pytest.raises(SlackApiError) as caught:
        slack_client.chat_postMessage(channel="C0SIMALERT", text="hi")

    assert caught.value.response["error"] == error
    fake_slack.reset()
    assert slack_client.chat_postMessage(channel="C0SIMALERT", text="hi")["ok"] is True


def test_fake_slack_wait_for_times_out(fake_slack: FakeSlack) -> None:
    with pytest.raises(TimeoutError):
        fake_slack.wait_for(1, timeout=0.05)


# ---- Slack incoming webhook --------------------------------------------------------------------


def test_fake_slack_webhook_send(fake_slack: FakeSlack) -> None:
    response = WebhookClient(fake_slack.webhook_url, timeout=TIMEOUT).send(text="Budget at 86%")

    assert (response.status_code, response.body) == (200, "ok")
    (message,) = fake_slack.wait_for(1, timeout=1)
    assert (message.via, message.channel, message.text) == ("webhook", fake_slack.webhook_channel, "Budget at 86%")


@pytest.mark.parametrize(
    ("setup", "path", "data", "status", "body"),
    [
        (None, "/services/T000/B000/WRONG", '{"text": "hi"}', 404, "no_service"),
        (None, None, "{not json", 400, "invalid_payload"),
        (None, None, '{"username": "x"}', 400, "no_text"),
        ("revoke_webhook", None, '{"text": "hi"}', 404, "no_service"),
        ("archive_channel", None, '{"text": "hi"}', 410, "channel_is_archived"),
    ],
    ids=["unknown-path", "bad-json", "no-text", "revoked", "archived"],
)
def test_fake_slack_webhook_errors(
    fake_slack: FakeSlack, *, setup: str | None, path: str | None, data: str, status: int, body: str
) -> None:
    if setup:
        getattr(fake_slack, setup)()
    url = f"{fake_slack.root_url}{path}" if path else fake_slack.webhook_url

    response = requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)

    assert (response.status_code, response.text) == (status, body)
    assert fake_slack.messages == []


@pytest.mark.parametrize(
    ("kwargs", "status", "body", "retry_after"),
    [
        ({"retry_after": 1}, 429, "rate_limited", "1"),
        ({"status": 500}, 500, "rollup_error", None),
        ({"error": "channel_not_found"}, 404, "channel_not_found", None),
    ],
)
def test_fake_slack_webhook_fail_next(
    fake_slack: FakeSlack, kwargs: dict[str, Any], status: int, body: str, retry_after: str | None
) -> None:
    fake_slack.fail_next(1, target="webhook", **kwargs)
    client = WebhookClient(fake_slack.webhook_url, timeout=TIMEOUT)

    failed = client.send(text="hi")
    retried = client.send(text="hi")

    assert (failed.status_code, failed.body) == (status, body)
    assert failed.headers.get("Retry-After", failed.headers.get("retry-after")) == retry_after
    assert retried.status_code == 200
    assert len(fake_slack.messages) == 1
