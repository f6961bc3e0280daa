"""Traces from a teacher by rejection sampling: sample each problem, keep the samples that grade correct."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator

from pydantic import ValidationError

from cotlab.api.benchmarks import CUSTOM, get_benchmark
from cotlab.api.evalrun import BenchmarkSelection
from cotlab.api.evalrun import Engine as EngineSpec
from cotlab.api.tracedataset import FieldMapping, GenerateSource, ProblemSet, TraceDatasetSpec
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.curate.sources.base import Row, SourceContext
from cotlab.trainer.generation import Engine, SampleRequest, check_sampling, generate_all, load_engine
from cotlab.trainer.generation.benchmarks import Problem, load_problems
from cotlab.trainer.generation.prompting import render_prompt, with_turn_end
from cotlab.trainer.grading.grader import Grader, extract_answer

logger = logging.getLogger(__name__)

FIELDS = FieldMapping(problem="problem", solution="solution", answer="answer", id="id", stage="stage")
"""The columns of a generated row; `spec.fields` describes files, not what this loader writes."""

STAGE = "generated"


def load(spec: TraceDatasetSpec, context: SourceContext) -> Iterator[Row]:
    """Up to `keepPerProblem` correct samples per problem, in problem then sample order."""
    source = spec.source.generate
    assert source is not None  # the one-of validator guarantees it for this loader
    check_sampling(source.sampling)
    problems = load_problems(problem_selection(source.problems))  # bad problems fail before the teacher loads
    engine = context.teacher_loader(source)
    return iter(keep_correct(problems, source, engine, context.grader))


def problem_selection(problems: ProblemSet) -> BenchmarkSelection:
    """The evaluator's selection for a problem set: a registered benchmark, or a custom JSONL file."""
    try:
        if problems.benchmark is not None:
            get_benchmark(problems.benchmark)  # unknown names are refused with the list of valid ones
            return BenchmarkSelection(name=problems.benchmark, limit=problems.limit)
        return BenchmarkSelection(name=CUSTOM, uri=problems.uri, limit=problems.limit)
    except KeyError as exc:
        raise InvalidSpecError(f"spec.source.generate.problems.benchmark: {exc.args[0]}") from None
    except ValidationError as exc:
        raise InvalidSpecError(f"spec.source.generate.problems: {exc.errors()[0]['msg']}") from None


def keep_correct(problems: list[Problem], source: GenerateSource, engine: Engine, grader: Grader) -> list[Row]:
    """One engine call over every problem, then the first `keepPerProblem` correct samples of each."""
    sampling = source.sampling
    requests = [
        SampleRequest(
            prompt=render_prompt(p.problem, source.prompt, engine.tokenizer),
            samples=sampling.samples,
            seed=sampling.seed + position * sampling.samples,  # unique per (problem, sample), as evaluate does
        )
        for position, p in enumerate(problems)
    ]
    completions = generate_all(engine, requests, with_turn_end(sampling, source.prompt, engine.tokenizer))
    rows: list[Row] = []
    solved = 0
    for problem, samples in zip(problems, completions, strict=True):
        # Gold first inside the Grader: Math-Verify's verify is not symmetric.
        grades = grader.grade(
            [(extract_answer(c.text), problem.answer) for c in samples], answer_kind=problem.answer_kind
        )
        kept = 0
        for index, (completion, grade) in enumerate(zip(samples, grades, strict=True)):
            if kept == source.keep_per_problem:
                break
            if grade.correct:
                kept += 1
                row = {
                    "id": f"{problem.id}-{index}",
                    "problem": problem.problem,
                    "solution": completion.text,
                    "answer": problem.answer,
                    "stage": STAGE,
                }
                rows.append((f"problem {problem.id} sample {index}", row))
        solved += kept > 0
    logger.info("rejection sampling", extra={"problems": len(problems), "solved": solved, "kept": len(rows)})
    return rows


def load_teacher(source: GenerateSource) -> Engine:
    """The teacher engine: vLLM where it is installed (the evaluator image), else transformers."""
    name = "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    engine = EngineSpec(name=name, dtype="auto")
    return load_engine(engine, source.teacher, source.sampling)
