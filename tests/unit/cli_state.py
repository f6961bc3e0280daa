"""Local cotctl state for the CLI's unit tests: finished EvalRuns whose status and records agree.

A run is written the way `cotctl run --local` leaves it: `resource.json` with a Succeeded status built by the
same summary mapping the runner uses, and the evaluator's per-sample lines under `output/samples/`. Scores come
from the evaluator's own metric functions over those lines, so status, scores file and records never disagree.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cotlab.api import EvalRun, FineTuneRun, TraceDataset
from cotlab.api.evalrun import BenchmarkScore, MetricValue
from cotlab.api.summaries import succeeded_status
from cotlab.api.tracking import STEPS_FILE, StepMetrics
from cotlab.api.validation import parse_resource
from cotlab.cli.local.store import LocalStore
from cotlab.trainer.grading.metrics import SampleRecord, summarize

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32


def write_benchmark(path: Path, answers: dict[str, str]) -> Path:
    path.write_text(
        "".join(json.dumps({"id": k, "problem": f"Problem {k}?", "answer": v}) + "\n" for k, v in answers.items())
    )
    return path


def eval_doc(
    name: str, benchmark: Path, *, samples: int, labels: dict[str, str] | None = None, tune: str | None = None
) -> dict[str, Any]:
    model = {"fineTuneRunRef": {"name": tune}} if tune else {"source": {"hub": "Qwen/Qwen2.5-0.5B"}}
    return {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "EvalRun",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "model": model,
            "benchmarks": [{"name": "custom", "uri": f"file://{benchmark}", "fields": {"id": "id"}}],
            "sampling": {"samples": samples, "temperature": 1.0, "maxTokens": 64, "seed": 0},
            "metrics": ["pass@1", f"maj@{samples}"],
            "engine": {"name": "transformers"},
        },
    }  # fmt: skip


def sample_lines(answers: dict[str, list[str | None]], gold: dict[str, str]) -> list[dict[str, Any]]:
    """The evaluator's per-sample lines for the given answers (correct = equal to gold)."""
    lines = []
    for problem, row in answers.items():
        for index, answer in enumerate(row):
            lines.append({
                "problem_id": problem, "sample_index": index, "seed": index, "text": f"... \\boxed{{{answer}}}",
                "answer": answer, "correct": answer == gold[problem], "rule": "exact", "output_tokens": 10 + index,
                "finish_reason": "stop", "seconds": 0.1,
            })  # fmt: skip
    return lines


def score_of(lines: list[dict[str, Any]], samples: int, digest: str | None = None) -> BenchmarkScore:
    records = [
        SampleRecord(x["problem_id"], x["sample_index"], x["answer"], x["correct"], x["finish_reason"],
                     x["output_tokens"], x["rule"])
        for x in lines
    ]  # fmt: skip
    summary = summarize("bench", records, majority_ks=[samples])
    return BenchmarkScore(
        problems=summary.num_problems,
        problems_digest=digest,
        samples_per_problem=summary.samples_per_problem,
        metrics={
            "pass@1": MetricValue(value=summary.pass_at_1.value, stderr=summary.pass_at_1.stderr),
            f"maj@{samples}": MetricValue(
                value=summary.majority_at_k[samples].value, stderr=summary.majority_at_k[samples].stderr
            ),
        },
        mean_output_tokens=summary.mean_output_tokens,
        truncation_rate=summary.truncation_rate,
        no_answer_rate=summary.no_answer_rate,
    )


