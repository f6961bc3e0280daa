"""The chunked token loss (loss.py) trains exactly as the model's own loss: same loss, same gradients.

Each listed model type is built tiny from its config (tied and untied output projection), and the same weights are
run twice: with the model's own forward (full logits, `ForCausalLMLoss`) and with `install_token_loss`. Padded
batches (trained spans starting mid-row, pads) and flattened ones (segment attention), full and LoRA, fp32 to
fp32 tolerance and under CPU bf16 autocast (the mixed-precision path) to bf16 tolerance. The chunked function is
checked against `cross_entropy` on its own, chunk sizes dividing the rows or not. A dispatch-mode probe shows what
the change is for: no tensor holds the logits of every trained row at once.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from cotlab.trainer.finetune.attention import register_segment_attention
from cotlab.trainer.finetune.batches import flatten_batch, pad_batch
from cotlab.trainer.finetune.data import IGNORE_INDEX, TokenizedExample
from cotlab.trainer.finetune.loss import (
    TOKEN_LOSS_MODEL_TYPES,
    _ChunkedLinearCrossEntropy,
    install_token_loss,
    trained_rows,
)

pytestmark = pytest.mark.workload

VOCAB = 300


def _example(name: str, length: int, trained_from: int) -> TokenizedExample:
    generator = torch.Generator().manual_seed(length)
    ids = tuple(int(t) for t in torch.randint(3, VOCAB, (length,), generator=generator))
    return TokenizedExample(name, ids, tuple(IGNORE_INDEX if i < trained_from else t for i, t in enumerate(ids)))


EXAMPLES = [_example("a", 23, 5), _example("b", 61, 1), _example("c", 9, 3), _example("d", 40, 30)]


def _config(model_type: str, *, tied: bool) -> Any:
    from transformers import AutoConfig

    return AutoConfig.for_model(
        model_type,
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=256,
        tie_word_embeddings=tied,
        use_cache=False,
    )


def _pair(model_type: str, *, tied: bool = True, lora: bool = False, attention: str = "sdpa") -> tuple[Any, Any]:
    """The same random model twice: with its own forward, and with the token loss installed."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    reference = AutoModelForCausalLM.from_config(
        _config(model_type, tied=tied), dtype=torch.float32, attn_implementation=attention
    )
    chunked = copy.deepcopy(reference)
    assert install_token_loss(chunked)
    if lora:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM")
        reference, chunked = get_peft_model(reference, config), get_peft_model(chunked, copy.deepcopy(config))
        with torch.no_grad():  # B starts at 0, which would leave A without gradient: make both non-zero
            for (_, mine), (_, theirs) in zip(reference.named_parameters(), chunked.named_parameters(), strict=True):
                if mine.requires_grad:
                    mine.normal_(std=0.1)
                    theirs.copy_(mine)
    return reference.train(), chunked.train()


def _loss_and_grads(model: Any, batch: dict[str, torch.Tensor], items: int) -> tuple[torch.Tensor, dict[str, Any]]:
    model.zero_grad(set_to_none=True)
    loss = model(**batch, num_items_in_batch=torch.tensor(items), use_cache=False).loss
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def _assert_same(
    reference: Any, chunked: Any, batch: dict[str, torch.Tensor], *, rtol: float, grad_rtol: float | None = None
) -> None:
    items = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    want_loss, want = _loss_and_grads(reference, batch, items)
    got_loss, got = _loss_and_grads(chunked, batch, items)
    assert got_loss.dtype == torch.float32
    assert float(got_loss) == pytest.approx(float(want_loss), rel=rtol)
    assert set(got) == set(want) and want
    largest = max(float(g.abs().max()) for g in want.values())
    assert largest > 0
    for name, grad in want.items():
        assert torch.allclose(got[name].float(), grad.float(), rtol=0, atol=(grad_rtol or rtol) * largest), name


