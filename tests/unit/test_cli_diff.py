"""`cotctl diff`'s pure parts (which fields differ, what a sync would leave, the exit code) and what it says when it
cannot ask a cluster. Its verdicts against a real API server: tests/cluster/test_cli_diff.py."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cotlab.cli.commands.diff import DiffExit, ResourceDiff, exit_code
from cotlab.cli.main import app
from cotlab.cli.manifests.changes import (
    UNSET,
    Action,
    FieldChange,
    defaults_probe,
    field_changes,
    immutable_changes,
    metadata_changes,
    replacement,
)
from tests.conftest import invalid_cases

runner = CliRunner()

FIELD_CASES: list[tuple[str, Any, Any, list[FieldChange]]] = [
    ("equal", {"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, []),
    ("a leaf", {"training": {"learningRate": 1e-5}}, {"training": {"learningRate": 2e-5}},
     [FieldChange("spec.training.learningRate", 1e-5, 2e-5)]),
    ("added and dropped", {"a": 1}, {"b": 2}, [FieldChange("spec.b", UNSET, 2), FieldChange("spec.a", 1, UNSET)]),
    ("an item of a list", {"benchmarks": [{"name": "aime24"}, {"name": "aime25"}]},
     {"benchmarks": [{"name": "aime24"}, {"name": "math500"}]},
     [FieldChange("spec.benchmarks[1].name", "aime25", "math500")]),
    ("a longer list, whole", {"metrics": ["pass@1"]}, {"metrics": ["pass@1", "maj@64"]},
     [FieldChange("spec.metrics", ["pass@1"], ["pass@1", "maj@64"])]),
    ("explicit null is not absent", {"answer": None}, {}, [FieldChange("spec.answer", None, UNSET)]),
    ("a key that is not an identifier", {"limits": {"nvidia.com/gpu": 8}}, {"limits": {"nvidia.com/gpu": 4}},
     [FieldChange('spec.limits["nvidia.com/gpu"]', 8, 4)]),
    ("int and float of one value", {"epochs": 3}, {"epochs": 3.0}, []),
]  # fmt: skip


@pytest.mark.parametrize(("case", "before", "after", "want"), FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_field_changes(case: str, before: Any, after: Any, want: list[FieldChange]) -> None:
    assert field_changes(before, after, "spec") == want


def test_changes_print_and_serialise_both_sides() -> None:
    learning = FieldChange("spec.training.learningRate", 1e-5, 2e-5)
    assert str(learning) == "spec.training.learningRate: 1e-05 -> 2e-05"
    dropped = FieldChange("spec.training.maxSteps", 100, UNSET)
    assert str(dropped) == "spec.training.maxSteps: 100 -> (unset)"
    assert dropped.as_json() == {"path": "spec.training.maxSteps", "from": 100}
    long = FieldChange("spec.prompt.system", UNSET, "x" * 100)
    assert str(long) == "spec.prompt.system: (unset) -> " + '"' + "x" * 56 + "..."


def test_only_the_labels_and_annotations_the_manifest_sets_count() -> None:
    stored = {
        "labels": {"cotlab.dev/arm": "qwq", "app.kubernetes.io/instance": "cotlab-x"},  # Argo CD's tracking label
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        "resourceVersion": "7",
    }
    assert metadata_changes(stored, {"labels": {"cotlab.dev/arm": "qwq"}}) == []
    assert metadata_changes(stored, {"labels": {"cotlab.dev/arm": "h1"}, "annotations": {"note": "lr sweep"}}) == [
        FieldChange('metadata.labels["cotlab.dev/arm"]', "qwq", "h1"),
        FieldChange("metadata.annotations.note", UNSET, "lr sweep"),
    ]


@pytest.mark.parametrize(
    ("kind", "paths", "refused"),
    [
        ("FineTuneRun", ["spec.suspend"], []),
        ("FineTuneRun", ["spec.suspend", "spec.training.epochs"], ["spec.training.epochs"]),
        ("EvalRun", ["metadata.labels.owner", "spec.suspended"], ["spec.suspended"]),  # a prefix is not the field
        ("TraceDataset", ["spec.suspend"], ["spec.suspend"]),  # a dataset has no mutable field
    ],
    ids=["suspend", "suspend-and-epochs", "label-and-lookalike", "dataset"],
)
def test_immutable_changes_follow_each_kinds_mutable_fields(kind: str, paths: list[str], refused: list[str]) -> None:
    changes = [FieldChange(path, 1, 2) for path in paths]
    assert [c.path for c in immutable_changes(kind, changes)] == refused


def test_replacement_keeps_the_stored_object_and_takes_the_manifests_spec() -> None:
    stored = {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "EvalRun",
        "metadata": {
            "name": "e", "namespace": "lab", "resourceVersion": "42", "uid": "u-1",
            "labels": {"cotlab.dev/arm": "base", "app.kubernetes.io/instance": "cotlab-x"},
            "managedFields": [{"manager": "argocd-controller"}],
        },
        "spec": {"samples": 64, "suspend": False},
        "status": {"phase": "Running"},
    }  # fmt: skip
    desired = {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "EvalRun",
        "metadata": {"name": "e", "namespace": "lab", "labels": {"cotlab.dev/arm": "base", "owner": "ana"}},
        "spec": {"samples": 64, "suspend": True},
    }
    assert replacement(stored, desired) == {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "EvalRun",
        "metadata": {
            "name": "e", "namespace": "lab", "resourceVersion": "42", "uid": "u-1",
            "labels": {"cotlab.dev/arm": "base", "app.kubernetes.io/instance": "cotlab-x", "owner": "ana"},
        },
        "spec": {"samples": 64, "suspend": True},
    }  # fmt: skip
    assert defaults_probe(desired) == {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "EvalRun",
        "metadata": {"generateName": "e-", "namespace": "lab"},
        "spec": {"samples": 64, "suspend": True},
    }


@pytest.mark.parametrize(
    ("actions", "want"),
    [
        ([Action.unchanged, Action.unchanged], DiffExit.NO_CHANGES),
        ([Action.unchanged, Action.create], DiffExit.CHANGES),
        ([Action.update], DiffExit.CHANGES),
        ([Action.create, Action.refused, Action.unchanged], DiffExit.REFUSED),
    ],
    ids=["unchanged", "create", "update", "refused-wins"],
)
def test_exit_code(actions: list[Action], want: DiffExit) -> None:
    assert exit_code([ResourceDiff("EvalRun", "lab", f"e{i}", a) for i, a in enumerate(actions)]) == want
    assert [int(code) for code in DiffExit] == [0, 1, 2, 3]


# -- when no cluster can be asked -----------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens there


def test_an_unreachable_cluster_is_an_error_not_a_verdict(tmp_path: Path) -> None:
    runner.invoke(app, ["init", str(tmp_path / "x")])
    server = f"https://127.0.0.1:{closed_port()}"
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "ci", "user": {"token": "t"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "ci"}}],
    }  # fmt: skip
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["diff", "-k", str(tmp_path / "x"), "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == DiffExit.ERROR and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: no cluster reachable at {server}: [Errno 111] Connection refused",
        "  check --kubeconfig (or $KUBECONFIG) and --context; without a cluster, cotctl validate checks the manifests "
        "offline",
    ]
    missing = runner.invoke(app, ["diff", "-k", str(tmp_path / "x"), "--kubeconfig", str(tmp_path / "nope")])
    assert missing.exit_code == DiffExit.ERROR and "Error: no usable kubeconfig" in missing.stderr


def test_invalid_manifests_are_named_and_nothing_is_asked(tmp_path: Path) -> None:
    case = invalid_cases()[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(case["manifest"]))
    # No kubeconfig at all: local validation fails first, so the cluster is never needed.
    result = runner.invoke(app, ["diff", "-f", str(bad), "--kubeconfig", str(tmp_path / "none")])
    assert result.exit_code == DiffExit.ERROR
    assert result.stderr.splitlines()[0].startswith(f"Error: {bad}#1 FineTuneRun/negative-lr: {case['path']}: ")
    assert "Error: 1 error(s): nothing was compared" in result.stderr
    both = runner.invoke(app, ["diff", "-f", str(bad), "-k", str(tmp_path)])
    assert both.exit_code == DiffExit.ERROR and "-f and -k cannot be combined" in both.stderr
