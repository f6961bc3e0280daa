"""`cotctl results` over local state: scores from status or from the scores file, pages of per-sample records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotlab.cli.main import app

from .cli_state import finished_eval, write_benchmark

runner = CliRunner()
GOLD = {"a": "1", "b": "2", "c": "3"}
ANSWERS = {"a": ["1", "1"], "b": ["2", None], "c": ["9", "3"]}


def cotctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    bench = write_benchmark(tmp_path / "sums.jsonl", GOLD)
    finished_eval(root, "whole", bench, GOLD, ANSWERS)
    finished_eval(root, "cut", bench, GOLD, ANSWERS, cut=True)
    return root


def test_scores_come_from_status_or_from_the_scores_file_when_the_summary_was_cut(state: Path) -> None:
    result = cotctl("results", "--local", "--root", str(state), "-o", "json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["whole"]["sums"]["metrics"]["pass@1"]["value"] == pytest.approx(4 / 6)
    assert got["cut"] == got["whole"]  # read from output/scores.json: status has no scores
    one = json.loads(cotctl("results", "cut", "--local", "--root", str(state), "-o", "json").stdout)
    assert list(one) == ["cut"]


def test_samples_page_with_gold_answers_from_the_benchmark(state: Path) -> None:
    result = cotctl("results", "whole", "--samples", "--offset", "2", "--limit", "3", "--local", "--root", str(state),
                    "-o", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    page = json.loads(result.stdout)
    assert page["total"] == 6 and page["offset"] == 2
    got = [(r["problemId"], r["sampleIndex"], r["answer"], r["gold"], r["correct"]) for r in page["items"]]
    assert got == [("b", 0, "2", "2", True), ("b", 1, None, "2", False), ("c", 0, "9", "3", False)]
    assert page["items"][0]["problem"] == "Problem b?"
    wrong = json.loads(cotctl("results", "whole", "--samples", "--wrong", "--local", "--root", str(state),
                              "-o", "json").stdout)  # fmt: skip
    assert [(r["problemId"], r["sampleIndex"]) for r in wrong["items"]] == [("b", 1), ("c", 0)]
    table = cotctl("results", "whole", "--samples", "--limit", "2", "--local", "--root", str(state))
    assert "samples 1-2 of 6; next page: cotctl results whole --samples --offset 2" in table.stderr


def test_samples_need_one_run_and_a_known_benchmark(state: Path) -> None:
    none = cotctl("results", "--samples", "--local", "--root", str(state))
    assert none.exit_code == 2 and "--samples reads one EvalRun" in none.stderr
    bad = cotctl("results", "whole", "--samples", "--benchmark", "aime24", "--local", "--root", str(state))
    assert bad.exit_code == 2 and "--benchmark: whole has no benchmark 'aime24'; it has sums" in bad.stderr
    missing = cotctl("results", "nope", "--local", "--root", str(state))
    assert missing.exit_code == 1 and 'evalrun "nope" not found in local state' in missing.stderr
