"""The curate stage: load traces, validate every record, filter, select, format, and write the dataset artifact.

Writes `<output>/traces.jsonl` (one training example per line, in selection order, byte-for-byte reproducible
for a spec and its source) and `<output>/manifest.json` (digest, count, stats, the spec, and the hub dataset,
teacher and tokenizer pinned to the commits they were loaded at: `cotlab.trainer.core.revisions`). The digest is the
sha256 of traces.jsonl: the fine-tune stage refuses a file that no longer matches it. The return value is the
termination-message summary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from cotlab.api.models import PinnedInput
from cotlab.api.podcontract import PodSpecFile, emit_progress
from cotlab.api.tracedataset import TraceDatasetSpec, TraceStats
from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidInputError, InvalidSpecError
from cotlab.trainer.core.revisions import HubResolver, hub_commit, pin_dataset, pin_model
from cotlab.trainer.curate.format import format_trace, trace_stats, training_example
from cotlab.trainer.curate.records import TraceRecord, to_records
from cotlab.trainer.curate.selection import (
    Candidate,
    choose_problems,
    of_problems,
    passes_filters,
    select_traces,
)
from cotlab.trainer.curate.sources import SourceContext, TeacherLoader, field_mapping, load_rows, source_kind
from cotlab.trainer.curate.sources.generate import load_teacher
from cotlab.trainer.curate.tokens import TokenizerLoader, count_tokens, load_tokenizer
from cotlab.trainer.grading.grader import Grader, extract_answer

logger = logging.getLogger(__name__)

TRACES_FILE = "traces.jsonl"
MANIFEST_FILE = "manifest.json"
MAX_REPORTED = 100
"""Unanswered traces named in the log and manifest; the count is always complete."""


def parse_spec(pod: PodSpecFile) -> TraceDatasetSpec:
    """The TraceDataset spec, refused (InvalidSpecError) when invalid or when filters need what is not set."""
    try:
        spec = TraceDatasetSpec.model_validate(pod.spec)
    except ValidationError as exc:
        raise InvalidSpecError(f"spec: {exc}") from None
    filters = spec.select.filters
    if (filters.min_tokens is not None or filters.max_tokens is not None) and spec.tokenizer is None:
        raise InvalidSpecError(
            "spec.select.filters: minTokens/maxTokens count tokens, so spec.tokenizer must name a tokenizer"
            " (the fine-tuned model's); set it or drop the token filters"
        )
    problems = spec.select.problems
    if problems is not None and problems.with_stages and spec.fields.stage is None:
        raise InvalidSpecError(
            "spec.select.problems.withStages: a trace's stage is read from fields.stage, which is unset; name the"
            " stage column or drop withStages"
        )
    if spec.select.strategy == "hardest" and spec.source.generate is None and spec.fields.difficulty is None:
        raise InvalidSpecError(
            "spec.fields.difficulty: strategy hardest ranks traces by difficulty; name the difficulty column"
        )
    return spec


def pinned_spec(spec: TraceDatasetSpec, resolve: HubResolver) -> tuple[TraceDatasetSpec, list[PinnedInput]]:
    """The spec with its hub dataset, teacher and tokenizer at the commits their revisions name now, and the
    records of what each is (a local dataset directory or teacher by its digest)."""
    pinned: list[PinnedInput] = []
    source = spec.source
    if source.huggingface is not None:
        dataset, record = pin_dataset(source.huggingface, resolve=resolve)
        source, pinned = source.model_copy(update={"huggingface": dataset}), [record]
    if source.generate is not None:
        teacher = pin_model(source.generate.teacher, "teacher", resolve=resolve)
        generate = source.generate.model_copy(update={"teacher": teacher.source})
        source, pinned = source.model_copy(update={"generate": generate}), [teacher.record]
    tokenizer = spec.tokenizer
    if tokenizer is not None:
        # A local tokenizer is the model directory it comes from: its uri is recorded, not a digest of the weights.
        found = pin_model(tokenizer, "tokenizer", resolve=resolve, digest=False)
        tokenizer, pinned = found.source, [*pinned, found.record]
    return spec.model_copy(update={"source": source, "tokenizer": tokenizer}), pinned


def run_curate(
    pod: PodSpecFile,
    *,
    teacher_loader: TeacherLoader | None = None,
    tokenizer_loader: TokenizerLoader | None = None,
    resolve: HubResolver = hub_commit,
) -> dict[str, Any]:
    """Run the curate stage for `pod` and return the termination summary (artifact, count, stats, pinned inputs)."""
    spec, pinned = pinned_spec(parse_spec(pod), resolve)
    fields = field_mapping(spec)
    with Grader() as grader:
        context = SourceContext(grader=grader, teacher_loader=teacher_loader or load_teacher)
        # Every record is read and validated before the tokenizer loads: bad data fails in seconds.
        loaded = to_records(load_rows(spec, context), fields, diversity_field=spec.select.diversity_field)
        records = loaded.records
        if loaded.unanswered:
            logger.warning(
                "set aside traces without an answer",
                extra={"count": len(loaded.unanswered), "where": loaded.unanswered[:MAX_REPORTED]},
            )
        if not records:
            raise InvalidInputError(f"spec.source.{source_kind(spec)}: the source has no traces with an answer")
        emit_progress(loaded=len(records), unanswered=len(loaded.unanswered))
        if spec.select.problems is not None:
            # The problems are fixed first, from every loaded trace, so datasets that keep different stages of
            # the same source still cover the same problems.
            records = of_problems(records, choose_problems(records, spec.select.problems))
        tokenizer = (tokenizer_loader or load_tokenizer)(spec.tokenizer) if spec.tokenizer is not None else None
        pool = _candidates(records, spec, tokenizer)
        if spec.select.filters.correct_only:
            pool = _graded(pool, grader)
        kept = [c for c in pool if passes_filters(c, spec.select.filters)]
        logger.info("filtered", extra={"loaded": len(records), "kept": len(kept)})
        if not kept:
            # An empty dataset would only fail later, in fine-tuning, far from its cause.
            raise InvalidInputError(f"no trace passed spec.select.filters ({len(records)} loaded); loosen the filters")
        selected = select_traces(kept, spec.select)
        # Answers read from the solutions themselves always match, so a rate would say nothing.
        independent_answers = fields.answer is not None
        if independent_answers and not spec.select.filters.correct_only:
            selected = _graded(selected, grader)
    stats = trace_stats(selected, graded=independent_answers, fmt=spec.format)
    if stats.answers_appended:
        logger.info("answerInBoxed gave traces a final-answer line", extra={"count": stats.answers_appended})
    summary = write_dataset(pod.output, spec, selected, stats, unanswered=loaded.unanswered, pinned=pinned)
    emit_progress(loaded=len(records), kept=len(kept), selected=len(selected))
    return summary


def _candidates(records: Sequence[TraceRecord], spec: TraceDatasetSpec, tokenizer: Any) -> list[Candidate]:
    """Records with their formatted traces; the stage filter runs first so only the rest are tokenized."""
    stages = spec.select.filters.stages
    records = [r for r in records if not stages or r.stage in stages]
    traces = [format_trace(r, spec.format) for r in records]
    tokens: Sequence[int | None] = count_tokens(tokenizer, traces) if tokenizer is not None else [None] * len(traces)
    return [Candidate(r, t, n) for r, t, n in zip(records, traces, tokens, strict=True)]


def _graded(candidates: Sequence[Candidate], grader: Grader) -> list[Candidate]:
    """Candidates with `correct` set: the solution's last boxed answer against the record's answer (gold first)."""
    grades = grader.grade([(extract_answer(c.record.solution), c.record.answer) for c in candidates])
    return [dataclasses.replace(c, correct=g.correct) for c, g in zip(candidates, grades, strict=True)]


def write_dataset(
    output: str,
    spec: TraceDatasetSpec,
    selected: Sequence[Candidate],
    stats: TraceStats,
    *,
    unanswered: Sequence[str] = (),
    pinned: Sequence[PinnedInput] = (),
) -> dict[str, Any]:
    """Write traces.jsonl and manifest.json under `output`; returns the summary naming the artifact."""
    lines = [training_example(c, spec.format).model_dump_json(exclude_none=True) for c in selected]
    text = "".join(line + "\n" for line in lines)
    digest = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    uri = storage.join(output, TRACES_FILE)
    storage.write_text(uri, text)
    manifest = {
        "artifact": {"uri": uri, "digest": digest},
        "count": len(selected),
        "ids": [c.record.id for c in selected],
        "problems": [c.record.problem_id for c in selected],
        "stats": stats.to_wire(),
        "spec": spec.to_wire(),
        "unanswered": {"count": len(unanswered), "where": list(unanswered[:MAX_REPORTED])},
        "pinned": [p.to_wire() for p in pinned],
    }
    storage.write_text(storage.join(output, MANIFEST_FILE), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    logger.info("wrote dataset", extra={"uri": uri, "count": len(selected), "digest": digest})
    return {
        "stage": "curate",
        "artifact": manifest["artifact"],
        "count": len(selected),
        "stats": manifest["stats"],
        "pinned": manifest["pinned"],
    }
