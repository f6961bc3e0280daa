"""`cotctl status`: rows as pure functions of the stored objects, and the command over local state."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cotlab.cli.commands.status import StatusRow, status_row, table_rows
from cotlab.cli.main import app
from cotlab.cli.resources.inventory import Listed
from tests.child_signals import default_sigint, inherited_sigint

from .cli_state import finished_eval, finished_traces, finished_tune, write_benchmark

runner = CliRunner()
GOLD = {"a": "1", "b": "2", "c": "3"}
ANSWERS = {"a": ["1", "1"], "b": ["2", None], "c": ["9", "3"]}


def cotctl(*args: str) -> Any:
    return runner.invoke(app, list(args))


NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def running_tune(progress: dict[str, Any] | None) -> Listed:
    doc = {
        "apiVersion": "cotlab.dev/v1alpha1", "kind": "FineTuneRun",
        "metadata": {"name": "tune", "namespace": "lab", "creationTimestamp": "2026-11-28T11:50:00Z"},
        "spec": {"baseModel": {"hub": "Qwen/Qwen2.5-0.5B"}, "datasetRef": {"name": "traces"}},
        "status": {"phase": "Running", "attempts": 2, "conditions": [
            {"type": "Running", "status": "True", "reason": "PodRunning", "message": "pod tune-finetune-x is running",
             "lastTransitionTime": "2026-11-28T11:51:00Z"}], **({"progress": progress} if progress else {})},
    }  # fmt: skip
    return Listed(doc)


@pytest.mark.parametrize(
    ("progress", "want"),
    [
        (None, {"progress": "", "loss": "", "eta": ""}),
        (
            {"step": 12, "totalSteps": 40, "loss": 1.23456, "percent": 30.0, "etaSeconds": 200},
            {"progress": "step 12/40 (30%)", "loss": "1.235", "eta": "3m20s"},
        ),
        ({"step": 3}, {"progress": "step 3", "loss": "", "eta": ""}),
    ],
    ids=["no-marker-yet", "progress", "step-only"],
)
def test_fine_tune_row_shows_progress_loss_and_eta(progress: dict[str, Any] | None, want: dict[str, str]) -> None:
    row = status_row(running_tune(progress), NOW)
    assert (row.phase, row.attempts, row.reason, row.age_seconds) == ("Running", 2, "PodRunning", 600.0)
    [cells] = table_rows([row], wide=False, namespaces=True)
    assert cells == {"namespace": "lab", "name": "finetunerun/tune", "phase": "Running", "score": "", "age": "10m",
                     **want}  # fmt: skip


TOKENS = {"min": 90, "p50": 900, "p90": 2000, "max": 3000}


@pytest.mark.parametrize(
    ("stats", "want"),
    [
        ({"tokens": TOKENS, "answersAppended": 0}, "tokens p50 900, max 3000"),
        ({"tokens": TOKENS, "answersAppended": 4}, "tokens p50 900, max 3000, 4 given a boxed answer"),
        ({"answersAppended": 4}, "4 given a boxed answer"),
    ],
    ids=["none-changed", "four-changed", "no-tokens"],
)  # fmt: skip
def test_dataset_row_says_how_many_traces_answer_in_boxed_changed(stats: dict[str, Any], want: str) -> None:
    doc = {
        "apiVersion": "cotlab.dev/v1alpha1", "kind": "TraceDataset", "metadata": {"name": "qwq-20"},
        "spec": {"source": {"uri": "file:///t.jsonl"}},
        "status": {"phase": "Succeeded", "count": 20, "stats": stats},
    }  # fmt: skip
    row = status_row(Listed(doc), NOW)
    assert (row.progress, row.score) == ("20 traces", want)


def test_eval_row_estimates_the_benchmark_eta_from_its_rate() -> None:
    doc = {
        "apiVersion": "cotlab.dev/v1alpha1", "kind": "EvalRun", "metadata": {"name": "ev"},
        "spec": {"model": {"source": {"hub": "m/m"}}, "benchmarks": [{"name": "aime24"}]},
        "status": {"phase": "Running", "startTime": "2026-11-28T11:58:00Z",
                   "progress": {"benchmark": "aime24", "done": 480, "total": 1920, "percent": 25.0}},
    }  # fmt: skip
    row = status_row(Listed(doc), NOW)
    assert row.progress == "aime24 480/1920 (25%)" and row.eta_seconds == pytest.approx(360.0)


def scored_eval(spec_extra: dict[str, Any], status_extra: dict[str, Any] | None = None) -> Listed:
    metric = {"value": 0.25, "stderr": 0.05}
    doc = {
        "apiVersion": "cotlab.dev/v1alpha1", "kind": "EvalRun", "metadata": {"name": "ev"},
        "spec": {"model": {"source": {"hub": "m/m"}}, "benchmarks": [{"name": "aime24"}], **spec_extra},
        "status": {"phase": "Succeeded", "scores": {"aime24": {"problems": 30, "samplesPerProblem": 4, "metrics": {
            "maj@4": {"value": 0.5}, "pass@1": metric, "pass@4": {"value": 0.75}}}}, **(status_extra or {})},
    }  # fmt: skip
    return Listed(doc)


def test_eval_row_scores_by_the_first_metric_of_the_spec_or_of_the_default() -> None:
    """The API server keeps no order inside status.scores (Go maps sort their keys): spec.metrics says which is
    the main score, and without it EvalRunSpec's default does."""
    from cotlab.api.evalrun import EvalRunSpec

    assert EvalRunSpec.model_validate(scored_eval({}).body["spec"]).metrics[0] == "pass@1"
    assert status_row(scored_eval({}), NOW).score == "pass@1: aime24 25.0±5.0"
    row = status_row(scored_eval({"metrics": ["maj@4", "pass@1"]}), NOW)
    assert row.score == "maj@4: aime24 50.0" and row.scores == {
        "aime24": {"maj@4": 0.5, "pass@1": 0.25, "pass@4": 0.75}
    }


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"progress": {"benchmark": "aime24", "done": "half"}}, "status.progress.done: unexpected value 'half'"),
        ({"scores": {"aime24": {"metrics": {"pass@1": {"value": True}}}}},
         "status.scores.aime24.metrics.pass@1.value: unexpected value True"),
        ({"scores": {"aime24": "9%"}}, "status.scores.aime24.metrics: expected an object at 'metrics', got '9%'"),
    ],
    ids=["progress", "bool-is-no-number", "score-not-an-object"],
)  # fmt: skip
def test_a_status_of_another_shape_is_an_unreadable_row_naming_the_field(status: dict[str, Any], message: str) -> None:
    """An object written under an older CRD is listed with its phase and what cannot be read, never a crash."""
    doc = scored_eval({}).body | {"status": {"phase": "Running", **status}}
    row = status_row(Listed(doc), NOW)
    assert (row.phase, row.reason, row.message) == ("Running", "Unreadable", message)
    assert (
        status_row(Listed(doc | {"status": ["Running"]}), NOW).message == "status: expected an object, got ['Running']"
    )


