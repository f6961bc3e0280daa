"""What a resource waits for, and what it gets once that is done: one rule for the operator and the local runner.

A FineTuneRun needs its TraceDataset's artifact; an EvalRun of a FineTuneRun needs that run's model. Until the
dependency exists and has succeeded the resource waits (with a reason); a failed dependency fails it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .conditions import Phase, Reason
from .models import ModelSource
from .podcontract import Inputs
from .resources import EvalRun, FineTuneRun, Resource
from .summaries import phase_of
from .tracedataset import TraceDatasetStatus


@dataclass(frozen=True)
class Blocked:
    """Why a resource cannot run (yet): a Waiting reason, or DependencyFailed, with a message naming the dependency."""

    reason: str
    message: str

    @property
    def failed(self) -> bool:
        return self.reason == Reason.DEPENDENCY_FAILED


def dependency(resource: Resource) -> tuple[str, str] | None:
    """(kind, name) of the resource this one waits for, if any."""
    if isinstance(resource, FineTuneRun):
        return "TraceDataset", resource.spec.dataset_ref.name
    if isinstance(resource, EvalRun) and resource.spec.model.fine_tune_run_ref is not None:
        return "FineTuneRun", resource.spec.model.fine_tune_run_ref.name
    return None


def resolve_inputs(resource: Resource, upstream: Resource | None) -> Inputs | Blocked:
    """The inputs the stage gets from its dependency `upstream` (None: not found), or why it cannot run."""
    needed = dependency(resource)
    if needed is None:
        return Inputs()
    kind, name = needed
    ref = f"{kind}/{name}"
    if upstream is None:
        return Blocked(Reason.DEPENDENCY_NOT_FOUND, f"{ref} does not exist (yet); waiting for it to be created")
    phase = phase_of(upstream)
    if phase == Phase.FAILED:
        return Blocked(Reason.DEPENDENCY_FAILED, f"{ref} failed")
    if phase != Phase.SUCCEEDED:
        reason = Reason.DATASET_NOT_READY if kind == "TraceDataset" else Reason.FINETUNE_NOT_SUCCEEDED
        return Blocked(reason, f"waiting for {ref} to be Ready (it is {phase})")
    status = upstream.status
    if isinstance(status, TraceDatasetStatus):
        if status.artifact is None:
            return Blocked(Reason.DEPENDENCY_FAILED, f"{ref} is Ready but recorded no artifact")
        return Inputs(dataset=status.artifact)
    model = status.outputs.model if status is not None and status.outputs is not None else None  # type: ignore[union-attr]
    if model is None:
        return Blocked(Reason.DEPENDENCY_FAILED, f"{ref} is Ready but recorded no model")
    return Inputs(model=ModelSource(uri=model.uri), model_digest=model.digest)
