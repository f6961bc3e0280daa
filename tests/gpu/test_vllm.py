"""The vLLM engine on a real GPU with a tiny random Qwen2 (runs on a lent GPU machine; skipped elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotlab.api.evalrun import Engine as EngineSpec
from cotlab.api.models import ModelSource, Sampling
from cotlab.trainer.evaluate.stage import run_evaluate
from cotlab.trainer.generation import SampleRequest, generate_all
from cotlab.trainer.generation.vllm import VllmEngine

from ..workload.conftest import make_pod, make_spec, write_benchmark
from ..workload.tiny_model import build_tiny_model

# CI deselects these with -m "not gpu"; on a lent GPU machine: pytest -m gpu tests/gpu.
pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def _gpu_and_vllm() -> None:
    # In a fixture, not at import: a deselected module must not report a skip.
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no GPU")


ENGINE = {"name": "vllm", "dtype": "bfloat16", "gpuMemoryUtilization": 0.3, "maxModelLen": 512}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # head_dim 64: attention kernels support it, unlike the CPU tests' 8.
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2-gpu"), hidden_size=256, layers=2, heads=4)


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> VllmEngine:
    return VllmEngine.load(ModelSource(uri=f"file://{model_dir}"), EngineSpec.model_validate(ENGINE), seed=0)


def test_one_request_per_sample_each_regenerated_from_its_seed(engine: VllmEngine) -> None:
    sampling = Sampling(temperature=1.0, samples=4, max_tokens=32)
    requests = [SampleRequest(f"problem {i}", 4, 4 * i) for i in range(8)]
    out = generate_all(engine, requests, sampling)
    assert [len(row) for row in out] == [4] * 8
    assert all(c.finish_reason in ("stop", "length") and 0 < c.output_tokens <= 32 for row in out for c in row)
    assert generate_all(engine, requests, sampling) == out  # per-sample seeds make it reproducible
    [[alone]] = generate_all(engine, [SampleRequest("problem 3", 1, 14)], sampling)
    assert alone.text == out[3][2].text  # sample 2 of problem 3 has seed 4 * 3 + 2


def test_evaluate_with_vllm(tmp_path: Path, model_dir: Path) -> None:
    bench = write_benchmark(tmp_path / "fixture.jsonl")
    spec = make_spec([bench], model_uri=f"file://{model_dir}", engine=ENGINE)
    summary = run_evaluate(make_pod(spec, tmp_path / "out"))
    assert summary["scores"]["fixture"]["problems"] == 5
    assert len((tmp_path / "out" / "samples" / "fixture.jsonl").read_text().splitlines()) == 20
