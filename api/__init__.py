"""cotlab.api: the three resources as typed models, their conditions, the benchmark registry, the pod contract.

This package imports nothing else from cotlab; the operator, the pods and the CLI all read it.

Its names load on first use (PEP 562): `import cotlab.api.kinds` must not build every pydantic model, or a
command that only needs names (`cotctl status`, completion) pays ~0.2 s for models it never uses. The
TYPE_CHECKING imports give type checkers the same names; a unit test keeps them, `_HOMES` and `__all__` equal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import CamelModel, ObjectMeta
    from .benchmarks import BENCHMARKS, BENCHMARKS_BY_NAME, Benchmark, get_benchmark
    from .conditions import Condition, derive_phase, is_true, set_condition
    from .evalrun import EvalRunSpec, EvalRunStatus
    from .finetunerun import FineTuneRunSpec, FineTuneRunStatus
    from .kinds import API_VERSION, GROUP, VERSION
    from .models import ModelSource, Prompt, Sampling
    from .phases import ConditionType, Phase, Reason
    from .resources import KINDS_BY_NAME, RESOURCE_KINDS, EvalRun, FineTuneRun, Resource, ResourceKind, TraceDataset
    from .tracedataset import TraceDatasetSpec, TraceDatasetStatus

_HOMES = {
    "base": ("CamelModel", "ObjectMeta"),
    "benchmarks": ("BENCHMARKS", "BENCHMARKS_BY_NAME", "Benchmark", "get_benchmark"),
    "conditions": ("Condition", "derive_phase", "is_true", "set_condition"),
    "evalrun": ("EvalRunSpec", "EvalRunStatus"),
    "finetunerun": ("FineTuneRunSpec", "FineTuneRunStatus"),
    "kinds": ("API_VERSION", "GROUP", "VERSION"),
    "models": ("ModelSource", "Prompt", "Sampling"),
    "phases": ("ConditionType", "Phase", "Reason"),
    "resources": (
        "KINDS_BY_NAME", "RESOURCE_KINDS", "EvalRun", "FineTuneRun", "Resource", "ResourceKind", "TraceDataset"
    ),
    "tracedataset": ("TraceDatasetSpec", "TraceDatasetStatus"),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "API_VERSION",
    "BENCHMARKS",
    "BENCHMARKS_BY_NAME",
    "GROUP",
    "KINDS_BY_NAME",
    "RESOURCE_KINDS",
    "VERSION",
    "Benchmark",
    "CamelModel",
    "Condition",
    "ConditionType",
    "EvalRun",
    "EvalRunSpec",
    "EvalRunStatus",
    "FineTuneRun",
    "FineTuneRunSpec",
    "FineTuneRunStatus",
    "ModelSource",
    "ObjectMeta",
    "Phase",
    "Prompt",
    "Reason",
    "Resource",
    "ResourceKind",
    "Sampling",
    "TraceDataset",
    "TraceDatasetSpec",
    "TraceDatasetStatus",
    "derive_phase",
    "get_benchmark",
    "is_true",
    "set_condition",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
