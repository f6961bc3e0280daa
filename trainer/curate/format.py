"""How a selected trace becomes a training example (chat messages, or prompt/completion text), and its stats."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from cotlab.api.tracedataset import TokenStats, TraceFormat, TraceStats
from cotlab.trainer.core.dataset_format import ChatMessage, TrainingExample
from cotlab.trainer.curate.records import TraceRecord
from cotlab.trainer.curate.selection import Candidate
from cotlab.trainer.generation.prompting import fill_template, render_prompt
from cotlab.trainer.grading.grader import extract_answer


def final_answer_line(answer: str) -> str:
    """The sentence that states the answer where the grader looks for it: the last `\\boxed{}`."""
    return f"The final answer is \\boxed{{{answer}}}."


def appends_answer(record: TraceRecord, fmt: TraceFormat) -> bool:
    """Whether `answerInBoxed` changes this trace: it has no boxed answer, so the final-answer line is added."""
    return fmt.think_markers is None and fmt.answer_in_boxed and extract_answer(record.solution.strip()) is None


def format_trace(record: TraceRecord, fmt: TraceFormat) -> str:
    """The assistant turn: the solution, inside think markers when set, ending in a boxed answer when asked."""
    solution = record.solution.strip()
    if fmt.think_markers is not None:
        # The reasoning goes inside the markers, the answer after them (as reasoning models answer).
        markers = fmt.think_markers
        return f"{markers.open}\n{solution}\n{markers.close}\n\n{final_answer_line(record.answer)}"
    if appends_answer(record, fmt):
        return f"{solution}\n\n{final_answer_line(record.answer)}"
    return solution


def training_example(candidate: Candidate, fmt: TraceFormat) -> TrainingExample:
    """One line of traces.jsonl: the chat messages, plus prompt/completion text for the completion style."""
    record = candidate.record
    user = fill_template(fmt.prompt.template, record.problem)
    # As the evaluator renders it: an empty system text is an empty system turn, not none (see render_prompt).
    messages = [ChatMessage(role="system", content=fmt.prompt.system)] if fmt.prompt.system is not None else []
    messages += [ChatMessage(role="user", content=user), ChatMessage(role="assistant", content=candidate.trace)]
    completion_style = fmt.prompt.style == "completion"
    return TrainingExample(
        id=record.id,
        problem=record.problem,
        answer=record.answer,
        stage=record.stage,
        messages=messages,
        tokens=candidate.tokens,
        # Exactly the text the evaluator prompts a base model with, so training and evaluation agree.
        prompt=render_prompt(record.problem, fmt.prompt, None) if completion_style else None,
        completion=candidate.trace if completion_style else None,
    )


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """The nearest-rank percentile (q in 0..100) of ascending values: always one of the values."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def trace_stats(selected: Sequence[Candidate], *, graded: bool, fmt: TraceFormat | None = None) -> TraceStats:
    """Token stats (when counted), the correct rate (when graded against independent answers), traces per stage,
    and with `answerInBoxed` how many traces it gave a final-answer line."""
    tokens = sorted(c.tokens for c in selected if c.tokens is not None)
    token_stats = None
    if tokens and len(tokens) == len(selected):
        token_stats = TokenStats(min=tokens[0], p50=percentile(tokens, 50), p90=percentile(tokens, 90), max=tokens[-1])
    correct_rate = None
    if graded and selected:
        correct_rate = round(sum(c.correct is True for c in selected) / len(selected), 6)
    stages = Counter(c.record.stage for c in selected if c.record.stage is not None)
    appended = None
    if fmt is not None and fmt.answer_in_boxed and fmt.think_markers is None:
        appended = sum(appends_answer(c.record, fmt) for c in selected)
    return TraceStats(
        tokens=token_stats, correct_rate=correct_rate, stages=dict(sorted(stages.items())), answers_appended=appended
    )
