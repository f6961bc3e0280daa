"""The three resources as whole objects, and the one registry of kinds (plural, short names, columns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import ObjectMeta
from .evalrun import EvalRunSpec, EvalRunStatus
from .finetunerun import FineTuneRunSpec, FineTuneRunStatus
from .kinds import KIND_NAMES_BY_KIND, KindNames
from .tracedataset import TraceDatasetSpec, TraceDatasetStatus


def _drop_nones(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None}


class _Resource(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", defer_build=True)

    api_version: Literal["cotlab.dev/v1alpha1"] = Field(default="cotlab.dev/v1alpha1", alias="apiVersion")
    metadata: ObjectMeta

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it. Unset fields are left out, but an explicit null that differs
        from a default (`fields.answer: null`) is kept: dropping it would bring the default back on reload."""
        body = self.model_dump(mode="json", by_alias=True)
        body["metadata"] = _drop_nones(body["metadata"])
        return _drop_nones(body)


class TraceDataset(_Resource):
    """A versioned, content-addressed set of chain-of-thought training traces."""

    kind: Literal["TraceDataset"] = "TraceDataset"
    spec: TraceDatasetSpec
    status: TraceDatasetStatus | None = None


class FineTuneRun(_Resource):
    """Light supervised fine-tuning of a base model on a TraceDataset."""

    kind: Literal["FineTuneRun"] = "FineTuneRun"
    spec: FineTuneRunSpec
    status: FineTuneRunStatus | None = None


class EvalRun(_Resource):
    """Many-sample evaluation of a model on math benchmarks."""

    kind: Literal["EvalRun"] = "EvalRun"
    spec: EvalRunSpec
    status: EvalRunStatus | None = None


Resource = TraceDataset | FineTuneRun | EvalRun


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""


def _condition(type_: str) -> str:
    # Select by type, never by position: `[-1:]` shows whichever condition happened to change last.
    return f".status.conditions[?(@.type=='{type_}')].status"


@dataclass(frozen=True)
class ResourceKind(KindNames):
    """Everything the CRD generator, the CLI and the operator need to know about one kind: its names (kinds.py)
    and its model."""

    model: type[TraceDataset] | type[FineTuneRun] | type[EvalRun]
    columns: tuple[PrinterColumn, ...]
    # spec fields that may change after creation (everything else is immutable, enforced by CEL).
    mutable_fields: tuple[str, ...] = ()


_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")

RESOURCE_KINDS: tuple[ResourceKind, ...] = (
    ResourceKind(
        **vars(KIND_NAMES_BY_KIND["TraceDataset"]),
        model=TraceDataset,
        columns=(
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Ready", _condition("Ready")),
            PrinterColumn("Count", ".status.count", "integer"),
            PrinterColumn("Digest", ".status.artifact.digest", priority=1),
            _AGE,
        ),
    ),
    ResourceKind(
        **vars(KIND_NAMES_BY_KIND["FineTuneRun"]),
        model=FineTuneRun,
        columns=(
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Dataset", ".spec.datasetRef.name"),
            PrinterColumn("Method", ".spec.method"),
            PrinterColumn("Ready", _condition("Ready")),
            PrinterColumn("Progress", ".status.progress.percent", "number"),
            PrinterColumn("Loss", ".status.progress.loss", "number", priority=1),
            PrinterColumn("Queue", ".spec.queueName", priority=1),
            _AGE,
        ),
        mutable_fields=("suspend",),
    ),
    ResourceKind(
        **vars(KIND_NAMES_BY_KIND["EvalRun"]),
        model=EvalRun,
        columns=(
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Samples", ".spec.sampling.samples", "integer"),
            PrinterColumn("Ready", _condition("Ready")),
            PrinterColumn("Waiting", _condition("Waiting"), priority=1),
            PrinterColumn("Queue", ".spec.queueName", priority=1),
            _AGE,
        ),
        mutable_fields=("suspend",),
    ),
)

KINDS_BY_NAME = {k.kind: k for k in RESOURCE_KINDS}
