"""Scripted stand-ins for vLLM's `LLM` and for a batching engine: completions chosen per problem and sample.

`ScriptedLLM` is stepped like vLLM's `LLM.llm_engine` (`add_request`, `step`, `has_unfinished_requests`,
`abort_request`) and returns objects shaped like its `RequestOutput` (`.request_id`, `.finished`,
`.outputs[0].text/.token_ids/.finish_reason`), so the evaluator runs through `VllmEngine`'s real code. Like
vLLM, it finishes requests a few per step and not in the order they were added, reports unfinished ones
too, and draws a request's sample from its seed alone. `ScriptedBatchEngine` yields fixed-size batches like
the transformers engine, to exercise a kill in the middle of a benchmark.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cotlab.api.models import Sampling
from cotlab.trainer.generation import Completion, GeneratedSample, SampleRequest, check_sampling


@dataclass(frozen=True)
class Scripted:
    """What sample i of a problem says."""

    text: str
    finish_reason: str = "stop"
    tokens: int = 10


Script = Mapping[str, Sequence[Scripted]]
"""problem text -> the completion of each sample index."""


class Killed(RuntimeError):
    """Stands in for the pod being killed."""


def lookup(script: Script, prompt: str, seed: int, base_seed: int, samples: int) -> Scripted:
    """The scripted completion for the sample whose seed is `seed` (seed = base + position * samples + index)."""
    matches = [text for text in script if text in prompt]
    assert len(matches) == 1, f"prompt matches {len(matches)} scripted problems: {prompt!r}"
    return script[matches[0]][(seed - base_seed) % samples]


@dataclass
class FakeSamplingParams:
    """Records what vLLM's `SamplingParams` was built with."""

    n: int
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    seed: int
    stop: list[str] | None
    stop_token_ids: list[int] = field(default_factory=list)


@dataclass
class FakeCompletionOutput:
    text: str
    token_ids: list[int]
    finish_reason: str | None
    stop_reason: int | str | None = None  # vLLM: the stop token id or string; None for EOS and length


@dataclass
class FakeRequestOutput:
    request_id: str
    prompt: str
    outputs: list[FakeCompletionOutput]
    finished: bool


@dataclass
class ScriptedLLM:
    """A fake `vllm.LLM` whose `llm_engine` answers from the script; `step` number `fail_on_step` dies."""

    script: Script
    tokenizer: Any
    base_seed: int = 0
    samples: int = 4
    fail_on_step: int | None = None
    per_step: int = 3
    added: list[tuple[str, FakeSamplingParams]] = field(default_factory=list)
    steps: int = 0
    _queue: dict[str, tuple[str, FakeSamplingParams]] = field(default_factory=dict)

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    @property
    def llm_engine(self) -> ScriptedLLM:
        return self

    def add_request(self, request_id: str, prompt: str, params: FakeSamplingParams) -> None:
        assert request_id not in self._queue, f"request id {request_id} reused"
        assert params.n == 1, "each sample is its own request"
        self._queue[request_id] = (prompt, params)
        self.added.append((prompt, params))

    def has_unfinished_requests(self) -> bool:
        return bool(self._queue)

    def abort_request(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            self._queue.pop(request_id, None)

    def step(self) -> list[FakeRequestOutput]:
        self.steps += 1
        if self.fail_on_step is not None and self.steps >= self.fail_on_step:
            raise Killed(f"killed during engine step {self.steps}")
        # Finishing order is vLLM's business: here the most recently added first, a few per step.
        ids = sorted(self._queue, key=lambda request_id: -list(self._queue).index(request_id))
        outputs = [self._finish(request_id) for request_id in ids[: self.per_step]]
        running = ids[self.per_step : self.per_step + 1]
        outputs += [
            FakeRequestOutput(r, self._queue[r][0], [FakeCompletionOutput("", [], None)], False) for r in running
        ]
        return outputs

    def _finish(self, request_id: str) -> FakeRequestOutput:
        prompt, params = self._queue.pop(request_id)
        s = lookup(self.script, prompt, params.seed, self.base_seed, self.samples)
        if any(token in s.text for token in self.tokenizer.all_special_tokens + ["<|im_end|>", "<|im_start|>"]):
            return FakeRequestOutput(request_id, prompt, [self._decode(s.text, params)], True)
        return FakeRequestOutput(
            request_id, prompt, [FakeCompletionOutput(s.text, list(range(s.tokens)), s.finish_reason)], True
        )

    def _decode(self, text: str, params: FakeSamplingParams) -> FakeCompletionOutput:
        """What vLLM makes of a model that emits `text`: it stops at the first of the tokenizer's EOS and the
        request's stop token ids (the token is kept in token_ids), or at max_tokens; special tokens are left
        out of the text (skip_special_tokens defaults to True)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        stops = {self.tokenizer.eos_token_id, *params.stop_token_ids}
        end = next((k + 1 for k, t in enumerate(ids) if t in stops), None)
        reason = "stop" if end is not None and end <= params.max_tokens else "length"
        ids = ids[: min(end or len(ids), params.max_tokens)]
        if end is None and len(ids) < params.max_tokens:
            reason = "stop"  # the script ran out: as if the model stopped on a token it was not asked to
        stop_reason = ids[-1] if end is not None and ids[-1] != self.tokenizer.eos_token_id else None
        return FakeCompletionOutput(self.tokenizer.decode(ids, skip_special_tokens=True), ids, reason, stop_reason)


@dataclass
class ScriptedBatchEngine:
    """An `Engine` yielding `batch_size` samples at a time, like transformers; dies after `kill_after` batches."""

    script: Script
    tokenizer: Any
    batch_size: int = 3
    base_seed: int = 0
    samples: int = 4
    kill_after: int | None = None
    requests: list[SampleRequest] = field(default_factory=list)

    def generate(self, requests: Sequence[SampleRequest], sampling: Sampling) -> Iterator[list[GeneratedSample]]:
        check_sampling(sampling)
        self.requests.extend(requests)
        sequences = [(i, j) for i, r in enumerate(requests) for j in range(r.samples)]
        for n, start in enumerate(range(0, len(sequences), self.batch_size)):
            if self.kill_after is not None and n >= self.kill_after:
                raise Killed(f"killed after {n} batches")
            batch = []
            for i, j in sequences[start : start + self.batch_size]:
                s = lookup(self.script, requests[i].prompt, requests[i].seed + j, self.base_seed, self.samples)
                batch.append(GeneratedSample(i, j, Completion(s.text, s.tokens, s.finish_reason)))
            yield batch
