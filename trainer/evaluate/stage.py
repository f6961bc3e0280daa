"""The evaluate stage: sample every benchmark problem k times, grade, score, and report.

Per benchmark: load the problems, read the per-sample records already at `<output>/samples/<bench>.jsonl`
(a restarted pod skips what is recorded), generate the missing samples, grade and append each batch as it
finishes, then score all records (old and new) into `<output>/scores.json`. The return value is the
termination-message summary.

Before anything loads, the model and any hub benchmark are pinned (`cotlab.trainer.core.revisions`): a hub model
at the commit its revision names now, a local model by the digest of its files, refused when a FineTuneRun's
recorded digest (`inputs.modelDigest`) no longer matches them. `scores.json` records the pinned inputs, the engine
(spec, library version, batch invariance), prompt, sampling, metrics and vote beside the scores; the samples'
fingerprint holds the engine too, so a resumed run never mixes samples of two engine settings.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from cotlab.api.evalrun import BenchmarkScore, EvalRunSpec, MetricValue, ScoresFile
from cotlab.api.evalrun import Engine as EngineSpec
from cotlab.api.metrics import parse_metric
from cotlab.api.models import ModelSource, PinnedInput
from cotlab.api.podcontract import PodSpecFile, emit_progress
from cotlab.trainer.core import storage
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.core.revisions import HubResolver, check_digest, hub_commit, pin_benchmark, pin_model
from cotlab.trainer.generation import Engine, GeneratedSample, SampleRequest, check_sampling, load_engine
from cotlab.trainer.generation.benchmarks import Problem, benchmark_key, hub_dataset, load_problems
from cotlab.trainer.generation.prompting import render_prompt, with_turn_end
from cotlab.trainer.grading.grader import Grader, extract_answer
from cotlab.trainer.grading.metrics import SampleRecord, summarize

logger = logging.getLogger(__name__)

EngineLoader = Callable[[EvalRunSpec, ModelSource], Engine]
SAMPLES_DIR = "samples"
SCORES_FILE = "scores.json"


def problems_digest(problems: Sequence[Problem]) -> str:
    """sha256 over the problems and gold answers, in order: what was scored, independent of where it came from."""
    canonical = json.dumps([[p.id, p.problem, p.answer, p.answer_kind] for p in problems], separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def engine_settings(spec: EngineSpec) -> dict[str, Any]:
    """The engine as it ran: its spec, its library's version, and whether vLLM ran batch invariant."""
    library = "vllm" if spec.name == "vllm" else "transformers"
    try:
        version: str | None = importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        version = None
    batch_invariant = spec.name == "vllm" and spec.batch_invariant
    return {**spec.to_wire(), "batchInvariant": batch_invariant, "library": library, "version": version}


def generation_fingerprint(
    spec: EvalRunSpec, source: ModelSource, problems: Sequence[Problem], *, model_digest: str | None = None
) -> dict[str, Any]:
    """What the recorded samples depend on; a resumed run must match it, or old and new samples would mix.

    The model's digest counts, not only its URI: a FineTuneRun trained again writes to the same place. The engine's
    settings count too (tensor parallelism, dtype and batch invariance change what a seed draws)."""
    return {
        "model": {**source.to_wire(), "digest": model_digest},
        "prompt": spec.prompt.to_wire(),
        "sampling": spec.sampling.to_wire(),
        "engine": spec.engine.to_wire(),
        "problems": problems_digest(problems),
    }


class SampleLine(BaseModel):
    """One line of a per-sample JSONL file (snake_case, like the metrics' `SampleRecord`)."""

    problem_id: str
    sample_index: int
    seed: int
    text: str
    answer: str | None
    correct: bool
    rule: str
    output_tokens: int
    finish_reason: str | None
    stop_reason: int | str | None = None  # the token id (e.g. <|im_end|>'s) or stop string that ended it
    seconds: float  # wall time since the engine last handed back samples (shared by the samples it hands back)


