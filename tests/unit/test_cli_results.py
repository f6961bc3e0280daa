"""`cotctl results --local`: scores from the status, or from scores.json when they did not fit the summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cotlab.api.validation import parse_resource
from cotlab.cli.local_store import LocalStore
from cotlab.cli.main import app

SCORE = {
    "problems": 30,
    "samplesPerProblem": 64,
    "metrics": {"pass@1": {"value": 0.25, "stderr": 0.05}, "maj@64": {"value": 0.4, "stderr": 0.09}},
    "graderTimeouts": 0,
}


def _eval_run(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "EvalRun",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"model": {"source": {"hub": "Qwen/Qwen2.5-32B"}}, "benchmarks": [{"name": "aime24"}]},
        "status": status,
    }


def test_scores_too_large_for_the_summary_are_read_from_scores_json(tmp_path: Path) -> None:
    scores = tmp_path / "out" / "scores.json"
    scores.parent.mkdir()
    scores.write_text(json.dumps({"aime24": SCORE, "aime25": SCORE}))
    store = LocalStore(tmp_path / "state")
    # What succeeded_status records when the termination message had no room for the scores.
    store.save(
        parse_resource(_eval_run("big", {"phase": "Succeeded", "outputs": {"scores": scores.as_uri(), "samples": "x"}}))
    )
    store.save(parse_resource(_eval_run("small", {"phase": "Succeeded", "scores": {"aime24": SCORE}})))
    store.save(parse_resource(_eval_run("failed", {"phase": "Failed", "outputs": {"scores": scores.as_uri()}})))

    result = CliRunner().invoke(app, ["results", "--local", "--root", str(tmp_path / "state"), "-o", "json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"big", "small"}
    assert set(data["big"]) == {"aime24", "aime25"} and data["big"]["aime25"]["metrics"] == SCORE["metrics"]
    table = CliRunner().invoke(app, ["results", "--local", "--root", str(tmp_path / "state")])
    assert table.exit_code == 0 and "aime25" in table.stdout
