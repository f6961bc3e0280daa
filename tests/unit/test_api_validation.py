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


def test_examples_cover_the_study() -> None:
    resources = [parse_resource(doc) for name, doc in EXAMPLES if name.startswith("study/")]
    datasets = [r for r in resources if isinstance(r, TraceDataset) and r.spec.source.huggingface]
    # Five arms, one trace type each, 50 traces of the same 50 problems (the published human-vs-QwQ comparison).
    assert sorted(s for d in datasets for s in d.spec.select.filters.stages) == STUDY_TYPES
    for d in datasets:
        assert d.spec.source.huggingface is not None
        assert d.spec.source.huggingface.where["solution_type"] == STUDY_TYPES  # every type loaded, to fix problems
        assert d.spec.select.count is None and d.spec.select.problems is not None
        assert d.spec.select.problems.model_dump() == datasets[0].spec.select.problems.model_dump()
        assert (d.spec.select.problems.count, d.spec.select.problems.with_stages) == (50, STUDY_TYPES)
        assert d.spec.format.prompt.system == ""  # an explicit empty system turn, not Qwen's default text
    runs = [r for r in resources if isinstance(r, FineTuneRun) and r.spec.base_model.hub]
    assert {r.spec.base_model.hub for r in runs} == {"Qwen/Qwen2.5-32B"} and len(runs) == 5
    evals = [r for r in resources if isinstance(r, EvalRun) and r.metadata.name.endswith("comp-math")]
    assert len(evals) == 7
    for run in evals:
        assert [b.name for b in run.spec.benchmarks] == ["aime24", "aime25", "hmmt-24-25"]
        assert run.spec.sampling.samples == 64 and run.spec.metrics == ["pass@1", "maj@64"]
        assert (run.spec.sampling.temperature, run.spec.sampling.top_p) == (0.6, 0.95)
        # The vote of the NeMo-Skills commit the manifests cite (0f7bd73, 2025-04-23): first-sampled ran from
        # 2a2886e3 (2024-02-15) until 098f04d9 (2025-06-05) sorted the votes (cotlab.trainer.grading.majority).
        assert run.spec.majority_vote == "first-sampled"
        assert run.spec.prompt.style == "completion" or run.spec.prompt.system == ""
    arms = [r for r in evals if r.spec.model.fine_tune_run_ref is not None]
    assert len(arms) == 5 and all(r.spec.sampling.max_tokens == 32768 for r in arms)


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
