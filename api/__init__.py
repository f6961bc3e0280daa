"""cotlab.api: the three resources as typed models, their conditions, the benchmark registry, the pod contract.

This package imports nothing else from cotlab; the operator, the pods and the CLI all read it.
"""

from .base import API_VERSION, GROUP, VERSION, CamelModel, ObjectMeta
from .benchmarks import BENCHMARKS, BENCHMARKS_BY_NAME, Benchmark, get_benchmark
from .conditions import Condition, ConditionType, Phase, Reason, derive_phase, is_true, set_condition
from .evalrun import EvalRunSpec, EvalRunStatus
from .finetunerun import FineTuneRunSpec, FineTuneRunStatus
from .models import ModelSource, Prompt, Sampling
from .resources import KINDS_BY_NAME, RESOURCE_KINDS, EvalRun, FineTuneRun, Resource, ResourceKind, TraceDataset
from .tracedataset import TraceDatasetSpec, TraceDatasetStatus

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
