"""A CPU dry run of the study's manifests on tiny models: every arm curates the same problems, the qwq arm
fine-tunes and evaluates on the study's registered benchmarks, with samples that stop at the end of the turn, and
the 20-trace headline arm trains and evaluates its three seeds, which `cotctl compare` sets against the base model.
Rank 0's TensorBoard files hold the loss markers, and `cotctl report` over the arms (the headline arm's three seeds
and the base model) writes one page.

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
from cotlab.cli.local.store import LocalStore
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
    "qwq-20": "qwq_32b_preview",
}
SAMPLE_SIZES = {"aime24": 2, "aime25": 2, "hmmt-24-25": 3}


def study_documents(file: str) -> list[dict[str, Any]]:
    """The documents of one study manifest, exactly as committed."""
    return [doc for doc in yaml.safe_load_all((EXAMPLES / "study" / file).read_text()) if doc]


def arm_documents(arm: str) -> dict[str, dict[str, Any]]:
    """The arm's TraceDataset, and its seed-0 FineTuneRun and EvalRun, by kind."""
    return {doc["kind"]: doc for doc in reversed(study_documents(f"{arm}.yaml"))}


def released_rows() -> list[dict[str, Any]]:
    """Rows shaped like nvidia/Nemotron-Math-HumanReasoning's train.jsonl: six problems, five with a trace of every
    type, one without a QwQ trace (it must never be chosen)."""
    rows = []
    for p in range(6):
        a, b = p + 1, p + 2
        for stage in dict.fromkeys(ARMS.values()):  # each type once (qwq and qwq-20 share one)
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


def curate(arm: str, traces: Path, base_model: Path, output: Path) -> dict[str, Any]:
    """Curate the arm's TraceDataset: the released file stands in for the hub, 3 of its 5 problems for 50 (or 20)."""
    spec = copy.deepcopy(arm_documents(arm)["TraceDataset"]["spec"])
    spec["source"] = {"uri": str(traces)}  # the hub dataset, as a local file in its format
    spec["select"]["problems"]["count"] = 3  # of 5 eligible, instead of 50 (or 20) of 50
    spec["tokenizer"] = {"uri": base_model.as_uri()}
    return run_curate(pod("curate", "TraceDataset", spec, output))


def on_cpu(spec: dict[str, Any], *, steps: int) -> dict[str, Any]:
    """A FineTuneRun spec with only what cannot run here changed: CPU, a tiny model, minutes instead of hours."""
    spec = copy.deepcopy(spec)
    spec["training"] |= {"maxSteps": steps, "learningRate": 5e-3, "warmupRatio": 0.0, "perDeviceBatchSize": 3}
    spec["training"] |= {"maxSeqLength": 512, "precision": "fp32", "gradientCheckpointing": False}
    spec["distributed"] = {"nodes": 1, "gpusPerNode": 0, "strategy": "ddp"}
    spec["resources"] = {}  # a CPU run asks for no GPU (gpusPerNode must match the request)
    return spec


