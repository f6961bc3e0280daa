"""Generation engines behind one interface: vLLM on GPUs, transformers on CPU and in tests."""

from __future__ import annotations

from cotlab.api.evalrun import Engine as EngineSpec
from cotlab.api.models import ModelSource, Sampling
from cotlab.trainer.generation.engine import (
    Completion,
    Engine,
    GeneratedSample,
    SampleRequest,
    check_sampling,
    generate_all,
)


def load_engine(spec: EngineSpec, source: ModelSource, sampling: Sampling) -> Engine:
    """Start the engine `spec.name` names on the model `source` names."""
    if spec.name == "vllm":
        from cotlab.trainer.generation.vllm import VllmEngine

        return VllmEngine.load(source, spec, seed=sampling.seed)
    from cotlab.trainer.generation.transformers import TransformersEngine

    return TransformersEngine.load(source, spec)


__all__ = [
    "Completion",
    "Engine",
    "GeneratedSample",
    "SampleRequest",
    "check_sampling",
    "generate_all",
    "load_engine",
]
