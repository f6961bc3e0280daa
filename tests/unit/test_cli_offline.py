"""Cluster commands where no cluster can be reached, apply's all-or-nothing validation, output formats, completion."""

from __future__ import annotations

import csv
import io
import json
import socket
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from cotlab.cli.commands.apply import outcome, prepare
from cotlab.cli.main import app
from cotlab.cli.terminal.output import csv_of, markdown_of, table_of
from tests.conftest import EXAMPLES, invalid_cases

from .cli_state import finished_eval, write_benchmark

runner = CliRunner()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeconfig(tmp_path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "c", "user": "u", "namespace": "team"}}],
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_unreachable_cluster_is_one_line_naming_the_server(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    config = kubeconfig(tmp_path, server)
    for args in (["status"], ["describe", "evalrun/x"], ["logs", "evalrun/x"], ["wait", "evalrun/x"],
                 ["results"], ["compare", "a"], ["suspend", "evalrun/x"], ["delete", "evalrun/x"]):  # fmt: skip
        result = runner.invoke(app, [*args, "--kubeconfig", str(config)])
        assert result.exit_code == 1, (args, result.output)
        first, hint = result.stderr.strip().splitlines()
        assert first.startswith(f"Error: no cluster reachable at {server}: ") and "refused" in first, (args, first)
        assert "--local" in hint


def test_missing_kubeconfig_and_context_are_named(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["status", "--kubeconfig", str(tmp_path / "none")])
    assert missing.exit_code == 1 and f"no usable kubeconfig ({tmp_path / 'none'})" in missing.stderr
    config = kubeconfig(tmp_path, "https://127.0.0.1:1")
    context = runner.invoke(app, ["status", "--kubeconfig", str(config), "--context", "prod"])
    assert context.exit_code == 1 and "prod" in context.stderr


def test_apply_sends_nothing_when_any_document_is_invalid(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(invalid_cases()[0]["manifest"]))
    # The kubeconfig points nowhere: getting as far as a request would fail differently.
    config = kubeconfig(tmp_path, f"https://127.0.0.1:{closed_port()}")
    result = runner.invoke(app, ["apply", "-f", str(EXAMPLES / "quickstart.yaml"), "-f", str(bad),
                                 "--kubeconfig", str(config)])  # fmt: skip
    assert result.exit_code == 1
    assert "1 error(s): nothing was applied" in result.stderr and "no cluster reachable" not in result.stderr
    client = runner.invoke(app, ["apply", "-f", str(EXAMPLES / "quickstart.yaml"), "--dry-run=client", "-o", "json"])
    assert client.exit_code == 0, client.output
    kinds = [d["kind"] for d in json.loads(client.stdout)["items"]]
    assert kinds == ["TraceDataset", "FineTuneRun", "EvalRun", "EvalRun"]  # dependency order


def test_apply_body_keeps_the_document_and_its_namespace() -> None:
    doc = {"apiVersion": "cotlab.dev/v1alpha1", "kind": "EvalRun", "metadata": {"name": "e"}, "spec": {"x": 1},
           "status": {"phase": "Succeeded"}}  # fmt: skip
    assert prepare(doc, "lab", explicit=False) == {
        "apiVersion": "cotlab.dev/v1alpha1", "kind": "EvalRun", "metadata": {"name": "e", "namespace": "lab"},
        "spec": {"x": 1},
    }  # fmt: skip
    assert outcome(None, {"metadata": {"resourceVersion": "5"}}) == "created"
    assert outcome({"metadata": {"resourceVersion": "5"}}, {"metadata": {"resourceVersion": "5"}}) == "unchanged"
    assert outcome({"metadata": {"resourceVersion": "5"}}, {"metadata": {"resourceVersion": "6"}}) == "configured"


ROWS: list[dict[str, Any]] = [{"row": "base [seed 0]", "score": "9.3 ± 1.2"}, {"row": "a|b", "score": None}]


def test_output_formats_keep_cells_verbatim() -> None:
    assert table_of(ROWS).plain.splitlines() == ["ROW             SCORE", "base [seed 0]   9.3 ± 1.2", "a|b"]
    assert list(csv.DictReader(io.StringIO(csv_of(ROWS)))) == [
        {"row": "base [seed 0]", "score": "9.3 ± 1.2"}, {"row": "a|b", "score": ""}
    ]  # fmt: skip
    assert markdown_of(ROWS).splitlines() == [
        "| row | score |", "|---|---|", "| base [seed 0] | 9.3 ± 1.2 |", "| a\\|b |  |"
    ]  # fmt: skip


def test_completion_of_kinds_and_local_names(tmp_path: Path) -> None:
    root = tmp_path / "state"
    gold = {"a": "1"}
    finished_eval(root, "qwq-eval", write_benchmark(tmp_path / "b.jsonl", gold), gold, {"a": ["1"]})

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {"_COTCTL_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
        return runner.invoke(app, [], env=env, prog_name="cotctl").stdout.split()

    assert complete("cotctl describe ev") == ["evalrun/"]
    assert complete(f"cotctl describe --local --root {root} evalrun/q") == ["evalrun/qwq-eval"]
    assert complete(f"cotctl results --local --root {root} q") == ["qwq-eval"]
