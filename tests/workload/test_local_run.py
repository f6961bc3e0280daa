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


def test_force_runs_again_from_scratch(tmp_path: Path, tiny_model_dir: Path) -> None:
    manifest = tmp_path / "eval.yaml"
    manifest.write_text(yaml.safe_dump(eval_run("tiny", tiny_model_dir, write_benchmark(tmp_path / "bench.jsonl"))))
    root = tmp_path / "state"
    assert cotctl("run", "--local", "-f", str(manifest), "--root", str(root)).exit_code == 0
    output = root / "default" / "evalruns" / "tiny" / "output"
    (output / "left-over").write_text("from the first run")

    forced = cotctl("run", "--local", "-f", str(manifest), "--root", str(root), "--force")

    assert forced.exit_code == 0, forced.output
    assert not (output / "left-over").exists()  # the stage started clean instead of resuming the old samples
    assert "EvalRun/tiny: benchmark=bench done=0 total=10" in forced.stderr
    assert len((output / "samples" / "bench.jsonl").read_text().splitlines()) == 10


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


TRACES = [
    {"problem": f"What is {a} + {b}?", "solution": f"{a} + {b} = {a + b}, so \\boxed{{{a + b}}}.", "answer": str(a + b)}
    for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]
]


def experiment(model_dir: Path, traces: Path, benchmark: Path, *, learning_rate: float) -> list[dict[str, Any]]:
    """A whole small experiment: curate 4 traces, LoRA-tune the tiny model on them, evaluate the result."""
    meta = {"apiVersion": "cotlab.dev/v1alpha1"}
    return [
        meta
        | {
            "kind": "TraceDataset",
            "metadata": {"name": "sums"},
            "spec": {
                "source": {"uri": str(traces)},
                "fields": {"problem": "problem", "solution": "solution", "answer": "answer", "stage": None},
                "select": {"count": 4},
            },
        },
        meta
        | {
            "kind": "FineTuneRun",
            "metadata": {"name": "tiny-lora"},
            "spec": {
                "baseModel": {"uri": f"file://{model_dir}"},
                "datasetRef": {"name": "sums"},
                "method": "lora",
                "training": {
                    "epochs": 1,
                    "learningRate": learning_rate,
                    "perDeviceBatchSize": 2,
                    "maxSeqLength": 512,
                    "precision": "fp32",
                    "gradientCheckpointing": False,
                },
                "distributed": {"gpusPerNode": 0, "strategy": "ddp"},
            },
        },
        eval_run("tiny-after", model_dir, benchmark)
        | {"spec": eval_run("x", model_dir, benchmark)["spec"] | {"model": {"fineTuneRunRef": {"name": "tiny-lora"}}}},
    ]


def test_a_whole_experiment_runs_in_order_and_reruns_what_a_change_affects(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(json.dumps(t) + "\n" for t in TRACES))
    benchmark = write_benchmark(tmp_path / "bench.jsonl")
    manifest, root = tmp_path / "experiment.yaml", tmp_path / "state"

    def run(learning_rate: float) -> Any:
        manifest.write_text(
            yaml.safe_dump_all(experiment(tiny_model_dir, traces, benchmark, learning_rate=learning_rate))
        )
        result = cotctl("run", "--local", "-f", str(manifest), "--root", str(root), "-o", "json")
        assert result.exit_code == 0, result.output
        return result

    first = run(1e-3)
    phases = {r["metadata"]["name"]: r["status"]["phase"] for r in json.loads(first.stdout)["resources"]}
    assert phases == {"sums": "Succeeded", "tiny-lora": "Succeeded", "tiny-after": "Succeeded"}
    for marker in ("TraceDataset/sums: ", "FineTuneRun/tiny-lora: ", "EvalRun/tiny-after: benchmark="):
        assert marker in first.stderr
    model = json.loads(first.stdout)["resources"][1]["status"]["outputs"]["model"]
    inputs = json.loads((root / "default" / "evalruns" / "tiny-after" / "inputs.json").read_text())
    assert inputs["model"]["uri"] == model["uri"] and inputs["modelDigest"] == model["digest"]

    # Nothing changed: nothing runs (no stage prints a progress marker).
    assert "=" not in run(1e-3).stderr

    # A new learning rate: the FineTuneRun trains again, so the EvalRun of its model is run again too.
    third = run(5e-3)
    assert "TraceDataset/sums: loaded" not in third.stderr
    assert "FineTuneRun/tiny-lora: " in third.stderr and "step=" in third.stderr
    assert "EvalRun/tiny-after: benchmark=" in third.stderr
    new_model = json.loads(third.stdout)["resources"][1]["status"]["outputs"]["model"]
    assert new_model["digest"] != model["digest"]
