"""Fine-tuning throughput and model FLOPs utilisation through the FineTuneRun path, one configuration per run.

    python bench/finetune_mfu.py                                   # Qwen2.5-0.5B shape, 8,192 tokens, on the GPU
    python bench/finetune_mfu.py --loss model --checkpointing on   # the path before the token loss (an ablation)
    python bench/finetune_mfu.py --checkpointing off --compile     # training.torchCompile
    python bench/finetune_mfu.py --shape 7b --seq 16384            # the study's model class (see --layers)
    python bench/finetune_mfu.py --shape 32b --method lora --seq 16384        # frozen base in bf16: 66 GB
    python bench/finetune_mfu.py --shape tiny --device cpu         # what the unit test runs: the script still works
    torchrun --nproc-per-node 1 bench/finetune_mfu.py --fsdp       # FSDP2 needs a launcher's process group

Random weights from the model's config, one row of `--seq` tokens per optimizer step, every token trained. The
pieces are run_finetune's own: `build_accelerator` for a 1-GPU FineTuneRun (`gpusPerNode: 1`; `--fsdp` shards
with FSDP2 even on one GPU, as a multi-GPU run would), `prepare_for_training` (LoRA, the token loss), memory.py's
estimate (`--checkpointing auto` decides as an unset `gradientCheckpointing` does; every run prints the estimate
beside the measured peak), `enable_checkpointing`, `make_optimizer` (fused AdamW; `--optimizer foreach`: torch's
default, the path before it), `prepare`, the collators (`--batch flat`: one flattened row split into `--examples`
traces, segment attention; `padded`: the model's sdpa) and the loop's `_train_step`.

MFU is the PaLM appendix formula of the first GPU run, `model_flops_per_token`: 6 x the parameters that multiply
(the input embedding is a lookup, counted only when tied, as the output projection) plus 12 x layers x hidden x
the attention context, over `--peak-tflops` (790: the dense bf16 rate measured on the lent H200 on 2026-12-04); a
bf16 matmul measured in the same run is printed beside it. For one trace per row the context is the row (the
first run's count, unchanged for the 0.5B shape); traces flattened into a row attend within themselves only, so
the context is their mean length weighted by tokens, and a packed row is not credited with attention it skips.
LoRA computes no weight gradient for its frozen base: 4 x frozen + 6 x trained parameters.
`--profile` adds where the GPU time of two steps goes, by kernel: matmuls, attention, the optimizer, other
kernels, the wall time no kernel ran, and how much of it all was the token loss. One JSON line is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from cotlab.api.finetunerun import Distributed, LoraSettings
from cotlab.trainer.finetune.accelerator import build_accelerator, make_accelerator, prepare
from cotlab.trainer.finetune.batches import flatten_batch, pad_batch
from cotlab.trainer.finetune.compilation import compile_layer_parts
from cotlab.trainer.finetune.data import TokenizedExample
from cotlab.trainer.finetune.loop import _train_step
from cotlab.trainer.finetune.memory import estimate_memory
from cotlab.trainer.finetune.model import (
    base_dtype,
    enable_checkpointing,
    make_optimizer,
    parameter_groups,
    peft_base,
    prepare_for_training,
)
from cotlab.trainer.finetune.stage import _attention_for

# Qwen2.5 base shapes (their config.json): hidden, intermediate, layers, heads, kv heads, tied embeddings.
SHAPES: dict[str, tuple[int, int, int, int, int, bool]] = {
    "tiny": (64, 128, 2, 4, 2, True),
    "0.5b": (896, 4864, 24, 14, 2, True),
    "7b": (3584, 18944, 28, 28, 4, False),
    "32b": (5120, 27648, 64, 40, 8, False),
}
VOCAB = {"tiny": 512, "0.5b": 151936, "7b": 152064, "32b": 152064}
KERNEL_KINDS = (  # first match wins; names of cuBLAS/CUTLASS/flash/SDPA kernels on Hopper
    ("attention", ("flash", "fmha", "attention", "attn")),
    ("matmul", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "matmul")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
)


def model_config(shape: str, seq: int, layers: int | None) -> Any:
    from transformers import Qwen2Config

    hidden, intermediate, depth, heads, kv_heads, tied = SHAPES[shape]
    return Qwen2Config(
        vocab_size=VOCAB[shape],
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers or depth,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max(seq, 32768),
        tie_word_embeddings=tied,
        use_cache=False,
    )


def model_flops_per_token(model: Any, config: Any, trace_lengths: list[int]) -> float:
    """Model FLOPs per trained token of one optimizer step (forward and backward, no recomputation counted)."""
    base = peft_base(model)
    embedding = base.get_input_embeddings().weight
    tied = embedding is base.get_output_embeddings().weight
    multiplying = [p for p in model.parameters() if p is not embedding or tied]
    trained = sum(p.numel() for p in multiplying if p.requires_grad)
    frozen = sum(p.numel() for p in multiplying if not p.requires_grad)
    context = sum(n * n for n in trace_lengths) / sum(trace_lengths)  # each token attends within its trace
    return 6 * trained + 4 * frozen + 12 * config.num_hidden_layers * config.hidden_size * context


def trace_lengths(seq: int, examples: int) -> list[int]:
    """The lengths of the `examples` traces a `seq`-token row is split into (`rows`)."""
    cut = [round(i * seq / examples) for i in range(examples + 1)]
    return [b - a for a, b in zip(cut, cut[1:], strict=False)]


def dense_bf16_tflops(device: torch.device) -> float | None:
    """A square bf16 matmul's rate on this device (what MFU is a fraction of), or None on the CPU."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    started, runs = time.perf_counter(), 20
    for _ in range(runs):
        a @ a
    torch.cuda.synchronize()
    return 2 * 8192**3 * runs / (time.perf_counter() - started) / 1e12


