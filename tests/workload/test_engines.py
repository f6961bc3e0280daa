"""Engine pieces: chat prompts, the transformers engine's finish reasons, vLLM output conversion, greedy guard."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cotlab.api.evalrun import Engine as EngineSpec
from cotlab.api.models import ModelSource, Prompt, Sampling
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.core.pretrained import resolve_model_location
from cotlab.trainer.generation import Completion, SampleRequest, check_sampling, generate_all
from cotlab.trainer.generation.prompting import render_prompt
from cotlab.trainer.generation.transformers import TransformersEngine
from cotlab.trainer.generation.vllm import VllmEngine, engine_environment, model_arguments

from .fake_engine import FakeSamplingParams, Scripted, ScriptedLLM

pytestmark = pytest.mark.workload


def test_chat_prompt_full_string(tokenizer: Any) -> None:
    prompt = Prompt(system="You are careful.", template="Solve: {problem} Put it in \\boxed{{}}.")
    assert render_prompt("1+1?", prompt, tokenizer) == (
        "<|im_start|>system\nYou are careful.<|im_end|>\n"
        "<|im_start|>user\nSolve: 1+1? Put it in \\boxed{}.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> TransformersEngine:
    spec = EngineSpec(name="transformers", dtype="float32", batch_size=4)
    return TransformersEngine.load(ModelSource(uri=f"file://{tiny_model_dir}"), spec)


@pytest.mark.parametrize(
    ("tail", "stop", "want_tokens", "want_reason"),
    [
        (["a", "b", "<eos>"], [], 3, "stop"),  # EOS counts as an output token, as vLLM counts it
        (["a", "b", "c", "d", "e"], [], 5, "length"),
        (["a", "b", "#"], ["#"], 3, "stop"),  # a stop string ended it
    ],
    ids=["eos", "length", "stop-string"],
)
def test_finish_reason(
    engine: TransformersEngine, tail: list[str], stop: list[str], want_tokens: int, want_reason: str
) -> None:
    tok = engine.tokenizer
    tokens = [tok.eos_token_id if t == "<eos>" else tok.convert_tokens_to_ids(t) for t in tail]
    sampling = Sampling(max_tokens=5, samples=1, stop=stop)
    completion = engine._completion(tokens, sampling)
    assert (completion.output_tokens, completion.finish_reason) == (want_tokens, want_reason)
    assert completion.text == ("ab" if want_reason == "stop" else "abcde")


def test_a_turn_end_that_is_not_eos_stops_when_asked(engine: TransformersEngine) -> None:
    tok = engine.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end != tok.eos_token_id  # as in Qwen2.5's base models
    # The model ends its turn, then writes the next one: a stop on <|im_end|> keeps only the reply.
    tokens = tok("ab<|im_end|>\n<|im_start|>user\nc", add_special_tokens=False)["input_ids"]
    sampling = Sampling(max_tokens=len(tokens), samples=1, stop_token_ids=[im_end])
    assert engine._completion(tokens, sampling, stop_ids=sampling.stop_token_ids) == Completion("ab", 3, "stop", im_end)
    runs_on = engine._completion(tokens, sampling.model_copy(update={"stop_token_ids": []}))
    assert (runs_on.text, runs_on.finish_reason) == ("ab\nuser\nc", "length")


def test_generation_is_seeded_and_batched(engine: TransformersEngine) -> None:
    sampling = Sampling(temperature=1.0, samples=3, max_tokens=8)
    requests = [SampleRequest("<|im_start|>user\nhi<|im_end|>\n", 3, 0), SampleRequest("hello", 2, 3)]
    first = generate_all(engine, requests, sampling)
    assert [len(row) for row in first] == [3, 2]
    assert generate_all(engine, requests, sampling) == first
    assert list(engine.generate([], sampling)) == []
    batches = list(engine.generate(requests, sampling))
    assert sorted((s.request, s.offset) for b in batches for s in b) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]


@pytest.mark.parametrize("stops", [False, True], ids=["to-max-tokens", "rows-end-apart"])
def test_a_sample_is_regenerated_from_its_seed_alone(engine: TransformersEngine, stops: bool) -> None:
    """Each sample draws from its own seed: alone, or in a batch with other prompts, padding and rows that end
    (and leave the batch) before it, it is the same."""
    letters = engine.tokenizer.convert_tokens_to_ids(list("abcdefghijklmnop"))
    sampling = Sampling(
        temperature=1.0, samples=3, max_tokens=24 if stops else 8, stop_token_ids=letters if stops else []
    )
    requests = [SampleRequest("<|im_start|>user\nhi<|im_end|>\n", 3, 10), SampleRequest("hello there, friend", 2, 40)]
    together = generate_all(engine, requests, sampling)  # batches of 4: both prompts, left padding
    assert len({c.text for row in together for c in row}) > 1  # really sampled
    if stops:  # rows ended at different steps, so the batch shrank under the others
        assert len({c.output_tokens for row in together for c in row}) > 1
    for i, request in enumerate(requests):
        for j in range(request.samples):
            [[alone]] = generate_all(engine, [SampleRequest(request.prompt, 1, request.seed + j)], sampling)
            assert alone == together[i][j], (i, j)


def _record_forwards(model: Any) -> tuple[list[Any], Any]:
    """Record the input ids of every forward pass of `model`; returns the list and the hook handle."""
    inputs: list[Any] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        inputs.append(kwargs["input_ids"].clone())

    return inputs, model.register_forward_pre_hook(record, with_kwargs=True)


def test_a_finished_row_leaves_the_batch(engine: TransformersEngine) -> None:
    """A sequence that stops is yielded at once and never decoded again; the others go on without it."""
    sampling = Sampling(temperature=1.0, samples=1, max_tokens=13, stop_token_ids=[])
    requests = [SampleRequest("hello", 1, 0), SampleRequest("world", 1, 1)]  # the same length: no padding
    inputs, hook = _record_forwards(engine.model)
    try:
        generate_all(engine, requests, sampling)
    finally:
        hook.remove()
    assert [tuple(x.shape) for x in inputs] == [(2, 5)] + [(2, 1)] * 12  # neither row stops on its own
    a_ids, b_ids = ([int(x[row, 0]) for x in inputs[1:]] for row in (0, 1))  # each row's first 12 tokens
    # A token that ends `a` at its (k+1)-th token and is none of `b`'s: a stop for one row only.
    k, stop = next((k, t) for k, t in enumerate(a_ids) if k >= 2 and t not in a_ids[:k] and t not in b_ids)
    inputs, hook = _record_forwards(engine.model)
    try:
        stopping = sampling.model_copy(update={"stop_token_ids": [stop], "max_tokens": 12})
        yielded = list(engine.generate(requests, stopping))
    finally:
        hook.remove()
    ended = [[(s.request, s.completion.output_tokens, s.completion.finish_reason) for s in b] for b in yielded]
    assert ended == [[(0, k + 1, "stop")], [(1, 12, "length")]]
    # Prefill both, decode both until `a` stops, then `b` alone: model.generate would feed `a` padding to the end.
    assert [x.shape[0] for x in inputs] == [2] + [2] * k + [1] * (11 - k)
    assert [int(x[-1, 0]) for x in inputs[1:]] == b_ids[:11]  # and `b` goes on as it would have


def test_a_prompt_is_prefilled_once_for_all_its_samples(engine: TransformersEngine) -> None:
    sampling = Sampling(temperature=1.0, samples=3, max_tokens=4, stop_token_ids=[])
    requests = [SampleRequest("hello", 3, 0), SampleRequest("hi", 1, 7)]
    inputs, hook = _record_forwards(engine.model)
    try:
        together = generate_all(engine, requests, sampling)  # one batch of 4 sequences, 2 distinct prompts
    finally:
        hook.remove()
    assert [tuple(x.shape) for x in inputs] == [(2, 5)] + [(4, 1)] * 3
    assert len({c.text for c in together[0]}) > 1  # the copies sample apart, each from its own seed
    for j in range(3):
        assert generate_all(engine, [SampleRequest("hello", 1, j)], sampling) == [[together[0][j]]]


def test_batches_group_prompts_of_similar_length(engine: TransformersEngine) -> None:
    """Sequences are batched by prompt length, so a short prompt is not padded to a long one's width."""
    prompts = ["abc", "a much longer one", "abcd", "a much longer one!"]
    greedy = Sampling(temperature=0.0, samples=1, max_tokens=2, stop_token_ids=[])
    paired = TransformersEngine(engine.model, engine.tokenizer, batch_size=2)
    inputs, hook = _record_forwards(engine.model)
    try:
        together = generate_all(paired, [SampleRequest(p, 1, 0) for p in prompts], greedy)
    finally:
        hook.remove()
    assert [tuple(x.shape) for x in inputs if x.shape[1] > 1] == [(2, 4), (2, 18)]  # the two prefills
    assert together == [generate_all(paired, [SampleRequest(p, 1, 0)], greedy)[0] for p in prompts]


