"""TraceDataset: a versioned, content-addressed set of chain-of-thought training traces."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from .base import CamelModel, ConfigMapKeyRef, LongStr, SecretKeyRef, ShortStr, StatusModel, Uri
from .benchmarks import AnswerFormat
from .conditions import Condition
from .models import ModelSource, Pinned, Prompt, Sampling
from .workload import QueueStatus, WorkloadSpec

RowFilter = dict[str, Annotated[list[ShortStr], Field(min_length=1, max_length=64)]]

SOURCE_KINDS = ("uri", "huggingface", "configMap", "generate")


class HuggingFaceSource(CamelModel):
    """Rows of a hub dataset, e.g. nvidia/Nemotron-Math-HumanReasoning filtered by solution_type."""

    repo: ShortStr
    revision: ShortStr = "main"
    split: ShortStr = "train"
    config: ShortStr | None = None
    data_files: Annotated[list[ShortStr], Field(max_length=64)] = Field(default_factory=list)
    where: RowFilter = Field(default_factory=dict, description="Keep rows whose column equals one of the values.")
    token_secret_ref: SecretKeyRef | None = None


class ProblemSet(CamelModel):
    """Problems for the teacher: a registered benchmark (e.g. math, gsm8k) or a JSONL/parquet URI."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "has(self.benchmark) != has(self.uri)", "message": "set exactly one of benchmark or uri"}
            ]
        }
    }

    benchmark: ShortStr | None = None
    uri: Uri | None = None
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.benchmark is None) == (self.uri is None):
            raise ValueError("set exactly one of benchmark or uri")
        return self


class GenerateSource(CamelModel):
    """Rejection sampling from a teacher: keep only traces whose final answer grades correct."""

    teacher: ModelSource
    problems: ProblemSet
    prompt: Prompt = Field(default_factory=Prompt)
    sampling: Sampling = Field(default_factory=lambda: Sampling(samples=4))
    keep_per_problem: int = Field(default=1, ge=1, le=4096)


class TraceSource(CamelModel):
    """Where traces come from: exactly one of uri, huggingface, configMap, generate."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.uri), has(self.huggingface), has(self.configMap), has(self.generate)]"
                    ".filter(x, x).size() == 1",
                    "message": "set exactly one of uri, huggingface, configMap, generate",
                }
            ]
        }
    }

    uri: Uri | None = Field(default=None, description="file://, pvc://claim/path, s3://, https:// JSONL or parquet.")
    huggingface: HuggingFaceSource | None = None
    config_map: ConfigMapKeyRef | None = None
    generate: GenerateSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [kind for kind in SOURCE_KINDS if getattr(self, _snake(kind)) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of {', '.join(SOURCE_KINDS)} (got {len(given)}: {given})")
        return self


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


class FieldMapping(CamelModel):
    """Which column holds what; defaults match nvidia/Nemotron-Math-HumanReasoning."""

    problem: ShortStr = "problem"
    solution: ShortStr = "solution"
    answer: ShortStr | None = Field(
        default="expected_answer", description="Unset: the answer is the last \\boxed{} of the solution."
    )
    answer_format: AnswerFormat = Field(
        default="plain", description="How the answer column states it: plain, gsm8k (after ####), boxed."
    )
    id: ShortStr | None = None
    stage: ShortStr | None = "solution_type"
    difficulty: ShortStr | None = None
    problem_id: ShortStr | None = Field(
        default=None,
        description="Column naming the problem a trace solves. Unset: the sha256 of the problem text (its first 16"
        " hex digits), so traces of one problem by different authors share it.",
    )


Strategy = Literal["random", "hardest", "longest", "shortest", "diverse"]


class Filters(CamelModel):
    """Which traces may be selected at all."""

    min_tokens: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    stages: Annotated[list[ShortStr], Field(max_length=64)] = Field(default_factory=list)
    correct_only: bool = Field(default=False, description="Keep traces whose boxed answer matches the answer.")


class ProblemSelection(CamelModel):
    """The problems every trace must be about, the same in every dataset that selects them alike: an explicit
    list of problem ids, or a seeded choice of `count` problems that have a trace of every stage in
    `withStages` (the study's arms: the same problems, one trace type each)."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "has(self.ids) != has(self.count)", "message": "set exactly one of ids or count"}
            ]
        }
    }

    ids: Annotated[list[ShortStr], Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description="Problem ids (fields.problemId, or the problem text's digest), in this order."
    )
    count: int | None = Field(default=None, ge=1, description="How many problems to choose, seeded.")
    seed: int = Field(default=0, ge=0)
    with_stages: Annotated[list[ShortStr], Field(max_length=64)] = Field(
        default_factory=list, description="Choose only problems with a trace of each of these stages."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.ids is None) == (self.count is None):
            raise ValueError("set exactly one of ids or count")
        return self


