"""FSDP2 throughput on GPUs: a Qwen2.5-0.5B-shaped model (random weights, bf16), 8k-token sequences; prints
tokens/s and MFU. Prepared for a lent GPU machine; it has not been run yet.

    torchrun --nproc-per-node <gpus> tests/gpu/fsdp_throughput.py [--seq 8192] [--steps 8] [--peak-tflops 989]

It goes through the same pieces as a FineTuneRun: `fsdp_plugin` (FSDP2 over the decoder layers), the
Accelerator in bf16, `prepare_for_training` (gradient checkpointing) and the loop's `_train_step` (per-token
loss). FSDP is applied even on 1 GPU, so the sharded path is exercised there too. MFU counts 6·N FLOPs per token
for the weights plus 12·layers·hidden·seq for attention (the PaLM appendix formula), over the GPUs' dense bf16 peak
(989 TFLOP/s for an H100/H200 SXM).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from cotlab.trainer.finetune.accelerator import fsdp_plugin, prepare
from cotlab.trainer.finetune.loop import _train_step
from cotlab.trainer.finetune.model import prepare_for_training


def qwen25_05b_config(seq: int):  # type: ignore[no-untyped-def]
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=max(seq, 32768),
        tie_word_embeddings=True,
        torch_dtype="bfloat16",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()

    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM

    accelerator = Accelerator(mixed_precision="bf16", fsdp_plugin=fsdp_plugin())
    config = qwen25_05b_config(args.seq)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")
    params = sum(p.numel() for p in model.parameters())
    model = prepare_for_training(model, lora=None, gradient_checkpointing=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = prepare(accelerator, model, optimizer)

    def batch() -> dict[str, torch.Tensor]:
        ids = torch.randint(0, config.vocab_size, (1, args.seq))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    for _ in range(args.warmup):
        _train_step(accelerator, model, optimizer, scheduler, [batch()], clip=1.0)
    torch.cuda.synchronize()
    started, tokens = time.perf_counter(), 0
    for _ in range(args.steps):
        step = _train_step(accelerator, model, optimizer, scheduler, [batch()], clip=1.0)
        loss, tokens = step.loss, tokens + step.tokens
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    world = accelerator.num_processes
    tokens_per_s = tokens * world / elapsed
    flops_per_token = 6 * params + 12 * config.num_hidden_layers * config.hidden_size * args.seq
    mfu = tokens_per_s * flops_per_token / (args.peak_tflops * 1e12 * world)
    if accelerator.is_main_process:
        print(
            json.dumps(
                {
                    "gpus": world,
                    "params": params,
                    "seq": args.seq,
                    "loss": round(loss, 4),
                    "tokens_per_s": round(tokens_per_s, 1),
                    "mfu": round(mfu, 4),
                    "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                    "distributed_type": str(accelerator.distributed_type),
                }
            )
        )


if __name__ == "__main__":
    main()
