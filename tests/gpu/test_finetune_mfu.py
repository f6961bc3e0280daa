"""The fine-tuning throughput script on a lent GPU machine: the 1-GPU FineTuneRun path and FSDP2 on the GPUs."""

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


LAUNCHER = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1"]


@pytest.mark.parametrize(
    ("launch", "want"),
    [([sys.executable], "DistributedType.NO"), ([*LAUNCHER], "DistributedType.FSDP")],
    ids=["one-gpu-run", "fsdp"],
)
def test_the_finetune_path_prints_tokens_per_second_and_mfu(launch: list[str], want: str) -> None:
    sharding = ["--fsdp"] if "FSDP" in want else []
    done = subprocess.run(
        [*launch, str(REPO / "bench" / "finetune_mfu.py"), "--steps", "4", *sharding],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tokens_per_s"] > 0 and 0 < result["mfu"] < 1 and result["max_memory_gib"] > 1, result
    assert result["distributed_type"] == want
