"""`cotctl compare --local`: the study's table from local runs, differences worked out by hand."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotlab.cli.analysis.arms import Arm, Evaluation
from cotlab.cli.analysis.artifacts import ArtifactStore
from cotlab.cli.analysis.comparison import build_comparison
from cotlab.cli.analysis.evaluations import run_records
from cotlab.cli.analysis.plot import plot_points
from cotlab.cli.local.store import LocalStore
from cotlab.cli.main import app

from .cli_state import finished_eval, finished_traces, finished_tune, write_benchmark

runner = CliRunner()
GOLD = {"a": "1", "b": "2", "c": "3", "d": "4"}
# pass@1: base (4/4 + 1/4 + 0 + 0) / 4 = 0.3125; tuned (4/4 + 3/4 + 2/4 + 0) / 4 = 0.5625; difference +0.25.
# maj@4: base a only (b's majority is the wrong 9) = 0.25; tuned a, b and half of c (a 2-2 tie shares credit) = 0.625.
BASE = {"a": ["1"] * 4, "b": ["2", "9", "9", "9"], "c": ["9"] * 4, "d": ["9"] * 4}
TUNED = {"a": ["1"] * 4, "b": ["2", "2", "2", "9"], "c": ["3", "3", "9", "9"], "d": ["9"] * 4}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    bench = write_benchmark(tmp_path / "sums.jsonl", GOLD)
    finished_traces(root, "long-traces", p50=1200, count=20, stages={"qwq_32b_preview": 20})
    finished_tune(root, "tune", "long-traces")
    finished_eval(root, "base", bench, GOLD, BASE, labels={"experiment": "e1", "arm": "base"})
    finished_eval(root, "tuned", bench, GOLD, TUNED, labels={"experiment": "e1", "arm": "qwq"}, tune="tune")
    return root


def cotctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_differences_and_best_cells_match_the_hand_computed_table(state: Path) -> None:
    result = cotctl("compare", "base", "tuned", "--local", "--root", str(state), "-o", "json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["baseline"] == "base" and got["benchmarks"] == ["sums"] and got["majority"] == "maj@4"
    base, tuned = got["rows"]
    assert base["baseline"] and base["differences"] == {}
    assert base["scores"]["sums"]["pass@1"]["value"] == pytest.approx(0.3125)
    assert tuned["scores"]["sums"]["pass@1"]["value"] == pytest.approx(0.5625)
    assert (base["scores"]["sums"]["maj@4"]["value"], tuned["scores"]["sums"]["maj@4"]["value"]) == (0.25, 0.625)
    assert [r["scores"]["sums"]["pass@1"]["best"] for r in (base, tuned)] == [False, True]
    delta = tuned["differences"]["sums"]
    assert delta["value"] == pytest.approx(0.25) and delta["problems"] == 4
    assert delta["low"] <= delta["value"] <= delta["high"]
    assert delta["significant"] == (delta["low"] > 0 or delta["high"] < 0)
    # The other way round, from the other baseline.
    flipped = json.loads(cotctl("compare", "base", "tuned", "--baseline", "tuned", "--local", "--root", str(state),
                                "-o", "json").stdout)  # fmt: skip
    assert flipped["rows"][0]["differences"]["sums"]["value"] == pytest.approx(-0.25)
    assert flipped["rows"][0]["differences"]["sums"]["high"] == pytest.approx(-delta["low"])


def test_selector_rows_by_training_set_and_csv(state: Path) -> None:
    result = cotctl("compare", "-l", "experiment=e1", "--rows", "traces", "--local", "--root", str(state), "-o", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["row"] for r in rows] == ["(no fine-tune) (baseline)", "long-traces"]
    # Per-problem means 1, 3/4, 1/2, 0: mean 0.5625, sample variance 0.546875 / 3, stderr sqrt(0.18229 / 4) = 0.2135.
    assert rows[1]["sums pass@1"] == "56.2 ± 21.3 *"
    assert rows[0]["sums maj@4"] == "25.0" and rows[1]["sums maj@4"] == "62.5 *"
    assert rows[1]["sums Δpass@1"].startswith("+25.0 [")


# Three training seeds of one recipe. Per-problem pass@1 (a, b, c, d): seed 0 TUNED (1, 3/4, 1/2, 0) = 0.5625,
# seed 1 (1, 1/2, 1/4, 0) = 0.4375, seed 2 (1, 1, 3/4, 1/4) = 0.75: the arm's score is their mean, 1.75 / 3.
SEEDS = [
    TUNED,
    {"a": ["1"] * 4, "b": ["2", "2", "9", "9"], "c": ["3", "9", "9", "9"], "d": ["9"] * 4},
    {"a": ["1"] * 4, "b": ["2"] * 4, "c": ["3", "3", "3", "9"], "d": ["4", "9", "9", "9"]},
]


def seeded_arm(root: Path, bench: Path, arm: str, *, rates: list[float] | None = None) -> None:
    """`arm`'s three seeds: FineTuneRuns qwq-s0..2 (learning rates `rates`, one recipe when all equal)."""
    rates = rates or [1e-5] * 3
    for seed, (answers, rate) in enumerate(zip(SEEDS, rates, strict=True)):
        labels = {"experiment": "e1", "arm": arm}
        finished_tune(root, f"{arm}-s{seed}", "long-traces", training={"seed": seed, "learningRate": rate})
        finished_eval(root, f"{arm}-s{seed}-eval", bench, GOLD, answers, labels=labels, tune=f"{arm}-s{seed}")


