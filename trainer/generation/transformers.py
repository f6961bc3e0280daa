"""The transformers engine: a batched decode loop with a KV cache, on CPU or one GPU, for small models and tests.

Requests are flattened into (prompt, sample) sequences, ordered by prompt length (so a batch pads little) and
decoded `engine.batchSize` at a time with left padding. A sequence leaves the batch as soon as it ends (a stop
token, a stop string or its token budget): its cache rows are dropped (`DynamicCache.batch_select_indices`) and it
is yielded at once, so nothing is spent decoding finished rows and the evaluator records samples as they finish.
`model.generate` cannot do this: it keeps finished rows in the batch and feeds them padding until the last row
ends (transformers 5.23 `GenerationMixin._sample`: `next_tokens * unfinished_sequences + pad_token_id * ...`), and
continuous batching (`generate_batch`) samples from torch's global generator, which breaks per-sample seeds.

Every sequence samples from its own random stream, seeded with its sample's seed (`seeded_sampling`), so a
sample is the same whatever batch it falls in: a resumed run draws exactly the samples an uninterrupted one would
have, and any sample can be regenerated from its record.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cotlab.api.evalrun import Engine as EngineSpec
from cotlab.api.models import ModelSource, Sampling
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.core.pretrained import load_tokenizer, pretrained_kwargs
from cotlab.trainer.generation.engine import Completion, GeneratedSample, SampleRequest, check_sampling

logger = logging.getLogger(__name__)


def _torch_dtype(name: str) -> Any:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


@dataclass(frozen=True)
class _Sequence:
    """One sample to generate: sample `offset` of request `request`, its prompt's tokens, seed and token budget."""

    request: int
    offset: int
    prompt_ids: list[int]
    seed: int
    budget: int