@dataclass(frozen=True)
class _Pending:
    """A run of missing samples of one problem: sample indices `first .. first + count - 1`."""

    problem: Problem
    position: int
    first: int
    count: int


def sample_seed(base: int, position: int, samples: int, index: int) -> int:
    """The seed of sample `index` of the problem at `position`: unique per (problem, sample) and stable on resume."""
    return base + position * samples + index


def read_done(uri: str, problems: Sequence[Problem], samples: int) -> dict[tuple[str, int], SampleLine]:
    """Records already written for these problems; a half-written line (a kill mid-write) is skipped."""
    if not storage.exists(uri):
        return {}
    wanted = {p.id for p in problems}
    done: dict[tuple[str, int], SampleLine] = {}
    for number, line in enumerate(storage.iter_lines(uri), start=1):
        if not line.strip():
            continue
        try:
            record = SampleLine.model_validate_json(line)
        except ValidationError:
            logger.warning("skipping unreadable sample record", extra={"file": uri, "line": number})
            continue
        key = (record.problem_id, record.sample_index)
        # Records of problems outside the current selection (a smaller limit) are kept but not scored.
        if record.problem_id in wanted and record.sample_index < samples and key not in done:
            done[key] = record
    return done


def pending_runs(problems: Sequence[Problem], done: Collection[tuple[str, int]], samples: int) -> list[_Pending]:
    """The missing samples as runs of consecutive indices, so each run is one engine request."""
    recorded = set(done)
    runs = []
    for position, problem in enumerate(problems):
        index = 0
        while index < samples:
            if (problem.id, index) in recorded:
                index += 1
                continue
            first = index
            while index < samples and (problem.id, index) not in recorded:
                index += 1
            runs.append(_Pending(problem, position, first, index - first))
    return runs


