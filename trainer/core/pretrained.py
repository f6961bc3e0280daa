"""Where a `ModelSource` lives and how `from_pretrained` is called for it: one place for the engines,
curation (token counts) and fine-tuning."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from cotlab.api.models import ModelSource
from cotlab.api.podcontract import HF_TOKEN_ENV
from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidSpecError

logger = logging.getLogger(__name__)


def resolve_model_location(source: ModelSource) -> tuple[str, str | None]:
    """(directory or hub id, GGUF file name or None) for `from_pretrained`; a `.gguf` URI is split in two."""
    if source.hub is not None:
        return source.hub, source.gguf_file
    assert source.uri is not None
    path = storage.local_path(source.uri) if not source.uri.startswith("hf://") else None
    if path is None:
        raise InvalidSpecError(
            f"model.uri: {source.uri} is not a local path; models load from local directories or GGUF files"
            " (file://, pvc://, pkg://) or hub ids (model.hub)"
        )
    if path.suffix == ".gguf":
        return str(path.parent), source.gguf_file or path.name
    return str(path), source.gguf_file


def pretrained_kwargs(source: ModelSource) -> tuple[str, dict[str, Any]]:
    """(location, keyword arguments) shared by `from_pretrained` of the model, its config and its tokenizer."""
    location, gguf_file = resolve_model_location(source)
    kwargs: dict[str, Any] = {"trust_remote_code": source.trust_remote_code}
    if source.hub is not None:
        kwargs |= {"revision": source.revision, "token": os.environ.get(HF_TOKEN_ENV)}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    return location, kwargs


def load_tokenizer(source: ModelSource, *, field: str = "model") -> Any:
    """The tokenizer of `source` (`source.tokenizer`, a hub repo id, overrides: the tokenizer of a quantised
    model whose files lack a usable one). `field` names the spec field in errors."""
    from transformers import AutoTokenizer  # imported here: only stages that tokenize pay for it

    started = time.monotonic()
    if source.tokenizer is not None:
        location = source.tokenizer
        kwargs: dict[str, Any] = {"trust_remote_code": source.trust_remote_code, "token": os.environ.get(HF_TOKEN_ENV)}
    else:
        if source.uri is not None and not storage.is_available(source.uri):
            raise InvalidSpecError(f"{field}.uri: {source.uri} does not exist")
        try:
            location, kwargs = pretrained_kwargs(source)
        except InvalidSpecError as exc:
            raise InvalidSpecError(f"{field}: {exc}") from None
    tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    logger.info("loaded tokenizer", extra={"tokenizer": location, "seconds": round(time.monotonic() - started, 2)})
    return tokenizer


def generation_eos_ids(source: ModelSource) -> list[int]:
    """The EOS ids of the model's generation config (`generation_config.json`), read without the weights;
    `[]` when it has none (a GGUF file keeps its EOS in the tokenizer metadata; a directory may lack the file)."""
    from transformers import GenerationConfig

    location, kwargs = pretrained_kwargs(source)
    if "gguf_file" in kwargs:
        return []
    try:
        config = GenerationConfig.from_pretrained(location, **kwargs)
    except OSError:  # no generation_config.json: the tokenizer's EOS is all there is
        return []
    eos = config.eos_token_id
    if eos is None:
        return []
    return [int(i) for i in (eos if isinstance(eos, list) else [eos])]
