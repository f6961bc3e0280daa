"""Where a FineTuneRun trains: on GPUs only when its spec asks for them, and the GPU benchmark's spec does.

The first `bench/finetune_vs_trl.py --gpu` run on an H200 trained on the CPU for 170 s at 0% GPU utilisation:
its pod spec left `distributed.gpusPerNode` at 0, so the trainer built a CPU Accelerator beside the GPU. No GPU
here, so `torch.cuda.is_available` is made to say there is one; what is tested is the decision, not CUDA.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch

from cotlab.api.finetunerun import Distributed, FineTuneRunSpec, gpu_request
from cotlab.trainer.finetune.accelerator import trains_on_gpu
from tests.conftest import load_script


def _bench() -> ModuleType:
    return load_script("bench/finetune_vs_trl.py")


@pytest.fixture
def a_gpu_is_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_a_spec_without_gpus_trains_on_the_cpu_even_beside_a_gpu(a_gpu_is_visible: None) -> None:
    assert not trains_on_gpu(Distributed())
    assert trains_on_gpu(Distributed(gpus_per_node=1))


def test_without_a_gpu_a_gpu_spec_trains_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not trains_on_gpu(Distributed(gpus_per_node=1))


def test_the_gpu_benchmark_gives_cotlab_the_spec_of_a_one_gpu_finetunerun(
    a_gpu_is_visible: None, tmp_path: Path
) -> None:
    bench = _bench()
    dataset = {"uri": "file:///data/traces.jsonl", "digest": "sha256:" + "0" * 64}
    pod = bench.cotlab_pod(tmp_path / "model", dataset, bench.GPU, 4096, True, tmp_path / "out")
    spec = FineTuneRunSpec.model_validate(pod.spec)  # as run_finetune reads it
    assert spec.distributed.gpus_per_node == 1
    assert gpu_request(spec.resources) == 1
    assert spec.training.precision == "bf16"
    assert trains_on_gpu(spec.distributed)

    cpu_pod = bench.cotlab_pod(tmp_path / "model", dataset, bench.CPU, 4096, False, tmp_path / "out")
    assert not trains_on_gpu(FineTuneRunSpec.model_validate(cpu_pod.spec).distributed)
