"""The models accept every example and reject each invalid manifest with an error naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from cotlab.api import EvalRun, FineTuneRun, TraceDataset
from cotlab.api.validation import format_loc, parse_resource, validate_document
from tests.conftest import example_documents, invalid_cases

EXAMPLES = example_documents()
INVALID = invalid_cases()


@pytest.mark.parametrize("doc", [d for _, d in EXAMPLES], ids=[i for i, _ in EXAMPLES])
def test_every_example_is_valid(doc: dict[str, Any]) -> None:
    assert validate_document(doc, "example") == []


STUDY_TYPES = ["human_stage1", "human_stage2", "human_stage3", "human_stage4", "qwq_32b_preview"]


def _study() -> list[Any]:
    return [parse_resource(doc) for name, doc in EXAMPLES if name.startswith("study/")]


def test_examples_cover_the_study() -> None:
    resources = _study()
    datasets = {r.metadata.name: r for r in resources if isinstance(r, TraceDataset) and r.spec.source.huggingface}
    # Five 50-trace arms, one trace type each, on the same 50 problems (the published human-vs-QwQ comparison), and
    # the headline's 20 QwQ traces.
    assert sorted(datasets) == ["human-stage1-50", "human-stage2-50", "human-stage3-50", "human-stage4-50", "qwq-20",
                                "qwq-50"]  # fmt: skip
    fifty = [d for d in datasets.values() if d.metadata.name.endswith("-50")]
    assert sorted(s for d in fifty for s in d.spec.select.filters.stages) == STUDY_TYPES
    assert datasets["qwq-20"].spec.select.filters.stages == ["qwq_32b_preview"]
    for d in datasets.values():
        assert d.spec.source.huggingface is not None
        assert d.spec.source.huggingface.where["solution_type"] == STUDY_TYPES  # every type loaded, to fix problems
        assert d.spec.select.count is None and d.spec.select.problems is not None
        want = 20 if d.metadata.name == "qwq-20" else 50
        assert (d.spec.select.problems.count, d.spec.select.problems.with_stages) == (want, STUDY_TYPES)
        assert d.spec.select.problems.seed == fifty[0].spec.select.problems.seed
        assert d.spec.format.prompt.system == ""  # an explicit empty system turn, not Qwen's default text
        assert d.spec.format.answer_in_boxed and d.spec.tokenizer is not None
    runs = [r for r in resources if isinstance(r, FineTuneRun)]
    assert {r.spec.base_model.hub for r in runs} == {"Qwen/Qwen2.5-32B"} and len(runs) == 18
    evals = [r for r in resources if isinstance(r, EvalRun)]
    assert len(evals) == 20 and all(r.metadata.name.endswith("comp-math") for r in evals)
    for run in evals:
        assert [b.name for b in run.spec.benchmarks] == ["aime24", "aime25", "hmmt-24-25"]
        assert run.spec.sampling.samples == 64 and run.spec.metrics == ["pass@1", "maj@64"]
        assert (run.spec.sampling.temperature, run.spec.sampling.top_p) == (0.6, 0.95)
        # The vote of the NeMo-Skills commit the manifests cite (0f7bd73, 2025-04-23): first-sampled ran from
        # 2a2886e3 (2024-02-15) until 098f04d9 (2025-06-05) sorted the votes (cotlab.trainer.grading.majority).
        assert run.spec.majority_vote == "first-sampled"
        assert run.spec.prompt.style == "completion" or run.spec.prompt.system == ""
    tuned = [r for r in evals if r.spec.model.fine_tune_run_ref is not None]
    assert len(tuned) == 18 and all(r.spec.sampling.max_tokens == 32768 for r in tuned)


def test_each_study_arm_is_one_recipe_trained_with_three_seeds() -> None:
    """Each arm's FineTuneRuns differ in training.seed alone and each is evaluated once, the same way: what
    `cotctl compare --rows label:cotlab.dev/arm` averages as one arm."""
    from cotlab.cli.analysis.arms import Evaluation, why_not_seeds

    resources = _study()
    tunes = {r.metadata.name: r for r in resources if isinstance(r, FineTuneRun)}
    datasets = {r.metadata.name: r for r in resources if isinstance(r, TraceDataset)}
    arms: dict[str, list[Evaluation]] = {}
    for run in (r for r in resources if isinstance(r, EvalRun)):
        ref = run.spec.model.fine_tune_run_ref
        tune = tunes[ref.name] if ref else None
        member = Evaluation(run, {}, tune, datasets[tune.spec.dataset_ref.name] if tune else None)
        arms.setdefault(run.metadata.labels["cotlab.dev/arm"], []).append(member)
    trained = {arm: members for arm, members in arms.items() if members[0].fine_tune is not None}
    assert sorted(trained) == ["human-stage1", "human-stage2", "human-stage3", "human-stage4", "qwq-20", "qwq-50"]
    for arm, members in trained.items():
        assert why_not_seeds(members) is None, arm
        assert sorted(m.seed for m in members) == [0, 1, 2]
        assert {m.fine_tune.metadata.labels["cotlab.dev/arm"] for m in members if m.fine_tune} == {arm}
    assert sorted(a for a in arms if a not in trained) == ["base", "math-72b-instruct"]


def test_the_base_model_stops_at_its_first_complete_answer() -> None:
    """A base model that has answered goes on with an invented problem and boxes its answer too: the baseline's stop
    strings end the sample first (vLLM ends the text before the first stop string), so the grader reads the answer to
    the problem asked."""
    from cotlab.trainer.grading.grader import extract_answer

    base = next(r for r in _study() if isinstance(r, EvalRun) and r.metadata.labels["cotlab.dev/arm"] == "base")
    sample = (
        "We have 3 + 4 = 7, so the answer is \\boxed{7}.\n\nProblem:\nWhat is 2 + 2?\n\nSolution:\n"
        "2 + 2 = \\boxed{4}.\n\n\n\n\n\nProblem:\n"
    )
    cut = min((sample.index(s) for s in base.spec.sampling.stop if s in sample), default=len(sample))
    assert extract_answer(sample) == "4"  # what the grader read without the stop rules
    assert extract_answer(sample[:cut]) == "7"
    assert base.spec.prompt.style == "completion" and base.spec.prompt.template.endswith("Solution:\n")


@pytest.mark.parametrize("case", INVALID, ids=[c["id"] for c in INVALID])
def test_invalid_manifest_names_the_field(case: dict[str, Any]) -> None:
    errors = validate_document(case["manifest"], "case.yaml#1")
    assert [e.path for e in errors] == [case["path"]]
    assert case["local"] in errors[0].message
    kind, name = case["manifest"]["kind"], case["manifest"]["metadata"]["name"]
    assert str(errors[0]).startswith(f"case.yaml#1 {kind}/{name}: {case['path']}: ")


def test_defaults_reproduce_the_study_protocol() -> None:
    run = EvalRun.model_validate(
        {
            "apiVersion": "cotlab.dev/v1alpha1",
            "kind": "EvalRun",
            "metadata": {"name": "defaults"},
            "spec": {"model": {"source": {"hub": "Qwen/Qwen2.5-32B"}}, "benchmarks": [{"name": "aime24"}]},
        }
    )
    assert run.spec.sampling.samples == 64
    assert run.spec.metrics == ["pass@1", "maj@64"]
    assert "\\boxed{{}}" in run.spec.prompt.template


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"apiVersion": "cotlab.dev/v1alpha1", "kind": "Experiment", "metadata": {"name": "x"}}, "unknown kind"),
        ({"apiVersion": "cotlab.dev/v1", "kind": "EvalRun", "metadata": {"name": "x"}}, "must be cotlab.dev/v1alpha1"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
    ids=["unknown-kind", "wrong-api-version", "not-a-mapping"],
)
def test_wrong_envelope(doc: Any, message: str) -> None:
    errors = validate_document(doc, "f.yaml#1")
    assert len(errors) == 1 and message in errors[0].message


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("spec", "benchmarks", 0, "name"), "spec.benchmarks[0].name"),
        (("spec", "function-after[_exactly_one(), TraceSource]"), "spec"),
        ((), ""),
    ],
    ids=["index", "validator-frame", "root"],
)
def test_format_loc(loc: tuple[Any, ...], path: str) -> None:
    assert format_loc(loc) == path


def test_wire_shape_round_trips() -> None:
    for _, doc in EXAMPLES:
        resource = parse_resource(doc)
        again = type(resource).model_validate(resource.model_dump(mode="json", by_alias=True))
        assert again == resource
