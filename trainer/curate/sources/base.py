"""What every trace source yields, and what a loader may use besides the spec (the teacher engine, the grader)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cotlab.api.tracedataset import GenerateSource, TraceDatasetSpec
from cotlab.trainer.core.jsonl import Row  # every source yields (where, raw row), as the JSONL reader does
from cotlab.trainer.generation import Engine
from cotlab.trainer.grading.grader import Grader

__all__ = ["Loader", "Row", "SourceContext", "TeacherLoader"]

TeacherLoader = Callable[[GenerateSource], Engine]
"""Starts the teacher engine for a generate source; injectable so tests script the teacher."""


@dataclass(frozen=True)
class SourceContext:
    """What loaders share with the curate stage: one grader, and how to start a teacher."""

    grader: Grader
    teacher_loader: TeacherLoader


Loader = Callable[[TraceDatasetSpec, SourceContext], Iterator[Row]]
