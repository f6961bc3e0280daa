"""EvalRun: many-sample evaluation of a model on math benchmarks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from .base import CamelModel, LocalObjectRef, ShortStr, StatusModel, Uri
from .benchmarks import BENCHMARK_NAMES, CUSTOM, FILE_BENCHMARK_NAMES, AnswerFormat, AnswerKind
from .conditions import Condition
from .metrics import DEFAULT_METRICS, METRIC_PATTERN, parse_metric
from .models import ModelSource, Prompt, Sampling
from .workload import WORKLOAD_RULES, QueueStatus, WorkloadSpec

MajorityRule = Literal["equivalence", "string", "string-fractional"]
"""How maj@k votes (cotlab.trainer.grading.majority): equivalence classes of answers (cotlab's), or NeMo-Skills'
exact-string votes with a tie going to the smallest answer (`string`, as the study ran it) or sharing credit
(`string-fractional`, NeMo-Skills since 2025-08)."""


BenchmarkName = Literal[*BENCHMARK_NAMES, CUSTOM]  # type: ignore[valid-type]


class EvalModel(CamelModel):
    """The model to evaluate: the output of a FineTuneRun, or a model from the hub / a URI."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.fineTuneRunRef) != has(self.source)",
                    "message": "set exactly one of fineTuneRunRef or source",
                }
            ]
        }
    }

    fine_tune_run_ref: LocalObjectRef | None = None
    source: ModelSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.fine_tune_run_ref is None) == (self.source is None):
            raise ValueError("set exactly one of fineTuneRunRef or source")
        return self


class CustomFields(CamelModel):
    problem: ShortStr = "problem"
    answer: ShortStr = "answer"
    id: ShortStr | None = None


class BenchmarkSelection(CamelModel):
    """A registered benchmark by name, or `custom` with a URI and a field mapping."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "self.name != 'custom' || has(self.uri)", "message": "a custom benchmark needs uri"},
                {"rule": "self.name == 'custom' || !has(self.fields)", "message": "fields is only for custom"},
                {
                    "rule": "!has(self.revision) || !(self.name in ["
                    + ", ".join(f"'{name}'" for name in FILE_BENCHMARK_NAMES)
                    + "])",
                    "message": "revision pins a hub dataset; this benchmark is a file the registry pins by digest",
                },
            ]
        }
    }

    name: BenchmarkName
    uri: Uri | None = Field(
        default=None,
        description="Custom benchmarks, or a mounted copy of a registered one (a pinned file's copy must match its"
        " digest).",
    )
    fields: CustomFields | None = None
    revision: ShortStr | None = Field(
        default=None, description="Hub commit to pin for a registered benchmark; the registry's when unset."
    )
    answer_kind: AnswerKind | None = None
    answer_format: AnswerFormat | None = None
    limit: int | None = Field(default=None, ge=1, description="Evaluate the first N problems only.")

    @model_validator(mode="after")
    def _custom_needs_uri(self) -> Self:
        if self.name == CUSTOM and self.uri is None:
            raise ValueError("a custom benchmark needs uri")
        if self.name != CUSTOM and self.fields is not None:
            raise ValueError("fields is only for custom")
        if self.revision is not None and self.name in FILE_BENCHMARK_NAMES:
            raise ValueError(
                f"revision pins a hub dataset; {self.name} is a file the registry pins by digest (drop revision)"
            )
        return self


class Engine(CamelModel):
    """The generation engine: vLLM on GPUs; transformers for CPU runs and tests."""

    name: Literal["vllm", "transformers"] = "vllm"
    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    max_model_len: int | None = Field(
        default=None,
        ge=16,
        description="Prompt plus output tokens per sample; a sample that reaches it stops (finish reason length)."
        " Unset: the model's own context length. Set it to the longest prompt + maxTokens to size vLLM's KV cache.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "bfloat16"
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    batch_size: int = Field(default=16, ge=1, le=4096, description="Sequences per batch (transformers).")


class Output(CamelModel):
    uri: Uri | None = Field(default=None, description="Per-sample JSONL and scores; the operator's store if unset.")


class EvalRunSpec(WorkloadSpec):
    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                *WORKLOAD_RULES,
                {
                    # Guards: an object default is not materialised by the apiserver, only its fields'.
                    "rule": "!has(self.metrics) || self.metrics.all(m, int(m.substring(m.indexOf('@') + 1))"
                    f" <= (has(self.sampling) ? self.sampling.samples : {Sampling.model_fields['samples'].default}))",
                    "message": "metrics: k in pass@k / maj@k must be at most sampling.samples",
                },
            ]
        }
    }

    model: EvalModel
    benchmarks: Annotated[list[BenchmarkSelection], Field(min_length=1, max_length=32)]
    sampling: Sampling = Field(default_factory=Sampling)
    prompt: Prompt = Field(default_factory=Prompt)
    metrics: Annotated[
        list[Annotated[str, Field(max_length=16, pattern=METRIC_PATTERN)]], Field(min_length=1, max_length=16)
    ] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    majority_vote: MajorityRule = Field(
        default="equivalence",
        description="maj@k's vote: equivalence (answers grouped by the grader, cotlab's), string (NeMo-Skills as"
        " the study ran it: exact answer text, a tie goes to the smallest), string-fractional (NeMo-Skills since"
        " 2025-08: tied answers share the credit).",
    )
    engine: Engine = Field(default_factory=Engine)
    grader_timeout_seconds: float = Field(default=10.0, gt=0.0, le=600.0)
    suspend: bool = False
    max_retries: int = Field(default=3, ge=0, le=100)
    output: Output = Field(default_factory=Output)

    @model_validator(mode="after")
    def _k_at_most_samples(self) -> Self:
        for metric in self.metrics:
            _, k = parse_metric(metric)
            if k > self.sampling.samples:
                raise ValueError(f"metrics: {metric} needs k <= sampling.samples ({self.sampling.samples})")
        return self


class MetricValue(StatusModel):
    value: float
    stderr: float | None = None


class BenchmarkScore(StatusModel):
    problems: int
    problems_digest: ShortStr | None = Field(
        default=None, description="sha256 of the problems and gold answers scored: pins the data, whatever its source."
    )
    samples_per_problem: int
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    mean_output_tokens: float | None = None
    truncation_rate: float | None = None
    no_answer_rate: float | None = None
    grader_timeouts: int = 0


class EvalProgress(StatusModel):
    """The newest progress marker of an evaluate pod: samples done of the benchmark being generated."""

    # A custom benchmark is named after its file, which may be as long as a URI.
    benchmark: Uri | None = None
    done: int = 0
    total: int | None = None
    percent: float | None = None


class EvalOutputs(StatusModel):
    samples: Uri | None = None
    scores: Uri | None = None


class EvalRunStatus(StatusModel):
    phase: ShortStr | None = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(default_factory=list)
    observed_generation: int | None = None
    progress: EvalProgress | None = None
    scores: dict[str, BenchmarkScore] = Field(default_factory=dict)
    outputs: EvalOutputs | None = None
    queue: QueueStatus | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    attempts: int = 0
