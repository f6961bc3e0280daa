"""What every generation engine provides: sampled completions for requests, in batches as they finish.

A request is one prompt with a sample count and the seed of its first sample; sample i of a request is drawn
from seed `seed + i` alone, whatever else is generated with it, so the seed in a sample's record regenerates
it. The evaluator builds one request per run of missing samples, so a resumed run asks only for what is not
recorded yet and gets exactly what an uninterrupted run would have. Engines yield finished samples in groups as
their sequences finish (vLLM's requests, the transformers engine's rows), and the evaluator writes each group
before asking for the next.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from cotlab.api.models import Sampling
from cotlab.trainer.core.errors import InvalidSpecError

FinishReason = Literal["stop", "length"] | str | None
"""vLLM's names: "stop" (EOS or a stop string), "length" (hit maxTokens); vLLM may also report "abort"."""


@dataclass(frozen=True)
class SampleRequest:
    """`samples` completions of `prompt`; sample i is drawn from seed `seed + i` and nothing else."""

    prompt: str
    samples: int
    seed: int


@dataclass(frozen=True)
class Completion:
    """One sampled completion: its text, how many tokens it took, and why generation stopped.

    `stop_reason` is the token id or stop string that ended it (`<|im_end|>`'s id for a chat turn's end), None when
    it ran to maxTokens.
    """

    text: str
    output_tokens: int
    finish_reason: FinishReason
    stop_reason: int | str | None = None


@dataclass(frozen=True)
class GeneratedSample:
    """A finished completion: sample `offset` of request number `request`."""

    request: int
    offset: int
    completion: Completion


class Engine(Protocol):
    """A generation engine; `tokenizer` renders chat prompts (a transformers tokenizer or vLLM's)."""

    tokenizer: Any

    def generate(self, requests: Sequence[SampleRequest], sampling: Sampling) -> Iterator[list[GeneratedSample]]:
        """Yield batches of finished samples until every request has all of its samples."""
        ...


def check_sampling(sampling: Sampling) -> None:
    """Refuse greedy decoding with several samples: every sample would repeat the same text."""
    if sampling.temperature == 0.0 and sampling.samples > 1:
        raise InvalidSpecError(
            f"spec.sampling: temperature 0 is greedy, so samples must be 1, got {sampling.samples};"
            " raise the temperature or sample once"
        )


def generate_all(engine: Engine, requests: Sequence[SampleRequest], sampling: Sampling) -> list[list[Completion]]:
    """Every request's completions, in request and sample order (for callers that need no streaming)."""
    out: list[list[Completion | None]] = [[None] * r.samples for r in requests]
    for batch in engine.generate(requests, sampling):
        for sample in batch:
            out[sample.request][sample.offset] = sample.completion
    missing = [(i, j) for i, row in enumerate(out) for j, c in enumerate(row) if c is None]
    if missing:
        raise RuntimeError(f"engine returned no completion for (request, sample) {missing[:5]}")
    return [[c for c in row if c is not None] for row in out]
