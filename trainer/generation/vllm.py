"""The vLLM engine: one `LLM` and one `LLM.generate` call over every prompt, `n` samples per request.

vLLM schedules all sequences itself (continuous batching, prefix caching of the shared prompt across the n
samples), which is why the evaluator hands it everything at once instead of batching. The records are
written when that call returns. vLLM is imported lazily: it lives only in the evaluator image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cotlab.api.evalrun import Engine as EngineSpec
from cotlab.api.models import ModelSource, Sampling
from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.generation.engine import Completion, GeneratedSample, SampleRequest, check_sampling

logger = logging.getLogger(__name__)


def model_arguments(source: ModelSource) -> dict[str, Any]:
    """`LLM(...)` arguments naming the model: a hub id at a revision, a local directory, or a GGUF file."""
    if source.hub is not None:
        model = f"{source.hub}/{source.gguf_file}" if source.gguf_file else source.hub
        return {"model": model, "revision": source.revision, "tokenizer": source.tokenizer}
    assert source.uri is not None
    path = storage.local_path(source.uri)
    if path is None:
        raise InvalidSpecError(f"model.uri: {source.uri} is not a local path; vLLM loads local files or hub ids")
    if source.gguf_file:
        path = path / source.gguf_file
    # A GGUF file carries a tokenizer vLLM converts slowly; model.tokenizer names a faster one when set.
    return {"model": str(path), "revision": None, "tokenizer": source.tokenizer}


def sampling_params(requests: Sequence[SampleRequest], sampling: Sampling, factory: Callable[..., Any]) -> list[Any]:
    """One `SamplingParams` per request: the same settings, each request with its own seed."""
    return [
        factory(
            n=r.samples,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=sampling.max_tokens,
            seed=r.seed,
            stop=list(sampling.stop) or None,
        )
        for r in requests
    ]


def completions_from_outputs(outputs: Sequence[Any], requests: Sequence[SampleRequest]) -> list[GeneratedSample]:
    """Convert vLLM `RequestOutput`s (`.outputs[i].text/.token_ids/.finish_reason`) into samples."""
    if len(outputs) != len(requests):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(requests)} requests")
    samples = []
    for i, (output, request) in enumerate(zip(outputs, requests, strict=True)):
        if len(output.outputs) != request.samples:
            raise RuntimeError(f"vLLM returned {len(output.outputs)} samples for request {i}, wanted {request.samples}")
        for j, o in enumerate(output.outputs):
            samples.append(GeneratedSample(i, j, Completion(o.text, len(o.token_ids), o.finish_reason)))
    return samples


class VllmEngine:
    """Sampling with vLLM; `llm` and `params_factory` are injectable so tests run without vLLM."""

    def __init__(self, llm: Any, *, params_factory: Callable[..., Any] | None = None) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self._params_factory = params_factory

    @classmethod
    def load(cls, source: ModelSource, spec: EngineSpec, *, seed: int) -> VllmEngine:
        """Start vLLM on the model `source` names (imports vLLM; only the evaluator image has it)."""
        try:
            from vllm import LLM
        except ImportError as exc:
            raise InvalidSpecError(
                f"engine.name: vllm is not installed in this image ({exc}); use the evaluator image or"
                " engine.name: transformers"
            ) from None
        if source.hub is not None and os.environ.get("HF_TOKEN"):
            os.environ.setdefault("HUGGING_FACE_HUB_TOKEN", os.environ["HF_TOKEN"])
        llm = LLM(
            **model_arguments(source),
            dtype=spec.dtype,
            tensor_parallel_size=spec.tensor_parallel_size,
            max_model_len=spec.max_model_len,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            seed=seed,
            trust_remote_code=source.trust_remote_code,
        )
        return cls(llm)

    def generate(self, requests: Sequence[SampleRequest], sampling: Sampling) -> Iterator[list[GeneratedSample]]:
        """One `llm.generate` over all requests; yields every sample once it returns."""
        check_sampling(sampling)
        if not requests:
            return
        factory = self._params_factory
        if factory is None:
            from vllm import SamplingParams

            factory = SamplingParams
        params = sampling_params(requests, sampling, factory)
        outputs = self.llm.generate([r.prompt for r in requests], params, use_tqdm=False)
        yield completions_from_outputs(outputs, requests)
