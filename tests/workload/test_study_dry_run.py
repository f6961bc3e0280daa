"""A CPU dry run of the study's manifests on tiny models: every arm curates the same problems, and the qwq arm
fine-tunes and evaluates on the study's registered benchmarks, with samples that stop at the end of the turn; its
TensorBoard files hold the loss markers, and `cotctl report` over the arms (qwq and the base model) writes one page.

The manifests are read as they are; only what cannot exist here is swapped: the hub dataset for a local file in its
format, Qwen2.5-32B for a tiny Qwen2 with Qwen2.5's tokenizer setup, NeMo-Skills' file for a small one in its
format (served over loopback HTTP, pinned by its own digest), GPUs and sizes for CPU and minutes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch
import yaml
from typer.testing import CliRunner

from cotlab.api import benchmarks as registry
from cotlab.api.podcontract import PodSpecFile, parse_marker
from cotlab.api.summaries import succeeded_status
from cotlab.api.validation import parse_resource
from cotlab.cli.local_store import LocalStore
from cotlab.cli.main import app
from cotlab.trainer.curate.stage import run_curate
from cotlab.trainer.evaluate.stage import run_evaluate
from cotlab.trainer.finetune.stage import run_finetune
from tests.conftest import COMP_MATH_SAMPLE, EXAMPLES, http_server

from .tiny_model import build_tiny_model, build_tokenizer

pytestmark = pytest.mark.workload

ARMS = {
    "human-stage1": "human_stage1",
    "human-stage2": "human_stage2",
    "human-stage3": "human_stage3",
    "human-stage4": "human_stage4",
    "qwq": "qwq_32b_preview",
}
SAMPLE_SIZES = {"aime24": 2, "aime25": 2, "hmmt-24-25": 3}


def arm_documents(arm: str) -> dict[str, dict[str, Any]]:
    """The arm's manifests, by kind, exactly as committed."""
    docs = yaml.safe_load_all((EXAMPLES / "study" / f"{arm}.yaml").read_text())
    return {doc["kind"]: doc for doc in docs if doc}


def released_rows() -> list[dict[str, Any]]:
    """Rows shaped like nvidia/Nemotron-Math-HumanReasoning's train.jsonl: six problems, five with a trace of every
    type, one without a QwQ trace (it must never be chosen)."""
    rows = []
    for p in range(6):
        a, b = p + 1, p + 2
        for stage in ARMS.values():
            if p == 5 and stage == "qwq_32b_preview":
                continue
            solution = f"{a} + {b} = {a + b}." if stage != "qwq_32b_preview" else f"So {a} + {b} is {a + b}."
            rows.append(
                {
                    "problem": f"What is {a} + {b}?",
                    "solution": solution,
                    "solution_type": stage,
                    "expected_answer": str(a + b),
                }
            )
    return rows


def pod(stage: str, kind: str, spec: dict[str, Any], output: Path, **inputs: Any) -> PodSpecFile:
    return PodSpecFile.model_validate(
        {
            "stage": stage,
            "resource": {"kind": kind, "name": "dry-run"},
            "spec": spec,
            "inputs": inputs,
            "output": str(output),
        }
    )


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2 with its embeddings scaled up (at init scale its tied logits are too flat to fit)."""
    from transformers import AutoModelForCausalLM

    directory = build_tiny_model(tmp_path_factory.mktemp("study-base"), hidden_size=64)
    model = AutoModelForCausalLM.from_pretrained(directory)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(5.0)
    model.save_pretrained(directory)
    return directory


@pytest.fixture
def comp_math_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry's study benchmarks pointed at a small file in NeMo-Skills' format, pinned by its digest."""
    shutil.copy(COMP_MATH_SAMPLE, tmp_path / "test.txt")
    digest = hashlib.sha256(COMP_MATH_SAMPLE.read_bytes()).hexdigest()
    with http_server(tmp_path) as base:
        for name, size in SAMPLE_SIZES.items():
            bench = registry.BENCHMARKS_BY_NAME[name]
            assert bench.file is not None
            pinned = dataclasses.replace(bench.file, url=f"{base}/test.txt", sha256=digest)
            monkeypatch.setitem(registry.BENCHMARKS_BY_NAME, name, dataclasses.replace(bench, file=pinned, size=size))
        yield


def stored(root: Path, doc: dict[str, Any], spec: dict[str, Any], summary: dict[str, Any]) -> None:
    """Record a resource as the local runner would: its manifest with the spec it ran and the status its stage's
    summary gives (the mapping the operator uses too)."""
    resource = parse_resource({**doc, "spec": spec})
    resource.metadata.generation = 1
    resource.status = succeeded_status(resource, summary, now=datetime(2026, 12, 1, tzinfo=UTC))
    LocalStore(root).save(resource)


