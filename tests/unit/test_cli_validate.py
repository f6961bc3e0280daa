"""`cotctl validate` through Typer's CliRunner; JSON output is parsed, not matched as text."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from cotlab.cli.main import app
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
