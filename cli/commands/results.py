"""`cotctl results`: the score table of finished EvalRuns, and with --samples a page of their per-sample records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cotlab.api import EvalRun, Phase, Resource
from cotlab.api.evalrun import BenchmarkScore

from ..analysis.artifacts import ArtifactStore
from ..analysis.evaluations import gold_answers, read_records, scores_of
from ..cluster.kube import Target
from ..resources.completion import complete_evalrun
from ..resources.inventory import Inventory, open_inventory
from ..resources.refs import parse_ref
from ..terminal.errors import CliError, UsageError, reported
from ..terminal.options import (
    AllNamespacesOpt,
    ArtifactsRootOpt,
    ContextOpt,
    KubeconfigOpt,
    LocalOpt,
    NamespaceOpt,
    OutputFormat,
    OutputOpt,
    RequestTimeoutOpt,
    RootOpt,
    SelectorOpt,
)
from ..terminal.output import note, render
from ..terminal.views import View

CELL = 40  # characters of an answer shown in a table cell; -o json has them whole


def score_rows(
    resources: list[Resource], scores: Mapping[str, Mapping[str, BenchmarkScore]] | None = None
) -> list[dict[str, Any]]:
    """One row per (EvalRun, benchmark): each metric as a percentage with its standard error.

    `scores` (EvalRun name -> benchmark -> score) replaces status.scores where given (read from the scores file)."""
    rows = []
    for run in resources:
        if not isinstance(run, EvalRun) or run.status is None or run.status.phase != Phase.SUCCEEDED:
            continue  # a failed or running re-run's old scores are not its results
        found = (scores or {}).get(run.metadata.name, run.status.scores)
        for benchmark, score in found.items():
            row: dict[str, Any] = {"evalrun": run.metadata.name, "benchmark": benchmark, "problems": score.problems}
            for name, metric in score.metrics.items():
                stderr = f" ± {100 * metric.stderr:.1f}" if metric.stderr is not None else ""
                row[name] = f"{100 * metric.value:.1f}{stderr}"
            row["no answer"] = f"{100 * (score.no_answer_rate or 0):.0f}%"
            row["truncated"] = f"{100 * (score.truncation_rate or 0):.0f}%"
            rows.append(row)
    return rows


class SampleRow(View):
    """One per-sample record as `cotctl results --samples -o json` prints it."""

    benchmark: str
    problem_id: str
    sample_index: int
    answer: str | None
    gold: str | None
    correct: bool
    output_tokens: int
    finish_reason: str | None
    rule: str
    problem: str | None = None
    text: str


def _cut(value: str | None) -> str:
    if value is None:
        return ""
    flat = value.replace("\n", " ")
    return flat if len(flat) <= CELL else flat[: CELL - 1] + "…"


def sample_table(rows: list[SampleRow]) -> list[dict[str, Any]]:
    return [
        {
            "benchmark": r.benchmark,
            "problem": r.problem_id,
            "sample": r.sample_index,
            "answer": _cut(r.answer),
            "gold": _cut(r.gold),
            "correct": "yes" if r.correct else "no",
            "tokens": r.output_tokens,
            "finish": r.finish_reason or "",
        }
        for r in rows
    ]


def _runs(inventory: Inventory, names: list[str], selector: str | None) -> list[EvalRun]:
    if names:
        items = [inventory.get("EvalRun", parse_ref(n, default_kind="EvalRun").name or n) for n in names]
    else:
        items = inventory.list(("EvalRun",), selector)
    return [i.resource for i in items if isinstance(i.resource, EvalRun)]


def _sample_rows(run: EvalRun, benchmarks: list[str], store: ArtifactStore, wrong: bool) -> list[SampleRow]:
    rows = []
    for benchmark in benchmarks:
        gold = gold_answers(run, benchmark, store)
        records = read_records(run, benchmark, store)
        order = {p: i for i, p in enumerate(gold)} or {}
        for record in records:
            order.setdefault(record.problem_id, len(order))
        for record in sorted(records, key=lambda r: (order[r.problem_id], r.sample_index)):
            if wrong and record.correct:
                continue
            problem = gold.get(record.problem_id)
            rows.append(
                SampleRow(
                    benchmark=benchmark,
                    problem_id=record.problem_id,
                    sample_index=record.sample_index,
                    answer=record.answer,
                    gold=problem.answer if problem else None,
                    correct=record.correct,
                    output_tokens=record.output_tokens,
                    finish_reason=record.finish_reason,
                    rule=record.rule,
                    problem=problem.problem if problem else None,
                    text=record.text,
                )
            )
    return rows


def results(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="EvalRun names; every EvalRun if omitted.", autocompletion=complete_evalrun),
    ] = None,
    local: LocalOpt = False,
    root: RootOpt = None,
    namespace: NamespaceOpt = None,
    all_namespaces: AllNamespacesOpt = False,
    selector: SelectorOpt = None,
    samples: Annotated[bool, typer.Option("--samples", help="Page through the per-sample records of one run.")] = False,
    benchmark: Annotated[str | None, typer.Option("--benchmark", help="With --samples: only this benchmark.")] = None,
    offset: Annotated[int, typer.Option("--offset", help="With --samples: records to skip.", min=0)] = 0,
    limit: Annotated[int, typer.Option("--limit", help="With --samples: records per page.", min=1)] = 20,
    wrong: Annotated[bool, typer.Option("--wrong", help="With --samples: only incorrect samples.")] = False,
    artifacts_root: ArtifactsRootOpt = None,
    output: OutputOpt = OutputFormat.table,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """Show the scores of finished EvalRuns (pass@k, maj@k with standard errors), or page through their samples."""
    with reported():
        names = names or []
        if names and selector:
            raise UsageError("give EvalRun names or --selector, not both")
        target = Target(kubeconfig, context, namespace, all_namespaces, request_timeout)
        inventory = open_inventory(local=local, root=root, target=target)
        store = ArtifactStore(artifacts_root)
        if samples:
            if len(names) != 1:
                raise UsageError("--samples reads one EvalRun: name it, e.g. cotctl results my-eval --samples")
            _show_samples(_runs(inventory, names, None)[0], benchmark, offset, limit, wrong, store, output)
            return
        runs = _runs(inventory, names, selector)
        scores: dict[str, dict[str, BenchmarkScore]] = {}
        for run in runs:
            if run.status is None or run.status.phase != Phase.SUCCEEDED:
                if names:
                    note(f"evalrun/{run.metadata.name} is {run.status.phase if run.status else 'Pending'}: no scores")
                continue
            if not run.status.scores:
                scores[run.metadata.name] = scores_of(run, store)  # the summary was cut: the scores file has them
        data = {
            r.metadata.name: {k: v.to_wire() for k, v in scores.get(r.metadata.name, r.status.scores).items()}
            for r in runs
            if r.status is not None and r.status.phase == Phase.SUCCEEDED
        }
        rows = score_rows(list(runs), scores)
        if not rows and output is OutputFormat.table:
            hint = (
                "run one with: cotctl run --local -f manifests/examples/quickstart.yaml"
                if local
                else "see where they are with: cotctl status evalrun"
            )
            raise CliError("no scored EvalRuns yet", hint)
        render(data, rows, output)


def _show_samples(
    run: EvalRun,
    benchmark: str | None,
    offset: int,
    limit: int,
    wrong: bool,
    store: ArtifactStore,
    output: OutputFormat,
) -> None:
    from cotlab.trainer.generation.benchmarks import benchmark_key

    keys = [benchmark_key(s) for s in run.spec.benchmarks]
    if benchmark is not None and benchmark not in keys:
        raise UsageError(f"--benchmark: {run.metadata.name} has no benchmark {benchmark!r}; it has {', '.join(keys)}")
    rows = _sample_rows(run, [benchmark] if benchmark else keys, store, wrong)
    page = rows[offset : offset + limit]
    render({"total": len(rows), "offset": offset, "items": [r.to_wire() for r in page]}, sample_table(page), output)
    if output is OutputFormat.table:
        shown = f"{offset + 1}-{offset + len(page)}" if page else "none"
        more = ""
        if offset + len(page) < len(rows):
            more = f"; next page: cotctl results {run.metadata.name} --samples --offset {offset + len(page)}"
        note(f"samples {shown} of {len(rows)}{more}")