def rows(args: argparse.Namespace, vocab: int, steps: int) -> list[dict[str, Any]]:
    """One micro-batch per step: `--seq` random tokens, all trained, as `--examples` traces."""
    generator = torch.Generator().manual_seed(0)
    lengths = trace_lengths(args.seq, args.examples)
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    batches = []
    for step in range(steps):
        ids = torch.randint(0, vocab, (args.seq,), generator=generator).tolist()
        traces = [
            TokenizedExample(f"s{step}e{i}", tuple(ids[a : a + n]), tuple(ids[a : a + n]))
            for i, (a, n) in enumerate(zip(starts, lengths, strict=True))
        ]
        batches.append(flatten_batch(traces) if args.batch == "flat" else pad_batch(traces, pad_id=0))
    return batches


def kernel_time_split(profile: Any, wall_s: float) -> dict[str, float]:
    """Seconds of GPU kernel time per kind over the profiled steps, and the wall time no kernel covered."""
    split = dict.fromkeys([kind for kind, _ in KERNEL_KINDS] + ["other"], 0.0)
    busy = 0.0
    for event in profile.key_averages():
        seconds = getattr(event, "device_time_total", getattr(event, "cuda_time_total", 0.0)) / 1e6
        if not seconds or event.key.startswith(("cotlab.", "ProfilerStep", "aten::", "Optimizer")):
            continue  # ranges and CPU ops: their kernels are counted as kernels
        name = event.key.lower()
        kind = next((k for k, marks in KERNEL_KINDS if any(m in name for m in marks)), "other")
        split[kind] += seconds
        busy += seconds
    split["idle"] = max(wall_s - busy, 0.0)
    loss = next((e for e in profile.key_averages() if e.key == "cotlab.token_loss"), None)
    # The token loss's own kernels (its matmuls and softmax), already counted in the kinds above.
    split["of_which_token_loss"] = getattr(loss, "device_time_total", 0.0) / 1e6 if loss is not None else 0.0
    return {k: round(v, 4) for k, v in split.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    parser.add_argument("--layers", type=int, help="fewer decoder layers than the shape (a model that must fit)")
    parser.add_argument("--method", choices=["full", "lora"], default="full")
    parser.add_argument("--seq", type=int, default=8192)
    parser.add_argument("--examples", type=int, default=1, help="traces per row (flat batches)")
    parser.add_argument("--batch", choices=["flat", "padded"], default="flat")
    parser.add_argument("--loss", choices=["token", "model"], default="token")
    parser.add_argument("--checkpointing", choices=["on", "off", "auto"], default="on")
    parser.add_argument("--compile", action="store_true", help="training.torchCompile: the layers' parts compiled")
    parser.add_argument("--optimizer", choices=["fused", "foreach"], default="fused", help="AdamW's implementation")
    parser.add_argument("--fsdp", action="store_true")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, default=790.0)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    on_gpu = args.device == "cuda"
    if on_gpu and not torch.cuda.is_available():
        sys.exit("no GPU here: --device cpu runs the same path on the CPU")
    from transformers import AutoModelForCausalLM

    # A 1-GPU FineTuneRun's accelerator (world size 1: no plugin); --fsdp: what several GPUs get, on this one.
    accelerator = build_accelerator("bf16", Distributed(gpus_per_node=1 if on_gpu else 0))
    if args.fsdp:
        accelerator = make_accelerator("bf16" if on_gpu else "fp32", cpu=not on_gpu, shard=True)
    config = model_config(args.shape, args.seq, args.layers)
    torch.manual_seed(0)
    attention = _attention_for(args.batch == "flat") or "sdpa"
    lora = LoraSettings() if args.method == "lora" else None
    dtype = base_dtype(lora=lora is not None, mixed_precision=str(accelerator.mixed_precision))
    # Built where it trains (random init of a 7B model on the host takes minutes), except under FSDP, which
    # shards a host model.
    with torch.device(accelerator.device if not args.fsdp else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
    params = sum(p.numel() for p in model.parameters())
    model = prepare_for_training(model, lora=lora, token_loss=args.loss == "token")
    flops_per_token = model_flops_per_token(model, config, trace_lengths(args.seq, args.examples))  # unsharded
    # memory.py's estimate without checkpointing, printed beside the measured peak (compare on "off" rows), and
    # what `gradientCheckpointing` unset would decide from it ("auto").
    estimate = estimate_memory(
        model,
        lora=lora,
        autocast=torch.bfloat16 if on_gpu else None,
        tokens=args.seq,
        shards=accelerator.num_processes if args.fsdp else 1,
        device=accelerator.device,
    )
    assert estimate is not None, "the memory probe failed (its warning above says why)"
    checkpointing = estimate.needs_checkpointing if args.checkpointing == "auto" else args.checkpointing == "on"
    if checkpointing:
        enable_checkpointing(model)
    if args.compile:
        compile_layer_parts(model, accelerator.device)  # compiled in the first warm-up step
    if args.optimizer == "fused":
        optimizer = make_optimizer(model, learning_rate=1e-5, weight_decay=0.0)
    else:  # the path before make_optimizer: torch's default implementation (foreach)
        optimizer = torch.optim.AdamW(parameter_groups(model, 0.0), lr=1e-5, foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = prepare(accelerator, model, optimizer)
    if on_gpu and not next(p for p in model.parameters()).is_cuda:
        sys.exit("the model is not on the GPU")
    batches = rows(args, config.vocab_size, args.warmup + args.steps)

    def step(batch: dict[str, Any]) -> Any:
        return _train_step(accelerator, model, optimizer, scheduler, [batch], clip=1.0)

    for batch in batches[: args.warmup]:
        step(batch)
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    sync()
    started, tokens = time.perf_counter(), 0
    for batch in batches[args.warmup :]:
        result = step(batch)
        tokens += result.tokens
    sync()
    elapsed = time.perf_counter() - started
    tokens_per_s = tokens / elapsed
    measured = dense_bf16_tflops(accelerator.device)
    figures: dict[str, Any] = {
        "shape": args.shape,
        "layers": config.num_hidden_layers,
        "params": params,
        "method": args.method,
        "base_dtype": str(dtype).removeprefix("torch."),
        "seq": args.seq,
        "examples": args.examples,
        "batch": args.batch,
        "attention": model_attention(accelerator.unwrap_model(model)),
        "loss": args.loss,
        "checkpointing": args.checkpointing if args.checkpointing != "auto" else f"auto: {checkpointing}",
        "estimate_without_checkpointing_gib": round(estimate.total / 2**30, 2),
        "compile": args.compile,
        "optimizer": args.optimizer,
        "fsdp": args.fsdp,
        "distributed_type": str(accelerator.distributed_type),  # FSDP only under a launcher (torchrun)
        "last_loss": round(result.loss, 4),
        "tokens_per_s": round(tokens_per_s, 1),
        "model_gflops_per_token": round(flops_per_token / 1e9, 3),
        "mfu": round(tokens_per_s * flops_per_token / (args.peak_tflops * 1e12), 4),
        "peak_tflops": args.peak_tflops,
        "bf16_matmul_tflops_measured": round(measured, 1) if measured else None,
        "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "device": torch.cuda.get_device_name() if on_gpu else "cpu",
    }
    if args.profile:
        figures["profile_s"] = profiled(step, batches[-2:], sync)
    print(json.dumps(figures), flush=True)


def model_attention(model: Any) -> str:
    return str(peft_base(model).config._attn_implementation)


def profiled(step: Any, batches: list[dict[str, Any]], sync: Any) -> dict[str, float]:
    """Two steps under torch's profiler, split by kernel kind (`kernel_time_split`)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        for batch in batches:
            step(batch)
        sync()
        wall = time.perf_counter() - started
    return kernel_time_split(prof, wall) | {"wall": round(wall, 4)}


if __name__ == "__main__":
    main()
