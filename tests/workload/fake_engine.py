"""Scripted stand-ins for vLLM's `LLM` and for a batching engine: completions chosen per problem and sample.

`ScriptedLLM` returns objects shaped like vLLM's `RequestOutput` (`.outputs[i].text`, `.token_ids`,
`.finish_reason`), so the evaluator runs through `VllmEngine`'s real conversion code. `ScriptedBatchEngine`
yields fixed-size batches like the transformers engine, to exercise a kill in the middle of a benchmark.
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


@dataclass
class FakeCompletionOutput:
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class FakeRequestOutput:
    prompt: str
    outputs: list[FakeCompletionOutput]


@dataclass
class ScriptedLLM:
    """A fake `vllm.LLM`: `generate(prompts, params)` answers from the script; fails on call `fail_on_call`."""

    script: Script
    tokenizer: Any
    base_seed: int = 0
    samples: int = 4
    fail_on_call: int | None = None
    calls: list[list[tuple[str, FakeSamplingParams]]] = field(default_factory=list)

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, prompts: list[str], params: list[FakeSamplingParams], use_tqdm: bool = True) -> list[Any]:
        self.calls.append(list(zip(prompts, params, strict=True)))
        if self.fail_on_call is not None and len(self.calls) >= self.fail_on_call:
            raise Killed(f"killed during generate call {len(self.calls)}")
        outputs = []
        for prompt, p in zip(prompts, params, strict=True):
            items = [lookup(self.script, prompt, p.seed + j, self.base_seed, self.samples) for j in range(p.n)]
            outputs.append(
                FakeRequestOutput(
                    prompt, [FakeCompletionOutput(s.text, list(range(s.tokens)), s.finish_reason) for s in items]
                )
            )
        return outputs


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
