"""Workload fixtures: the tiny random model (built once per session), its tokenizer, and fixture benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cotlab.api.podcontract import PodSpecFile

from .tiny_model import build_tiny_model, build_tokenizer

# The fixture benchmark: five problems whose texts are not substrings of one another (the fakes match on them).
PROBLEMS = [
    {"id": "p1", "problem": "How many eggs does Janet sell?", "answer": "18"},
    {"id": "p2", "problem": "What is 3 + 4?", "answer": "7"},
    {"id": "p3", "problem": "What is 3 * 4?", "answer": "12"},
    {"id": "p4", "problem": "What is 1 / 2 as a fraction?", "answer": "\\frac{1}{2}"},
    {"id": "p5", "problem": "What is 10 squared?", "answer": "100"},
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    return build_tokenizer()


def write_benchmark(path: Path, rows: list[dict[str, Any]] = PROBLEMS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


SCRIPTED_MODEL = Path(__file__).parent / "data" / "scripted-model"
"""The model a scripted engine stands for: never loaded, only pinned by its digest."""


def make_spec(benchmarks: list[Path], *, model_uri: str = SCRIPTED_MODEL.as_uri(), **overrides: Any) -> dict[str, Any]:
    """An EvalRun spec (wire form) over custom benchmark files: 4 samples, 16 tokens, the fixture's metrics."""
    spec: dict[str, Any] = {
        "model": {"source": {"uri": model_uri}},
        "benchmarks": [{"name": "custom", "uri": str(p), "fields": {"id": "id"}} for p in benchmarks],
        "sampling": {"temperature": 1.0, "samples": 4, "maxTokens": 16, "seed": 0},
        "metrics": ["pass@1", "pass@2", "pass@4", "maj@4"],
        "engine": {"name": "vllm"},
        "graderTimeoutSeconds": 10,
    }
    spec.update(overrides)
    return spec


def make_pod(spec: dict[str, Any], output: Path) -> PodSpecFile:
    return PodSpecFile.model_validate(
        {"stage": "evaluate", "resource": {"kind": "EvalRun", "name": "test"}, "spec": spec, "output": str(output)}
    )
