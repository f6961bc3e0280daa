"""The stable import path of cotlab's metrics; they live in `cotlab.trainer.grading.metrics`."""

from cotlab.trainer.grading.majority import majority_vote
from cotlab.trainer.grading.metrics import (
    BenchmarkSummary,
    Estimate,
    SampleRecord,
    majority_at_k,
    mean_pass_at_k,
    mean_with_stderr,
    pass_at_1,
    pass_at_k,
    summarize,
)

__all__ = [
    "BenchmarkSummary",
    "Estimate",
    "SampleRecord",
    "majority_at_k",
    "majority_vote",
    "mean_pass_at_k",
    "mean_with_stderr",
    "pass_at_1",
    "pass_at_k",
    "summarize",
]