def test_json_rows_are_camel_case_without_unset_fields() -> None:
    wire = status_row(scored_eval({}), NOW).to_wire()
    assert wire == {
        "namespace": "default", "kind": "EvalRun", "name": "ev", "phase": "Succeeded", "progress": "",
        "score": "pass@1: aime24 25.0±5.0", "scores": {"aime24": {"maj@4": 0.5, "pass@1": 0.25, "pass@4": 0.75}},
    }  # fmt: skip
    assert "etaSeconds" in status_row(running_tune({"step": 1, "etaSeconds": 9}), NOW).to_wire()


def test_status_lists_local_state_by_kind_and_selector(tmp_path: Path) -> None:
    root = tmp_path / "state"
    finished_traces(root, "traces", p50=900, count=20, stages={}, labels={"arm": "qwq"})
    finished_tune(root, "tune", "traces")
    bench = write_benchmark(tmp_path / "sums.jsonl", GOLD)
    finished_eval(root, "ev", bench, GOLD, ANSWERS, labels={"arm": "qwq"})
    everything = json.loads(cotctl("status", "--local", "--root", str(root), "-o", "json").stdout)["items"]
    assert [(r["kind"], r["name"], r["phase"]) for r in everything] == [
        ("TraceDataset", "traces", "Succeeded"), ("FineTuneRun", "tune", "Succeeded"), ("EvalRun", "ev", "Succeeded")
    ]  # fmt: skip
    assert everything[2]["score"] == "pass@1: sums 66.7±16.7" and everything[1]["loss"] == 0.42
    selected = cotctl("status", "--local", "--root", str(root), "-l", "arm=qwq", "-o", "name")
    assert selected.stdout.split() == ["tracedataset.cotlab.dev/traces", "evalrun.cotlab.dev/ev"]
    one = json.loads(cotctl("status", "ftr/tune", "--local", "--root", str(root), "-o", "json").stdout)["items"]
    assert [r["name"] for r in one] == ["tune"]
    bad = cotctl("status", "pods", "--local", "--root", str(root))
    assert bad.exit_code == 2 and "unknown kind 'pods'; valid kinds: tracedataset, finetunerun, evalrun" in bad.stderr


