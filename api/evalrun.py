"""EvalRun: many-sample evaluation of a model on math benchmarks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import Field, model_validator

from .base import CamelModel, LocalObjectRef, ShortStr, StatusModel, Uri
from .benchmarks import BENCHMARK_NAMES, CUSTOM, FILE_BENCHMARK_NAMES, AnswerFormat, AnswerKind
from .conditions import Condition
from .metrics import DEFAULT_METRICS, METRIC_PATTERN, parse_metric
from .models import ModelSource, Pinned, PinnedInput, Prompt, Sampling
from .workload import WORKLOAD_RULES, QueueStatus, WorkloadSpec

MajorityRule = Literal["equivalence", "first-sampled", "sorted", "fractional"]
"""How maj@k votes (cotlab.trainer.grading.majority): equivalence classes of answers (cotlab's), or NVIDIA/NeMo-Skills'
exact-string votes, named after what a tie gives, each the rule of a range of NeMo-Skills commits:
`first-sampled` (2a2886e3..098f04d9, 2024-02-15 to 2025-06-05: the study's 0f7bd73), `sorted` (098f04d9..d20fbb2c,
2025-06-05 to 2025-08-18), `fractional` (d20fbb2c on, 2025-08-18 to today)."""
MAJORITY_RULES: tuple[str, ...] = get_args(MajorityRule)


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
    batch_invariant: bool = Field(
        default=True,
        description="vLLM: batch-invariant kernels (VLLM_BATCH_INVARIANT=1), so a sample's seed regenerates its text"
        " whatever else was batched with it, on the same GPU type, vLLM version and tensor-parallel size; slower.",
    )


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
        description="maj@k's vote: equivalence (answers grouped by the grader, cotlab's), or NeMo-Skills' exact"
        " answer text with a tie going to the answer sampled first (first-sampled: NeMo-Skills 2a2886e3..098f04d9,"
        " 2024-02 to 2025-06, including the study's 0f7bd73), to the smallest answer (sorted: 098f04d9..d20fbb2c,"
        " 2025-06 to 2025-08) or shared by the tied answers (fractional: d20fbb2c on, since 2025-08-18).",
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


# What does not change how a model is evaluated: which model, the sampling seed, and where the pods run.
NOT_PROTOCOL_FIELDS = frozenset(
    {
        "model",
        "suspend",
        "max_retries",
        "output",
        "resources",
        "node_selector",
        "tolerations",
        "queue_name",
        "priority_class",
        "image",
        "service_account_name",
        "pod_template_overrides",
    }
)


def protocol_fields(spec: EvalRunSpec) -> dict[str, Any]:
    """How an EvalRun evaluates, whatever the model and sampling seed: EvalRuns of an arm's training seeds must
    share it (benchmarks, prompt, sampling, metrics, vote, engine), or their scores do not average."""
    fields = spec.model_dump(mode="json", by_alias=True, exclude=set(NOT_PROTOCOL_FIELDS))
    fields["sampling"] = {k: v for k, v in fields["sampling"].items() if k != "seed"}
    return fields


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


class ScoresFile(CamelModel):
    """`<output>/scores.json`: the scores and everything they were computed with, so a number can be re-derived."""

    scores: dict[str, BenchmarkScore] = Field(default_factory=dict)
    model: PinnedInput | None = Field(default=None, description="The model evaluated: hub commit or content digest.")
    pinned: Pinned = Field(default_factory=list)
    engine: dict[str, Any] = Field(default_factory=dict, description="The engine spec, its library version, batch"
                                   " invariance.")  # fmt: skip
    prompt: Prompt | None = None
    sampling: Sampling | None = None
    metrics: list[str] = Field(default_factory=list)
    majority_vote: MajorityRule | None = None

    @classmethod
    def read(cls, raw: dict[str, Any]) -> ScoresFile:
        """A scores file, also one written before it held more than the scores (benchmark -> score)."""
        if "scores" in raw and "engine" in raw:
            return cls.model_validate(raw)
        return cls(scores={name: BenchmarkScore.model_validate(value) for name, value in raw.items()})


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
    pinned: Pinned = Field(
        default_factory=list, description="The model evaluated (hub commit, or the digest checked on load), hub data."
    )
    queue: QueueStatus | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    attempts: int = 0
