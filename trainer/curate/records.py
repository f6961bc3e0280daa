"""From a source's raw rows to validated `TraceRecord`s: field mapping, answers, ids; bad rows named by line.

A trace with no answer (no answer cell and no `\\boxed{}` in its solution) is set aside rather than failing
the run: public sets have a few (MATH train has two empty `\\boxed{}`), and such a trace can be neither
checked nor learned from. The stage reports each one by line in its log and manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cotlab.api.tracedataset import FieldMapping
from cotlab.trainer.core.errors import InvalidInputError
from cotlab.trainer.curate.sources import Row
from cotlab.trainer.grading.answer_formats import read_answer
from cotlab.trainer.grading.grader import extract_answer


class TraceRecord(BaseModel):
    """One trace after field mapping: what the filters, the selection and the formatter read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    problem: str = Field(min_length=1)
    solution: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    stage: str | None = None
    difficulty: str | None = None
    group: str | None = Field(default=None, description="The selection's diversityField value.")
    problem_id: str | None = Field(default=None, description="The problem it solves (fields.problemId or digest).")
    where: str = Field(description="The line or row it came from, for messages.")


def problem_digest(problem: str) -> str:
    """A problem's id when the source has no problem id column: the first 16 hex digits of the sha256 of its
    text (surrounding whitespace dropped), the same for every trace of the same problem."""
    return hashlib.sha256(problem.strip().encode("utf-8")).hexdigest()[:16]


class UnansweredTraceError(InvalidInputError):
    """A row with no answer cell and no boxed answer in its solution; set aside, not fatal."""


@dataclass(frozen=True)
class LoadedRecords:
    """The valid records in source order, and where the unanswered traces were."""

    records: list[TraceRecord]
    unanswered: list[str]


def to_record(row: Mapping[str, Any], where: str, fields: FieldMapping, *, diversity_field: str | None) -> TraceRecord:
    """The record of one row; a missing or malformed field raises `InvalidInputError` naming `where`."""
    columns = {
        "problem": fields.problem,
        "solution": fields.solution,
        "answer": fields.answer,
        "id": fields.id,
        "stage": fields.stage,
        "difficulty": fields.difficulty,
        "group": diversity_field,
        "problem_id": fields.problem_id,
    }
    values: dict[str, Any] = {role: _value(row, column) for role, column in columns.items() if column is not None}
    for role in ("problem", "solution"):
        if values.get(role) is None:
            found = ", ".join(sorted(row)) or "none"
            raise InvalidInputError(f'{where}: field "{columns[role]}" missing; fields found: {found}')
        if not isinstance(values[role], str):
            raise InvalidInputError(
                f'{where}: field "{columns[role]}": expected text, got {type(values[role]).__name__}'
            )
    if values.get("problem_id") is None:
        if fields.problem_id is not None:
            raise InvalidInputError(f'{where}: field "{fields.problem_id}" (problemId) missing')
        values["problem_id"] = problem_digest(values["problem"])
    if values.get("group") is None and diversity_field is not None:
        raise InvalidInputError(f'{where}: field "{diversity_field}" (spec.select.diversityField) missing')
    if values.get("answer") is not None and fields.answer_format != "plain":
        values["answer"] = read_answer(values["answer"], fields.answer_format)
        if values["answer"] is None:
            raise UnansweredTraceError(
                f'{where}: no answer: field "{fields.answer}" has none in answerFormat {fields.answer_format}'
            )
    if values.get("answer") is None:
        # No answer column, or an empty cell: the trace's own final boxed answer is its answer.
        values["answer"] = extract_answer(values["solution"])
        if values["answer"] is None:
            column = f'field "{fields.answer}" missing and ' if fields.answer is not None else ""
            raise UnansweredTraceError(f"{where}: no answer: {column}the solution has no \\boxed{{}} answer")
    if values.get("id") is None:
        if fields.id is not None:
            raise InvalidInputError(f'{where}: field "{fields.id}" (id) missing')
        values["id"] = where.rsplit(" ", 1)[-1]  # the line/row number: stable while the file is unchanged
    try:
        return TraceRecord.model_validate({**values, "where": where})
    except ValidationError as exc:
        error = exc.errors()[0]
        role = str(error["loc"][0]) if error["loc"] else "?"
        raise InvalidInputError(f'{where}: field "{columns.get(role, role)}": {error["msg"]}') from None


def to_records(rows: Iterable[Row], fields: FieldMapping, *, diversity_field: str | None = None) -> LoadedRecords:
    """Every row's record, in source order; a repeated id raises `InvalidInputError` naming both rows."""
    records: list[TraceRecord] = []
    unanswered: list[str] = []
    first_seen: dict[str, str] = {}
    for where, row in rows:
        try:
            record = to_record(row, where, fields, diversity_field=diversity_field)
        except UnansweredTraceError:
            unanswered.append(where)
            continue
        if record.id in first_seen:
            raise InvalidInputError(f"{where}: id {record.id!r} repeats {first_seen[record.id]}")
        first_seen[record.id] = where
        records.append(record)
    return LoadedRecords(records, unanswered)


def _value(row: Mapping[str, Any], column: str) -> Any:
    """The cell as text when it is a scalar (ids and answers are often numbers), None when absent or blank."""
    value = row.get(column)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and not value.strip():
        return None
    return value
