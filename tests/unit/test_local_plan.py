"""The local runner's plan: dependency order and missing dependencies named."""

from __future__ import annotations

import pytest

from cotlab.api.validation import parse_resource
from cotlab.cli.local.plan import PlanError, plan
from tests.conftest import example_documents

QUICKSTART = [parse_resource(d) for i, d in example_documents() if i.startswith("quickstart.yaml")]


def test_dependency_order_is_kept_stable() -> None:
    shuffled = [QUICKSTART[3], QUICKSTART[1], QUICKSTART[2], QUICKSTART[0]]
    ordered = plan(shuffled, known=lambda *_: False)
    assert [r.metadata.name for r in ordered] == [
        "quickstart-traces",
        "quickstart-lora",
        "quickstart-after",
        "quickstart-before",
    ]


def test_missing_dependency_is_named() -> None:
    with pytest.raises(PlanError, match="EvalRun/quickstart-after: needs FineTuneRun/quickstart-lora"):
        plan([QUICKSTART[3]], known=lambda *_: False)


def test_dependency_run_before_counts() -> None:
    ran = {("FineTuneRun", "default", "quickstart-lora")}
    assert plan([QUICKSTART[3]], known=lambda *key: key in ran) == [QUICKSTART[3]]


def test_duplicates_are_refused() -> None:
    with pytest.raises(PlanError, match="appears twice"):
        plan([QUICKSTART[0], QUICKSTART[0]], known=lambda *_: False)
