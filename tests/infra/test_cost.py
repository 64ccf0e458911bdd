"""docs/deploy.md's cost table is the one computed from what the template and the code really create."""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any

from .cost_model import (
    LAMBDA_GB_SECOND_USD,
    REPO,
    alarms,
    cost_rows,
    emitted_metrics,
    lambda_row,
    money,
    render_table,
    total,
)

DEPLOY_DOC = REPO / "docs" / "deploy.md"
START, END = "<!-- cost table: python -m tests.infra.cost_model -->\n", "\n<!-- end of cost table -->"


def test_cost_table_in_the_deploy_guide_is_computed_from_the_template_and_code(translated: dict[str, Any]) -> None:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    assert START in text and END in text, "the cost table is marked in docs/deploy.md"
    documented = text.split(START, 1)[1].split(END, 1)[0]
    assert documented == render_table(cost_rows(translated)), "regenerate: python -m tests.infra.cost_model"


def test_cost_counts_match_the_alarm_table_and_the_readme(translated: dict[str, Any]) -> None:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    alarm_section = text.split("## 6. The alarms", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(\w+Alarm)` \|", alarm_section, flags=re.MULTILINE))
    assert listed == set(alarms(translated)), "every alarm the template creates is explained, and no other"
    steady, _ = emitted_metrics()
    assert steady == ["SnapshotsWritten"], "a new always-on metric costs $0.30 a month: put it in the table"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"about ${money(total(cost_rows(translated)))} a month" in readme
    assert "cents a month" not in readme


def test_cost_lambda_row_bills_each_functions_own_memory_size(translated: dict[str, Any]) -> None:
    base = lambda_row(translated)
    larger = copy.deepcopy(translated)
    larger["Resources"]["PollerFunction"]["Properties"]["MemorySize"] = 512
    row = lambda_row(larger)
    # 720 polls x 5 s x 256 MB more, at the arm64 price per GB-second; the other functions unchanged.
    assert row.usd - base.usd == 720 * 5 * Decimal(256) / 1024 * LAMBDA_GB_SECOND_USD
    assert "720 polls \N{MULTIPLICATION SIGN} ~5 s at 512 MB" in row.assumption
    assert "720 polls \N{MULTIPLICATION SIGN} ~5 s at 512 MB" not in base.assumption
