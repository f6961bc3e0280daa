"""`cotctl validate` through Typer's CliRunner; JSON output is parsed, not matched as text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cotlab.cli.main import app
from cotlab.cli.manifests.documents import load_all
from tests.conftest import EXAMPLES, example_documents, invalid_cases

runner = CliRunner()


def test_examples_directory_is_valid() -> None:
    result = runner.invoke(app, ["validate", "-f", str(EXAMPLES), "-o", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["errors"] == []
    assert len(report["documents"]) == len(example_documents())


def test_invalid_documents_from_stdin_each_named() -> None:
    cases = invalid_cases()
    text = yaml.safe_dump_all([c["manifest"] for c in cases])
    result = runner.invoke(app, ["validate", "-f", "-", "-o", "json"], input=text)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    got = [(e["source"], e["resource"], e["path"]) for e in report["errors"]]
    want = [
        (f"<stdin>#{i}", f"{c['manifest']['kind']}/{c['manifest']['metadata']['name']}", c["path"])
        for i, c in enumerate(cases, start=1)
    ]
    assert got == want
    # stderr carries one human line per error: document, field path, message.
    assert "FineTuneRun/negative-lr: spec.training.learningRate: Input should be greater than 0" in result.stderr


def test_mixed_files_fail_but_report_valid_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(invalid_cases()[0]["manifest"]))
    result = runner.invoke(app, ["validate", "-f", str(EXAMPLES / "quickstart.yaml"), "-f", str(bad), "-o", "json"])
    assert result.exit_code == 1
    rows = json.loads(result.stdout)["documents"]
    assert [r["valid"] for r in rows] == [True, True, True, True, False]


def test_yaml_syntax_error_names_the_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: cotlab.dev/v1alpha1\nkind: EvalRun\nspec: [unclosed\n")
    result = runner.invoke(app, ["validate", "-f", str(broken)])
    assert result.exit_code == 1
    assert f"{broken} line 4: invalid YAML" in result.stderr or f"{broken} line 3: invalid YAML" in result.stderr


def test_missing_file_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["validate", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml: no such file or directory" in result.stderr


def test_messages_with_brackets_are_printed_verbatim(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    doc = invalid_cases()[0]["manifest"] | {"metadata": {"name": "Bad[/x]Name"}}
    bad.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["run", "--local", "-f", str(bad), "--root", str(tmp_path / "state")])
    assert result.exit_code == 1
    assert "TraceDataset/Bad[/x]Name: metadata.name" in result.stderr


# -- a GitOps repository: other kinds skipped, -k validates what kustomize renders ------------------------------

COTCTL = Path(sys.executable).parent / "cotctl"
SCAFFOLD_SKIPPED = [
    {"source": "x/.github/workflows/validate.yml#1", "resource": "<no kind>/<no name>"},
    {"source": "x/argocd/application.yaml#1", "resource": "Application/cotlab-x"},
    {"source": "x/argocd/health-checks.yaml#1", "resource": "ConfigMap/argocd-cm"},
    {"source": "x/ci/diff-access.yaml#1", "resource": "ServiceAccount/cotlab-ci-diff"},
    {"source": "x/ci/diff-access.yaml#2", "resource": "Role/cotlab-ci-diff"},
    {"source": "x/ci/diff-access.yaml#3", "resource": "RoleBinding/cotlab-ci-diff"},
    {"source": "x/kustomization.yaml#1", "resource": "Kustomization/<no name>"},
]


def scaffold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`cotctl init x` in tmp_path, which becomes the working directory (sources read "x/...")."""
    monkeypatch.chdir(tmp_path)
    made = runner.invoke(app, ["init", "x"])
    assert made.exit_code == 0, made.output
    return Path("x")


def test_the_issues_commands_pass_on_a_fresh_scaffold(tmp_path: Path) -> None:
    """The exact shell line a new user types, with the installed cotctl."""
    line = f"{COTCTL} init x && {COTCTL} validate -f x/ && {COTCTL} validate -k x/"
    done = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Error" not in done.stderr
    assert done.stderr.splitlines() == [
        "skipped 7 documents that are not cotlab resources "
        "(<no kind>, Application, ConfigMap, Kustomization, Role, RoleBinding, ServiceAccount): "
        "-v lists them, --strict fails on them"
    ]


def test_other_kinds_are_skipped_listed_with_v_and_fail_with_strict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = scaffold(tmp_path, monkeypatch)
    checked = runner.invoke(app, ["validate", "-f", f"{repo}/", "-o", "json"])
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["valid"] is True and report["errors"] == [] and report["skipped"] == SCAFFOLD_SKIPPED
    assert [d["resource"] for d in report["documents"]] == [
        "EvalRun/x-base-eval",
        "TraceDataset/x-human-stage4-traces", "FineTuneRun/x-human-stage4", "EvalRun/x-human-stage4-eval",
        "TraceDataset/x-qwq-traces", "FineTuneRun/x-qwq", "EvalRun/x-qwq-eval",
    ]  # fmt: skip

    listed = runner.invoke(app, ["validate", "-f", f"{repo}/", "-v"])
    assert listed.exit_code == 0
    assert listed.stderr.splitlines()[1:] == [f"  {s['source']} {s['resource']}" for s in SCAFFOLD_SKIPPED]

    strict = runner.invoke(app, ["validate", "-f", f"{repo}/", "--strict", "-o", "json"])
    assert strict.exit_code == 1
    valid_kinds = "valid kinds: TraceDataset, FineTuneRun, EvalRun"
    # Every skipped document becomes an error, as before cotctl knew about repositories.
    assert [(e["source"], e["path"], e["message"]) for e in json.loads(strict.stdout)["errors"]] == [
        (s["source"], "kind", f"unknown kind {k!r}; {valid_kinds}")
        for s, k in zip(SCAFFOLD_SKIPPED, [None, "Application", "ConfigMap", "ServiceAccount", "Role", "RoleBinding",
                                           "Kustomization"], strict=True)
    ]  # fmt: skip

    only_others = runner.invoke(app, ["validate", "-f", f"{repo}/argocd"])
    assert only_others.exit_code == 1
    assert "Error: no cotlab resources found (2 other documents skipped)" in only_others.stderr


