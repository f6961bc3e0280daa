"""The vLLM engine: one `LLM`, one vLLM request per sample, finished samples handed back as they finish.

Each sample is its own request (`n=1`) with its own seed: vLLM draws all `n` samples of one request from a
single seeded generator, so with `n > 1` a sample's seed would not regenerate it. Prefix caching makes the
shared prompt nearly free, and vLLM schedules all requests itself (continuous batching). The requests go to
`LLM.llm_engine` and are stepped here rather than through `LLM.generate`, which returns only when every
request is done: stepping hands finished samples back as they finish, so the evaluator records them and a
killed pod resumes per sample. vLLM is imported lazily: it lives only in the evaluator image.

Checked against vLLM's own source (vLLM is not installed here): `LLMEngine.add_request(request_id, prompt,
params)`, `step()` and `has_unfinished_requests()` are what `LLM._run_engine` drives and what
`examples/offline_inference/llm_engine_example.py` shows; `SamplingParams.update_from_generation_config` adds the
model's generation-config EOS ids to `stop_token_ids`, which stop on token ids (stop strings are matched on text
from which special tokens such as `<|im_end|>` were already removed, so they cannot stop on them).

Batch invariance (`engine.batchInvariant`, on by default): vLLM reads `VLLM_BATCH_INVARIANT` from the environment
(`vllm/envs.py`; docs/features/batch_invariance.md, beta since 0.11, on GPUs of compute capability 8.0 and up), so
it is set before vLLM is imported and its workers, tensor-parallel ones included, inherit it. Then a sample's
logits do not depend on which other requests share its batch, and its seed regenerates its text on the same GPU
type, vLLM version, dtype and tensor-parallel size. Without it a seed fixes the sampling noise but not the
numerics: continuous batching puts a request beside different others on another run, and a floating-point
difference can flip a token, after which the text diverges.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from cotlab.api.evalrun import Engine as EngineSpec
from cotlab.api.models import ModelSource, Sampling
from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.core.pretrained import generation_eos_ids
from cotlab.trainer.generation.engine import Completion, GeneratedSample, SampleRequest, check_sampling

logger = logging.getLogger(__name__)

FLUSH_SAMPLES = 256
"""Finished samples handed back at once: each hand-back is a grading call and an fsynced append."""
FLUSH_SECONDS = 30.0
"""...or whatever has finished after this long, so a kill loses at most this much work."""


BATCH_INVARIANT_ENV = "VLLM_BATCH_INVARIANT"


def engine_environment(spec: EngineSpec) -> dict[str, str]:
    """The environment vLLM must start with for this engine spec (read by vLLM and its workers at startup)."""
    return {BATCH_INVARIANT_ENV: "1" if spec.batch_invariant else "0"}


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


def sample_params(
    sampling: Sampling, seed: int, factory: Callable[..., Any], *, stop_token_ids: Collection[int]
) -> Any:
    """The `SamplingParams` of one sample: `n=1` and the sample's own seed; stops on the given token ids."""
    return factory(
        n=1,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        max_tokens=sampling.max_tokens,
        seed=seed,
        stop=list(sampling.stop) or None,
        stop_token_ids=sorted(set(stop_token_ids) | set(sampling.stop_token_ids)),
    )


def completion_of(output: Any) -> Completion:
    """A finished vLLM `RequestOutput` (`.outputs[0].text/.token_ids/.finish_reason/.stop_reason`) as a completion."""
    if len(output.outputs) != 1:
        raise RuntimeError(f"vLLM returned {len(output.outputs)} samples for request {output.request_id}, wanted 1")
    sample = output.outputs[0]
    # vLLM's stop_reason is the stop token id or string, and None for EOS: then EOS is the last token.
    stop_reason = getattr(sample, "stop_reason", None)
    if stop_reason is None and sample.finish_reason == "stop" and sample.token_ids:
        stop_reason = int(sample.token_ids[-1])
    return Completion(sample.text, len(sample.token_ids), sample.finish_reason, stop_reason)


class VllmEngine:
    """Sampling with vLLM; `llm` and `params_factory` are injectable so tests run without vLLM.

    `eos_token_ids`: the model's own EOS ids (tokenizer and generation config), passed to every request as
    stop token ids besides those `Sampling.stopTokenIds` adds (the prompt template's end of turn).
    """

    def __init__(
        self,
        llm: Any,
        *,
        params_factory: Callable[..., Any] | None = None,
        eos_token_ids: Collection[int] = (),
        flush_samples: int = FLUSH_SAMPLES,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self._params_factory = params_factory
        eos = getattr(self.tokenizer, "eos_token_id", None)
        self.eos_token_ids = frozenset(eos_token_ids) | ({eos} if eos is not None else set())
        self.flush_samples, self.flush_seconds = flush_samples, flush_seconds
        self._calls = itertools.count()

    @classmethod
    def load(cls, source: ModelSource, spec: EngineSpec, *, seed: int) -> VllmEngine:
        """Start vLLM on the model `source` names (imports vLLM; only the evaluator image has it)."""
        os.environ.update(engine_environment(spec))  # before vLLM is imported: it reads them once
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
        return cls(llm, eos_token_ids=generation_eos_ids(source))

    def generate(self, requests: Sequence[SampleRequest], sampling: Sampling) -> Iterator[list[GeneratedSample]]:
        """Add one vLLM request per sample, step the engine, and yield finished samples in batches."""
        check_sampling(sampling)
        factory = self._params_factory
        if factory is None:
            from vllm import SamplingParams

            factory = SamplingParams
        engine = self.llm.llm_engine
        call = next(self._calls)
        wanted: dict[str, tuple[int, int]] = {}
        for i, request in enumerate(requests):
            for j in range(request.samples):
                request_id = f"cotlab-{call}-{i}-{j}"
                params = sample_params(sampling, request.seed + j, factory, stop_token_ids=self.eos_token_ids)
                engine.add_request(request_id, request.prompt, params)
                wanted[request_id] = (i, j)
        finished: list[GeneratedSample] = []
        last_flush = time.monotonic()
        try:
            while engine.has_unfinished_requests():
                for output in engine.step():
                    if output.finished and output.request_id in wanted:
                        i, j = wanted.pop(output.request_id)
                        finished.append(GeneratedSample(i, j, completion_of(output)))
                due = time.monotonic() - last_flush >= self.flush_seconds
                if finished and (len(finished) >= self.flush_samples or due):
                    yield finished
                    finished, last_flush = [], time.monotonic()
        finally:
            if wanted:  # the consumer stopped early or a step failed: free vLLM of what is left
                engine.abort_request(list(wanted))
        if finished:
            yield finished
        if wanted:
            raise RuntimeError(f"vLLM finished without {len(wanted)} of the requested samples")
