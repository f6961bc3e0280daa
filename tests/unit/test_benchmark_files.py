"""The study's benchmarks come from NeMo-Skills' comp-math-24-25 file, fetched by URL, checked by digest, filtered."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cotlab.api import benchmarks as registry
from cotlab.api.benchmarks import BENCHMARKS_BY_NAME, COMP_MATH_24_25, COMP_MATH_24_25_SHA256, PinnedFile
from cotlab.api.evalrun import BenchmarkSelection
from cotlab.trainer.core.errors import InvalidInputError
from cotlab.trainer.generation.benchmarks import Problem, load_problems
from tests.conftest import COMP_MATH_SAMPLE, http_server

SAMPLE_SHA256 = hashlib.sha256(COMP_MATH_SAMPLE.read_bytes()).hexdigest()
SAMPLE_SIZES = {"aime24": 2, "aime25": 2, "hmmt-24-25": 3}


def test_the_study_benchmarks_are_nemo_skills_comp_math_file() -> None:
    # NVIDIA/NeMo-Skills at 0f7bd73, the last commit to change the file (256 rows: 196 + 30 + 30).
    assert COMP_MATH_24_25 == (
        "https://raw.githubusercontent.com/NVIDIA/NeMo-Skills/0f7bd73300de288bff4e0540c4476e9cdb8dfe36"
        "/nemo_skills/dataset/comp-math-24-25/test.txt"
    )
    assert COMP_MATH_24_25_SHA256 == "c83c51386c1bb15e26b665caf880e8158e57585bffb3579a824f93eec4c49190"
    for name, size, kind in (("hmmt-24-25", 196, "latex"), ("aime24", 30, "integer"), ("aime25", 30, "integer")):
        bench = BENCHMARKS_BY_NAME[name]
        assert bench.hub is None and bench.file == PinnedFile(
            COMP_MATH_24_25, COMP_MATH_24_25_SHA256, where=(("subset_for_metrics", name),)
        )
        assert (bench.size, bench.answer_kind, bench.id_field, bench.answer_field) == (
            size,
            kind,
            "id",
            "expected_answer",
        )
    # The hub copies keep other names.
    assert BENCHMARKS_BY_NAME["aime24-hf"].hub is not None and BENCHMARKS_BY_NAME["aime25-hf"].hub is not None


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The sample served over HTTP, and the registry's three study benchmarks pointed at it with its digest."""
    shutil.copy(COMP_MATH_SAMPLE, tmp_path / "test.txt")
    with http_server(tmp_path) as base:
        url = f"{base}/test.txt"
        for name, size in SAMPLE_SIZES.items():
            pinned = dataclasses.replace(BENCHMARKS_BY_NAME[name].file, url=url, sha256=SAMPLE_SHA256)  # type: ignore[arg-type]
            monkeypatch.setitem(
                registry.BENCHMARKS_BY_NAME, name, dataclasses.replace(BENCHMARKS_BY_NAME[name], file=pinned, size=size)
            )
        yield url


def test_a_pinned_file_is_fetched_filtered_and_normalised(served: str) -> None:
    assert load_problems(BenchmarkSelection(name="hmmt-24-25")) == [
        Problem("hmmt_F_2024_algnt_1", "Compute $\\sum_{k=1}^{10} k$.", "55", "latex"),
        Problem(
            "hmmt_N_2024_general_2",
            "Compute $\\sin^2 15^\\circ + \\cos^2 15^\\circ$ divided by $4$.",
            "$\\frac{1}{4}$",
            "latex",
        ),
        Problem("hmmt_F_2025_team_3", "Find all real $x$ with $x^2 = 2$.", "$\\sqrt{2}, -\\sqrt{2}$", "latex"),
    ]
    assert [p.id for p in load_problems(BenchmarkSelection(name="aime24"))] == ["aime24-0", "aime24-1"]
    assert [p.answer_kind for p in load_problems(BenchmarkSelection(name="aime25", limit=1))] == ["integer"]


def test_a_file_whose_digest_differs_is_refused(served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = BENCHMARKS_BY_NAME["hmmt-24-25"]
    assert bench.file is not None
    wrong = dataclasses.replace(bench.file, sha256="0" * 64)
    monkeypatch.setitem(registry.BENCHMARKS_BY_NAME, "hmmt-24-25", dataclasses.replace(bench, file=wrong))
    with pytest.raises(InvalidInputError, match=f"sha256 {SAMPLE_SHA256}, but the registry pins {'0' * 64}"):
        load_problems(BenchmarkSelection(name="hmmt-24-25"))


def test_the_expected_count_is_checked_at_load(served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = BENCHMARKS_BY_NAME["hmmt-24-25"]
    monkeypatch.setitem(registry.BENCHMARKS_BY_NAME, "hmmt-24-25", dataclasses.replace(bench, size=196))
    with pytest.raises(InvalidInputError, match="3 problems, but hmmt-24-25 has 196"):
        load_problems(BenchmarkSelection(name="hmmt-24-25", limit=2))  # the limit cuts after the check


def test_a_mounted_copy_must_be_the_pinned_file(tmp_path: Path) -> None:
    copy = tmp_path / "test.txt"
    shutil.copy(COMP_MATH_SAMPLE, copy)  # not NeMo-Skills' file: its digest differs from the registry's
    with pytest.raises(InvalidInputError, match=f"{copy}: sha256 {SAMPLE_SHA256}, but the registry pins c83c5138"):
        load_problems(BenchmarkSelection(name="hmmt-24-25", uri=str(copy)))


def test_a_revision_means_nothing_for_a_pinned_file() -> None:
    with pytest.raises(ValueError, match="revision pins a hub dataset; hmmt-24-25 is a file"):
        BenchmarkSelection(name="hmmt-24-25", revision="abc")
    assert BenchmarkSelection(name="aime24-hf", revision="abc").revision == "abc"
