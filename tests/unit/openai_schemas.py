"""Hypothesis strategies for OpenAI's admin replies, written by hand from the published OpenAPI spec
(openai/openai-openapi, `openapi.yaml`: `CostsResult`, `UsageTimeBucket`, `Usage*Result`, `Project`,
`ProjectListResponse`, `*SpendLimitResource`, `*SpendAlert`, `AdminApiKey`) and, for the two legacy
dashboard replies the spec does not cover, from the fields third-party clients document.

What the spec lists as `required` is always present; every other property is drawn present or absent,
and every `anyOf [..., null]` property is drawn null too. Numbers stay within what a real reply carries
(amounts of at most 20 significant digits, Unix times before 2100), so a valid payload must parse.

`hostile` turns a valid payload into a hostile one: one node replaced by a wrong type, an absurd number,
a deep nesting, or deleted.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

Payload = Any

IDS = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=16)
TEXT = st.text(max_size=12)
UNIX = st.integers(min_value=0, max_value=4_102_444_800)  # 1970 .. 2100
COUNT = st.integers(min_value=0, max_value=2**53)


def nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def amounts() -> st.SearchStrategy[int | Decimal]:
    """A JSON number as `loads_exact` gives it: an int, or a Decimal with a fraction."""
    decimals = st.builds(
        lambda digits, places, negative: Decimal(f"{'-' if negative else ''}{digits}E-{places}"),
        st.integers(min_value=0, max_value=10**20 - 1),
        st.integers(min_value=1, max_value=12),
        st.booleans(),
    )
    return st.integers(min_value=-(10**15), max_value=10**15) | decimals


def obj(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional=optional)


# ---- /organization/costs --------------------------------------------------------------------------

COST_RESULT = obj(
    {"object": st.just("organization.costs.result")},
    {
        "amount": obj({}, {"value": amounts(), "currency": st.sampled_from(["usd", "USD"])}),
        "line_item": nullable(TEXT),
        "project_id": nullable(IDS),
        "api_key_id": nullable(IDS),
        "quantity": nullable(amounts()),
        "quantity_unit": nullable(st.sampled_from(["tokens", "1000_tokens", "images", "characters", "other"])),
    },
)


def bucket(results: st.SearchStrategy[Any], rows: int = 4) -> st.SearchStrategy[Any]:
    return UNIX.flatmap(
        lambda start: obj(
            {
                "object": st.just("bucket"),
                "start_time": st.just(start),
                "end_time": st.just(start + 86400),
                "results": st.lists(results, max_size=rows),
            },
            {},
        )
    )


def usage_page(results: st.SearchStrategy[Any], size: int = 4) -> st.SearchStrategy[Any]:
    """`UsageResponse`: object, data, has_more and next_page are all required (next_page nullable)."""
    return obj(
        {
            "object": st.just("page"),
            "data": st.lists(bucket(results, size), max_size=size),
            "has_more": st.just(False),
            "next_page": st.none(),
        },
        {},
    )


def cost_pages(size: int = 4) -> st.SearchStrategy[list[Any]]:
    return st.lists(usage_page(COST_RESULT, size), min_size=1, max_size=2)


COST_PAGES = cost_pages()

# ---- /organization/usage/* ------------------------------------------------------------------------

_MODEL_DIMS = ("project_id", "user_id", "api_key_id", "model")
USAGE_SCHEMAS: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, st.SearchStrategy[Any]]]] = {
    # name: (required counters, optional counters, nullable dimensions)
    "completions": (
        ("input_tokens", "output_tokens", "num_model_requests"),
        (
            "input_cached_tokens",
            "input_cache_write_tokens",
            "input_uncached_tokens",
            "input_text_tokens",
            "output_text_tokens",
            "input_cached_text_tokens",
            "input_audio_tokens",
            "input_cached_audio_tokens",
            "output_audio_tokens",
            "input_image_tokens",
            "input_cached_image_tokens",
            "output_image_tokens",
        ),
        {
            **dict.fromkeys(_MODEL_DIMS, nullable(IDS)),
            "batch": nullable(st.booleans()),
            "service_tier": nullable(TEXT),
        },
    ),
    "embeddings": (("input_tokens", "num_model_requests"), (), dict.fromkeys(_MODEL_DIMS, nullable(IDS))),
    "moderations": (("input_tokens", "num_model_requests"), (), dict.fromkeys(_MODEL_DIMS, nullable(IDS))),
    "images": (
        ("images", "num_model_requests"),
        (),
        {**dict.fromkeys(_MODEL_DIMS, nullable(IDS)), "source": nullable(TEXT), "size": nullable(TEXT)},
    ),
    "audio_speeches": (("characters", "num_model_requests"), (), dict.fromkeys(_MODEL_DIMS, nullable(IDS))),
    "audio_transcriptions": (("seconds", "num_model_requests"), (), dict.fromkeys(_MODEL_DIMS, nullable(IDS))),
    "vector_stores": (("usage_bytes",), (), {"project_id": nullable(IDS)}),
    "code_interpreter_sessions": (("num_sessions",), (), {"project_id": nullable(IDS)}),
    "file_search_calls": (
        ("num_requests",),
        (),
        dict.fromkeys(("project_id", "user_id", "api_key_id", "vector_store_id"), nullable(IDS)),
    ),
    "web_search_calls": (
        ("num_model_requests", "num_requests"),
        (),
        {**dict.fromkeys(_MODEL_DIMS, nullable(IDS)), "context_level": nullable(TEXT)},
    ),
}


def usage_result(name: str) -> st.SearchStrategy[Any]:
    required, optional, dims = USAGE_SCHEMAS[name]
    return obj(
        {"object": st.just(f"organization.usage.{name}.result"), **dict.fromkeys(required, COUNT)},
        {**dict.fromkeys(optional, COUNT), **dims},
    )


def usage_pages(name: str, size: int = 4) -> st.SearchStrategy[Any]:
    return st.lists(usage_page(usage_result(name), size), min_size=1, max_size=2)


# ---- projects, spend limits and alerts, admin key --------------------------------------------------

PROJECT = obj(
    {"id": IDS, "object": st.just("organization.project"), "created_at": UNIX},
    {
        "name": nullable(TEXT),
        "archived_at": nullable(UNIX),
        "status": nullable(st.sampled_from(["active", "archived"])),
        "external_key_id": nullable(IDS),
        "residency": st.just("GLOBAL"),
    },
)
PROJECTS = st.lists(PROJECT, max_size=5, unique_by=lambda p: p["id"])


def list_page(items: Any, *, has_more: bool = False, last_id: bool = True) -> dict[str, Any]:
    """`ProjectListResponse` and the spend-alert lists: `first_id`/`last_id` optional and nullable."""
    page: dict[str, Any] = {"object": "list", "data": items, "has_more": has_more}
    if last_id:
        page["first_id"] = items[0]["id"] if items else None
        page["last_id"] = items[-1]["id"] if items else None
    return page


SPEND_LIMIT = obj(
    {
        "object": st.sampled_from(["organization.spend_limit", "project.spend_limit"]),
        "threshold_amount": st.integers(min_value=0, max_value=10**12),
        "currency": st.just("USD"),
        "interval": st.just("month"),
        "enforcement": obj({"status": st.sampled_from(["inactive", "enforcing", "other"])}, {}),
    },
    {},
)
SPEND_ALERT = obj(
    {
        "id": IDS,
        "object": st.sampled_from(["organization.spend_alert", "project.spend_alert"]),
        "threshold_amount": st.integers(min_value=0, max_value=10**12),
        "currency": st.just("USD"),
        "interval": st.just("month"),
        "notification_channel": obj(
            {"type": st.just("email"), "recipients": st.lists(st.sampled_from(["ops@example.com"]), max_size=2)},
            {"subject_prefix": nullable(TEXT)},
        ),
    },
    {},
)
SPEND_ALERTS = st.lists(SPEND_ALERT, max_size=3, unique_by=lambda a: a["id"])
ADMIN_KEY = obj(
    {
        "object": st.just("organization.admin_api_key"),
        "id": IDS,
        "redacted_value": st.just("sk-admin...xyz"),
        "created_at": UNIX,
        "owner": obj({}, {"type": st.just("user"), "id": IDS, "name": TEXT, "created_at": UNIX, "role": TEXT}),
    },
    # `expires_at` is listed as required (nullable), yet the spec's own example omits it.
    {"expires_at": nullable(UNIX), "name": nullable(TEXT), "last_used_at": nullable(UNIX)},
)

# ---- API keys, service accounts, users (ProjectApiKey, ProjectApiKeyOwner*, ProjectServiceAccount, User) ---

OWNER_USER = obj(
    {"id": IDS, "email": TEXT, "name": TEXT, "created_at": UNIX, "role": st.sampled_from(["owner", "member"])}, {}
)
OWNER_SERVICE_ACCOUNT = obj(
    # `name` is required yet can be empty: the unnamed service account of a real organization
    {"id": IDS, "name": st.sampled_from(["", " "]) | TEXT, "created_at": UNIX, "role": st.just("member")},
    {},
)
API_KEY_OWNER = st.one_of(
    obj({}, {"type": st.just("user"), "user": OWNER_USER}),
    obj({}, {"type": st.just("service_account"), "service_account": OWNER_SERVICE_ACCOUNT}),
)
API_KEY = obj(
    {
        "object": st.just("organization.project.api_key"),
        "redacted_value": st.builds(lambda tail: f"sk-proj-****{tail}", st.text(string.ascii_letters, max_size=4)),
        "name": TEXT,
        "created_at": UNIX,
        "last_used_at": nullable(UNIX),
        "id": IDS,
        "owner_project_access": st.sampled_from(["active", "inactive"]),
        "owner": API_KEY_OWNER,
    },
    {},
)
API_KEYS = st.lists(API_KEY, max_size=4, unique_by=lambda k: k["id"])
SERVICE_ACCOUNT = obj(
    {
        "object": st.just("organization.project.service_account"),
        "id": IDS,
        "name": st.sampled_from(["", " "]) | TEXT,
        "role": st.sampled_from(["owner", "member", "none"]),
        "created_at": UNIX,
    },
    {},
)
SERVICE_ACCOUNTS = st.lists(SERVICE_ACCOUNT, max_size=3, unique_by=lambda a: a["id"])
USER = obj(
    {"object": st.just("organization.user"), "id": IDS},
    {
        "name": nullable(TEXT),
        "email": nullable(TEXT),
        "role": nullable(st.sampled_from(["owner", "reader"])),
        "added_at": UNIX,
        "is_default": st.booleans(),
        "is_service_account": st.booleans(),
    },
)
USERS = st.lists(USER, max_size=4, unique_by=lambda u: u["id"])
RATE_LIMIT = obj(
    {
        "object": st.just("project.rate_limit"),
        "id": IDS,
        "model": st.sampled_from(["m", "gpt-4.1", "whisper-1"]) | IDS,
        "max_requests_per_1_minute": COUNT,
        "max_tokens_per_1_minute": COUNT,
    },
    {
        "max_images_per_1_minute": COUNT,
        "max_audio_megabytes_per_1_minute": COUNT,
        "max_requests_per_1_day": COUNT,
        "batch_1_day_max_input_tokens": COUNT,
    },
)
RATE_LIMITS = st.lists(RATE_LIMIT, max_size=4, unique_by=lambda r: r["id"])

# ---- legacy dashboard (not in the spec; fields as third-party clients document them) ---------------

LEGACY_TIME = UNIX | st.builds(lambda s: Decimal(s) + Decimal("0.5"), UNIX)
CREDIT_GRANTS = obj(
    {
        "object": st.just("credit_summary"),
        "total_granted": amounts(),
        "total_used": amounts(),
        "total_available": amounts(),
        "grants": obj(
            {
                "object": st.just("list"),
                "data": st.lists(
                    obj(
                        {
                            "object": st.just("credit_grant"),
                            "id": IDS,
                            "grant_amount": amounts(),
                            "used_amount": amounts(),
                        },
                        {"effective_at": nullable(LEGACY_TIME), "expires_at": nullable(LEGACY_TIME)},
                    ),
                    max_size=3,
                ),
            },
            {},
        ),
    },
    {"total_paid_available": amounts()},
)
USD_LIMIT = st.builds(lambda cents: Decimal(cents) / 100, st.integers(min_value=0, max_value=10**9))
SUBSCRIPTION = obj(
    {
        "object": st.just("billing_subscription"),
        "hard_limit_usd": USD_LIMIT,
        "soft_limit_usd": USD_LIMIT,
        "system_hard_limit_usd": USD_LIMIT,
    },
    {
        "has_payment_method": st.booleans(),
        "canceled": st.booleans(),
        "canceled_at": st.none(),
        "delinquent": nullable(st.booleans()),
        "access_until": UNIX,
        "soft_limit": st.integers(min_value=0, max_value=10**9),
        "hard_limit": st.integers(min_value=0, max_value=10**9),
        "plan": obj({}, {"title": TEXT, "id": IDS}),
        "primary": st.booleans(),
        "account_name": TEXT,
        "billing_mechanism": nullable(TEXT),
        "auto_recharge_enabled": nullable(st.booleans()),
        "auto_recharge_threshold": nullable(amounts()),
        "auto_recharge_to_balance": nullable(amounts()),
        "max_balance": nullable(amounts()),
    },
)

# ---- hostile mutations -----------------------------------------------------------------------------


def deep(depth: int) -> Any:
    value: Any = 1
    for index in range(depth):
        value = [value] if index % 2 else {"x": value}
    return value


HOSTILE_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=8),
    st.integers(),
    st.integers(min_value=10**38, max_value=10**80),
    st.sampled_from([10**20, -(10**20), 2**63, -(2**63), 253_402_300_800]),  # absurd Unix times
    st.sampled_from([Decimal("1E+400"), Decimal("-1E-400"), Decimal("1E-131"), Decimal("0.1" + "1" * 40)]),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1.5]),  # what `NaN`, `Infinity`, 1.5 decode to
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    st.sampled_from([deep(50), deep(300)]),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@st.composite
def hostile(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    """A valid payload with one node replaced, nested deeply, or deleted."""
    payload = copy.deepcopy(draw(valid))
    path = draw(st.sampled_from(list(_paths(payload))))
    action = draw(st.sampled_from(["replace", "replace", "nest", "delete"]))
    if not path:
        return draw(HOSTILE_VALUES)
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    if action == "delete":
        del parent[key]
    elif action == "nest":
        parent[key] = deep(draw(st.integers(min_value=2, max_value=400)))
    else:
        parent[key] = draw(HOSTILE_VALUES)
    return payload
