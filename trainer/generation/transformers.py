"""The transformers engine: batched `model.generate` on CPU or one GPU, for CPU runs, small models and tests.

Requests are flattened into (prompt, sample) sequences and generated `engine.batchSize` at a time with
left padding. Every sequence samples from its own random stream, seeded with its sample's seed
(`seeded_sampling.SeededSampler`), so a sample is the same whatever batch it falls in: a resumed run draws
exactly the samples an uninterrupted one would have, and any sample can be regenerated from its record.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Sequence
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


class TransformersEngine:
    """Batched sampling with a transformers causal LM."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int, max_model_len: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # Prompt plus output tokens per sequence, as vLLM's max_model_len; unset, the model's own context length.
        self.max_model_len: int | None = max_model_len or getattr(model.config, "max_position_embeddings", None)
        # Generation needs a pad token; reusing EOS is safe here because padding is masked and on the left.
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
        tokenizer.padding_side = "left"  # decoder-only: new tokens follow the prompt directly
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(location, dtype=_torch_dtype(spec.dtype), **common)
        model.to(device).eval()  # type: ignore[arg-type]  # transformers types `.to` through a decorator
        logger.info("loaded model", extra={"model": location, "gguf_file": gguf_file, "device": device})
        return cls(model, tokenizer, batch_size=spec.batch_size, max_model_len=spec.max_model_len)

    def generate(self, requests: Sequence[SampleRequest], sampling: Sampling) -> Iterator[list[GeneratedSample]]:
        """Yield each batch of `batch_size` sequences as soon as it is generated."""
        check_sampling(sampling)
        stop_ids = self._eos_ids | set(sampling.stop_token_ids)
        sequences = [(i, j) for i, r in enumerate(requests) for j in range(r.samples)]
        for start in range(0, len(sequences), self.batch_size):
            batch = sequences[start : start + self.batch_size]
            prompts = [requests[i].prompt for i, _ in batch]
            seeds = [requests[i].seed + j for i, j in batch]
            completions = self._generate_batch(prompts, sampling, seeds=seeds, stop_ids=stop_ids)
            yield [GeneratedSample(i, j, c) for (i, j), c in zip(batch, completions, strict=True)]

    def _generate_batch(
        self, prompts: list[str], sampling: Sampling, *, seeds: list[int], stop_ids: Collection[int]
    ) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        from cotlab.trainer.generation.seeded_sampling import SeededSampler

        # Chat templates already hold BOS, and a second one changes the output; plain prompts get it added.
        bos = self.tokenizer.bos_token
        add_bos = bos is not None and not prompts[0].startswith(bos)  # one benchmark, one prompt style
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=add_bos)
        inputs = inputs.to(self.model.device)
        budgets = self._budgets(inputs["attention_mask"].sum(dim=1).tolist(), sampling.max_tokens)
        # Sampling happens in the SeededSampler, one stream per row; generate's own step is greedy and picks
        # the one token the sampler left finite (transformers 5.23 `_sample`: argmax when do_sample is False).
        options: dict[str, Any] = {
            "max_new_tokens": max(budgets),
            "do_sample": False,
            "pad_token_id": self._pad_id,
            "eos_token_id": sorted(stop_ids),  # generation stops on any of them
        }
        if sampling.temperature > 0.0:
            # top_k -1 (vLLM's "all tokens") is no top-k filter in the sampler.
            sampler = SeededSampler(
                seeds,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                device=self.model.device,
            )
            options["logits_processor"] = LogitsProcessorList([sampler])
        if sampling.stop:
            options |= {"stop_strings": list(sampling.stop), "tokenizer": self.tokenizer}
        if min(budgets) < max(budgets):
            options["stopping_criteria"] = StoppingCriteriaList([_TokenBudget(budgets, inputs["input_ids"].shape[1])])
        with torch.inference_mode():
            output = self.model.generate(**inputs, **options)
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        return [
            self._completion(tokens, sampling, stop_ids=stop_ids, budget=budget)
            for tokens, budget in zip(new_tokens, budgets, strict=True)
        ]

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
        """Cut at the first stop token (what follows is padding) and name why generation stopped, as vLLM does."""
        budget = sampling.max_tokens if budget is None else budget
        tokens = tokens[:budget]  # a sequence stopped at its budget while others went on: the rest is padding
        stop_ids = self._eos_ids | set(stop_ids)
        end = next((k for k, t in enumerate(tokens) if t in stop_ids), None)
        stop_reason: int | str | None = None
        if end is not None:
            reason = "stop"
            body = tokens[:end]
            # A stop string ends generation and the rest is padding, and the pad token may be EOS (Qwen's is):
            # then the "EOS" after the stop string was never generated.
            ended_by_string = any(s in self.tokenizer.decode(body, skip_special_tokens=True) for s in sampling.stop)
            tokens = body if ended_by_string else tokens[: end + 1]
            stop_reason = None if ended_by_string else tokens[-1]
        else:
            while tokens and tokens[-1] == self._pad_id:  # a stop string ended it; the rest is padding
                tokens = tokens[:-1]
            reason = "length" if len(tokens) >= budget else "stop"
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        for stop in sampling.stop:
            if stop in text:  # vLLM leaves the stop string out of the text
                text, reason, stop_reason = text.split(stop, 1)[0], "stop", stop
        return Completion(text=text, output_tokens=len(tokens), finish_reason=reason, stop_reason=stop_reason)


class _TokenBudget:
    """A stopping criterion: row i is done once it has `budgets[i]` new tokens (prompts differ in length)."""

    def __init__(self, budgets: list[int], prompt_width: int) -> None:
        self.budgets, self.prompt_width = budgets, prompt_width

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        generated = input_ids.shape[1] - self.prompt_width
        return torch.tensor([generated >= b for b in self.budgets], device=input_ids.device, dtype=torch.bool)