def finished_eval(
    root: Path,
    name: str,
    benchmark: Path,
    gold: dict[str, str],
    answers: dict[str, list[str | None]],
    *,
    labels: dict[str, str] | None = None,
    tune: str | None = None,
    cut: bool = False,
    digest: str | None = "sha256:problems",
) -> EvalRun:
    """An EvalRun that ran locally on `benchmark` (its file stem is the benchmark key) and gave `answers`."""
    samples = len(next(iter(answers.values())))
    run = parse_resource(eval_doc(name, benchmark, samples=samples, labels=labels, tune=tune))
    assert isinstance(run, EvalRun)
    run.metadata.generation = 1
    store = LocalStore(root)
    output = store.folder_of(run) / "output"
    key = benchmark.name.split(".", 1)[0]
    lines = sample_lines(answers, gold)
    (output / "samples").mkdir(parents=True, exist_ok=True)
    (output / "samples" / f"{key}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    scores = {key: score_of(lines, samples, digest).to_wire()}
    (output / "scores.json").write_text(json.dumps(scores))
    summary = {
        "stage": "evaluate",
        "outputs": {"samples": (output / "samples").as_uri(), "scores": (output / "scores.json").as_uri()},
        # A summary over 4 KiB loses its scores (encode_summary): status then points at the scores file.
        **({} if cut else {"scores": scores}),
    }
    run.status = succeeded_status(run, summary, now=NOW)
    store.save(run)
    return run


def finished_traces(
    root: Path, name: str, *, p50: int, count: int, stages: dict[str, int], labels: dict[str, str] | None = None
) -> TraceDataset:
    meta = {"name": name, "labels": labels or {}}
    doc = {"apiVersion": "cotlab.dev/v1alpha1", "kind": "TraceDataset", "metadata": meta,
           "spec": {"source": {"uri": "file:///traces.jsonl"}}}  # fmt: skip
    traces = parse_resource(doc)
    assert isinstance(traces, TraceDataset)
    tokens = {"min": p50 // 2, "p50": p50, "p90": 2 * p50, "max": 3 * p50}
    artifact = {"uri": f"file:///artifacts/{name}", "digest": DIGEST}
    summary = {"stage": "curate", "artifact": artifact, "count": count, "stats": {"tokens": tokens, "stages": stages}}
    traces.status = succeeded_status(traces, summary, now=NOW)
    LocalStore(root).save(traces)
    return traces


def finished_tune(
    root: Path,
    name: str,
    dataset: str,
    *,
    training: dict[str, Any] | None = None,
    losses: list[float] | None = None,
    labels: dict[str, str] | None = None,
) -> FineTuneRun:
    """A FineTuneRun that trained on `dataset`; `training` sets spec.training (its seed, say); with `losses`, its
    rank 0's curve (one step each) under outputs."""
    meta = {"name": name, "labels": labels or {}}
    doc = {"apiVersion": "cotlab.dev/v1alpha1", "kind": "FineTuneRun", "metadata": meta,
           "spec": {"baseModel": {"hub": "Qwen/Qwen2.5-0.5B"}, "datasetRef": {"name": dataset},
                    "training": training or {}}}  # fmt: skip
    tune = parse_resource(doc)
    assert isinstance(tune, FineTuneRun)
    store = LocalStore(root)
    outputs: dict[str, Any] = {"model": {"uri": f"file:///models/{name}", "digest": DIGEST}}
    if losses is not None:
        metrics = store.folder_of(tune) / "output" / "metrics"
        metrics.mkdir(parents=True, exist_ok=True)
        steps = [
            StepMetrics(step=i + 1, epoch=(i + 1) / len(losses), loss=loss, learning_rate=1e-5 * (1 - i / len(losses)),
                        grad_norm=1.0, tokens_per_second=1000.0, trained_tokens=500 * (i + 1), wall_time=1.8e9 + i)
            for i, loss in enumerate(losses)
        ]  # fmt: skip
        (metrics / STEPS_FILE).write_text("".join(s.model_dump_json(by_alias=True) + "\n" for s in steps))
        outputs["metrics"] = metrics.as_uri()
    summary = {"stage": "finetune", "outputs": outputs,
               "progress": {"step": 30, "totalSteps": 30, "loss": 0.42, "percent": 100.0}}  # fmt: skip
    tune.status = succeeded_status(tune, summary, now=NOW)
    store.save(tune)
    return tune