def test_status_says_which_seed_of_its_arm_each_run_is(tmp_path: Path) -> None:
    root = tmp_path / "state"
    arm = {"cotlab.dev/arm": "qwq-20"}
    finished_traces(root, "qwq-20", p50=900, count=20, stages={}, labels=arm)
    bench = write_benchmark(tmp_path / "sums.jsonl", GOLD)
    for seed in (0, 1, 2):
        finished_tune(root, f"tune-s{seed}", "qwq-20", training={"seed": seed}, labels=arm)
        finished_eval(root, f"ev-s{seed}", bench, GOLD, ANSWERS, labels=arm, tune=f"tune-s{seed}")
    finished_eval(root, "base", bench, GOLD, ANSWERS)
    items = json.loads(cotctl("status", "--local", "--root", str(root), "-o", "json").stdout)["items"]
    got = {r["name"]: (r.get("arm"), r.get("seed"), r.get("seeds")) for r in items}
    assert got == {
        "qwq-20": ("qwq-20", None, 3), "tune-s0": ("qwq-20", 0, 3), "tune-s1": ("qwq-20", 1, 3),
        "tune-s2": ("qwq-20", 2, 3), "ev-s0": ("qwq-20", 0, 3), "ev-s1": ("qwq-20", 1, 3), "ev-s2": ("qwq-20", 2, 3),
        "base": (None, None, None),
    }  # fmt: skip
    rows = [StatusRow(**{k: v for k, v in r.items() if k in ("namespace", "kind", "name", "phase", "arm", "seed",
                                                              "seeds")}) for r in items]  # fmt: skip
    arms = {c["name"]: c["arm"] for c in table_rows(rows, wide=False, namespaces=False)}
    assert (arms["evalrun/ev-s1"], arms["tracedataset/qwq-20"], arms["evalrun/base"]) == (
        "qwq-20, seed 1 of 3 seeds", "qwq-20 (3 seeds)", ""
    )  # fmt: skip


@pytest.mark.parametrize(
    "inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["sigint-default", "sigint-ignored-as-in-a-background-job"]
)
def test_watch_redraws_in_place_on_a_terminal_and_ends_on_ctrl_c(tmp_path: Path, inherited: Any) -> None:
    import contextlib
    import os
    import pty
    import select
    import sys
    import time

    root = tmp_path / "state"
    finished_tune(root, "tune", "traces")
    argv = [str(Path(sys.executable).parent / "cotctl"), "status", "--local", "--root", str(root), "--watch",
            "--interval", "0.2"]  # fmt: skip
    with inherited_sigint(inherited):  # what the shell that started pytest may have handed down
        pid, fd = pty.fork()
        if pid == 0:  # the child (never leaving this block): cotctl on a terminal, stoppable by Ctrl-C regardless
            default_sigint()
            os.execv(argv[0], argv)
    seen = b""
    deadline = time.monotonic() + 60
    # Wait for the first table and at least two redraws (cursor up + erase line: rich's in-place refresh).
    while time.monotonic() < deadline and seen.count(b"\x1b[1A") < 2:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            seen += os.read(fd, 65536)
    os.kill(pid, signal.SIGINT)
    # Not a bare waitpid: a child that ignored the signal would hang the test until pytest's timeout.
    deadline = time.monotonic() + 30
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # keep the terminal drained, so its last redraw never blocks
            if select.select([fd], [], [], 0.05)[0]:
                os.read(fd, 65536)
    if ended[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("cotctl status --watch did not end on SIGINT within 30 s")
    assert os.waitstatus_to_exitcode(ended[1]) == 0
    assert b"finetunerun/tune" in seen and seen.count(b"\x1b[1A") >= 2
