"""`training.torchCompile`: the decoder layers' parts compiled (inductor, here on the CPU) train as eagerly.

Full fine-tuning without checkpointing (what an H200 run of the 0.5B shape decides) and LoRA with checkpointing
(the 32B shape): the same loss curve as the eager run of the same spec, graphs really captured (a compiled layer
under transformers' checkpointing had run eagerly without a word: model.compile_layer_parts), and the saved model
has the eager run's parameter names. Flattened batches of 4 traces each, with the segment attention left eager.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from cotlab.trainer.finetune.stage import run_finetune

from .test_finetune import base_dir, make_pod, markers, weights, write_dataset  # noqa: F401  (base_dir is a fixture)

pytestmark = pytest.mark.workload


@pytest.mark.parametrize(
    ("method", "checkpointing"), [("full", False), ("lora", True)], ids=["full-no-checkpointing", "lora-checkpointing"]
)
def test_a_compiled_run_trains_as_the_eager_one(
    method: str,
    checkpointing: bool,
    base_dir: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from torch._dynamo.utils import counters

    dataset = write_dataset(tmp_path / "traces.jsonl")
    training = {"maxSteps": 3, "learningRate": 1e-3, "packing": True, "gradientCheckpointing": checkpointing}
    extra: dict[str, Any] = {"method": "full", "lora": None} if method == "full" else {}

    def run(compiled: bool) -> list[float]:
        torch._dynamo.reset()
        counters.clear()
        pod = make_pod(
            base_dir, dataset, tmp_path / str(compiled), training=training | {"torchCompile": compiled}, **extra
        )
        run_finetune(pod)
        return [m["loss"] for m in markers(capsys.readouterr().out)]

    eager = run(False)
    compiled = run(True)
    assert counters["stats"]["unique_graphs"] > 0  # compiled code ran
    assert len(compiled) == len(eager) == 3
    assert compiled == pytest.approx(eager, abs=1e-4), (compiled, eager)  # fp32 on the CPU: measured ~1e-6
    assert weights(tmp_path / "True" / "model").keys() == weights(tmp_path / "False" / "model").keys()
