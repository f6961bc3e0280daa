"""Benchmark cotlab's fine-tuning against TRL's SFTTrainer: the same model, data, steps and optimizer, in one run.

    python bench/finetune_vs_trl.py          # CPU: a tiny random Qwen2, fp32, uneven traces of 200-3000 tokens
    python bench/finetune_vs_trl.py --gpu    # GPU: random weights in a Qwen2.5-0.5B-shaped config, bf16

Three runs of the same full fine-tune from the same saved random model, one after the other in this process
(same threads):

- cotlab: `run_finetune` on a pod spec, its real path from the JSONL file on disk (parse, tokenize, flatten
  each micro-batch, the training loop, checkpointing settings), `packing: true` (its default).
- TRL defaults: `SFTTrainer` with `SFTConfig`'s defaults for how batches are built (padded to the longest).
- TRL best: the same with `padding_free=True` (flash attention when installed, else the model's sdpa), and on a
  GPU Liger's kernels when `liger_kernel` is importable (`use_liger_kernel`).

What is held equal: the model and its initial weights, the tokenized examples (cotlab's tokenization, handed to TRL
as `input_ids` and `labels`, so both train the same tokens), the order of the examples (cotlab's seeded order; TRL
samples sequentially through the same sequence), batch size, number of steps, AdamW (torch's fused kernel, no
weight decay: TRL's default `adamw_torch_fused`, and cotlab's `make_optimizer`), constant learning rate, gradient
clipping at 1.0, gradient checkpointing (on: TRL's default, and set in cotlab's spec, where leaving it unset would
let the memory estimate turn it off), precision (fp32 on CPU, where cotlab does not autocast; bf16 autocast with
fp32 weights on GPU) and `torch.get_num_threads()`. TRL's own per-step extras (entropy and accuracy metrics) are
its defaults and stay.

Tokens counted: every token of the examples trained in the timed steps (prompt and completion, never padding),
the same count for all three, as the steps hold the same examples. The clock runs from the end of the first
(warm-up) optimizer step to the end of the last. The per-step losses must agree (see LOSS_TOLERANCE).
GPU mode also prints model FLOPs utilisation: 6 x (linear-layer weights) per token plus causal attention,
6 x layers x hidden x length^2 per example, forward and backward, over `--peak-tflops` (H200 bf16 dense: 790).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the random model builder is shared with the tests

import torch  # noqa: E402

from cotlab.api.finetunerun import GPU_RESOURCE  # noqa: E402
from cotlab.api.podcontract import PodSpecFile, parse_marker  # noqa: E402
from cotlab.trainer.core.dataset_format import TrainingExample  # noqa: E402
from cotlab.trainer.finetune.batches import epoch_order, process_micro_batches  # noqa: E402
from cotlab.trainer.finetune.data import TokenizedExample, end_of_turn_ids, tokenize_dataset  # noqa: E402
from cotlab.trainer.finetune.stage import run_finetune  # noqa: E402
from tests.workload.tiny_model import build_qwen25_05b_shaped, build_tiny_model, build_tokenizer  # noqa: E402

# fp32 on CPU: the same weights, data and AdamW, so the only differences are kernels' summation orders (TRL's
# tiled log-probs against cotlab's chunked token loss, padded sdpa against sdpa per example), amplified by Adam's
# division by the small second moment in the first steps; measured: 2e-7 relative over 8 steps.
# bf16 autocast rounds activations to 3 significant digits: 2% of the loss.
LOSS_TOLERANCE = {"cpu": 1e-3, "gpu": 2e-2}
# The GPU model's fp32 weights alone (Qwen2.5-0.5B shape: 494M parameters) take 1.9 GB; a run that allocated less
# on the GPU trained somewhere else.
MODEL_ON_GPU_BYTES = 1 << 30


@dataclass(frozen=True)
class Setup:
    examples: int
    min_tokens: int
    max_tokens: int
    batch_size: int
    steps: int
    learning_rate: float = 1e-4
    seed: int = 0


CPU = Setup(examples=32, min_tokens=200, max_tokens=3000, batch_size=4, steps=8)
GPU = Setup(examples=256, min_tokens=256, max_tokens=4096, batch_size=8, steps=24)


@dataclass
class Run:
    name: str
    step_ends: dict[int, float] = field(default_factory=dict)  # step -> perf_counter at its end
    losses: dict[int, float] = field(default_factory=dict)

    def seconds(self, first: int, last: int) -> float:
        return self.step_ends[last] - self.step_ends[first]


def build_model(directory: Path, gpu: bool) -> Path:
    """The random model the three runs start from: tiny on CPU, Qwen2.5-0.5B-shaped on GPU."""
    if not gpu:
        return build_tiny_model(directory, hidden_size=128, layers=2, heads=4)
    return build_qwen25_05b_shaped(directory)


def write_traces(path: Path, setup: Setup) -> dict[str, str]:
    """Plain prompt/completion traces of uneven lengths (a byte tokenizer: one token per character)."""
    import hashlib

    rng = random.Random(setup.seed)
    words = ["carry", "the", "sum", "of", "digits", "then", "check", "each", "step", "again", "so", "x", "="]
    rows = []
    for i in range(setup.examples):
        target = rng.randint(setup.min_tokens, setup.max_tokens)
        text = ""
        while len(text) < target:
            text += rng.choice(words) + " "
        cut = max(8, len(text) // 5)  # a fifth prompt, the rest the trained completion
        prompt, completion = text[:cut], text[cut : target - 1]
        rows.append(
            {
                "id": f"t{i}",
                "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
                "prompt": prompt,
                "completion": completion,
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"uri": path.as_uri(), "digest": "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()}


def tokenized(path: Path, max_length: int) -> list[TokenizedExample]:
    """cotlab's tokenization of the traces (what its stage trains; TRL gets the same ids and labels)."""
    tokenizer = build_tokenizer()
    examples = [TrainingExample.model_validate_json(line) for line in path.read_text().splitlines()]
    return tokenize_dataset(tokenizer, examples, max_length=max_length, end_ids=end_of_turn_ids(tokenizer, ()))


