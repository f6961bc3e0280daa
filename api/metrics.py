"""Metric names (pass@k, maj@k): their one reading and the default list, without the models."""

from __future__ import annotations

from typing import Literal

METRIC_PATTERN = r"^(pass|maj)@[1-9][0-9]{0,3}$"
# An EvalRun's spec.metrics when it names none; the first is the run's main score (`cotctl status`).
DEFAULT_METRICS = ("pass@1", "maj@64")


def parse_metric(name: str) -> tuple[Literal["pass", "maj"], int]:
    """("pass", 8) for "pass@8": the one reading of a metric name (validated against METRIC_PATTERN)."""
    kind, _, k = name.partition("@")
    if kind not in ("pass", "maj") or not k.isdigit():
        raise ValueError(f"metric {name!r} is not pass@k or maj@k")
    return ("pass" if kind == "pass" else "maj"), int(k)
