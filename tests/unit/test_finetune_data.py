"""Fine-tuning data: assistant-only labels worked out by hand, refusal of long traces, batch order and shapes."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pytest
import torch

from cotlab.trainer.core.dataset_format import TrainingExample
from cotlab.trainer.core.errors import InvalidInputError, TraceTooLongError
from cotlab.trainer.finetune.attention import SEGMENT_ATTENTION
from cotlab.trainer.finetune.batches import (
    BUCKET_STEPS,
    MicroBatch,
    StepPlan,
    bucket_by_length,
    epoch_order,
    flatten_batch,
    flattening_supported,
    micro_batch_examples,
    pad_batch,
    plan_steps,
    process_micro_batches,
    shortest_example,
)
from cotlab.trainer.finetune.checkpoints import START
from cotlab.trainer.finetune.data import (
    IGNORE_INDEX,
    TokenizedExample,
    assistant_labels,
    end_of_turn_ids,
    parse_examples,
    tokenize_dataset,
    tokenize_example,
)
from cotlab.trainer.finetune.loop import LoopSettings, run_loop
from tests.workload.tiny_model import build_tokenizer

X = IGNORE_INDEX
HI_YO = TrainingExample.model_validate(
    {"id": "hi", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()


@pytest.mark.parametrize(
    ("prompt", "completion", "end_ids", "want"),
    [
        ([1, 2], [3, 4, 9, 5], {9}, [X, X, 3, 4, 9, X]),
        ([1], [3, 9, 4, 9], {9}, [X, 3, 9, 4, 9]),
        ([1], [3, 4], {9}, [X, 3, 4]),
        ([1], [3, 8, 7], {7, 8}, [X, 3, 8, 7]),
        ([], [9, 5], {9}, [9, X]),
    ],
    ids=["trailing-newline-ignored", "last-end-of-turn", "no-end-token-trains-all", "two-end-ids", "no-prompt"],
)
def test_assistant_labels(prompt: list[int], completion: list[int], end_ids: set[int], want: list[int]) -> None:
    assert assistant_labels(prompt, completion, end_ids) == want


def test_tokenize_example_by_hand(tokenizer: Any) -> None:
    # The byte-level tokenizer is one token per character, so Qwen2.5's rendering can be counted by hand:
    #   default system "<|im_start|>" "system\n" <Qwen's 68 characters> "<|im_end|>" "\n"  = 1+7+68+1+1 = 78
    #   prompt "<|im_start|>" "user\n" "hi" "<|im_end|>" "\n" "<|im_start|>" "assistant\n" = 1+5+2+1+1+1+10 = 21
    #   completion "y" "o" "<|im_end|>" "\n"                                                = 4
    # Trained: y, o and <|im_end|> (the model must learn to stop on it, though its EOS is <|endoftext|>); not
    # the newline after it, never generated.
    im_start, im_end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert tokenizer.eos_token_id != im_end  # as in Qwen2.5's base models
    newline = tokenizer.convert_tokens_to_ids("Ċ")  # the byte-level alphabet's "\n"
    y, o = tokenizer.convert_tokens_to_ids(["y", "o"])

    got = tokenize_example(tokenizer, HI_YO, end_of_turn_ids(tokenizer, []))

    assert got.length == 103
    assert got.input_ids[0] == im_start and got.input_ids[-4:] == (y, o, im_end, newline)
    assert got.labels == (X,) * 99 + (y, o, im_end, X)
    assert tokenizer.decode(got.input_ids) == tokenizer.apply_chat_template(
        [m.model_dump() for m in HI_YO.messages], tokenize=False
    )


def test_end_of_turn_ids_hold_the_templates_turn_end(tokenizer: Any) -> None:
    eos, im_end = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn_ids(tokenizer, [eos]) == {eos, im_end}
    assert end_of_turn_ids(tokenizer, [], chat=False) == {eos}  # plain prompt/completion text has no turns


def test_completion_style_trains_the_completion_and_eos(tokenizer: Any) -> None:
    # A base model is prompted with plain text (format.prompt.style: completion): no chat template.
    #   prompt "Q: hi\nA:" = Q : Ġ h i Ċ A : = 8 tokens (this tokenizer has no BOS); completion " yo" = Ġ y o = 3
    # Trained: the completion and the EOS after it.
    example = TrainingExample(id="c", messages=HI_YO.messages, prompt="Q: hi\nA:", completion=" yo")
    got = tokenize_example(tokenizer, example, end_of_turn_ids(tokenizer, []))
    assert got.length == 12 and got.input_ids[-1] == tokenizer.eos_token_id
    assert got.labels == (X,) * 8 + got.input_ids[8:]
    assert tokenizer.decode(got.input_ids[:8]) == "Q: hi\nA:"


def test_system_turn_is_not_trained(tokenizer: Any) -> None:
    example = TrainingExample.model_validate(
        {"id": "s", "messages": [{"role": "system", "content": "be brief"}, *HI_YO.model_dump()["messages"]]}
    )
    got = tokenize_example(tokenizer, example, end_of_turn_ids(tokenizer, []))
    assert [t for t, label in zip(got.input_ids, got.labels, strict=True) if label != X] == list(got.labels[-4:-1])


def test_a_template_that_rewrites_the_prompt_is_refused(tokenizer: Any) -> None:
    rewriting = build_tokenizer()
    rewriting.chat_template = (
        "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>{% endif %}"
    )
    with pytest.raises(InvalidInputError, match="example 'hi'.*cannot be located"):
        tokenize_example(rewriting, HI_YO, {0})


@pytest.mark.parametrize(
    ("max_length", "refused"), [(102, True), (103, False)], ids=["one-token-too-long", "exactly-the-limit"]
)
def test_too_long_examples_are_refused_by_id_and_length(tokenizer: Any, max_length: int, refused: bool) -> None:
    end_ids = end_of_turn_ids(tokenizer, [])
    if refused:
        with pytest.raises(TraceTooLongError, match=r"maxSeqLength 102: 'hi' \(103 tokens\)"):
            tokenize_dataset(tokenizer, [HI_YO], max_length=max_length, end_ids=end_ids)
    else:
        assert [t.length for t in tokenize_dataset(tokenizer, [HI_YO], max_length=max_length, end_ids=end_ids)] == [103]


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (["{not json"], "traces.jsonl line 1: not a training example"),
        ([json.dumps({"id": "a", "messages": [{"role": "user", "content": "q"}]})], "line 1: not a training"),
        (
            [
                "",
                json.dumps(
                    {"id": "b", "messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}
                ),
            ],
            "line 2 \\(id 'b'\\): the last message must be the assistant's",
        ),
        ([""], "has no examples"),
    ],
    ids=["bad-json", "one-message", "ends-with-user", "empty"],
)
def test_bad_lines_are_named(lines: list[str], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        parse_examples("\n".join(lines).encode(), "file:///d/traces.jsonl")


def _example(name: str, ids: list[int], labels: list[int]) -> TokenizedExample:
    return TokenizedExample(name, tuple(ids), tuple(labels))


def test_pad_batch_masks_pads_by_length_even_when_pad_is_eos() -> None:
    eos = 9  # pad == eos: a mask by id would also drop the real EOS label of the longer example
    batch = pad_batch([_example("a", [1, 2, 9], [X, 2, 9]), _example("b", [1, 9], [X, 9])], pad_id=eos)
    assert {k: v.tolist() for k, v in batch.items()} == {
        "input_ids": [[1, 2, 9], [1, 9, 9]],
        "attention_mask": [[1, 1, 1], [1, 1, 0]],
        "labels": [[X, 2, 9], [X, 9, X]],
    }


def test_flatten_batch_restarts_positions_and_never_trains_across_examples() -> None:
    batch = flatten_batch([_example("a", [1, 2, 9], [1, 2, 9]), _example("b", [3, 9], [3, 9])])
    assert {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in batch.items()} == {
        "input_ids": [[1, 2, 9, 3, 9]],
        "position_ids": [[0, 1, 2, 0, 1]],
        "labels": [[X, 2, 9, X, 9]],
        "segment_bounds": (0, 3, 5),
    }
    assert batch["input_ids"].dtype == torch.long


@pytest.mark.parametrize(
    ("requested", "attention", "want"),
    [
        (True, "flash_attention_2", True),
        (True, "sdpa", True),
        (True, "eager", True),
        (True, SEGMENT_ATTENTION, True),
        (True, "some_remote_kernel", False),
        (False, "flash_attention_2", False),
    ],
    ids=["flash", "sdpa", "eager", "segments", "unknown-pads", "not-requested"],
)
def test_flattening_only_with_attention_that_keeps_examples_apart(requested: bool, attention: str, want: bool) -> None:
    assert flattening_supported(requested, attention) is want


def test_bucketing_groups_a_steps_examples_by_length_and_keeps_step_boundaries() -> None:
    lengths = [5, 900, 30, 870, 12, 880, 40, 20, 910, 8]  # 10 examples, 2 per step: the last window is partial
    order = epoch_order(len(lengths), seed=1, epoch=0)

    bucketed = bucket_by_length(order, lengths, window=2 * BUCKET_STEPS, seed=1, epoch=0)

    assert sorted(bucketed) == list(range(10))
    steps = [sorted(lengths[i] for i in bucketed[k : k + 2]) for k in range(0, 10, 2)]
    assert sorted(steps) == [[5, 8], [12, 20], [30, 40], [870, 880], [900, 910]]
    assert bucketed == bucket_by_length(order, lengths, window=2 * BUCKET_STEPS, seed=1, epoch=0)
    padded = sum(2 * max(lengths[i] for i in order[k : k + 2]) for k in range(0, 10, 2))
    assert sum(2 * max(s) for s in steps) == 2 * (910 + 880 + 40 + 20 + 8) < padded


def test_bucketing_leaves_a_short_last_step_last() -> None:
    lengths = list(range(1, 8))  # 7 examples, 2 per step: the last step holds one example
    bucketed = bucket_by_length(list(range(7)), lengths, window=2 * BUCKET_STEPS, seed=0, epoch=0)
    assert bucketed[-1] == 0  # the shortest, ranked last, stays alone in the last step


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    assert epoch_order(20, seed=3, epoch=1) == epoch_order(20, seed=3, epoch=1)
    assert sorted(epoch_order(20, seed=3, epoch=1)) == list(range(20))
    assert epoch_order(20, seed=3, epoch=1) != epoch_order(20, seed=3, epoch=2)
    assert epoch_order(20, seed=3, epoch=1) != epoch_order(20, seed=4, epoch=1)


@pytest.mark.parametrize(
    ("processes", "rank", "want"),
    [
        (1, 0, [MicroBatch((0, 1)), MicroBatch((2, 3)), MicroBatch((4,))]),
        (2, 0, [MicroBatch((0, 1)), MicroBatch((4,))]),
        (2, 1, [MicroBatch((2, 3)), MicroBatch((3,), filler=True)]),
    ],
    ids=["one-process-short-last", "rank0-of-2", "rank1-of-2-gets-a-filler"],
)
def test_process_micro_batches(processes: int, rank: int, want: list[MicroBatch]) -> None:
    assert process_micro_batches(list(range(5)), batch_size=2, processes=processes, rank=rank, filler=3) == want


@pytest.mark.parametrize(
    ("examples", "batch_size", "processes"),
    [
        (50, 1, 8),
        (20, 1, 8),
        (20, 8, 8),
        (20, 4, 16),
        (5, 2, 4),
        (1, 1, 3),
        (20, 4, 5),
        (21, 4, 2),
        (100, 3, 7),
        (7, 8, 1),
    ],  # fmt: skip
    ids=lambda v: str(v),
)
def test_an_epoch_trains_every_example_exactly_once(examples: int, batch_size: int, processes: int) -> None:
    # 50 examples on 8 processes fill 7 rounds of 8 slots (56): the 6 slots left over run fillers, which train
    # nothing, instead of 6 examples a second time. Fewer batches than processes must still feed every rank.
    plan = plan_steps(examples, batch_size=batch_size, processes=processes, accumulation=1, epochs=1.0, max_steps=None)
    order = epoch_order(examples, seed=0, epoch=0)
    per_rank = [
        process_micro_batches(order, batch_size=batch_size, processes=processes, rank=rank, filler=0)
        for rank in range(processes)
    ]
    assert {len(micro) for micro in per_rank} == {plan.micro_batches_per_epoch}
    trained = Counter(i for micro in per_rank for batch in micro if not batch.filler for i in batch.indices)
    assert trained == Counter(range(examples))
    fillers = sum(batch.filler for micro in per_rank for batch in micro)
    assert fillers == plan.micro_batches_per_epoch * processes - math.ceil(examples / batch_size)


def test_a_filler_runs_its_example_and_trains_no_token() -> None:
    examples = [
        TokenizedExample(id="long", input_ids=(1, 2, 3, 4), labels=(-100, -100, 3, 4)),
        TokenizedExample(id="short", input_ids=(5, 6), labels=(-100, 6)),
    ]
    assert shortest_example(examples) == 1
    filler = micro_batch_examples(examples, MicroBatch((1,), filler=True))
    assert filler == [TokenizedExample(id="short", input_ids=(5, 6), labels=(-100, -100))]
    assert micro_batch_examples(examples, MicroBatch((1,))) == [examples[1]]
    for collated in (flatten_batch(filler), pad_batch(filler, pad_id=0)):
        assert int((collated["labels"] != -100).sum()) == 0 and collated["input_ids"].numel() == 2


class _OneProcessOfMany:
    """Just what `run_loop` reads before it trains: rank, process count and device."""

    num_processes = 8
    process_index = 7
    device = torch.device("cpu")
    is_main_process = False


def test_the_loop_refuses_to_spin_when_a_process_runs_out_of_batches(tmp_path: Any) -> None:
    # A plan that promises more micro-batches than the rank is dealt: it used to loop forever on the empty epoch.
    plan = StepPlan(micro_batches_per_epoch=3, steps_per_epoch=3, total_steps=3)
    settings = LoopSettings(
        batch_size=8,
        accumulation=1,
        max_grad_norm=1.0,
        seed=0,
        save_every_steps=None,
        checkpoint_root=tmp_path,
        dataset_digest="sha256:d",
        spec_digest="sha256:s",
    )
    examples = [TokenizedExample(id=f"t{i}", input_ids=(1, 2), labels=(1, 2)) for i in range(20)]
    with pytest.raises(RuntimeError, match="process 7 of 8 got 1 micro-batches for epoch 0.*plan says 3"):
        run_loop(
            _OneProcessOfMany(),
            None,
            None,
            None,
            examples=examples,
            collate=flatten_batch,
            plan=plan,
            settings=settings,
            start=START,
        )


@pytest.mark.parametrize(
    ("kwargs", "want"),
    [
        (
            {"examples": 20, "batch_size": 4, "processes": 1, "accumulation": 1, "epochs": 2.0, "max_steps": None},
            (5, 5, 10),
        ),
        (
            {"examples": 20, "batch_size": 4, "processes": 1, "accumulation": 2, "epochs": 2.0, "max_steps": None},
            (5, 3, 6),
        ),
        (
            {"examples": 20, "batch_size": 4, "processes": 2, "accumulation": 1, "epochs": 1.5, "max_steps": None},
            (3, 3, 5),
        ),
        ({"examples": 8, "batch_size": 4, "processes": 1, "accumulation": 1, "epochs": 3.0, "max_steps": 7}, (2, 2, 7)),
    ],
    ids=["epochs", "accumulation-short-last-step", "two-processes-half-epoch", "max-steps-wins"],
)
def test_plan_steps(kwargs: dict[str, Any], want: tuple[int, int, int]) -> None:
    plan = plan_steps(**kwargs)
    assert (plan.micro_batches_per_epoch, plan.steps_per_epoch, plan.total_steps) == want
