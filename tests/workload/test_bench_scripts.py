"""The fine-tuning benchmarks run to the end on the CPU, small: a lent GPU's minutes are not for finding that a
script broke (`finetune_vs_trl.py` had stopped at its first line of work since batches.py started returning
MicroBatch objects, and no test ran it). Figures are not asserted here, only that each script completes and prints
what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_script

pytestmark = pytest.mark.workload

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_finetune_vs_trl_compares_three_runs_with_agreeing_losses() -> None:
    out = _run("bench/finetune_vs_trl.py", "--steps", "2", "--examples", "8", "--batch-size", "4")
    assert "ratio cotlab / TRL defaults:" in out and "ratio cotlab / TRL best:" in out
    assert "losses agree: yes" in out


def test_generation_bench_compares_the_transformers_engine_with_per_prompt_calls() -> None:
    out = _run("bench/generation.py", "--engine", "transformers")
    assert "ratio (cotlab / baseline tokens/s):" in out


def test_generation_bench_gpu_mode_refuses_to_run_on_the_cpu() -> None:
    done = subprocess.run(
        [sys.executable, "bench/generation.py", "--engine", "transformers", "--gpu"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "needs one" in done.stderr


@pytest.mark.parametrize(
    "variant",
    [
        ["--batch", "flat", "--examples", "3", "--profile"],
        ["--batch", "padded", "--loss", "model", "--checkpointing", "off", "--optimizer", "foreach"],
        ["--method", "lora", "--checkpointing", "auto"],
        ["--checkpointing", "off", "--compile"],
    ],
    ids=["flat-token-loss", "padded-model-loss", "lora-auto", "compile"],
)
def test_finetune_mfu_prints_one_json_line_of_figures(variant: list[str]) -> None:
    out = _run("bench/finetune_mfu.py", "--shape", "tiny", "--device", "cpu", "--seq", "256", "--steps", "2", *variant)
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["tokens_per_s"] > 0 and figures["last_loss"] > 0
    assert figures["layers"] == 2 and figures["seq"] == 256
    want_attention = "sdpa" if "padded" in variant else "cotlab_segment_sdpa"
    assert figures["attention"] == want_attention
    assert figures["estimate_without_checkpointing_gib"] > 0
    assert figures["optimizer"] == ("foreach" if "foreach" in variant else "fused")


def test_mfu_counts_the_first_runs_flops_for_one_trace_and_no_more_than_is_computed_otherwise() -> None:
    """One trace per row of a tied model: 6N + 12 L h s, the formula of the first GPU run (its 18.1% stays
    comparable). Four traces in the row attend within themselves: a quarter of the attention term. An untied
    input embedding is a lookup, not a matmul; LoRA's frozen base gets no weight gradient (4N, not 6N)."""
    from transformers import AutoModelForCausalLM

    from cotlab.api.finetunerun import LoraSettings
    from cotlab.trainer.finetune.model import prepare_for_training

    bench = load_script("bench/finetune_mfu.py")
    config = bench.model_config("tiny", 256, None)
    model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters())
    attention = 12 * config.num_hidden_layers * config.hidden_size
    assert bench.model_flops_per_token(model, config, [256]) == 6 * n + attention * 256
    assert bench.trace_lengths(256, 4) == [64, 64, 64, 64]
    assert bench.model_flops_per_token(model, config, bench.trace_lengths(256, 4)) == 6 * n + attention * 64
    assert bench.model_flops_per_token(model, config, [192, 64]) == 6 * n + attention * (192**2 + 64**2) / 256

    config.tie_word_embeddings = False
    untied = AutoModelForCausalLM.from_config(config)
    lookup = untied.get_input_embeddings().weight.numel()
    assert sum(p.numel() for p in untied.parameters()) == n + lookup
    assert bench.model_flops_per_token(untied, config, [256]) == 6 * n + attention * 256

    lora = prepare_for_training(model, lora=LoraSettings(targetModules=["q_proj", "v_proj"]))
    trained = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert 0 < trained < n
    assert bench.model_flops_per_token(lora, config, [256]) == 4 * n + 6 * trained + attention * 256
