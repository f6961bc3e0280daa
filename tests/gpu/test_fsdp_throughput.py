"""The FSDP throughput script on a lent GPU machine (one GPU is enough: FSDP is applied on any world size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _gpu() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no GPU")


def test_fsdp_path_prints_tokens_per_second_and_mfu() -> None:
    import torch

    gpus = torch.cuda.device_count()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(gpus),
         str(REPO / "tests" / "gpu" / "fsdp_throughput.py"), "--steps", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "FSDP" in result["distributed_type"] and result["tokens_per_s"] > 0 and 0 < result["mfu"] < 1, result