@pytest.mark.parametrize(
    "narrow", [{"top_k": 1}, {"top_p": 1e-6}, {"temperature": 1e-4}], ids=["top-k-1", "tiny-top-p", "cold"]
)
def test_narrowed_sampling_is_greedy(engine: TransformersEngine, narrow: dict[str, Any]) -> None:
    prompt = "<|im_start|>user\nhi<|im_end|>\n"
    [[greedy]] = generate_all(engine, [SampleRequest(prompt, 1, 0)], Sampling(temperature=0.0, samples=1, max_tokens=8))
    sampling = Sampling(**{"temperature": 1.0, "samples": 2, "max_tokens": 8} | narrow)
    assert generate_all(engine, [SampleRequest(prompt, 2, 5)], sampling) == [[greedy, greedy]]


def test_max_model_len_caps_prompt_plus_output(engine: TransformersEngine) -> None:
    short, long = "hi", "a longer prompt, 28 tokens.."
    lengths = [len(engine.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in (short, long)]
    capped = TransformersEngine(engine.model, engine.tokenizer, batch_size=4, max_model_len=lengths[1] + 3)
    # A greedy tiny model runs to its limit: 16 new tokens unless maxModelLen stops it first.
    sampling = Sampling(temperature=0.0, samples=1, max_tokens=16, stop_token_ids=[])
    [[a], [b]] = generate_all(capped, [SampleRequest(short, 1, 0), SampleRequest(long, 1, 0)], sampling)
    assert (b.output_tokens, b.finish_reason) == (3, "length")  # 28 + 3 = maxModelLen
    assert a.output_tokens <= min(16, lengths[1] + 3 - lengths[0])
    [[alone]] = generate_all(capped, [SampleRequest(short, 1, 0)], sampling)
    assert alone == a  # the budget is per sequence, not per batch
    with pytest.raises(InvalidSpecError, match="engine.maxModelLen: a prompt has 31 tokens"):
        generate_all(capped, [SampleRequest(long + "abc", 1, 0)], sampling)


def test_greedy_single_sample(engine: TransformersEngine) -> None:
    sampling = Sampling(temperature=0.0, samples=1, max_tokens=6)
    [[a]] = generate_all(engine, [SampleRequest("hello", 1, 0)], sampling)
    [[b]] = generate_all(engine, [SampleRequest("hello", 1, 99)], sampling)
    assert a == b  # greedy ignores the seed


def test_greedy_with_several_samples_is_refused(engine: TransformersEngine, tokenizer: Any) -> None:
    sampling = Sampling.model_construct(**{**Sampling().model_dump(), "temperature": 0.0, "samples": 4})
    with pytest.raises(InvalidSpecError, match="temperature 0 is greedy"):
        check_sampling(sampling)
    with pytest.raises(InvalidSpecError):
        next(engine.generate([SampleRequest("x", 4, 0)], sampling))
    vllm = VllmEngine(ScriptedLLM({}, tokenizer), params_factory=FakeSamplingParams)
    with pytest.raises(InvalidSpecError):
        next(vllm.generate([SampleRequest("x", 4, 0)], sampling))


def test_vllm_one_request_per_sample_each_with_its_own_seed(tokenizer: Any) -> None:
    script = {
        "alpha": [Scripted("A0", "stop", 3), Scripted("A1", "length", 8)],
        "beta": [Scripted("B0"), Scripted("B1")],
    }
    llm = ScriptedLLM(script, tokenizer, samples=2)
    engine = VllmEngine(llm, params_factory=FakeSamplingParams)
    sampling = Sampling(temperature=0.7, top_p=0.9, top_k=20, max_tokens=8, samples=2, stop=["</s>"])
    out = generate_all(engine, [SampleRequest("alpha", 2, 0), SampleRequest("beta", 1, 3)], sampling)
    assert [[(c.text, c.output_tokens, c.finish_reason) for c in row] for row in out] == [
        [("A0", 3, "stop"), ("A1", 8, "length")],
        [("B1", 10, "stop")],
    ]
    # vLLM draws a request's n samples from one seeded stream: n=1 per sample makes each seed its sample's.
    params = dict(zip("ABC", (p for _, p in llm.added), strict=True))
    eos = [tokenizer.eos_token_id]
    assert params == {
        key: FakeSamplingParams(1, 0.7, 0.9, 20, max_tokens=8, seed=seed, stop=["</s>"], stop_token_ids=eos)
        for key, seed in (("A", 0), ("B", 1), ("C", 3))
    }


def test_vllm_hands_back_samples_as_they_finish(tokenizer: Any) -> None:
    script = {"alpha": [Scripted(f"A{i}") for i in range(4)], "beta": [Scripted(f"B{i}") for i in range(4)]}
    llm = ScriptedLLM(script, tokenizer, samples=4, per_step=3)
    engine = VllmEngine(llm, params_factory=FakeSamplingParams, flush_samples=3)
    sampling = Sampling(temperature=1.0, samples=4, max_tokens=8)
    batches = engine.generate([SampleRequest("alpha", 4, 0), SampleRequest("beta", 4, 4)], sampling)
    first = next(batches)
    assert len(first) == 3 and llm.has_unfinished_requests()  # written before the rest is generated
    rest = [sample for batch in batches for sample in batch]
    got = {(s.request, s.offset): s.completion.text for s in [*first, *rest]}
    assert got == {(r, j): f"{'AB'[r]}{j}" for r in range(2) for j in range(4)}


def test_vllm_aborts_what_is_left_when_stopped_early(tokenizer: Any) -> None:
    llm = ScriptedLLM({"alpha": [Scripted(f"A{i}") for i in range(4)]}, tokenizer, samples=4, per_step=1)
    engine = VllmEngine(llm, params_factory=FakeSamplingParams, flush_samples=1)
    batches = engine.generate([SampleRequest("alpha", 4, 0)], Sampling(temperature=1.0, samples=4, max_tokens=8))
    next(batches)
    batches.close()  # the evaluator died between batches
    assert not llm.has_unfinished_requests()


@pytest.mark.parametrize(
    ("source", "want"),
    [
        (ModelSource(hub="Qwen/Qwen2.5-32B", revision="abc"), ("Qwen/Qwen2.5-32B", None)),
        (ModelSource(uri="file:///m/model.Q4.gguf"), ("/m", "model.Q4.gguf")),
        (ModelSource(uri="pvc://models/run-1/final"), ("/mnt/pvc/models/run-1/final", None)),
    ],
    ids=["hub", "gguf-file", "pvc-dir"],
)
def test_model_locations(source: ModelSource, want: tuple[str, str | None], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COTLAB_PVC_ROOT", raising=False)
    assert resolve_model_location(source) == want


def test_vllm_model_arguments() -> None:
    assert model_arguments(ModelSource(hub="Qwen/Qwen2.5-32B", revision="abc")) == {
        "model": "Qwen/Qwen2.5-32B",
        "revision": "abc",
        "tokenizer": None,
    }
    assert model_arguments(ModelSource(uri="file:///m", gguf_file="x.gguf", tokenizer="Org/Base")) == {
        "model": "/m/x.gguf",
        "revision": None,
        "tokenizer": "Org/Base",
    }
    with pytest.raises(InvalidSpecError, match="not a local path"):
        model_arguments(ModelSource(uri="s3://bucket/model"))


@pytest.mark.parametrize(("batch_invariant", "want"), [(True, "1"), (False, "0")], ids=["default", "off"])
def test_vllm_starts_batch_invariant_unless_told_not_to(
    batch_invariant: bool, want: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable is in the environment before vLLM is imported (it is not installed here: the import fails after)."""
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    spec = EngineSpec(batch_invariant=batch_invariant)
    assert EngineSpec().batch_invariant and engine_environment(spec) == {"VLLM_BATCH_INVARIANT": want}
    with pytest.raises(InvalidSpecError, match="vllm is not installed"):
        VllmEngine.load(ModelSource(uri="file:///m"), spec, seed=0)
    assert os.environ["VLLM_BATCH_INVARIANT"] == want


@pytest.mark.parametrize(
    ("temperature", "top_p", "top_k"),
    [(0.7, 0.95, -1), (1.0, 0.9, -1), (1.0, 1.0, 50), (0.6, 0.95, 20), (1.5, 0.99, -1), (3.0, 0.95, -1)],
)
def test_the_candidate_shortcut_samples_what_the_whole_vocabulary_does(
    temperature: float, top_p: float, top_k: int
) -> None:
    """Sampling from the top candidates draws the token a full sort of the vocabulary draws, for every seed.
    These logits put top-p's nucleus within the 256 candidates at temperature 0.6 and 0.7 (every row), in about
    half of the rows at 1.0 / 0.9 and in none at 1.5 and 3 (those rows fall back to the whole vocabulary)."""
    import torch

    from cotlab.trainer.generation import seeded_sampling

    logits = torch.randn(64, 49152, generator=torch.Generator().manual_seed(1)) * 4  # a SmolLM2-sized vocabulary
    seeds = range(64)
    fast = seeded_sampling.next_tokens(
        logits, seeded_sampling.row_generators(seeds, "cpu"), temperature=temperature, top_p=top_p, top_k=top_k
    )
    uniforms = torch.cat(
        [torch.rand(1, generator=g, dtype=torch.float64) for g in seeded_sampling.row_generators(seeds, "cpu")]
    )
    full = seeded_sampling._full_vocabulary(logits / temperature, uniforms, top_p=top_p, top_k=top_k)
    assert fast.tolist() == full.tolist()
    assert int((fast != logits.argmax(dim=-1)).sum()) > 8  # really sampled, not each row's argmax