def test_k_validates_what_kustomize_renders_naming_each_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = scaffold(tmp_path, monkeypatch)
    (repo / "kustomization.yaml").write_text((repo / "kustomization.yaml").read_text() + "namePrefix: lab-\n")
    checked = runner.invoke(app, ["validate", "-k", str(repo), "-o", "json"])
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["skipped"] == [] and report["valid"] is True
    # What Argo CD would apply (kustomize's names), each from its own file; the origin annotation is gone.
    assert sorted((d["source"], d["resource"]) for d in report["documents"]) == [
        ("x/experiment/baseline.yaml", "EvalRun/lab-x-base-eval"),
        ("x/experiment/human-stage4.yaml", "EvalRun/lab-x-human-stage4-eval"),
        ("x/experiment/human-stage4.yaml", "FineTuneRun/lab-x-human-stage4"),
        ("x/experiment/human-stage4.yaml", "TraceDataset/lab-x-human-stage4-traces"),
        ("x/experiment/qwq.yaml", "EvalRun/lab-x-qwq-eval"),
        ("x/experiment/qwq.yaml", "FineTuneRun/lab-x-qwq"),
        ("x/experiment/qwq.yaml", "TraceDataset/lab-x-qwq-traces"),
    ]


def test_k_names_a_file_of_runs_the_kustomization_leaves_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new arm copied in but not added to kustomization.yaml would never be applied: said, not failed."""
    repo = scaffold(tmp_path, monkeypatch)
    (repo / "experiment" / "h1.yaml").write_text((repo / "experiment" / "qwq.yaml").read_text())
    (repo / "notes.yaml").write_text("a: [unclosed\n")  # not the render's business
    result = runner.invoke(app, ["validate", "-k", str(repo)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "x/experiment/h1.yaml: holds cotlab resources that x's kustomization leaves out, so they are never applied: "
        "add the file to its resources, or delete it"
    ]


@pytest.mark.parametrize("case", invalid_cases(), ids=[c["manifest"]["metadata"]["name"] for c in invalid_cases()])
def test_an_invalid_manifest_added_to_the_scaffold_fails_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: dict[str, Any]
) -> None:
    repo = scaffold(tmp_path, monkeypatch)
    (repo / "experiment" / "broken.yaml").write_text(yaml.safe_dump(case["manifest"]))
    kustomization = yaml.safe_load((repo / "kustomization.yaml").read_text())
    kustomization["resources"].append("experiment/broken.yaml")
    (repo / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    name = f"{case['manifest']['kind']}/{case['manifest']['metadata']['name']}"
    for flag, source in (("-f", "x/experiment/broken.yaml#1"), ("-k", "x/experiment/broken.yaml")):
        result = runner.invoke(app, ["validate", flag, f"{repo}/", "-o", "json"])
        assert result.exit_code == 1, (flag, result.output)
        errors = json.loads(result.stdout)["errors"]
        assert [(e["source"], e["resource"], e["path"]) for e in errors] == [(source, name, case["path"])], flag
        assert f"{source} {name}: {case['path']}: " in result.stderr


def test_k_reports_what_kustomize_cannot_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = scaffold(tmp_path, monkeypatch)
    (repo / "experiment" / "qwq.yaml").unlink()
    missing = runner.invoke(app, ["validate", "-k", str(repo)])
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: x: kustomize cannot render it: ")
    assert "experiment/qwq.yaml" in missing.stderr and "cotctl-kustomize" not in missing.stderr
    assert runner.invoke(app, ["validate", "-k", f"{repo}/argocd"]).stderr == (
        "Error: x/argocd: no kustomization.yaml here; -f reads the files themselves\n"
    )
    both = runner.invoke(app, ["validate", "-k", str(repo), "-f", str(repo)])
    assert both.exit_code == 2 and "-f and -k cannot be combined" in both.stderr
    neither = runner.invoke(app, ["validate"])
    assert neither.exit_code == 2 and "no manifests given" in neither.stderr


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1e-05", 1e-05),  # YAML 1.1 (PyYAML) reads a string; kubectl and kustomize read a float
        ("2E+3", 2000.0),
        ("1.0e-05", 1e-05),
        ("10", 10),
        ("1_000", 1000),
        ('"1e-5"', "1e-5"),  # quoted stays a string
        ("1e", "1e"),
        ("e5", "e5"),
    ],
    ids=["exponent-without-dot", "upper-case", "with-dot", "int", "underscore", "quoted", "no-digits", "no-mantissa"],
)
def test_numbers_are_read_as_kubectl_reads_them(text: str, want: Any) -> None:
    assert load_all(f"learningRate: {text}") == [{"learningRate": want}]
    assert type(load_all(f"x: {text}")[0]["x"]) is type(want)
