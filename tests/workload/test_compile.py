"""`training.torchCompile`: the decoder layers' parts compiled (inductor, here on the CPU) train as eagerly.

Full fine-tuning without checkpointing (what an H200 run of the 0.5B shape decides) and LoRA with checkpointing
(the 32B shape): the same loss curve as the eager run of the same spec, graphs really captured (a compiled layer
under transformers' checkpointing had run eagerly without a word: compilation.py), and the saved model
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


def test_without_a_compiler_torch_compile_is_refused_before_training(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """cotlab's trainer image has no C or C++ compiler: a run asking for torchCompile there fails at once,
    naming the field, instead of at its first step inside inductor."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from cotlab.trainer.core.errors import InvalidSpecError
    from cotlab.trainer.finetune.compilation import compile_layer_parts

    model = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=64))  # fmt: skip
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no g++, no clang++
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(InvalidSpecError, match=r"spec\.training\.torchCompile: .*g\+\+ or clang\+\+"):
        compile_layer_parts(model, torch.device("cpu"))
    monkeypatch.setenv("CXX", "/opt/toolchain/bin/g++")  # told where one is: trusted, as inductor would
    assert compile_layer_parts(model, torch.device("cpu")) == 4  # self_attn, mlp and the two norms of the one layer
