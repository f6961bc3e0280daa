"""Flattened micro-batches train exactly as padded ones, with every attention that training may flatten with.

A flattened row keeps its examples apart only through its restarting `position_ids` (batches.py): transformers
builds a block-causal mask from them for sdpa and eager when no attention mask and no cache is passed
(`masking_utils.find_packed_sequence_indices`), and attention.py's segment attention splits the row at them.
If either let an example attend to the one before it, the later examples' losses and the gradients would differ
from the padded batch's; the all-ones-mask case shows that this comparison sees such a leak.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from cotlab.trainer.finetune.attention import SEGMENT_ATTENTION, register_segment_attention
from cotlab.trainer.finetune.batches import flatten_batch, pad_batch
from cotlab.trainer.finetune.data import IGNORE_INDEX, TokenizedExample

pytestmark = pytest.mark.workload

LOSS_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-5  # relative to the largest gradient entry


def _example(name: str, length: int, trained_from: int) -> TokenizedExample:
    generator = torch.Generator().manual_seed(length)
    ids = tuple(int(t) for t in torch.randint(10, 250, (length,), generator=generator))
    return TokenizedExample(name, ids, tuple(IGNORE_INDEX if i < trained_from else t for i, t in enumerate(ids)))


# Uneven lengths, the longest not first, one trained from its second token (right after an example boundary).
EXAMPLES = [_example("a", 23, 5), _example("b", 61, 1), _example("c", 9, 3), _example("d", 40, 30)]


def _per_example_losses(logits: torch.Tensor, labels: torch.Tensor, spans: list[tuple[int, int, int]]) -> list[Any]:
    """Summed token loss of each example; `spans` is (row, start, end) of each example in `labels`."""
    token_loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(labels.shape[0], -1)
    return [token_loss[row, start : end - 1].sum() for row, start, end in spans]


def _losses_and_grads(model: Any, batch: dict[str, torch.Tensor], spans: list[tuple[int, int, int]]) -> Any:
    model.zero_grad(set_to_none=True)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits
    losses = _per_example_losses(logits, batch["labels"], spans)
    torch.stack(losses).sum().backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return torch.stack(losses).detach(), grads


def _flat_spans() -> list[tuple[int, int, int]]:
    starts = [0]
    for example in EXAMPLES:
        starts.append(starts[-1] + example.length)
    return [(0, a, b) for a, b in zip(starts, starts[1:], strict=False)]


def _load(model_dir: Path, attention: str) -> Any:
    from transformers import AutoModelForCausalLM

    if attention == SEGMENT_ATTENTION:
        register_segment_attention()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attention)
    model.train()  # dropout is 0 in the tiny config: training mode changes nothing but what a trainer would see
    return model


@pytest.mark.parametrize("attention", ["sdpa", "eager", SEGMENT_ATTENTION])
def test_flattened_batch_gives_the_padded_batchs_losses_and_gradients(tiny_model_dir: Path, attention: str) -> None:
    model = _load(tiny_model_dir, attention)
    padded_spans = [(row, 0, e.length) for row, e in enumerate(EXAMPLES)]

    padded_losses, padded_grads = _losses_and_grads(model, pad_batch(EXAMPLES, pad_id=0), padded_spans)
    flat_losses, flat_grads = _losses_and_grads(model, flatten_batch(EXAMPLES), _flat_spans())

    assert torch.allclose(flat_losses, padded_losses, rtol=0, atol=LOSS_TOLERANCE), (flat_losses, padded_losses)
    largest = max(float(g.abs().max()) for g in padded_grads.values())
    assert largest > 0
    for name, grad in padded_grads.items():
        assert torch.allclose(flat_grads[name], grad, rtol=0, atol=GRADIENT_TOLERANCE * largest), name


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_mask_over_the_whole_row_lets_examples_attend_across_and_is_caught(
    tiny_model_dir: Path, attention: str
) -> None:
    """With an attention mask, transformers no longer reads the restarts: the comparison above would fail."""
    model = _load(tiny_model_dir, attention)
    padded_spans = [(row, 0, e.length) for row, e in enumerate(EXAMPLES)]
    padded_losses, _ = _losses_and_grads(model, pad_batch(EXAMPLES, pad_id=0), padded_spans)
    flat = flatten_batch(EXAMPLES)
    leaking = flat | {"attention_mask": torch.ones_like(flat["input_ids"])}

    leak_losses, _ = _losses_and_grads(model, leaking, _flat_spans())

    assert torch.allclose(leak_losses[0], padded_losses[0], atol=LOSS_TOLERANCE)  # the first has nothing before it
    assert (leak_losses[1:] - padded_losses[1:]).abs().min() > 100 * LOSS_TOLERANCE


def test_segment_attention_with_a_padding_mask_matches_sdpa(tiny_model_dir: Path) -> None:
    """Its fallback for padded batches (not used by training, which flattens with it) is still right."""
    batch = pad_batch(EXAMPLES, pad_id=0)
    spans = [(row, 0, e.length) for row, e in enumerate(EXAMPLES)]
    want, _ = _losses_and_grads(_load(tiny_model_dir, "sdpa"), batch, spans)
    got, _ = _losses_and_grads(_load(tiny_model_dir, SEGMENT_ATTENTION), batch, spans)
    assert torch.allclose(got, want, rtol=0, atol=LOSS_TOLERANCE)


def _one_step(model_dir: Path, attention: str, batches: list[dict[str, torch.Tensor]]) -> tuple[float, Any]:
    """The training loop's own step (per-token loss over the step) with SGD at rate 1: (loss, parameter change)."""
    from accelerate import Accelerator

    from cotlab.trainer.finetune.loop import _train_step

    accelerator = Accelerator(cpu=True)
    model = _load(model_dir, attention)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    loss = _train_step(accelerator, model, optimizer, scheduler, batches, clip=1e9).loss
    after = dict(accelerator.unwrap_model(model).named_parameters())
    return loss, {name: before[name] - after[name].detach() for name in before}