def step_examples(count: int, setup: Setup) -> list[list[int]]:
    """The examples of each step, in cotlab's order (one process, no accumulation: a step is a micro-batch)."""
    steps: list[list[int]] = []
    epoch = 0
    while len(steps) < setup.steps:
        order = epoch_order(count, seed=setup.seed, epoch=epoch)
        micro = process_micro_batches(order, batch_size=setup.batch_size, processes=1, rank=0)
        steps += [list(m.indices) for m in micro]
        epoch += 1
    return steps[: setup.steps]


class _MarkerClock(io.TextIOBase):
    """stdout for cotlab's run: notes when each progress marker (printed after its step) arrives."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def write(self, text: str) -> int:
        now = time.perf_counter()
        for line in text.splitlines():
            marker = parse_marker(line)
            if marker is not None:
                self.run.step_ends[marker["step"]] = now
                self.run.losses[marker["step"]] = marker["loss"]
        return len(text)


def cotlab_pod(
    model_dir: Path, dataset: dict[str, str], setup: Setup, max_length: int, gpu: bool, out: Path
) -> PodSpecFile:
    """The pod spec file a FineTuneRun of this setup gets: on GPU, the one a 1-GPU FineTuneRun gets."""
    training = {
        "maxSteps": setup.steps,
        "perDeviceBatchSize": setup.batch_size,
        "learningRate": setup.learning_rate,
        "schedule": "constant",
        "warmupRatio": 0.0,
        "weightDecay": 0.0,
        "maxGradNorm": 1.0,
        "maxSeqLength": max_length,
        "packing": True,
        "gradientCheckpointing": True,
        "precision": "bf16" if gpu else "fp32",
        "seed": setup.seed,
        "saveEverySteps": setup.steps,  # no checkpoint inside the timed steps (TRL saves none either)
    }
    # Without gpusPerNode the trainer builds a CPU Accelerator even beside a GPU (the first --gpu run on an H200
    # trained on the CPU at 0% GPU utilisation); the GPU request must agree with it, as the API requires.
    placement = {"distributed": {"gpusPerNode": 1}, "resources": {"limits": {GPU_RESOURCE: "1"}}} if gpu else {}
    return PodSpecFile.model_validate(
        {
            "stage": "finetune",
            "resource": {"kind": "FineTuneRun", "name": "bench"},
            "spec": {
                "baseModel": {"uri": model_dir.as_uri()},
                "datasetRef": {"name": "traces"},
                "method": "full",
                "training": training,
                **placement,
            },
            "inputs": {"dataset": dataset},
            "output": str(out),
        }
    )


def run_cotlab(model_dir: Path, dataset: dict[str, str], setup: Setup, max_length: int, gpu: bool, out: Path) -> Run:
    pod = cotlab_pod(model_dir, dataset, setup, max_length, gpu, out)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    run = Run("cotlab")
    with contextlib.redirect_stdout(_MarkerClock(run)):
        run_finetune(pod)
    if gpu and torch.cuda.max_memory_allocated() < MODEL_ON_GPU_BYTES:
        raise SystemExit(
            f"bench/finetune_vs_trl.py: cotlab's run did not train on the GPU (peak GPU memory"
            f" {torch.cuda.max_memory_allocated()} bytes, less than the model's weights); the figures would be CPU's"
        )
    return run


def run_trl(
    name: str, model_dir: Path, rows: list[dict[str, list[int]]], setup: Setup, gpu: bool, best: bool, out: Path
) -> Run:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from transformers.utils.import_utils import is_flash_attn_2_available
    from trl import SFTConfig, SFTTrainer

    run = Run(name)

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # the step's kernels are done (cotlab's marker waits for its loss)
            run.step_ends[state.global_step] = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                run.losses[state.global_step] = float(logs["loss"])

    extra = {"attn_implementation": "flash_attention_2"} if best and gpu and is_flash_attn_2_available() else {}
    # Liger's kernels (fused linear cross-entropy, RMSNorm, SwiGLU, RoPE) when they travelled along: TRL's
    # `use_liger_kernel`, its fastest documented setting. They need Triton and a GPU.
    liger = best and gpu and importlib.util.find_spec("liger_kernel") is not None
    print(f"{name}: attention {extra.get('attn_implementation', 'sdpa')}, liger kernels {'on' if liger else 'off'}")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **extra)
    config = SFTConfig(
        output_dir=str(out),
        max_steps=setup.steps,
        per_device_train_batch_size=setup.batch_size,
        learning_rate=setup.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=setup.seed,
        bf16=gpu,
        gradient_checkpointing=True,
        max_length=None,  # the traces are never cut (as cotlab's maxSeqLength refuses instead of cutting)
        padding_free=best,
        use_liger_kernel=liger,
        train_sampling_strategy="sequential",  # the rows are already in cotlab's order
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=build_tokenizer(),
        callbacks=[Clock()],
    )
    trainer.train()
    # What "the same optimizer" rests on: TRL's default AdamW is torch's fused one, as cotlab's make_optimizer.
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"], trainer.args.optim
    return run


def _reset_accelerate() -> None:
    """Each trainer builds its own Accelerator; accelerate keeps one process-wide state, so start afresh."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def training_flops(model_dir: Path, lengths: list[int]) -> float:
    """Model FLOPs of one forward and backward pass over examples of `lengths` (no recomputation counted)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))  # lm head included
    per_layer_attention = 6 * config.hidden_size * config.num_hidden_layers  # x length^2, causal half counted
    return float(sum(6 * linear * n + per_layer_attention * n * n for n in lengths))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="Qwen2.5-0.5B-shaped random model in bf16 on a GPU")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--examples", type=int)
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="the GPU's dense bf16 peak (H200: 790)")
    parser.add_argument("--threads", type=int, help="torch threads for all three runs (default: torch's)")
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        print("bench/finetune_vs_trl.py: --gpu needs a GPU, and none is visible", file=sys.stderr)
        return 2
    base = GPU if args.gpu else CPU
    setup = Setup(
        examples=args.examples or base.examples,
        min_tokens=base.min_tokens,
        max_tokens=base.max_tokens,
        batch_size=args.batch_size or base.batch_size,
        steps=args.steps or base.steps,
    )
    if setup.examples % setup.batch_size or setup.steps < 2:
        parser.error("--examples must be a multiple of --batch-size (no short batch), and --steps at least 2")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    mode = "gpu" if args.gpu else "cpu"

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = build_model(tmp / "model", args.gpu)
        dataset = write_traces(tmp / "traces.jsonl", setup)
        max_length = setup.max_tokens + 64
        examples = tokenized(tmp / "traces.jsonl", max_length)
        steps = step_examples(len(examples), setup)
        # TRL's rows: the examples of each step, in step order (it samples sequentially).
        rows = [{"input_ids": list(examples[i].input_ids), "labels": list(examples[i].labels)} for i in sum(steps, [])]

        runs = [run_cotlab(model_dir, dataset, setup, max_length, args.gpu, tmp / "cotlab")]
        _reset_accelerate()
        runs.append(run_trl("TRL defaults (padded)", model_dir, rows, setup, args.gpu, False, tmp / "trl"))
        _reset_accelerate()
        runs.append(run_trl("TRL best (padding_free)", model_dir, rows, setup, args.gpu, True, tmp / "trl-pf"))
        timed_lengths = [examples[i].length for s in steps[1:] for i in s]
        flops = training_flops(model_dir, timed_lengths) if args.gpu else None

    tokens = sum(timed_lengths)
    print(
        f"mode: {mode}, model: {'Qwen2.5-0.5B-shaped' if args.gpu else 'tiny Qwen2 (hidden 128, 2 layers)'}, random"
        f" weights; {setup.examples} traces of {setup.min_tokens}-{setup.max_tokens} tokens, batch {setup.batch_size},"
        f" {setup.steps} steps (the first is warm-up), {torch.get_num_threads()} threads"
    )
    print(f"tokens counted: {tokens} (every token of the examples in steps 2-{setup.steps}, no padding)")
    speed = {}
    for run in runs:
        seconds = run.seconds(1, setup.steps)
        speed[run.name] = tokens / seconds
        mfu = f", MFU {100 * flops / seconds / (args.peak_tflops * 1e12):.1f}%" if flops is not None else ""
        print(f"{run.name}: {seconds:.2f} s = {speed[run.name]:.0f} tokens/s{mfu}")
    ours = speed["cotlab"]
    print(f"ratio cotlab / TRL defaults: {ours / speed[runs[1].name]:.2f}x (target >= 1.3)")
    print(f"ratio cotlab / TRL best: {ours / speed[runs[2].name]:.2f}x (target >= 1.0)")

    tolerance = LOSS_TOLERANCE[mode]
    worst = 0.0
    for run in runs[1:]:
        for step in range(1, setup.steps + 1):
            theirs, mine = run.losses[step], runs[0].losses[step]
            worst = max(worst, abs(mine - theirs) / max(abs(theirs), 1e-12))
    agree = worst <= tolerance and not any(math.isnan(v) for r in runs for v in r.losses.values())
    first_last = ", ".join(f"{r.name} {r.losses[1]:.4f}->{r.losses[setup.steps]:.4f}" for r in runs)
    print(f"losses (step 1 -> {setup.steps}): {first_last}")
    print(f"losses agree: {'yes' if agree else 'NO'} (largest relative difference {worst:.1e}, tolerance {tolerance})")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
