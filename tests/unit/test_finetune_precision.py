"""The dtypes a FineTuneRun trains in, decided before any process group exists.

On GPUs accelerate hands the FSDP plugin to `set_mixed_precision` (AcceleratorState, for accelerator process
groups only, so the 2-process CPU test in tests/workload/test_finetune_distributed.py cannot see it): the plugin's
fp32 reductions must survive that call, or a multi-GPU run would accumulate gradients in bf16 after all.
"""

from __future__ import annotations

import pytest
import torch

from cotlab.api.finetunerun import Precision
from cotlab.trainer.finetune.accelerator import ACCELERATE_PRECISION, fsdp_plugin
from cotlab.trainer.finetune.model import base_dtype


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fsdp_gathers_in_low_precision_and_reduces_in_fp32_after_accelerate_sets_its_policy(
    precision: Precision,
) -> None:
    plugin = fsdp_plugin(precision)
    plugin.set_mixed_precision(ACCELERATE_PRECISION[precision])  # as AcceleratorState does
    policy = plugin.mixed_precision_policy
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert (policy.param_dtype, policy.reduce_dtype, policy.output_dtype) == (low, torch.float32, None)


def test_fp32_training_has_no_fsdp_precision_policy() -> None:
    assert fsdp_plugin("fp32").mixed_precision_policy is None


def test_only_a_lora_runs_frozen_base_is_held_in_bf16() -> None:
    assert base_dtype(lora=True, mixed_precision="bf16") == torch.bfloat16
    # What trains keeps fp32 master weights; fp16's range is left to autocast; fp32 is fp32.
    assert base_dtype(lora=False, mixed_precision="bf16") == torch.float32
    assert base_dtype(lora=True, mixed_precision="fp16") == torch.float32
    assert base_dtype(lora=True, mixed_precision="no") == torch.float32