class Selection(CamelModel):
    """How `count` traces are chosen from the filtered pool (of the chosen problems, when `problems` is set)."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.strategy != 'diverse' || has(self.diversityField)",
                    "message": "strategy diverse needs diversityField (a topic column)",
                }
            ]
        }
    }

    count: int | None = Field(default=None, ge=1, description="Unset: keep every trace that passes filters.")
    seed: int = Field(default=0, ge=0)
    strategy: Strategy = "random"
    filters: Filters = Field(default_factory=Filters)
    diversity_field: ShortStr | None = Field(default=None, description="Column to spread the selection over.")
    problems: ProblemSelection | None = Field(
        default=None, description="Fix the problems first, before filters and strategy: unset, any problem."
    )

    @model_validator(mode="after")
    def _diverse_needs_field(self) -> Self:
        if self.strategy == "diverse" and self.diversity_field is None:
            raise ValueError("strategy diverse needs diversityField (a topic column)")
        return self


class ThinkMarkers(CamelModel):
    open: ShortStr = "<think>"
    close: ShortStr = "</think>"


class TraceFormat(CamelModel):
    """How a trace becomes a training example."""

    prompt: Prompt = Field(default_factory=Prompt)
    answer_in_boxed: bool = Field(
        default=True, description="Append \\boxed{answer} when the trace has no boxed answer."
    )
    think_markers: ThinkMarkers | None = None


class TraceDatasetSpec(WorkloadSpec):
    source: TraceSource
    fields: FieldMapping = Field(default_factory=FieldMapping)
    select: Selection = Field(default_factory=Selection)
    format: TraceFormat = Field(default_factory=TraceFormat)
    tokenizer: ModelSource | None = Field(
        default=None, description="Counts tokens for length filters and stats; the fine-tuned model's."
    )
    output: Uri | None = Field(default=None, description="Where the artifact goes; the operator's store if unset.")


class Artifact(StatusModel):
    uri: Uri
    digest: ShortStr = Field(pattern=r"^sha256:[0-9a-f]{64}$")


class TokenStats(StatusModel):
    min: int
    p50: int
    p90: int
    max: int


class TraceStats(StatusModel):
    tokens: TokenStats | None = None
    correct_rate: float | None = None
    stages: dict[str, int] = Field(default_factory=dict)
    answers_appended: int | None = Field(
        default=None,
        description="With format.answerInBoxed: how many traces had no \\boxed{} answer and were given the line"
        ' "The final answer is \\boxed{answer}." (the others train as written).',
    )


class TraceDatasetStatus(StatusModel):
    phase: ShortStr | None = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(default_factory=list)
    observed_generation: int | None = None
    artifact: Artifact | None = None
    count: int | None = None
    stats: TraceStats | None = None
    pinned: Pinned = Field(default_factory=list, description="The hub dataset and tokenizer at their commits.")
    queue: QueueStatus | None = None
    message: LongStr | None = None