@pytest.mark.parametrize("attention", ["sdpa", SEGMENT_ATTENTION])
def test_a_training_step_on_flattened_micro_batches_equals_the_padded_step(
    tiny_model_dir: Path, attention: str
) -> None:
    """Through `_train_step`, as training runs it (the tiny config says `use_cache: true`, so the step itself must
    turn the cache off): two micro-batches, the step's loss is per trained token."""
    groups = [EXAMPLES[:3], EXAMPLES[3:]]
    padded_loss, padded = _one_step(tiny_model_dir, "sdpa", [pad_batch(g, pad_id=0) for g in groups])
    flat_loss, flat = _one_step(tiny_model_dir, attention, [flatten_batch(g) for g in groups])

    assert flat_loss == pytest.approx(padded_loss, rel=1e-6)
    largest = max(float(g.abs().max()) for g in padded.values())
    assert largest > 0
    for name, change in padded.items():
        assert torch.allclose(flat[name], change, rtol=0, atol=GRADIENT_TOLERANCE * largest), name


def _nonzero_calls(model: Any, batch: dict[str, Any]) -> int:
    """How many `nonzero` ops (on a GPU: a sync with the host) one forward pass runs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountNonzero(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.calls += func.overloadpacket is torch.ops.aten.nonzero
            return func(*args, **(kwargs or {}))

    with CountNonzero() as probe, torch.no_grad():
        model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False)
    return probe.calls


def test_segment_attention_reads_the_collators_bounds_not_the_positions(tiny_model_dir: Path) -> None:
    """With `segment_bounds` from the collator no layer reads the row's starts back from the device; without them
    each layer does (the probe sees it), and the bounds must agree with the row."""
    model = _load(tiny_model_dir, SEGMENT_ATTENTION)
    batch = flatten_batch(EXAMPLES)
    assert batch["segment_bounds"] == (0, 23, 84, 93, 133)

    assert _nonzero_calls(model, batch) == 0
    without = {k: v for k, v in batch.items() if k != "segment_bounds"}
    assert _nonzero_calls(model, without) >= model.config.num_hidden_layers
    with pytest.raises(ValueError, match="do not end at the row's length 133"):
        _nonzero_calls(model, batch | {"segment_bounds": (0, 23, 84)})