@pytest.mark.parametrize("model_type", sorted(TOKEN_LOSS_MODEL_TYPES))
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_the_token_loss_gives_the_models_own_loss_and_gradients(model_type: str, tied: bool) -> None:
    reference, chunked = _pair(model_type, tied=tied)
    _assert_same(reference, chunked, pad_batch(EXAMPLES, pad_id=0), rtol=1e-5)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_the_token_loss_on_a_flattened_row_with_segment_attention(lora: bool) -> None:
    reference, chunked = _pair("qwen2", lora=lora, attention=register_segment_attention())
    _assert_same(reference, chunked, flatten_batch(EXAMPLES), rtol=1e-5)


def test_the_token_loss_under_bf16_autocast_agrees_to_bf16_tolerance() -> None:
    """Mixed precision: the projection runs in the autocast dtype as `lm_head` would, the softmax and the sum in fp32
    as the model's own loss takes them (the loss agrees to 1e-7 here; a bf16 softmax would be 4e-3 off). The
    gradients pass through bf16 matmuls in another order: they agree to 0.6% of the largest."""
    reference, chunked = _pair("qwen2", tied=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _assert_same(reference, chunked, pad_batch(EXAMPLES * 8, pad_id=0), rtol=1e-5, grad_rtol=2e-2)


def test_without_labels_the_model_keeps_its_own_forward() -> None:
    reference, chunked = _pair("qwen2")
    ids = pad_batch(EXAMPLES, pad_id=0)["input_ids"]
    with torch.no_grad():
        assert torch.equal(chunked(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_a_model_type_that_scales_its_logits_keeps_its_own_loss() -> None:
    from transformers import AutoModelForCausalLM

    config = _config("gemma2", tied=True)
    model = AutoModelForCausalLM.from_config(config)
    forward = model.forward
    assert not install_token_loss(model)
    assert model.forward == forward


def test_trained_rows_are_the_positions_whose_next_token_is_trained() -> None:
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 7, 8, IGNORE_INDEX], [1, 2, IGNORE_INDEX, 4, 5]])
    mask, targets = trained_rows(labels)
    assert mask.tolist() == [[False, True, True, False, False], [True, False, True, True, False]]
    assert targets.tolist() == [7, 8, 2, 4, 5]


@pytest.mark.parametrize("rows", [1, 7, 64, 1000])
@pytest.mark.parametrize("weight_grad", [True, False], ids=["weight-trained", "weight-frozen"])
def test_the_chunked_loss_equals_cross_entropy(rows: int, weight_grad: bool) -> None:
    torch.manual_seed(1)
    hidden = torch.randn(100, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=weight_grad)
    targets = torch.randint(0, 50, (100,))
    want = torch.nn.functional.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    inputs = (hidden, weight) if weight_grad else (hidden,)
    want_grads = torch.autograd.grad(3.0 * want, inputs)
    got = _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, rows)
    got_grads = torch.autograd.grad(3.0 * got, inputs)
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-5)


def test_no_tensor_holds_the_logits_of_every_trained_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the token loss is for: peak memory is one chunk of logits, not (trained rows x vocabulary)."""
    from cotlab.trainer.finetune import loss

    monkeypatch.setattr(loss, "CHUNK_LOGITS", 100 * VOCAB)  # Qwen2.5's 152k vocabulary makes 441-row chunks
    from torch.utils._python_dispatch import TorchDispatchMode

    class WidestVocabularyTensor(TorchDispatchMode):
        rows = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(tensor, torch.Tensor) and tensor.ndim >= 2 and tensor.shape[-1] == VOCAB:
                    self.rows = max(self.rows, tensor.numel() // VOCAB)
            return out

    batch = pad_batch(EXAMPLES * 8, pad_id=0)  # 32 rows: 1,600 trained positions
    trained = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    reference, chunked = _pair("qwen2")
    for model, expect_full in ((reference, True), (chunked, False)):
        with WidestVocabularyTensor() as probe:
            model(**batch, use_cache=False).loss.backward()
        assert (probe.rows >= trained) is expect_full, (probe.rows, trained)
    assert probe.rows == 100  # the token loss's widest: one chunk
