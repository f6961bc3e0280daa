"""Load the base model as one worker of a test launch, as the finetune stage does under FSDP (local rank 0
reads the weights, the others do not), and record where each parameter and buffer lives and the process's peak
resident memory: `python -m tests.workload.rank_loading MODEL_DIR OUT_DIR` under torch's launcher.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from cotlab.api.models import ModelSource
from cotlab.trainer.finetune.model import load_base_model


def main(model_dir: str, out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = load_base_model(ModelSource(uri=Path(model_dir).as_uri()), weights=rank == 0)
    devices = sorted({str(p.device) for p in model.parameters()})
    buffers = sorted({str(b.device) for b in model.buffers()})
    real_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.device != torch.device("meta"))
    shapes = {name: list(p.shape) for name, p in model.named_parameters()}
    record = {
        "rank": rank,
        "devices": devices,
        "buffers": buffers,
        "real_parameter_bytes": real_bytes,
        "shapes": shapes,
    }
    Path(out_dir, f"rank-{dist.get_rank()}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