def tensorboard_losses(directory: Path) -> dict[int, float]:
    """train/loss by step, read by TensorBoard's own EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return {event.step: event.value for event in events.Scalars("train/loss")}


def test_study_arms_dry_run(
    tmp_path: Path, base_model: Path, comp_math_sample: None, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"  # the arms as `cotctl run --local` would record them, for `cotctl report`
    traces = tmp_path / "train.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in released_rows()))

    # Curate every arm: the same three problems, each arm with its own trace type.
    chosen: dict[str, list[str]] = {}
    artifacts: dict[str, dict[str, str]] = {}
    for arm, stage in ARMS.items():
        spec = copy.deepcopy(arm_documents(arm)["TraceDataset"]["spec"])
        spec["source"] = {"uri": str(traces)}  # the hub dataset, as a local file in its format
        spec["select"]["problems"]["count"] = 3  # of 5 eligible, instead of 50 of 50
        spec["tokenizer"] = {"uri": base_model.as_uri()}
        summary = run_curate(pod("curate", "TraceDataset", spec, tmp_path / arm / "dataset"))
        manifest = json.loads((tmp_path / arm / "dataset" / "manifest.json").read_text())
        examples = [json.loads(line) for line in (tmp_path / arm / "dataset" / "traces.jsonl").read_text().splitlines()]
        assert {e["stage"] for e in examples} == {stage}
        assert examples[0]["messages"][0] == {"role": "system", "content": ""}
        chosen[arm], artifacts[arm] = manifest["problems"], summary["artifact"]
        stored(state, arm_documents(arm)["TraceDataset"], spec, summary)
    assert len(chosen["qwq"]) == 3 and all(problems == chosen["qwq"] for problems in chosen.values())
    missing_qwq = hashlib.sha256(b"What is 6 + 7?").hexdigest()[:16]
    assert missing_qwq not in chosen["qwq"]

    # Fine-tune the qwq arm: its FineTuneRun, on CPU and for a few minutes' worth of steps.
    docs = arm_documents("qwq")
    spec = copy.deepcopy(docs["FineTuneRun"]["spec"])
    spec["baseModel"] = {"uri": base_model.as_uri()}
    spec["training"] |= {"maxSteps": 40, "learningRate": 5e-3, "warmupRatio": 0.0, "perDeviceBatchSize": 3}
    spec["training"] |= {"maxSeqLength": 512, "precision": "fp32", "gradientCheckpointing": False}
    spec["distributed"] = {"nodes": 1, "gpusPerNode": 0, "strategy": "ddp"}
    spec["resources"] = {}  # a CPU run asks for no GPU (gpusPerNode must match the request)
    capsys.readouterr()
    tuned = run_finetune(pod("finetune", "FineTuneRun", spec, tmp_path / "qwq" / "model", dataset=artifacts["qwq"]))
    model = tuned["outputs"]["model"]
    stored(state, docs["FineTuneRun"], spec, tuned)
    # Rank 0's TensorBoard files hold the loss of every step's progress marker (as float32, TensorBoard's type).
    markers = [m for m in map(parse_marker, capsys.readouterr().out.splitlines()) if m and "loss" in m]
    assert [m["step"] for m in markers] == list(range(1, 41))
    metrics = Path(tuned["outputs"]["metrics"].removeprefix("file://"))
    assert tensorboard_losses(metrics) == {m["step"]: float(numpy.float32(m["loss"])) for m in markers}

    # Evaluate it with the arm's EvalRun: the study's benchmarks by name, its prompt, sampling and vote.
    spec = copy.deepcopy(docs["EvalRun"]["spec"])
    spec["sampling"] |= {"samples": 4, "maxTokens": 200}
    spec["metrics"] = ["pass@1", "maj@4"]
    spec["engine"] = {"name": "transformers", "dtype": "float32", "batchSize": 16}
    summary = run_evaluate(
        pod(
            "evaluate",
            "EvalRun",
            spec,
            tmp_path / "qwq" / "eval",
            model={"uri": model["uri"]},
            modelDigest=model["digest"],
        )
    )
    stored(state, docs["EvalRun"], spec, summary)

    assert {k: v["problems"] for k, v in summary["scores"].items()} == SAMPLE_SIZES
    tokenizer = build_tokenizer()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    records = [
        json.loads(line)
        for name in SAMPLE_SIZES
        for line in (tmp_path / "qwq" / "eval" / "samples" / f"{name}.jsonl").read_text().splitlines()
    ]
    # The tuned model ends its turn with <|im_end|>, not its base's EOS, and sampling stops there.
    saved = json.loads((tmp_path / "qwq" / "model" / "model" / "generation_config.json").read_text())
    assert im_end in saved["eos_token_id"] and im_end != tokenizer.eos_token_id
    stopped = [r for r in records if (r["finish_reason"], r["stop_reason"]) == ("stop", im_end)]
    assert len(stopped) >= 0.75 * len(records)
    assert not any("<|im_start|>" in r["text"] or "\nuser\n" in r["text"] for r in records)  # no invented turn

    # The base model with the study's baseline EvalRun, so that the report compares two arms.
    [base_doc] = [d for d in yaml.safe_load_all((EXAMPLES / "study" / "baselines.yaml").read_text())
                  if d and d["metadata"]["labels"]["cotlab.dev/arm"] == "base"]  # fmt: skip
    spec = copy.deepcopy(base_doc["spec"])
    spec["model"] = {"source": {"uri": base_model.as_uri()}}
    spec["sampling"] |= {"samples": 4, "maxTokens": 200}
    spec["metrics"] = ["pass@1", "maj@4"]
    spec["engine"] = {"name": "transformers", "dtype": "float32", "batchSize": 16}
    spec.pop("resources")
    stored(state, base_doc, spec, run_evaluate(pod("evaluate", "EvalRun", spec, tmp_path / "base" / "eval")))

    # `cotctl report` over the study's arms: one HTML file, every arm and problem in it, the qwq run's curve.
    out = tmp_path / "report.html"
    arms = ["-l", "cotlab.dev/experiment=teaching-reasoning", "--rows", "label:cotlab.dev/arm", "--baseline", "base"]
    made = CliRunner().invoke(app, ["report", "--local", "--root", str(state), *arms, "-o", str(out)])
    assert made.exit_code == 0, made.output
    html = out.read_text(encoding="utf-8")
    assert html.count('id="heat-') == 2 * sum(SAMPLE_SIZES.values())  # base and qwq, every problem
    assert "qwen2.5-32b-qwq (qwq)" in html and [p.name for p in tmp_path.glob("*.html")] == ["report.html"]
