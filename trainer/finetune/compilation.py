"""`training.torchCompile`: torch.compile for the decoder layers of a FineTuneRun's model.

Off by default until a GPU measures what it gains (bench/finetune_mfu.py --compile). What is compiled is chosen so
that compiled code really runs, with and without activation checkpointing, and so that a new split of traces in a
flattened row does not recompile (attention.py registers the segment attention compiler-disabled).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import torch

from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.finetune.model import peft_base

# What torch.compile's generated code is built with at run time, on a GPU (True) or not: Triton builds its GPU
# launchers with a C compiler (triton 3.9 runtime/build.py: $CC, else gcc, else clang); inductor's CPU kernels are
# C++. cotlab's trainer image has neither (Debian's python3 and libstdc++ only).
COMPILERS: dict[bool, tuple[str, tuple[str, ...]]] = {
    True: ("CC", ("gcc", "clang")),
    False: ("CXX", ("g++", "clang++")),
}


def compile_layer_parts(model: Any, device: torch.device) -> int:
    """torch.compile, in place, the parts of each decoder layer (attention with its projections and rotary
    embedding, MLP, norms) of `model`, which will train on `device`; returns how many modules.

    The parts, not the layers: transformers 5.23 checkpoints a layer by wrapping its class's `forward`
    (modeling_layers.py `forward_with_checkpointing`), and a compiled layer under that wrapper ran eagerly
    (checked: no graph captured, gradients bit for bit the eager ones), while its compiled parts run compiled
    with checkpointing on or off (graphs captured, gradients within 5e-8 of eager on a tiny Qwen2). What joins
    the parts, two residual additions per layer, stays eager. In place (`Module.compile`), so parameter names,
    checkpoints and FSDP's wrapping of the layers are as without. Layers are what the model names in
    `_no_split_modules`, the classes FSDP wraps.
    """
    base = peft_base(model)
    variable, names = COMPILERS[device.type == "cuda"]
    if not (os.environ.get(variable) or any(shutil.which(name) for name in names)):
        raise InvalidSpecError(
            "spec.training.torchCompile: torch.compile builds its code at run time and finds no compiler here"
            f" ({' or '.join(names)} on PATH, or ${variable}); leave torchCompile unset or use an image with one"
        )
    layer_classes = set(getattr(base, "_no_split_modules", None) or ())
    parts = [part for m in base.modules() if type(m).__name__ in layer_classes for part in m.children()]
    if not parts:
        raise InvalidSpecError(
            f"spec.training.torchCompile: {type(base).__name__} names no decoder layer class (_no_split_modules)"
        )
    for part in parts:
        part.compile()
    return len(parts)
