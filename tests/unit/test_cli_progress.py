"""`cotctl run --local`'s progress: bars drawn from the pods' markers on a terminal, plain marker lines elsewhere."""

from __future__ import annotations

import io

import yaml
from rich.console import Console

from cotlab.api import Resource
from cotlab.api.validation import parse_resource
from cotlab.cli.terminal.progress import RunDisplay, StagePosition, stage_position
from tests.conftest import EXAMPLES


def quickstart() -> dict[str, Resource]:
    docs = yaml.safe_load_all((EXAMPLES / "quickstart.yaml").read_text(encoding="utf-8"))
    return {r.metadata.name: r for r in (parse_resource(d) for d in docs if d)}


FINETUNE = {"step": 3, "totalSteps": 15, "loss": 1.25, "tokensPerSecond": 410.5, "percent": 20.0, "etaSeconds": 40}


def test_every_stage_marker_is_a_bar_position() -> None:
    assert stage_position(FINETUNE) == StagePosition(3, 15, "steps", "loss=1.25 tok/s=410.5", eta_seconds=40)
    assert stage_position({"benchmark": "gsm8k", "done": 12, "total": 40}) == StagePosition(12, 40, "gsm8k", "")
    assert stage_position({"loaded": 7473, "unanswered": 0}) == StagePosition(0, None, "", "loaded=7473 unanswered=0")


def test_a_terminal_gets_bars_with_step_total_and_eta() -> None:
    out = io.StringIO()
    resources = quickstart()
    with RunDisplay(Console(file=out, force_terminal=True, width=160)) as display:
        assert display.bars is not None
        display.started(resources["quickstart-lora"])
        display.marker(resources["quickstart-lora"], FINETUNE)
        [task] = display.bars.tasks
        assert (task.completed, task.total, task.fields["eta"]) == (3, 15, 40)
        display.bars.refresh()
        assert "0:00:40" in out.getvalue()  # the trainer's own estimate, before rich has a pace
        display.marker(resources["quickstart-lora"], FINETUNE | {"step": 15})
        display.finished(resources["quickstart-lora"], ran=True)
        display.started(resources["quickstart-before"])
        for done in (0, 20, 40):
            display.marker(resources["quickstart-before"], {"benchmark": "gsm8k", "done": done, "total": 40})
        display.finished(resources["quickstart-before"], ran=True)
    text = out.getvalue()
    assert "FineTuneRun/quickstart-lora: starting" in text  # log lines stay, above the bars
    assert "15/15" in text and "40/40" in text and "ETA" in text and "gsm8k" in text
    assert "step=" not in text  # no marker lines on a terminal


def test_a_pipe_gets_one_plain_line_per_marker() -> None:
    out = io.StringIO()
    resources = quickstart()
    with RunDisplay(Console(file=out, width=200)) as display:
        assert display.bars is None
        display.started(resources["quickstart-before"])
        display.marker(resources["quickstart-before"], {"benchmark": "gsm8k", "done": 20, "total": 40})
        display.finished(resources["quickstart-before"], ran=True)
    assert out.getvalue().splitlines() == [
        "EvalRun/quickstart-before: starting",
        "EvalRun/quickstart-before: benchmark=gsm8k done=20 total=40",
    ]