def test_training_seeds_of_one_recipe_are_one_arm(state: Path, tmp_path: Path) -> None:
    seeded_arm(state, tmp_path / "sums.jsonl", "qwq3")
    result = cotctl("compare", "base", "qwq3-s0-eval", "qwq3-s1-eval", "qwq3-s2-eval", "--rows", "label:arm",
                    "--local", "--root", str(state), "-o", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert (got["correction"], got["intervals"]) == ("holm", 1) and got["method"].startswith("paired bootstrap")
    base, arm = got["rows"]
    assert (base["label"], base["seeds"], base["trainingSeeds"]) == ("base", 1, [])
    assert (arm["label"], arm["seeds"], arm["trainingSeeds"]) == ("qwq3", 3, [0, 1, 2])
    assert arm["evalruns"] == ["qwq3-s0-eval", "qwq3-s1-eval", "qwq3-s2-eval"] and "note" not in arm
    assert arm["scores"]["sums"]["pass@1"]["value"] == pytest.approx(1.75 / 3)
    delta = arm["differences"]["sums"]
    assert delta["value"] == pytest.approx(1.75 / 3 - 0.3125) and delta["seeds"] == [1, 3]
    assert delta["level"] == 0.95 and delta["low"] <= delta["value"] <= delta["high"]
    table = cotctl("compare", "-l", "experiment=e1", "--rows", "label:arm", "--local", "--root", str(state))
    assert "qwq3 " in table.stdout and "0,1,2" in table.stdout
    assert "paired bootstrap" in table.stdout and "Holm (family-wise error) over 2 intervals" in table.stdout
    assert "qwq: one training seed: its intervals cover sampling and problem noise" in table.stderr


def test_runs_that_share_a_label_but_not_a_recipe_stay_apart(state: Path, tmp_path: Path) -> None:
    seeded_arm(state, tmp_path / "sums.jsonl", "mixed", rates=[1e-5, 1e-5, 2e-5])
    result = cotctl("compare", "-l", "arm=mixed", "--rows", "label:arm", "--local", "--root", str(state), "-o", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["label"] for r in rows] == ["mixed (mixed-s0-eval)", "mixed (mixed-s1-eval)", "mixed (mixed-s2-eval)"]
    assert "finetunerun/mixed-s0 and finetunerun/mixed-s2 differ in spec.training.learningRate" in result.stderr
    assert all(r["seeds"] == 1 and r["note"].startswith("one training seed") for r in rows)


def test_markdown_marks_the_best_in_bold(state: Path) -> None:
    result = cotctl("compare", "base", "tuned", "--local", "--root", str(state), "-o", "markdown")
    assert result.exit_code == 0, result.output
    header, rule, first, second = result.stdout.strip().splitlines()
    assert header.startswith("| row | seeds | sums pass@1 | sums maj@4 | sums Δpass@1")
    assert "**56.2 ± 21.3**" in second and "**" not in first


def test_unreadable_records_leave_the_scores_and_say_why(state: Path) -> None:
    (LocalStore(state).folder("EvalRun", "default", "tuned") / "output" / "samples" / "sums.jsonl").unlink()
    result = cotctl("compare", "base", "tuned", "--local", "--root", str(state), "-o", "json")
    assert result.exit_code == 0, result.output
    tuned = json.loads(result.stdout)["rows"][1]
    assert tuned["scores"]["sums"]["pass@1"]["value"] == pytest.approx(0.5625)
    assert tuned["differences"]["sums"] == {"note": "per-sample records not readable"}
    assert "no differences:" in result.stderr and "sums.jsonl: not found" in result.stderr


def test_different_problems_are_not_compared(tmp_path: Path) -> None:
    root = tmp_path / "state"
    bench = write_benchmark(tmp_path / "sums.jsonl", GOLD)
    finished_eval(root, "one", bench, GOLD, BASE, digest="sha256:one")
    finished_eval(root, "two", bench, GOLD, TUNED, digest="sha256:two")
    got = json.loads(cotctl("compare", "one", "two", "--local", "--root", str(root), "-o", "json").stdout)
    assert "different problems" in got["rows"][1]["differences"]["sums"]["note"]


def test_usage_errors_name_the_flag(state: Path) -> None:
    both = cotctl("compare", "base", "-l", "a=b", "--local", "--root", str(state))
    assert both.exit_code == 2 and "-l" in both.stderr
    baseline = cotctl("compare", "base", "tuned", "--baseline", "nope", "--local", "--root", str(state))
    assert (
        baseline.exit_code == 2 and "--baseline: 'nope' is none of the compared runs (base, tuned)" in baseline.stderr
    )
    rows = cotctl("compare", "base", "--rows", "colour", "--local", "--root", str(state))
    assert rows.exit_code == 2 and "--rows" in rows.stderr


def test_plot_points_follow_the_training_set_and_the_file_is_a_png(state: Path, tmp_path: Path) -> None:
    figure = tmp_path / "scores.png"
    result = cotctl("compare", "base", "tuned", "--local", "--root", str(state), "--plot", str(figure))
    assert result.exit_code == 0, result.output
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    store = LocalStore(state)
    arms = []
    for name in ("base", "tuned"):
        run = store.load("EvalRun", "default", name)
        tune = store.load("FineTuneRun", "default", "tune") if name == "tuned" else None
        traces = store.load("TraceDataset", "default", "long-traces") if name == "tuned" else None
        member = Evaluation(run=run, scores=dict(run.status.scores), fine_tune=tune, traces=traces)  # type: ignore[arg-type,union-attr]
        arms.append(Arm(name, (member,)))
    comparison = build_comparison(
        arms, baseline=None, metric="pass@1", replicates=200, confidence=0.95, seed=0,
        read=lambda run, benchmark: run_records(run, benchmark, ArtifactStore(None)),
    )  # fmt: skip
    points = {(p.label, p.x): round(p.y, 4) for p in plot_points(arms, comparison, x="tokens")}
    assert points == {("base", None): 0.3125, ("tuned", 1200.0): 0.5625}
    stages = {p.label: p.x for p in plot_points(arms, comparison, x="stage")}
    assert stages == {"base": None, "tuned": "qwq_32b_preview"}
    by_label = {p.label: p.x for p in plot_points(arms, comparison, x="label:arm")}
    assert by_label == {"base": "base", "tuned": "qwq"}
