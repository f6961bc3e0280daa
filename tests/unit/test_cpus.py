"""CPUs a pod may use: the affinity set capped by the container's cgroup CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cotlab.trainer.core import cpus
from cotlab.trainer.grading.grader import Grader

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("files", "want"),
    [
        ({"cpu.max": "50000 100000\n"}, 1),  # half a CPU still needs one worker
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "max 100000\n"}, AFFINITY),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, AFFINITY),
        ({}, AFFINITY),
        ({"cpu.max": "garbage"}, AFFINITY),
    ],
    ids=["v2-half", "v2-one", "v2-unlimited", "v1-one", "v1-unlimited", "no-cgroup", "unreadable"],
)
def test_usable_cpus_respects_the_quota(tmp_path: Path, files: dict[str, str], want: int) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpus.usable_cpus(tmp_path) == min(want, AFFINITY)


def test_a_quota_above_the_affinity_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text(f"{(AFFINITY + 3) * 100000} 100000\n")
    assert cpus.usable_cpus(tmp_path) == AFFINITY


def test_grader_workers_follow_the_pod_cpu_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    monkeypatch.setattr(cpus, "CGROUP_ROOT", tmp_path)
    with Grader() as grader:
        assert grader.workers == 1