class _Evaluation:
    """One EvalRun's state across benchmarks: the spec, the output root, a lazily started engine, a grader."""

    def __init__(
        self,
        spec: EvalRunSpec,
        source: ModelSource,
        output: str,
        loader: EngineLoader,
        grader: Grader,
        *,
        model_digest: str | None = None,
    ):
        self.spec, self.source, self.output, self.loader, self.grader = spec, source, output, loader, grader
        self.model_digest = model_digest
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        # Started only when something is missing: a pod restarted after the last sample skips model loading.
        if self._engine is None:
            self._engine = self.loader(self.spec, self.source)
        return self._engine

    def run_benchmark(self, key: str, problems: list[Problem]) -> BenchmarkScore:
        """Generate what is missing for one benchmark, recording each batch, then score every record."""
        sampling = self.spec.sampling
        uri = storage.join(self.output, SAMPLES_DIR, f"{key}.jsonl")
        self._check_fingerprint(key, problems)
        done = read_done(uri, problems, sampling.samples)
        total = len(problems) * sampling.samples
        runs = pending_runs(problems, set(done), sampling.samples)
        logger.info("benchmark", extra={"benchmark": key, "recorded": len(done), "total": total})
        emit_progress(benchmark=key, done=len(done), total=total)
        if runs:
            tokenizer = self.engine.tokenizer
            prompts = {p.id: render_prompt(p.problem, self.spec.prompt, tokenizer) for p in {r.problem for r in runs}}
            requests = [
                SampleRequest(
                    prompt=prompts[r.problem.id],
                    samples=r.count,
                    seed=sample_seed(sampling.seed, r.position, sampling.samples, r.first),
                )
                for r in runs
            ]
            started = time.monotonic()
            # The model stops on its EOS ids (the engine's) and, for a chat prompt, on the turn's end token.
            for batch in self.engine.generate(requests, with_turn_end(sampling, self.spec.prompt, tokenizer)):
                seconds = time.monotonic() - started
                lines = self._grade(batch, runs, seconds)
                storage.append_jsonl(uri, [line.model_dump() for line in lines])
                done.update({(line.problem_id, line.sample_index): line for line in lines})
                emit_progress(benchmark=key, done=len(done), total=total)
                started = time.monotonic()
        missing = total - len(done)
        if missing:
            raise RuntimeError(f"{key}: the engine left {missing} samples ungenerated")
        return self._score(key, problems, done)

    def _check_fingerprint(self, key: str, problems: list[Problem]) -> None:
        """Refuse to resume samples generated under another model, prompt, sampling, engine or problem set.

        Only samples already on disk can mix: an attempt that crashed before its first sample (a model that would
        not load, replaced before the retry) leaves a fingerprint and no samples, and the retry writes its own."""
        uri = storage.join(self.output, SAMPLES_DIR, f"{key}.fingerprint.json")
        samples = storage.join(self.output, SAMPLES_DIR, f"{key}.jsonl")
        want = generation_fingerprint(self.spec, self.source, problems, model_digest=self.model_digest)
        recorded = storage.exists(samples) and any(line.strip() for line in storage.iter_lines(samples))
        if recorded and storage.exists(uri):
            have = json.loads(storage.read_text(uri))
            changed = sorted(k for k in want if have.get(k) != want[k])
            if changed:
                raise InvalidSpecError(
                    f"{uri}: the samples there were generated with a different {', '.join(changed)}; "
                    "write to a new output URI (or delete the old samples) instead of mixing them"
                )
        else:
            storage.write_text(uri, _dumps(want))

    def _grade(self, batch: list[GeneratedSample], runs: list[_Pending], seconds: float) -> list[SampleLine]:
        answers = [extract_answer(s.completion.text) for s in batch]
        kind = runs[batch[0].request].problem.answer_kind if batch else "latex"
        # The Grader puts gold first (Math-Verify's verify is not symmetric).
        grades = self.grader.grade(
            [(a, runs[s.request].problem.answer) for a, s in zip(answers, batch, strict=True)], answer_kind=kind
        )
        lines = []
        for sample, grade in zip(batch, grades, strict=True):
            run = runs[sample.request]
            index = run.first + sample.offset
            lines.append(
                SampleLine(
                    problem_id=run.problem.id,
                    sample_index=index,
                    seed=sample_seed(self.spec.sampling.seed, run.position, self.spec.sampling.samples, index),
                    text=sample.completion.text,
                    answer=grade.predicted,
                    correct=grade.correct,
                    rule=grade.rule,
                    output_tokens=sample.completion.output_tokens,
                    finish_reason=sample.completion.finish_reason,
                    stop_reason=sample.completion.stop_reason,
                    seconds=round(seconds, 3),
                )
            )
        return lines

    def _score(self, key: str, problems: list[Problem], done: dict[tuple[str, int], SampleLine]) -> BenchmarkScore:
        samples = self.spec.sampling.samples
        records = [
            SampleRecord(
                problem_id=line.problem_id,
                sample_index=line.sample_index,
                answer=line.answer,
                correct=line.correct,
                finish_reason=line.finish_reason,
                output_tokens=line.output_tokens,
                rule=line.rule,
            )
            for p in problems
            for line in (done[(p.id, i)] for i in range(samples))
        ]
        metrics = [(name, *parse_metric(name)) for name in self.spec.metrics]
        ks = sorted({k for _, estimator, k in metrics if estimator == "pass"} - {1})
        majority_ks = sorted({k for _, estimator, k in metrics if estimator == "maj"})
        kind = problems[0].answer_kind

        def equivalent(pairs: Sequence[tuple[str, str]]) -> list[bool]:
            # One batch through the grading pool; the first of each pair goes in the gold position.
            return [grade.correct for grade in self.grader.grade([(b, a) for a, b in pairs], answer_kind=kind)]

        summary = summarize(
            key,
            records,
            ks=ks,
            majority_ks=majority_ks,
            majority_rule=self.spec.majority_vote,
            equivalent=equivalent,
        )
        scores = {}
        for name, estimator, k in metrics:
            if estimator == "maj":
                estimate = summary.majority_at_k[k]
            else:
                estimate = summary.pass_at_1 if k == 1 else summary.pass_at_k[k]
            scores[name] = MetricValue(value=estimate.value, stderr=estimate.stderr)
        return BenchmarkScore(
            problems=summary.num_problems,
            problems_digest=problems_digest(problems),
            samples_per_problem=summary.samples_per_problem,
            metrics=scores,
            mean_output_tokens=summary.mean_output_tokens,
            truncation_rate=summary.truncation_rate,
            no_answer_rate=summary.no_answer_rate,
            grader_timeouts=summary.grader_timeouts,
        )


