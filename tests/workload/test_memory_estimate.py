"""`gradientCheckpointing` unset: the memory estimate behind the decision, and the decision in a real run.

The estimate's activation part is measured on one decoder layer and multiplied out; these tests hold it against
what a whole model's forward pass saves for backward, full and LoRA, fp32 and under bf16 autocast, so a change
in how transformers or PEFT save tensors (or a probe that stops measuring them) is seen here. Then a finetune
stage run with the field unset decides "off" on this machine and "on" when the device offers too little, and
trains either way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from cotlab.api.finetunerun import LoraSettings
from cotlab.trainer.finetune import memory, stage
from cotlab.trainer.finetune.attention import register_segment_attention
from cotlab.trainer.finetune.memory import MemoryEstimate, _saved_bytes, saved_bytes_per_token, static_bytes
from cotlab.trainer.finetune.model import attach_lora
from cotlab.trainer.finetune.model import enable_checkpointing as enable
from cotlab.trainer.finetune.stage import run_finetune

from .test_finetune import base_dir, make_pod, write_dataset  # noqa: F401  (base_dir is a fixture)

pytestmark = pytest.mark.workload


def _model(lora: LoraSettings | None, dtype: torch.dtype = torch.float32):  # type: ignore[no-untyped-def]
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_cache=False,
        attn_implementation=register_segment_attention(),
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(dtype)
    if lora is not None:
        model = attach_lora(model, lora)
    return config, model.train()


LORA = LoraSettings(targetModules=["q_proj", "v_proj"])


@pytest.mark.parametrize(
    ("lora", "autocast", "dtype"),
    [
        (None, None, torch.float32),
        (None, torch.bfloat16, torch.float32),
        (LORA, None, torch.float32),
        (LORA, torch.bfloat16, torch.float32),
        (LORA, torch.bfloat16, torch.bfloat16),  # a LoRA run's frozen base held in bf16 (model.base_dtype)
    ],
    ids=["full-fp32", "full-bf16-autocast", "lora-fp32", "lora-bf16-autocast", "lora-bf16-base"],
)
def test_the_activation_estimate_tracks_what_a_whole_model_saves(
    lora: LoraSettings | None, autocast: torch.dtype | None, dtype: torch.dtype
) -> None:
    """Per token: what grows with the row. (What does not, the weights autograd also keeps, is the parameters
    themselves or autocast's copies of them, which the static part counts.)"""
    config, model = _model(lora, dtype)
    whole = (_saved_bytes(model, 1500, autocast) - _saved_bytes(model, 500, autocast)) / 1000
    estimate = saved_bytes_per_token(
        config, lora=lora, autocast=autocast, attn_implementation=config._attn_implementation, dtype=dtype
    )
    # Conservative by a little (the embedding's output is counted with every layer), never under.
    assert whole <= estimate <= 1.15 * whole, (estimate, whole)


def test_the_probe_sees_the_runs_precision_and_lora_dropout() -> None:
    """Not a constant per architecture: bf16 autocast saves less than fp32; LoRA's dropout saves its masks (with
    all seven targets and dropout, LoRA saves more per token than full fine-tuning: measured 24.6 KB vs 17.6)."""
    config, _ = _model(None)

    def per_token(lora: LoraSettings | None, autocast: torch.dtype | None) -> float:
        return saved_bytes_per_token(
            config, lora=lora, autocast=autocast, attn_implementation=config._attn_implementation
        )

    assert per_token(None, torch.bfloat16) < per_token(None, None)
    assert per_token(LoraSettings(dropout=0.0), torch.bfloat16) < per_token(LoraSettings(dropout=0.05), torch.bfloat16)


def test_a_flash_attention_run_is_probed_with_sdpa_on_the_cpu() -> None:
    """Flash attention cannot run here; a GPU run that uses it is estimated with sdpa, which saves the same."""
    config, _ = _model(None)
    flash = saved_bytes_per_token(config, lora=None, autocast=None, attn_implementation="flash_attention_2")
    assert flash == saved_bytes_per_token(config, lora=None, autocast=None, attn_implementation="sdpa") > 0


def test_a_model_the_probe_cannot_build_gets_no_estimate_and_the_run_checkpoints(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, model = _model(None)
    model.config._attn_implementation = "no-such-attention"
    with caplog.at_level(logging.WARNING, logger="cotlab.trainer.finetune.memory"):
        estimate = memory.estimate_memory(
            model, lora=None, autocast=None, tokens=100, shards=1, device=torch.device("cpu")
        )
    assert estimate is None
    assert "no memory estimate" in caplog.text


def test_static_memory_counts_optimizer_state_for_trained_weights_only() -> None:
    _, full = _model(None)
    _, lora = _model(LoraSettings(targetModules=["q_proj", "v_proj"]))
    params = sum(p.numel() for p in full.parameters())
    assert static_bytes(full, shards=1) == params * 18
    adapters = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert 0 < adapters < params
    assert static_bytes(lora, shards=1) == params * 4 + adapters * 18
    assert static_bytes(full, shards=4) == params * 18 // 4
    _, lora_on_bf16 = _model(LoraSettings(targetModules=["q_proj", "v_proj"]), torch.bfloat16)
    assert static_bytes(lora_on_bf16, shards=1) == params * 2 + adapters * 18  # adapters stay fp32 (PEFT)


def test_checkpointing_is_needed_only_past_the_headroom() -> None:
    fits = MemoryEstimate(static=40, activations=40, loss=4, available=100)
    assert not fits.needs_checkpointing  # 84 of 85
    assert MemoryEstimate(static=40, activations=42, loss=4, available=100).needs_checkpointing


@pytest.mark.parametrize(("available", "decided"), [(None, "off"), (1 << 20, "on")], ids=["roomy", "one-MiB"])
def test_a_run_without_the_field_decides_from_the_estimate_and_trains(
    base_dir: Path,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    available: int | None,
    decided: str,
) -> None:
    if available is not None:
        monkeypatch.setattr(memory, "device_memory", lambda device: available)
    enabled: list[object] = []
    monkeypatch.setattr(stage, "enable_checkpointing", lambda model: enabled.append(model) or enable(model))
    pod = make_pod(base_dir, write_dataset(tmp_path / "traces.jsonl"), tmp_path / "out", training={"maxSteps": 2})
    assert pod.spec["training"].get("gradientCheckpointing") is None
    with caplog.at_level(logging.INFO, logger="cotlab.trainer.finetune.stage"):
        summary = run_finetune(pod)
    decisions = [r for r in caplog.records if r.getMessage().startswith("activation checkpointing:")]
    assert [r.getMessage() for r in decisions] == [f"activation checkpointing: {decided} (estimate)"]
    assert decisions[0].activations > 0 and decisions[0].static > 0  # type: ignore[attr-defined]
    assert summary["progress"]["step"] == 2
    assert len(enabled) == (decided == "on")
