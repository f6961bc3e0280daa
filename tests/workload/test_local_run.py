"""`cotctl run --local` end to end: the real pod entry point as a child process, state, results, failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cotlab.cli.main import app

from .conftest import write_benchmark

pytestmark = pytest.mark.workload
runner = CliRunner()


def eval_run(name: str, model_dir: Path, benchmark: Path) -> dict[str, Any]:
    return {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "EvalRun",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": {"uri": f"file://{model_dir}"}},
            "benchmarks": [{"name": "custom", "uri": str(benchmark), "fields": {"id": "id"}}],
            "sampling": {"temperature": 1.0, "samples": 2, "maxTokens": 8, "seed": 0},
            "metrics": ["pass@1", "maj@2"],
            "engine": {"name": "transformers", "dtype": "float32", "batchSize": 10},
        },
    }


def cotctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_eval_runs_locally_then_is_up_to_date(tmp_path: Path, tiny_model_dir: Path) -> None:
    manifest = tmp_path / "eval.yaml"
    manifest.write_text(yaml.safe_dump(eval_run("tiny", tiny_model_dir, write_benchmark(tmp_path / "bench.jsonl"))))
    root = tmp_path / "state"

    first = cotctl("run", "--local", "-f", str(manifest), "--root", str(root), "-o", "json")
    assert first.exit_code == 0, first.output
    [resource] = json.loads(first.stdout)["resources"]
    assert resource["status"]["phase"] == "Succeeded"
    score = resource["status"]["scores"]["bench"]
    assert score["problems"] == 5 and score["samplesPerProblem"] == 2
    assert set(score["metrics"]) == {"pass@1", "maj@2"}
    # Progress markers were read from the child's stdout and shown on stderr.
    assert "EvalRun/tiny: benchmark=bench done=10 total=10" in first.stderr
    folder = root / "default" / "evalruns" / "tiny"
    assert len((folder / "output" / "samples" / "bench.jsonl").read_text().splitlines()) == 10
    assert json.loads((folder / "spec.json").read_text())["stage"] == "evaluate"

    again = cotctl("run", "--local", "-f", str(manifest), "--root", str(root), "-o", "json")
    assert again.exit_code == 0 and "EvalRun/tiny: benchmark" not in again.stderr  # nothing re-generated

    results = cotctl("results", "--local", "--root", str(root), "-o", "json")
    assert results.exit_code == 0
    assert json.loads(results.stdout)["tiny"]["bench"]["metrics"]["pass@1"] == score["metrics"]["pass@1"]


def test_bad_benchmark_line_fails_with_reason_and_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"id": "a", "problem": "1+1?", "answer": "2"}\n{"id": "b", "problem": "2+2?"}\n')
    manifest = tmp_path / "eval.yaml"
    manifest.write_text(yaml.safe_dump(eval_run("broken", tiny_model_dir, bench)))
    result = cotctl("run", "--local", "-f", str(manifest), "--root", str(tmp_path / "state"), "-o", "json")
    assert result.exit_code == 1
    status = json.loads(result.stdout)["resources"][0]["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert status["phase"] == "Failed" and failed["reason"] == "InvalidInput"
    assert f"{bench} line 2" in failed["message"] and '"answer"' in failed["message"]


def test_missing_dependency_is_refused_before_running(tmp_path: Path) -> None:
    doc = {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "EvalRun",
        "metadata": {"name": "after"},
        "spec": {"model": {"fineTuneRunRef": {"name": "nowhere"}}, "benchmarks": [{"name": "gsm8k"}]},
    }
    manifest = tmp_path / "eval.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    result = cotctl("run", "--local", "-f", str(manifest), "--root", str(tmp_path / "state"))
    assert result.exit_code == 1
    assert "EvalRun/after: needs FineTuneRun/nowhere" in result.stderr


def test_run_without_local_points_to_kubectl(tmp_path: Path) -> None:
    result = cotctl("run", "-f", str(tmp_path / "x.yaml"))
    assert result.exit_code == 2 and "kubectl apply" in result.stderr
