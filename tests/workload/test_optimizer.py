"""AdamW as a FineTuneRun steps it (`model.make_optimizer`): torch's fused kernel, landing on the parameters torch's
default implementation (foreach) gives step after step, with weight decay on weight matrices only.

The resumed-run test (test_finetune.py: bit for bit the uninterrupted model) and the FSDP2 tests
(test_finetune_distributed.py: sharded DTensor parameters, checkpoints) run the same optimizer through the stage.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from cotlab.trainer.finetune.model import make_optimizer, parameter_groups

pytestmark = pytest.mark.workload


def test_the_fused_optimizer_steps_as_torchs_default_one(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    reference = copy.deepcopy(model)
    fused = make_optimizer(model, learning_rate=1e-2, weight_decay=0.1)
    foreach = torch.optim.AdamW(parameter_groups(reference, 0.1), lr=1e-2, foreach=True)
    assert fused.defaults["fused"] and [g["weight_decay"] for g in fused.param_groups] == [0.1, 0.0]
    ids = torch.randint(0, model.config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))

    losses: dict[str, list[float]] = {"fused": [], "foreach": []}
    for _ in range(4):
        for name, net, optimizer in (("fused", model, fused), ("foreach", reference, foreach)):
            optimizer.zero_grad()
            loss = net(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())

    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    after, expected, initial = (parameters_to_vector(m.parameters()).detach() for m in (model, reference, start))
    moved = expected - initial
    # Summation order alone: measured 3e-7 of the distance the parameters moved in four steps of 1e-2 (more on
    # single parameters whose gradient is rounding noise, such as the key biases: Adam scales any sign up to lr).
    assert (after - expected).norm() <= 1e-5 * moved.norm()
    assert losses["fused"] == pytest.approx(losses["foreach"], rel=1e-6)
    assert losses["fused"][-1] < losses["fused"][0]
