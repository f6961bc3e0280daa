"""The pod side reads like its pipeline: one folder per stage, names without their folder's prefix, stable paths."""

from __future__ import annotations

import importlib

import pytest

from tests.conftest import REPO

TRAINER = REPO / "trainer"
STAGES = ("curate", "finetune", "evaluate")
SHARED = ("generation", "grading", "core")


def test_stages_and_shared_parts_are_folders() -> None:
    folders = sorted(p.name for p in TRAINER.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert folders == sorted(STAGES + SHARED)


@pytest.mark.parametrize("folder", STAGES + SHARED)
def test_no_module_repeats_its_folder_name(folder: str) -> None:
    modules = [p.stem for p in (TRAINER / folder).rglob("*.py")]
    assert [m for m in modules if m.startswith(f"{folder}_") or m == folder] == []


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_says_what_it_reads_and_writes(stage: str) -> None:
    doc = importlib.import_module(f"cotlab.trainer.{stage}").__doc__ or ""
    assert all(word in doc for word in ("Reads:", "Writes:", "Pod contract:")), doc


def test_the_import_paths_people_use_keep_working() -> None:
    from cotlab.trainer.grading import Grader, extract_answer, is_equivalent
    from cotlab.trainer.metrics import majority_vote, pass_at_k

    assert extract_answer(r"so \boxed{42}.") == "42"
    assert pass_at_k(4, 2, 1) == pytest.approx(0.5)
    assert callable(is_equivalent) and callable(majority_vote) and Grader.__name__ == "Grader"
    assert importlib.import_module("cotlab.trainer.__main__").main.__module__ == "cotlab.trainer.entrypoint"


def test_images_that_evaluate_can_fetch_pinned_benchmark_files() -> None:
    # The study's benchmarks are https:// files read with fsspec, whose HTTP filesystem needs aiohttp; nothing
    # else in the trainer image's dependencies brings it.
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("train", "eval"):
        assert any(dep.split("=")[0].strip() == "aiohttp" for dep in extras[extra]), extra