def _default_loader(spec: EvalRunSpec, source: ModelSource) -> Engine:
    return load_engine(spec.engine, source, spec.sampling)


def pinned_inputs(
    spec: EvalRunSpec, source: ModelSource, *, model_digest: str | None, resolve: HubResolver
) -> tuple[ModelSource, dict[str, Any], list[PinnedInput]]:
    """The model at its commit (checked against `model_digest` when given), the selections by benchmark key with
    hub benchmarks at their commits, and the records of both (the model first)."""
    model = pin_model(source, "model", resolve=resolve)
    check_digest(model.record, model_digest, what="inputs.model")
    selections: dict[str, Any] = {}
    pinned = [model.record]
    for selection in spec.benchmarks:
        key = benchmark_key(selection)
        if key in selections:
            raise InvalidSpecError(f"spec.benchmarks: {key!r} appears twice; give custom files distinct names")
        hub = hub_dataset(selection)
        if hub is not None:
            selection, record = pin_benchmark(selection, *hub, resolve=resolve)
            pinned.append(record)
        selections[key] = selection
    return model.source, selections, pinned


def run_evaluate(
    pod: PodSpecFile, *, loader: EngineLoader | None = None, resolve: HubResolver = hub_commit
) -> dict[str, Any]:
    """Run the evaluate stage for `pod` and return the termination summary (scores, output URIs, pinned inputs)."""
    try:
        spec = EvalRunSpec.model_validate(pod.spec)
    except ValidationError as exc:
        raise InvalidSpecError(f"spec: {exc}") from None
    source = pod.inputs.model or spec.model.source
    if source is None:
        raise InvalidSpecError("inputs.model: the operator did not resolve spec.model.fineTuneRunRef to a model")
    check_sampling(spec.sampling)
    source, selections, pinned = pinned_inputs(spec, source, model_digest=pod.inputs.model_digest, resolve=resolve)
    # Load every benchmark before the model: bad data fails in seconds, not after minutes of model loading.
    problems = {key: load_problems(selection) for key, selection in selections.items()}

    scores_uri = storage.join(pod.output, SCORES_FILE)
    record = ScoresFile(
        model=pinned[0],
        pinned=pinned,
        engine=engine_settings(spec.engine),
        prompt=spec.prompt,
        sampling=spec.sampling,
        metrics=list(spec.metrics),
        majority_vote=spec.majority_vote,
    )
    # The samples depend on the model's content: its digest (local) or commit (hub, in `source.revision`).
    digest = pinned[0].digest or pod.inputs.model_digest
    with Grader(timeout_s=spec.grader_timeout_seconds) as grader:
        evaluation = _Evaluation(spec, source, pod.output, loader or _default_loader, grader, model_digest=digest)
        for key, benchmark_problems in problems.items():
            record.scores[key] = evaluation.run_benchmark(key, benchmark_problems)
            storage.write_text(scores_uri, _dumps(record.to_wire()))
            logger.info("scored", extra={"benchmark": key, "metrics": record.scores[key].to_wire()["metrics"]})
    return {
        "stage": "evaluate",
        "outputs": {"samples": storage.join(pod.output, SAMPLES_DIR), "scores": scores_uri},
        "scores": {name: score.to_wire() for name, score in record.scores.items()},
        "pinned": [p.to_wire() for p in pinned],
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"
