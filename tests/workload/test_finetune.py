"""The finetune stage end to end on a tiny Qwen2 on CPU: LoRA memorises, full training runs, a kill resumes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from cotlab.api.podcontract import PodSpecFile, decode_summary, parse_marker
from cotlab.trainer.core.artifacts import directory_digest
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.entrypoint import main
from cotlab.trainer.finetune import loop as training_loop
from cotlab.trainer.finetune.checkpoints import CHECKPOINTS_DIR
from cotlab.trainer.finetune.stage import run_finetune

from .tiny_model import build_tiny_model, build_tokenizer

pytestmark = pytest.mark.workload

REPO = Path(__file__).resolve().parents[2]
LORA_TARGETS = ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]  # k_proj and o_proj must stay untouched


class Killed(Exception):
    """Stands in for SIGKILL right after a checkpoint."""


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2, 64 wide, with embeddings scaled up: at init scale its (tied) logits are too flat to fit."""
    from transformers import AutoModelForCausalLM

    directory = build_tiny_model(tmp_path_factory.mktemp("finetune-base"), hidden_size=64)
    model = AutoModelForCausalLM.from_pretrained(directory)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(5.0)
    model.save_pretrained(directory)
    return directory


def write_dataset(path: Path, count: int = 8, *, filler: str = "") -> dict[str, str]:
    """A curated-style traces.jsonl of short arithmetic traces; returns its artifact (URI and digest)."""
    rows = [
        {
            "id": f"t{i}",
            "problem": f"What is {i} + {i}?",
            "answer": str(2 * i),
            "stage": "train",
            "messages": [
                {"role": "system", "content": ""},  # as curated with prompt.system "": no default system text
                {"role": "user", "content": f"What is {i} + {i}?{filler}"},
                {"role": "assistant", "content": f"{i} + {i} = {2 * i}, so \\boxed{{{2 * i}}}"},
            ],
            "tokens": 40,
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"uri": path.as_uri(), "digest": "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()}


def make_pod(base: Path, dataset: dict[str, str], output: Path, **spec: Any) -> PodSpecFile:
    """A finetune pod spec: LoRA on the tiny base, fp32, 4 per batch, unless `spec` says otherwise."""
    training = {"maxSteps": 4, "learningRate": 1e-2, "perDeviceBatchSize": 4, "maxSeqLength": 128, "precision": "fp32"}
    wire = {
        "baseModel": {"uri": base.as_uri()},
        "datasetRef": {"name": "traces"},
        "method": "lora",
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targetModules": LORA_TARGETS},
        **spec,
    }
    wire["training"] = training | spec.get("training", {})
    return PodSpecFile.model_validate(
        {
            "stage": "finetune",
            "resource": {"kind": "FineTuneRun", "name": "test"},
            "spec": wire,
            "inputs": {"dataset": dataset},
            "output": str(output),
        }
    )


def markers(text: str) -> list[dict[str, Any]]:
    return [m for m in map(parse_marker, text.splitlines()) if m is not None]


def weights(directory: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return dict(AutoModelForCausalLM.from_pretrained(directory).state_dict())


def test_lora_memorises_and_merges_only_its_targets(
    base_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = make_pod(
        base_dir,
        write_dataset(tmp_path / "traces.jsonl"),
        tmp_path / "out",
        training={"maxSteps": 60, "schedule": "constant", "warmupRatio": 0.0, "gradientCheckpointing": True},
    )

    summary = run_finetune(pod)

    losses = [m["loss"] for m in markers(capsys.readouterr().out)]
    assert len(losses) == 60
    assert sum(losses[-5:]) / 5 < 0.35 * losses[0], losses  # ~6.7 -> ~1.4: the 8 traces are memorised
    model_dir = tmp_path / "out" / "model"
    # What it was trained from, pinned: the local base model by the digest of its files, the dataset by its own.
    pinned = [
        {"role": "baseModel", "uri": base_dir.as_uri(), "digest": directory_digest(base_dir)},
        {"role": "dataset", "uri": pod.inputs.dataset.uri, "digest": pod.inputs.dataset.digest},  # type: ignore[union-attr]
    ]
    assert summary == {
        "stage": "finetune",
        "outputs": {
            "model": {"uri": model_dir.as_uri(), "digest": directory_digest(model_dir)},
            "metrics": (tmp_path / "out" / "metrics").as_uri(),
        },
        "progress": summary["progress"],
        "pinned": pinned,
    }
    provenance = json.loads((model_dir / "cotlab.json").read_text())  # in the model, so inside its digest
    assert provenance == {"pinned": pinned, "trainingSeed": 0, "trainingSpecDigest": provenance["trainingSpecDigest"]}
    assert summary["progress"]["step"] == summary["progress"]["totalSteps"] == 60
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()
    trained, base = weights(model_dir), weights(base_dir)
    assert trained.keys() == base.keys()
    changed = {name for name in base if not torch.equal(trained[name], base[name])}
    # LoRA adds B @ A to a target's weight matrix; its bias, and every other module, stay as they were.
    targeted = {name for name in base if name.endswith(".weight") and name.split(".")[-2] in LORA_TARGETS}
    assert changed == targeted


def test_a_lora_run_in_bf16_holds_its_frozen_base_in_bf16_and_saves_it_merged(
    base_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """A 1-GPU LoRA run in bf16, on the CPU: the hardware check (a GPU's) is made to allow bf16, and accelerate
    autocasts on the CPU as it would on a GPU. The base is loaded in bf16 (model.base_dtype), the run learns, and
    the saved model is the base in bf16 with the adapters merged into their targets only."""
    from accelerate.state import AcceleratorState

    from cotlab.trainer.finetune import accelerator

    monkeypatch.setattr(accelerator, "supported_precision", lambda requested: requested)
    # accelerate keeps one precision per process (a pod runs one stage): the other tests' fp32 state is set aside
    # for this run and this run's bf16 cleared after it, as accelerate's own tests do between cases.
    AcceleratorState._reset_state(reset_partial_state=True)
    request.addfinalizer(lambda: AcceleratorState._reset_state(reset_partial_state=True))
    pod = make_pod(
        base_dir,
        write_dataset(tmp_path / "traces.jsonl"),
        tmp_path / "out",
        training={"maxSteps": 30, "precision": "bf16", "schedule": "constant", "warmupRatio": 0.0},
    )

    with caplog.at_level(logging.INFO, logger="cotlab.trainer.finetune.model"):
        run_finetune(pod)

    loaded = [r for r in caplog.records if r.getMessage() == "loaded the base model"]
    assert [getattr(r, "dtype", None) for r in loaded] == ["torch.bfloat16"]
    losses = [m["loss"] for m in markers(capsys.readouterr().out)]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < 0.6 * losses[0], losses
    saved = load_file(tmp_path / "out" / "model" / "model.safetensors")
    base = {name: tensor.to(torch.bfloat16) for name, tensor in load_file(base_dir / "model.safetensors").items()}
    assert {tensor.dtype for tensor in saved.values()} == {torch.bfloat16}
    assert saved.keys() == base.keys()
    changed = {name for name in base if not torch.equal(saved[name], base[name])}
    assert changed == {name for name in base if name.endswith(".weight") and name.split(".")[-2] in LORA_TARGETS}


def test_full_fine_tune_changes_every_layer(
    base_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pod = make_pod(
        base_dir,
        write_dataset(tmp_path / "traces.jsonl"),
        tmp_path / "out",
        method="full",
        lora=None,
        training={"maxSteps": 3, "learningRate": 1e-3, "packing": True, "gradientAccumulationSteps": 2},
    )

    with caplog.at_level(logging.INFO, logger="cotlab.trainer.finetune.stage"):
        summary = run_finetune(pod)

    assert [m["step"] for m in markers(capsys.readouterr().out)] == [1, 2, 3]
    # On CPU too: flattened, with sdpa run per example (test_flattening.py checks it against padded batches).
    assert [getattr(r, "flat", None) for r in caplog.records if r.getMessage() == "training"] == [True]
    trained, base = weights(tmp_path / "out" / "model"), weights(base_dir)
    assert all(not torch.equal(trained[name], base[name]) for name in base)
    assert not (tmp_path / "out" / "adapter").exists()
    assert summary["outputs"]["model"]["digest"] == directory_digest(tmp_path / "out" / "model")
    # Trained on chat turns ending in <|im_end|>, a base whose EOS is <|endoftext|> must stop on both now.
    tokenizer = build_tokenizer()
    saved = json.loads((tmp_path / "out" / "model" / "generation_config.json").read_text())
    assert saved["eos_token_id"] == sorted([tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")])


def test_a_killed_run_resumes_from_its_last_complete_checkpoint(
    base_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 8 traces, 2 per batch, 3 epochs: 4 steps an epoch, 12 in all; checkpoints every 2 steps.
    dataset = write_dataset(tmp_path / "traces.jsonl")
    training = {"epochs": 3, "maxSteps": None, "perDeviceBatchSize": 2, "saveEverySteps": 2, "learningRate": 3e-3}
    lora = {"r": 4, "alpha": 8, "dropout": 0.1, "targetModules": LORA_TARGETS}  # dropout: the RNG must resume too
    pod = make_pod(base_dir, dataset, tmp_path / "out", training=training, lora=lora)
    real_save = training_loop.save_checkpoint

    def save_then_die(accelerator: Any, root: Path, position: Any) -> Path:
        path = real_save(accelerator, root, position)
        if position.step == 6:  # mid-epoch 2: the resumed run must skip the batches epoch 2 already trained
            raise Killed
        return path

    monkeypatch.setattr(training_loop, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run_finetune(pod)
    assert [m["step"] for m in markers(capsys.readouterr().out)] == [1, 2, 3, 4, 5, 6]
    checkpoints = tmp_path / "out" / CHECKPOINTS_DIR
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-4", "step-6"]
    # A LoRA checkpoint holds the adapter, not a copy of the base: its weights are the LoRA matrices only.
    saved = load_file(str(checkpoints / "step-6" / "model.safetensors"))
    assert saved and all(".lora_A." in name or ".lora_B." in name for name in saved), sorted(saved)[:5]
    base_bytes = (base_dir / "model.safetensors").stat().st_size
    assert (checkpoints / "step-6" / "model.safetensors").stat().st_size < base_bytes / 4
    (checkpoints / "step-8").mkdir()  # killed while writing the next one: no COMPLETE marker, ignored

    monkeypatch.setattr(training_loop, "save_checkpoint", real_save)
    # The same number of steps from other inputs must not resume: new traces, or another learning rate.
    other_traces = write_dataset(tmp_path / "other.jsonl", filler=" please")
    changed_lr = make_pod(base_dir, dataset, tmp_path / "out", training=training | {"learningRate": 1e-3}, lora=lora)
    for changed, differs in [
        (make_pod(base_dir, other_traces, tmp_path / "out", training=training, lora=lora), "dataset"),
        (changed_lr, "spec"),
    ]:
        with pytest.raises(
            InvalidSpecError, match=f"{re.escape(str(checkpoints / 'step-6'))} .*differs: {differs} \\("
        ):
            run_finetune(changed)
    assert markers(capsys.readouterr().out) == []
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-4", "step-6", "step-8"]

    resumed = run_finetune(pod)

    steps = markers(capsys.readouterr().out)
    assert [m["step"] for m in steps] == [7, 8, 9, 10, 11, 12]
    assert {m["totalSteps"] for m in steps} == {12}
    assert steps[0]["epoch"] == 1.75
    uninterrupted = run_finetune(make_pod(base_dir, dataset, tmp_path / "again", training=training, lora=lora))
    capsys.readouterr()
    # Same data order, optimizer, schedule and dropout stream: bit-for-bit the same model.
    assert resumed["outputs"]["model"]["digest"] == uninterrupted["outputs"]["model"]["digest"]
    assert resumed["progress"]["loss"] == uninterrupted["progress"]["loss"]


def _write_pod(pod: PodSpecFile, path: Path) -> Path:
    path.write_text(pod.model_dump_json(by_alias=True), encoding="utf-8")
    return path


def test_entry_point_in_a_subprocess_writes_the_summary(base_dir: Path, tmp_path: Path) -> None:
    pod = make_pod(base_dir, write_dataset(tmp_path / "traces.jsonl"), tmp_path / "out")
    termination = tmp_path / "termination-log"
    env = {**os.environ, "COTLAB_TERMINATION_LOG": str(termination)}
    spec_file = _write_pod(pod, tmp_path / "spec.json")
    result = subprocess.run(
        [sys.executable, "-m", "cotlab.trainer", "finetune", "--spec", str(spec_file)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [m["step"] for m in markers(result.stdout)] == [1, 2, 3, 4]
    summary = decode_summary(termination.read_text())
    assert summary is not None and summary["stage"] == "finetune"
    assert summary["outputs"]["model"]["digest"] == directory_digest(tmp_path / "out" / "model")


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("too-long", 4, "maxSeqLength 128: 't0' ("),
        ("digest-mismatch", 3, "but sha256:" + "0" * 64 + " was expected"),
        ("no-lora-target", 2, "spec.lora.targetModules: none of ['c_attn']"),
    ],
    ids=["trace-too-long", "digest-mismatch", "lora-target-absent"],
)
def test_permanent_failures_exit_with_their_code(
    base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, code: int, message: str
) -> None:
    dataset = write_dataset(tmp_path / "traces.jsonl", filler=" pad" * 40 if case == "too-long" else "")
    spec: dict[str, Any] = {}
    if case == "digest-mismatch":
        dataset["digest"] = "sha256:" + "0" * 64
    if case == "no-lora-target":
        spec["lora"] = {"targetModules": ["c_attn"]}
    termination = tmp_path / "termination-log"
    monkeypatch.setenv("COTLAB_TERMINATION_LOG", str(termination))
    spec_file = _write_pod(make_pod(base_dir, dataset, tmp_path / "out", **spec), tmp_path / "spec.json")

    assert main(["finetune", "--spec", str(spec_file)]) == code

    summary = decode_summary(termination.read_text())
    assert summary is not None and summary["exitCode"] == code
    assert message in summary["error"]
    assert not (tmp_path / "out" / "model").exists()