class TransformersEngine:
    """Batched sampling with a transformers causal LM."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int, max_model_len: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # Prompt plus output tokens per sequence, as vLLM's max_model_len; unset, the model's own context length.
        self.max_model_len: int | None = max_model_len or getattr(model.config, "max_position_embeddings", None)
        # The pad token only fills the left of shorter prompts, where the attention mask hides it.
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # The model's EOS ids: its generation config's (a fine-tuned model's lists its turn ends) and the tokenizer's.
        eos = model.generation_config.eos_token_id
        eos_ids = [*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id]
        self._eos_ids: frozenset[int] = frozenset(int(i) for i in eos_ids if i is not None)

    @classmethod
    def load(cls, source: ModelSource, spec: EngineSpec) -> TransformersEngine:
        """Load the model and tokenizer that `source` names, on a GPU when there is one."""
        import torch
        from transformers import AutoModelForCausalLM

        location, common = pretrained_kwargs(source)
        gguf_file = common.get("gguf_file")
        tokenizer = load_tokenizer(source)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(location, dtype=_torch_dtype(spec.dtype), **common)
        model.to(device).eval()  # type: ignore[arg-type]  # transformers types `.to` through a decorator
        logger.info("loaded model", extra={"model": location, "gguf_file": gguf_file, "device": device})
        return cls(model, tokenizer, batch_size=spec.batch_size, max_model_len=spec.max_model_len)

    def generate(self, requests: Sequence[SampleRequest], sampling: Sampling) -> Iterator[list[GeneratedSample]]:
        """Yield finished samples as they finish: batches of `batch_size` sequences of similar prompt length."""
        check_sampling(sampling)
        if not requests:
            return
        stop_ids = self._eos_ids | set(sampling.stop_token_ids)
        prompt_ids = self._tokenize([r.prompt for r in requests])
        budgets = self._budgets([len(ids) for ids in prompt_ids], sampling.max_tokens)
        sequences = [
            _Sequence(i, j, prompt_ids[i], r.seed + j, budgets[i])
            for i, r in enumerate(requests)
            for j in range(r.samples)
        ]
        # Sorted by prompt length (stable: equal prompts stay together), batches pad only to their own longest.
        sequences.sort(key=lambda s: len(s.prompt_ids))
        for start in range(0, len(sequences), self.batch_size):
            yield from self._decode(sequences[start : start + self.batch_size], sampling, stop_ids)

    def _tokenize(self, prompts: list[str]) -> list[list[int]]:
        # Chat templates already hold BOS, and a second one changes the output; plain prompts get it added.
        bos = self.tokenizer.bos_token
        add_bos = bos is not None and not prompts[0].startswith(bos)  # one benchmark, one prompt style
        return [list(ids) for ids in self.tokenizer(prompts, add_special_tokens=add_bos)["input_ids"]]

    def _decode(
        self, batch: list[_Sequence], sampling: Sampling, stop_ids: Collection[int]
    ) -> Iterator[list[GeneratedSample]]:
        """Prefill `batch`, then decode one token per live row per step, dropping rows as they finish."""
        import torch
        from transformers import DynamicCache

        from cotlab.trainer.generation.seeded_sampling import next_tokens, row_generators

        device = self.model.device
        # A prompt's samples share its prefill: each distinct prompt is run once and its cache rows are copied to
        # its samples (the prefill of 40 GSM8K prompts of ~150 tokens costs as much as ~150 decode steps).
        distinct: dict[tuple[int, ...], int] = {}
        source_row = [distinct.setdefault(tuple(s.prompt_ids), len(distinct)) for s in batch]
        width = max(len(ids) for ids in distinct)
        input_ids = torch.full((len(distinct), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(distinct), width), dtype=torch.long)
        for row, ids in enumerate(distinct):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        # As generate does (`_prepare_position_ids_for_generation`): positions count real tokens only.
        positions = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 0)
        generators = row_generators([s.seed for s in batch], device)
        cache = DynamicCache(config=self.model.config)
        live = list(range(len(batch)))  # rows of `batch` still decoding, in cache order
        tokens: list[list[int]] = [[] for _ in batch]
        # No `with torch.inference_mode()` around this generator: it would stay on in the caller between yields.
        logits = self._forward(input_ids, attention, positions, cache)
        if len(distinct) < len(batch):
            copies = torch.tensor(source_row, device=device)
            cache.batch_select_indices(copies)  # advanced indexing: a repeated row is copied
            logits, attention, positions = logits[copies], attention[copies], positions[copies]
        positions = positions[:, -1:]
        while live:
            chosen = next_tokens(
                logits,
                [generators[r] for r in live],
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
            ).tolist()
            finished, kept = [], []
            for k, (row, token) in enumerate(zip(live, chosen, strict=True)):
                tokens[row].append(token)
                if self._ended(tokens[row], batch[row].budget, sampling, stop_ids):
                    finished.append(row)
                else:
                    kept.append(k)
            if finished:
                yield [
                    GeneratedSample(
                        batch[row].request,
                        batch[row].offset,
                        self._completion(tokens[row], sampling, stop_ids=stop_ids, budget=batch[row].budget),
                    )
                    for row in finished
                ]
            if not kept:
                return
            step = torch.tensor(chosen, device=device).unsqueeze(-1)
            if len(kept) < len(live):  # finished rows leave the batch and its cache
                index = torch.tensor(kept, device=device)
                cache.batch_select_indices(index)
                step, attention, positions = step[index], attention[index], positions[index]
                live = [live[k] for k in kept]
            attention = torch.cat([attention, attention.new_ones((len(live), 1))], dim=-1)
            positions = positions + 1
            logits = self._forward(step, attention, positions, cache)

    def _forward(self, input_ids: Any, attention: Any, positions: Any, cache: Any) -> Any:
        """The next-token logits of each row (only the last position's: `logits_to_keep=1`)."""
        import torch

        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        return out.logits[:, -1, :]

    def _ended(self, tokens: list[int], budget: int, sampling: Sampling, stop_ids: Collection[int]) -> bool:
        """Whether a sequence that just produced `tokens[-1]` is done: a stop token, its budget, or a stop string."""
        if tokens[-1] in stop_ids or len(tokens) >= budget:
            return True
        if not sampling.stop:
            return False
        # Only the tail can hold a stop string that was not there a step ago; a token decodes to at least one
        # character (a partial UTF-8 byte decodes to U+FFFD), so the longest stop string's length plus a margin of
        # tokens covers it.
        window = max(len(s) for s in sampling.stop) + 8
        tail = self.tokenizer.decode(tokens[-window:], skip_special_tokens=True)
        return any(s in tail for s in sampling.stop)

    def _budgets(self, prompt_lengths: list[int], max_tokens: int) -> list[int]:
        """New tokens each sequence may have: maxTokens, within maxModelLen with its prompt (as vLLM caps them)."""
        if self.max_model_len is None:
            return [max_tokens] * len(prompt_lengths)
        longest = max(prompt_lengths)
        if longest >= self.max_model_len:
            raise InvalidSpecError(
                f"engine.maxModelLen: a prompt has {longest} tokens, leaving no room to generate within"
                f" {self.max_model_len}; raise engine.maxModelLen (unset: the model's context length)"
            )
        return [min(max_tokens, self.max_model_len - length) for length in prompt_lengths]

    def _completion(
        self, tokens: list[int], sampling: Sampling, *, stop_ids: Collection[int] = (), budget: int | None = None
    ) -> Completion:
        """The completion of a sequence's generated `tokens`, cut at its first stop, and why it ended (as vLLM)."""
        budget = sampling.max_tokens if budget is None else budget
        tokens = tokens[:budget]
        stop_ids = self._eos_ids | set(stop_ids)
        end = next((k for k, t in enumerate(tokens) if t in stop_ids), None)
        reason = "length"
        stop_reason: int | str | None = None
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
        for stop in sampling.stop:
            if stop in text:  # vLLM leaves the stop string out of the text, and it ends before any stop token
                text, reason, stop_reason = text.split(stop, 1)[0], "stop", stop
        if stop_reason is None and end is not None:
            tokens, reason, stop_reason = tokens[: end + 1], "stop", tokens[end]
        return Completion(text=text, output_tokens=len(tokens), finish_reason=reason, stop_reason=stop_reason)
