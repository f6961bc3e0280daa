"""set_condition reports changes, keeps transition times, truncates; phase derives from conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cotlab.api import Condition, ConditionType, Phase, Reason, derive_phase, set_condition
from cotlab.api.conditions import MAX_MESSAGE_LENGTH

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


def cond(type_: str, status: str, reason: str = "R", message: str = "", at: datetime = NOW) -> Condition:
    return Condition(type=type_, status=status, reason=reason, message=message, last_transition_time=at)  # type: ignore[arg-type]


def test_adds_a_new_condition() -> None:
    got, changed = set_condition(
        [], ConditionType.WAITING, True, Reason.DATASET_NOT_READY, "qwq-20", now=NOW, generation=1
    )
    assert changed
    assert got == [
        Condition(
            type="Waiting",
            status="True",
            reason="DatasetNotReady",
            message="qwq-20",
            last_transition_time=NOW,
            observed_generation=1,
        )
    ]


def test_same_condition_is_no_change() -> None:
    first, _ = set_condition([], "Ready", True, "Succeeded", now=NOW, generation=2)
    again, changed = set_condition(first, "Ready", True, "Succeeded", now=LATER, generation=2)
    assert not changed and again == first


def test_message_change_keeps_transition_time() -> None:
    first, _ = set_condition([], "Running", True, "PodRunning", "step 1", now=NOW)
    got, changed = set_condition(first, "Running", True, "PodRunning", "step 2", now=LATER)
    assert changed and got[0].last_transition_time == NOW and got[0].message == "step 2"


def test_status_flip_moves_transition_time_and_keeps_order() -> None:
    start = [cond("Waiting", "True"), cond("Running", "False")]
    got, changed = set_condition(start, "Waiting", False, "DependencyReady", now=LATER)
    assert changed and [c.type for c in got] == ["Waiting", "Running"]
    assert got[0].last_transition_time == LATER and got[0].status == "False"


def test_long_message_is_truncated() -> None:
    got, _ = set_condition([], "Failed", True, "PodFailed", "x" * (MAX_MESSAGE_LENGTH + 10), now=NOW)
    assert len(got[0].message) == MAX_MESSAGE_LENGTH


@pytest.mark.parametrize(
    ("conditions", "phase"),
    [
        ([], Phase.PENDING),
        ([cond("Waiting", "True")], Phase.WAITING),
        ([cond("Waiting", "False"), cond("Running", "True")], Phase.RUNNING),
        ([cond("Running", "True"), cond("Suspended", "True")], Phase.SUSPENDED),
        ([cond("Running", "False"), cond("Ready", "True")], Phase.SUCCEEDED),
        ([cond("Ready", "False"), cond("Failed", "True")], Phase.FAILED),
    ],
    ids=["none", "waiting", "running", "suspended-wins-over-running", "succeeded", "failed"],
)
def test_derive_phase(conditions: list[Condition], phase: Phase) -> None:
    assert derive_phase(conditions) == phase