def tensorboard_losses(directory: Path) -> dict[int, float]:
    """train/loss by step, read by TensorBoard's own EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return {event.step: event.value for event in events.Scalars("train/loss")}


def test_study_arms_dry_run(
    tmp_path: Path, base_model: Path, comp_math_sample: None, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = tmp_path / "train.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in released_rows()))

    # Curate every arm: the same three problems, each arm with its own trace type.
    chosen: dict[str, list[str]] = {}
    artifacts: dict[str, dict[str, str]] = {}
    for arm, stage in ARMS.items():
        summary = curate(arm, traces, base_model, tmp_path / arm / "dataset")
        manifest = json.loads((tmp_path / arm / "dataset" / "manifest.json").read_text())
        examples = [json.loads(line) for line in (tmp_path / arm / "dataset" / "traces.jsonl").read_text().splitlines()]
        assert {e["stage"] for e in examples} == {stage}
        assert examples[0]["messages"][0] == {"role": "system", "content": ""}
        # No released trace here boxes its answer: answerInBoxed gave every one the final-answer line, and says so.
        assert manifest["stats"]["answersAppended"] == len(examples) == summary["stats"]["answersAppended"]
        chosen[arm], artifacts[arm] = manifest["problems"], summary["artifact"]
    assert len(chosen["qwq"]) == 3 and all(problems == chosen["qwq"] for problems in chosen.values())
    missing_qwq = hashlib.sha256(b"What is 6 + 7?").hexdigest()[:16]
    assert missing_qwq not in chosen["qwq"]

    # Fine-tune the qwq arm: its FineTuneRun, on CPU and for a few minutes' worth of steps.
    docs = arm_documents("qwq")
    spec = on_cpu(docs["FineTuneRun"]["spec"], steps=40)
    spec["baseModel"] = {"uri": base_model.as_uri()}
    capsys.readouterr()
    tuned = run_finetune(pod("finetune", "FineTuneRun", spec, tmp_path / "qwq" / "model", dataset=artifacts["qwq"]))
    model = tuned["outputs"]["model"]
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


def finished(doc: dict[str, Any], summary: dict[str, Any], root: Path) -> None:
    """Record `doc` as the local runner would after its stage exited 0 with `summary`."""
    resource = parse_resource(copy.deepcopy(doc))
    resource.metadata.generation = 1
    resource.status = succeeded_status(resource, summary, now=datetime(2026, 12, 1, tzinfo=UTC))
    LocalStore(root).save(resource)


def test_the_headline_arm_trains_three_seeds_and_compare_averages_them(
    tmp_path: Path, base_model: Path, comp_math_sample: None
) -> None:
    """qwq-20.yaml's three seeds and baselines.yaml's base model, through `cotctl compare` as the README runs it,
    and `cotctl report` over the same arms."""
    root = tmp_path / "state"
    traces = tmp_path / "train.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in released_rows()))
    docs = study_documents("qwq-20.yaml")
    dataset = next(d for d in docs if d["kind"] == "TraceDataset")
    curated = curate("qwq-20", traces, base_model, tmp_path / "qwq-20" / "dataset")
    finished(dataset, curated, root)
    short = {"samples": 2, "maxTokens": 24}
    for tune in (d for d in docs if d["kind"] == "FineTuneRun"):
        name = tune["metadata"]["name"]
        spec = on_cpu(tune["spec"], steps=6) | {"baseModel": {"uri": base_model.as_uri()}}
        tuned = run_finetune(pod("finetune", "FineTuneRun", spec, tmp_path / name, dataset=curated["artifact"]))
        finished(tune | {"spec": spec}, tuned, root)
        evaluation = next(
            d for d in docs if d["kind"] == "EvalRun" and d["spec"]["model"]["fineTuneRunRef"]["name"] == name
        )
        spec = copy.deepcopy(evaluation["spec"])
        spec["sampling"] |= short
        spec["metrics"], spec["engine"] = ["pass@1", "maj@2"], {"name": "transformers", "dtype": "float32"}
        model = tuned["outputs"]["model"]
        scored = run_evaluate(
            pod("evaluate", "EvalRun", spec, tmp_path / name / "eval", model={"uri": model["uri"]},
                modelDigest=model["digest"])
        )  # fmt: skip
        finished(evaluation | {"spec": spec}, scored, root)
    base = next(d for d in study_documents("baselines.yaml") if d["metadata"]["labels"]["cotlab.dev/arm"] == "base")
    spec = copy.deepcopy(base["spec"])
    spec["model"] = {"source": {"uri": base_model.as_uri()}}
    spec["sampling"] |= short
    spec["metrics"], spec["engine"] = ["pass@1", "maj@2"], {"name": "transformers", "dtype": "float32"}
    finished(base | {"spec": spec}, run_evaluate(pod("evaluate", "EvalRun", spec, tmp_path / "base")), root)

    args = ["compare", "-l", "cotlab.dev/experiment=teaching-reasoning", "--rows", "label:cotlab.dev/arm",
            "--baseline", "base", "--local", "--root", str(root)]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "-o", "json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    base_row, arm = got["rows"]
    assert (base_row["label"], base_row["seeds"], arm["label"], arm["seeds"]) == ("base", 1, "qwq-20", 3)
    assert arm["trainingSeeds"] == [0, 1, 2] and len(arm["evalruns"]) == 3
    assert got["correction"] == "holm" and got["intervals"] == 3 and got["method"].startswith("paired bootstrap")
    for benchmark, size in SAMPLE_SIZES.items():
        delta = arm["differences"][benchmark]
        assert (
            delta["seeds"] == [1, 3] and delta["problems"] == size and delta["low"] <= delta["value"] <= delta["high"]
        )
    table = CliRunner().invoke(app, args)
    assert "0,1,2" in table.stdout and "Holm (family-wise error) over 3 intervals" in table.stdout
    assert "problems paired across arms, training seeds within each arm" in table.stdout

    # `cotctl report` over the same arms: one HTML file; every problem of each arm (the seeds' samples pooled into
    # one heat-map row), each seed's training curve, the arm's training set.
    out = tmp_path / "report.html"
    made = CliRunner().invoke(app, ["report", *args[1:], "-o", str(out)])
    assert made.exit_code == 0, made.output
    html = out.read_text(encoding="utf-8")
    assert html.count('id="heat-') == 2 * sum(SAMPLE_SIZES.values())  # base and qwq-20, every problem
    assert all(f"qwen2.5-32b-qwq-20-s{seed} (qwq-20, seed {seed})" in html for seed in (0, 1, 2))
    assert [p.name for p in tmp_path.glob("*.html")] == ["report.html"]
