"""Several training processes on CPU (gloo), started by the pod entry point through torch's elastic launcher.

- DDP and FSDP over 2 processes train, checkpoint, lose a rank to SIGKILL (the attempt fails), resume from the
  newest checkpoint and end with the loss curve of 1 process with the same global batch (4 = 2 × 2). FSDP runs
  accelerate's FSDP2 path on CPU (see `accelerator._shard_on_cpu`): the loading rank broadcasts the shards, each
  rank writes its own shards of model and optimizer, and rank 0 writes the merged model. Tolerance: 1e-5 absolute
  on the markers' losses (rounded to 6 decimals); measured: at most 1e-6 (the last printed digit), both.
- Host memory under FSDP: the rank that does not load builds the model with every parameter on the meta device
  (0 bytes of parameters), real buffers, and the loading rank's shapes.
- The per-token loss: micro-batches of uneven lengths, accumulated and split over 2 processes, give the loss and
  gradients of one big batch in 1 process (1e-6 relative to the largest gradient; measured ~1e-7), and a
  micro-batch with no trained token gives no NaN.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch

from cotlab.api.podcontract import ExitCode, PodSpecFile, decode_summary, parse_marker
from cotlab.trainer.finetune.checkpoints import CHECKPOINTS_DIR, latest_checkpoint
from cotlab.trainer.finetune.stage import run_finetune

from . import per_token_step
from .test_finetune import make_pod, write_dataset
from .tiny_model import build_tiny_model

pytestmark = pytest.mark.workload

REPO = Path(__file__).resolve().parents[2]
LOSS_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-6  # relative to the largest gradient entry
TIMEOUT_S = 300
TRAINING = {
    "maxSteps": 6,
    "learningRate": 1e-3,
    "saveEverySteps": 2,
    "packing": False,
    "gradientCheckpointing": False,
    "schedule": "constant",
    "warmupRatio": 0.0,
}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("distributed-base"), hidden_size=64)


def _env(termination_log: Path) -> dict[str, str]:
    return {**os.environ, "COTLAB_TERMINATION_LOG": str(termination_log), "OMP_NUM_THREADS": "1"}


def _write(pod: PodSpecFile, path: Path) -> Path:
    path.write_text(pod.model_dump_json(by_alias=True), encoding="utf-8")
    return path


def _command(spec: Path) -> list[str]:
    return [sys.executable, "-m", "cotlab.trainer", "finetune", "--spec", str(spec)]


def _losses(lines: list[str]) -> dict[int, float]:
    markers = [m for m in map(parse_marker, lines) if m is not None]
    return {m["step"]: m["loss"] for m in markers}


def _kill_rank_after_step(process: subprocess.Popen[str], *, rank: int, step: int) -> list[str]:
    """Read the launcher's stdout until `step`'s marker, SIGKILL the worker of global rank `rank`, read the rest."""
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        marker = parse_marker(line)
        if marker is not None and marker["step"] >= step:
            break
    workers = [p for p in psutil.Process(process.pid).children(recursive=True) if p.environ().get("RANK") == str(rank)]
    assert len(workers) == 1, workers
    os.kill(workers[0].pid, signal.SIGKILL)
    lines.extend(process.stdout)
    process.wait(timeout=TIMEOUT_S)
    return lines


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_killed_and_resumed_follow_the_one_process_curve(
    strategy: str, base_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path / "traces.jsonl", 8)
    one = make_pod(
        base_dir, dataset, tmp_path / "one", method="full", lora=None, training=TRAINING | {"perDeviceBatchSize": 4}
    )
    run_finetune(one)
    reference = _losses(capsys.readouterr().out.splitlines())
    assert sorted(reference) == [1, 2, 3, 4, 5, 6]

    two = make_pod(
        base_dir,
        dataset,
        tmp_path / "two",
        method="full",
        lora=None,
        distributed={"cpuProcessesPerNode": 2, "strategy": strategy},
        training=TRAINING | {"perDeviceBatchSize": 2},
    )
    spec, log = _write(two, tmp_path / "two.json"), tmp_path / "termination-log"
    started = time.monotonic()
    first = subprocess.Popen(_command(spec), cwd=REPO, env=_env(log), stdout=subprocess.PIPE, text=True)
    first_lines = _kill_rank_after_step(first, rank=1, step=3)
    assert first.returncode == ExitCode.RETRYABLE
    assert "rank 1 failed" in decode_summary(log.read_text())["error"]
    found = latest_checkpoint(tmp_path / "two" / CHECKPOINTS_DIR)
    assert found is not None
    resumed_from = found[1].step
    assert 2 <= resumed_from < 6
    if strategy == "fsdp":  # sharded: each rank wrote its own shards of the model and optimizer (DCP files)
        for state in ("pytorch_model_fsdp_0", "optimizer_0"):
            assert sorted(p.name for p in (found[0] / state).glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]

    second = subprocess.run(
        _command(spec), cwd=REPO, env=_env(log), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    elapsed = time.monotonic() - started
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = _losses(second.stdout.splitlines())
    assert sorted(resumed) == list(range(resumed_from + 1, 7)), "the retry resumes after the newest checkpoint"
    curve = _losses(first_lines) | resumed
    assert sorted(curve) == [1, 2, 3, 4, 5, 6]
    for step, loss in curve.items():
        assert loss == pytest.approx(reference[step], abs=LOSS_TOLERANCE), (step, curve, reference)
    summary = decode_summary(log.read_text())
    assert summary["progress"]["step"] == 6
    assert (tmp_path / "two" / "model" / "config.json").is_file()
    worst = max(abs(loss - reference[step]) for step, loss in curve.items())
    print(json.dumps({f"{strategy}_two_attempts_s": round(elapsed, 1), "max_loss_difference": worst}), file=sys.stderr)


def test_per_token_loss_split_over_two_processes_equals_one_big_batch(base_dir: Path, tmp_path: Path) -> None:
    per_token_step.main(str(base_dir), str(tmp_path / "one.pt"))
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "-m",
            "tests.workload.per_token_step",
            str(base_dir),
            str(tmp_path / "two.pt"),
        ],
        cwd=REPO,
        env=_env(tmp_path / "unused"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    one: dict[str, Any] = torch.load(tmp_path / "one.pt")
    two: dict[str, Any] = torch.load(tmp_path / "two.pt")
    assert (one["processes"], two["processes"]) == (1, 2)
    assert math.isfinite(two["loss"])  # one of process 1's micro-batches has no trained token
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)
    largest = max(float(g.abs().max()) for g in one["grads"].values())
    assert largest > 0
    for name, grad in one["grads"].items():
        assert torch.allclose(two["grads"][name], grad, rtol=0, atol=GRADIENT_TOLERANCE * largest), name


def test_a_step_without_trained_tokens_has_loss_zero_not_nan(base_dir: Path) -> None:
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM

    from cotlab.trainer.finetune.batches import pad_batch
    from cotlab.trainer.finetune.loop import _train_step

    accelerator = Accelerator(cpu=True)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)

    loss = _train_step(
        accelerator, model, optimizer, scheduler, [pad_batch([per_token_step.EMPTY], pad_id=0)], clip=1.0
    ).loss

    assert loss == 0.0
    for name, param in accelerator.unwrap_model(model).named_parameters():
        assert torch.equal(param.detach(), before[name]), name


def test_under_fsdp_only_one_rank_reads_the_weights(base_dir: Path, tmp_path: Path) -> None:
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "-m", "tests.workload.rank_loading", str(base_dir), str(tmp_path)],
        cwd=REPO, env=_env(tmp_path / "unused"), capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    loader = json.loads((tmp_path / "rank-0.json").read_text())
    other = json.loads((tmp_path / "rank-1.json").read_text())
    assert (loader["devices"], other["devices"]) == (["cpu"], ["meta"])
    assert other["real_parameter_bytes"] == 0 < loader["real_parameter_bytes"]
    assert other["buffers"] == ["cpu"]  # the rotary inv_freq is not broadcast: it must be real everywhere
    assert other["shapes"] == loader["shapes"]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_fsdp_in_bf16_accumulates_and_reports_in_fp32(method: str, base_dir: Path, tmp_path: Path) -> None:
    """What several GPUs get, in bf16 on 2 CPU processes (`mixed_precision_step`): the same micro-batch
    accumulated 7 times gives 7x its gradient to 1e-3 of the largest entry (measured 2.5e-4; accelerate's bf16
    reduce policy 6e-3), the reported losses are not rounded to bf16, and a LoRA run's frozen base is held in
    bf16 beside fp32 adapters, sharded and trained (its loss falls)."""
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "-m", "tests.workload.mixed_precision_step", str(base_dir), str(tmp_path / "out.pt"), method],
        cwd=REPO, env=_env(tmp_path / "unused"), capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    record: dict[str, Any] = torch.load(tmp_path / "out.pt")
    once, accumulated = record["once"], record["accumulated"]
    largest = max(float(7 * g.abs().max()) for g in once.values())
    assert largest > 0
    worst = max(float((accumulated[name] - 7 * grad).abs().max()) for name, grad in once.items())
    assert worst <= 1e-3 * largest, worst / largest
    losses = record["losses"]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0], losses
    assert any(loss != float(torch.tensor(loss).bfloat16()) for loss in losses), losses
    frozen = ["torch.bfloat16"] if method == "lora" else []
    # FSDP's forward runs on bf16 copies of the weights: the residual stream is bf16 (training.precision says so).
    assert record["dtypes"] == {"trained": ["torch.float32"], "frozen": frozen, "residual": ["torch.bfloat16"]}
