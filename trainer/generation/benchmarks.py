"""Load a benchmark selection into one record shape, `Problem`, whatever its source.

Sources, in order: the selection's `uri` (a custom benchmark, or a mounted copy of a registered one), the
registry's `package_path` when that package is installed (offline runs), the registry's pinned file (fetched
here, in the pod, with fsspec), else the Hugging Face hub with the token from `HF_TOKEN` (the pod gets it from
the Secret). A pinned file, or a mounted copy of one, is refused unless its sha256 is the registry's, and its
rows are filtered by the registry's row filter. A registered benchmark must yield the number of problems the
registry declares. Gold answers are read per the benchmark's `answer_format`; a malformed record raises
`InvalidInputError` naming the file and line.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cotlab.api.benchmarks import CUSTOM, AnswerFormat, AnswerKind, PinnedFile, get_benchmark
from cotlab.api.evalrun import BenchmarkSelection, CustomFields
from cotlab.api.podcontract import HF_TOKEN_ENV
from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidInputError, InvalidSpecError
from cotlab.trainer.core.jsonl import jsonl_rows, numbered_rows
from cotlab.trainer.grading.answer_formats import read_answer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """One benchmark problem in the shape every benchmark is normalised to."""

    id: str
    problem: str
    answer: str
    answer_kind: AnswerKind


@dataclass(frozen=True)
class _Layout:
    """Where a selection's records come from and how their fields are read."""

    uri: str | None
    hub: tuple[str, str | None, str, str] | None  # (repo, config, split, revision)
    pinned: PinnedFile | None  # the digest and row filter `uri` must meet
    size: int | None  # the problem count a registered benchmark must have
    problem_field: str
    answer_field: str
    id_field: str | None
    answer_kind: AnswerKind
    answer_format: AnswerFormat


def benchmark_key(selection: BenchmarkSelection) -> str:
    """The name a selection's scores and sample file go under: its registry name, or the custom file's stem."""
    if selection.name != CUSTOM:
        return str(selection.name)
    assert selection.uri is not None  # the model validator requires it
    stem = selection.uri.rstrip("/").rsplit("/", 1)[-1]
    return stem.split(".", 1)[0] or CUSTOM


def hub_dataset(selection: BenchmarkSelection) -> tuple[str, str] | None:
    """(repo, revision) when the selection's problems are read from the hub, else None (a file or package)."""
    layout = _layout(selection)
    return (layout.hub[0], layout.hub[3]) if layout.hub is not None else None


def load_problems(selection: BenchmarkSelection) -> list[Problem]:
    """The selection's problems, in file order, cut to `limit` (after the registered count is checked)."""
    layout = _layout(selection)
    if layout.uri is not None:
        source = layout.uri
        rows = pinned_rows(layout.uri, layout.pinned) if layout.pinned is not None else jsonl_rows(layout.uri)
    else:
        assert layout.hub is not None
        source, rows = f"hf://datasets/{layout.hub[0]}", _hub_rows(*layout.hub)
    problems = [_normalise(row, where, layout) for where, row in rows]
    seen: dict[str, int] = {}
    for i, problem in enumerate(problems):
        if problem.id in seen:
            raise InvalidInputError(f"{source} record {i + 1}: id {problem.id!r} repeats record {seen[problem.id] + 1}")
        seen[problem.id] = i
    if not problems:
        raise InvalidInputError(f"{source}: no problems")
    if layout.size is not None and len(problems) != layout.size:
        raise InvalidInputError(
            f"{source}: {len(problems)} problems, but {selection.name} has {layout.size}; this is not the"
            " benchmark the registry declares (use name: custom for another set of problems)"
        )
    problems = problems[: selection.limit]
    logger.info("loaded benchmark", extra={"benchmark": selection.name, "source": source, "problems": len(problems)})
    return problems


def pinned_rows(uri: str, pinned: PinnedFile) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The rows of a JSON-lines file that pass the row filter, refused (InvalidInputError) unless its sha256 is
    the pinned one; `uri` is the pinned URL or a mounted copy of that file."""
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{uri}: file not found ({exc})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != pinned.sha256:
        raise InvalidInputError(
            f"{uri}: sha256 {actual}, but the registry pins {pinned.sha256} ({pinned.url}); the file changed or"
            " is another file: refusing to score against it"
        )
    for where, row in numbered_rows(data.decode("utf-8").splitlines(), uri):
        if all(str(row.get(column)) == value for column, value in pinned.where):
            yield where, row


def _layout(selection: BenchmarkSelection) -> _Layout:
    if selection.name == CUSTOM:
        fields = selection.fields or CustomFields()
        return _Layout(
            uri=selection.uri,
            hub=None,
            pinned=None,
            size=None,
            problem_field=fields.problem,
            answer_field=fields.answer,
            id_field=fields.id,
            answer_kind=selection.answer_kind or "latex",
            answer_format=selection.answer_format or "plain",
        )
    try:
        bench = get_benchmark(selection.name)
    except KeyError as exc:
        raise InvalidSpecError(f"spec.benchmarks: {exc.args[0]}") from None
    uri = selection.uri
    if uri is None and bench.package_path is not None and storage.is_available(bench.package_path):
        uri = bench.package_path
    if uri is None and bench.file is not None:
        uri = bench.file.url
    hub = None
    if uri is None:
        assert bench.hub is not None  # a benchmark declares a hub dataset or a file
        hub = (bench.hub.repo, bench.hub.config, bench.hub.split, selection.revision or bench.hub.revision)
    return _Layout(
        uri=uri,
        hub=hub,
        pinned=bench.file,
        size=bench.size,
        problem_field=bench.problem_field,
        answer_field=bench.answer_field,
        id_field=bench.id_field,
        answer_kind=selection.answer_kind or bench.answer_kind,
        answer_format=selection.answer_format or bench.answer_format,
    )


def _hub_rows(repo: str, config: str | None, split: str, revision: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    from datasets import load_dataset  # imported here: only hub runs need it, and it is slow to import

    dataset = load_dataset(repo, config, split=split, revision=revision, token=os.environ.get(HF_TOKEN_ENV))
    for number, row in enumerate(dataset, start=1):
        yield f"{repo}@{revision} split {split} row {number}", row


def _normalise(row: Mapping[str, Any], where: str, layout: _Layout) -> Problem:
    values = {}
    for role, name in (("problem", layout.problem_field), ("answer", layout.answer_field)):
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            found = ", ".join(sorted(row)) or "none"
            raise InvalidInputError(f'{where}: field "{name}" ({role}) missing or empty; fields found: {found}')
        values[role] = str(value)
    answer = _gold_answer(values["answer"], layout.answer_format, where, layout.answer_field)
    if layout.id_field is None:
        problem_id = where.rsplit(" ", 1)[-1]  # the line/row number: stable while the file is unchanged
    elif row.get(layout.id_field) is None:
        raise InvalidInputError(f'{where}: field "{layout.id_field}" (id) missing')
    else:
        problem_id = str(row[layout.id_field])
    return Problem(id=problem_id, problem=values["problem"], answer=answer, answer_kind=layout.answer_kind)


def _gold_answer(value: str, answer_format: AnswerFormat, where: str, field: str) -> str:
    answer = read_answer(value, answer_format)
    if answer is None:
        marker = {"gsm8k": 'no "####" final answer', "boxed": "no \\boxed{} answer"}.get(answer_format, "no answer")
        raise InvalidInputError(f'{where}: field "{field}" has {marker} (answerFormat {answer_format})')
    return answer
