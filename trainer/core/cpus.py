"""How many CPUs this process may use: its affinity, capped by the container's CPU limit (cgroup quota).

A pod limited to `cpu: 4` on a 96-core node still sees 96 CPUs in `os.sched_getaffinity`: Kubernetes enforces
the limit as a CFS quota, not as a CPU set. Starting one grading worker per visible CPU would run 96 processes
throttled to 4 CPUs' worth of time.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
"""Where the container's own cgroup is mounted (a cgroup namespace makes it the container's root)."""


def _quota_cpus(root: Path) -> float | None:
    """CPUs the cgroup's quota allows: cgroup v2 `cpu.max` ("150000 100000"), else v1 `cpu.cfs_quota_us` /
    `cpu.cfs_period_us`; None when there is no quota ("max", -1) or no readable cgroup."""
    try:
        quota, _, period = (root / "cpu.max").read_text().strip().partition(" ")
        if quota == "max":
            return None
        return int(quota) / int(period or "100000")
    except (OSError, ValueError):
        pass
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def usable_cpus(cgroup_root: Path | None = None) -> int:
    """CPUs this process may use: the affinity set, capped by the cgroup quota rounded up; at least 1."""
    cpus = len(os.sched_getaffinity(0))
    quota = _quota_cpus(cgroup_root or CGROUP_ROOT)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)
