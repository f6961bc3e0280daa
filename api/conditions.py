"""The Condition model, the one condition setter, and phase derived from conditions.

Types, reasons and phases are constants in phases.py (as Kueue's workload_types.go keeps them). Phase is never
stored on its own: `derive_phase` computes it from conditions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import StatusModel
from .phases import PHASE_BY_CONDITION, ConditionType, Phase, Reason, deciding_type

__all__ = [  # the vocabulary lives in phases.py (no pydantic); this module adds the Condition model
    "MAX_MESSAGE_LENGTH",
    "Condition",
    "ConditionType",
    "Phase",
    "Reason",
    "derive_phase",
    "is_true",
    "phase_condition",
    "set_condition",
]

MAX_MESSAGE_LENGTH = 32 * 1024  # the apiserver's limit for metav1.Condition.message


class Condition(StatusModel):
    """A condition in the Kubernetes (metav1.Condition) shape."""

    type: str = Field(max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = Field(default="", max_length=MAX_MESSAGE_LENGTH)
    last_transition_time: datetime
    observed_generation: int | None = Field(default=None, ge=0)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str = "",
    *,
    now: datetime,
    generation: int | None = None,
) -> tuple[list[Condition], bool]:
    """Return the conditions with `type_` set, and whether anything changed.

    The transition time moves only when the status flips, as meta.SetStatusCondition does;
    the message is truncated to the apiserver's limit.
    """
    wire_status: Literal["True", "False"] = "True" if status else "False"
    message = message[:MAX_MESSAGE_LENGTH]
    old = next((c for c in conditions if c.type == type_), None)
    if old is not None and (old.status, old.reason, old.message, old.observed_generation) == (
        wire_status,
        reason,
        message,
        generation,
    ):
        return conditions, False
    new = Condition(
        type=type_,
        status=wire_status,
        reason=reason,
        message=message,
        last_transition_time=old.last_transition_time if old and old.status == wire_status else now,
        observed_generation=generation,
    )
    if old is None:
        return [*conditions, new], True
    return [new if c.type == type_ else c for c in conditions], True


def is_true(conditions: list[Condition], type_: str) -> bool:
    """Whether the condition of `type_` is present with status True."""
    return any(c.type == type_ and c.status == "True" for c in conditions)


def derive_phase(conditions: Sequence[Condition]) -> Phase:
    """The phase a user sees, derived from conditions in order of finality."""
    deciding = phase_condition(conditions)
    return PHASE_BY_CONDITION[ConditionType(deciding.type)] if deciding else Phase.PENDING


def phase_condition(conditions: Sequence[Condition]) -> Condition | None:
    """The condition that decides the phase (its reason and message explain it), or None while Pending."""
    type_ = deciding_type((c.type, c.status) for c in conditions)
    return next((c for c in conditions if c.type == type_ and c.status == "True"), None) if type_ else None
