"""What `cotctl run --local` shows while stages run: a progress bar per resource on a terminal, marker lines elsewhere.

The bars are driven by the pods' progress markers (`cotlab.api.podcontract`): a FineTuneRun's `step`/`totalSteps`,
an EvalRun's `done`/`total` samples of the benchmark being generated, a TraceDataset's counts (no total: the bar
pulses). On a terminal rich draws them with step/total, elapsed time and an ETA, and lines printed meanwhile go
above the bars; when stderr is not a terminal (CI, a pipe, a file) each marker is one plain line instead, so logs
stay readable and in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cotlab.api import Resource


@dataclass(frozen=True)
class StagePosition:
    """Where a stage is: `completed` of `total` units (None: unknown), what the units are, and a short detail."""

    completed: float
    total: float | None
    phase: str
    detail: str
    eta_seconds: float | None = None


def stage_position(marker: dict[str, Any]) -> StagePosition:
    """Read a progress marker of any stage as a bar position."""
    if "totalSteps" in marker:  # finetune: one marker per optimizer step
        detail = " ".join(
            f"{name}={marker[key]}" for key, name in (("loss", "loss"), ("tokensPerSecond", "tok/s")) if key in marker
        )
        eta = marker.get("etaSeconds")
        eta_seconds = float(eta) if isinstance(eta, int | float) else None
        return StagePosition(float(marker.get("step", 0)), float(marker["totalSteps"]), "steps", detail, eta_seconds)
    if "total" in marker:  # evaluate: samples of one benchmark
        return StagePosition(float(marker.get("done", 0)), float(marker["total"]), f"{marker.get('benchmark', '')}", "")
    # curate: counts as it loads, filters and selects
    fields = " ".join(f"{k}={v}" for k, v in sorted(marker.items()))
    return StagePosition(0.0, None, "", fields)


def marker_line(resource: Resource, marker: dict[str, Any]) -> str:
    """A marker as one plain line: `Kind/name: key=value ...`."""
    return f"{_name(resource)}: " + " ".join(f"{k}={v}" for k, v in sorted(marker.items()))


def _name(resource: Resource) -> str:
    return f"{resource.kind}/{resource.metadata.name}"


class _Eta(TimeRemainingColumn):
    """The stage's own estimate when its marker has one (finetune's `etaSeconds`), else rich's from the bar's pace."""

    def render(self, task: Any) -> Text:
        eta = task.fields.get("eta")
        if eta is None or task.finished:
            return super().render(task)
        minutes, seconds = divmod(int(eta), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


class RunDisplay:
    """Progress of a local run on `console`: bars on a terminal, plain lines otherwise. Use as a context manager."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars: Progress | None = None
        if console.is_terminal:
            self.bars = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[phase]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                _Eta(),
                TextColumn("{task.fields[detail]}"),
                console=console,
            )
        self._tasks: dict[str, TaskID] = {}
        self._phases: dict[str, str] = {}

    def __enter__(self) -> RunDisplay:
        if self.bars is not None:
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.stop()

    def print(self, line: str) -> None:
        """A log line: above the bars on a terminal."""
        self.console.print(line, highlight=False, markup=False)

    def started(self, resource: Resource) -> None:
        self.print(f"{_name(resource)}: starting")
        if self.bars is not None:
            self._tasks[_name(resource)] = self.bars.add_task(
                _name(resource), total=None, phase="", detail="", eta=None
            )

    def marker(self, resource: Resource, marker: dict[str, Any]) -> None:
        if self.bars is None:
            self.print(marker_line(resource, marker))
            return
        name = _name(resource)
        task = self._tasks.get(name)
        if task is None:
            task = self._tasks[name] = self.bars.add_task(name, total=None, phase="", detail="", eta=None)
        position = stage_position(marker)
        if self._phases.get(name) != position.phase:  # a new benchmark: count (and estimate) afresh
            self._phases[name] = position.phase
            self.bars.reset(task, total=position.total, completed=int(position.completed))
        self.bars.update(
            task,
            completed=position.completed,
            total=position.total,
            phase=position.phase,
            detail=position.detail,
            eta=position.eta_seconds,
        )

    def finished(self, resource: Resource, ran: bool) -> None:
        """Stop the resource's bar where it is (full when the stage finished its work)."""
        if self.bars is None:
            return
        task = self._tasks.pop(_name(resource), None)
        if task is None:
            return
        if not ran:  # up to date (or blocked): the summary table says so
            self.bars.remove_task(task)
            return
        state = self.bars.tasks[self.bars.task_ids.index(task)]
        if state.total is None:  # never had a total (curate): it is done
            self.bars.update(task, total=1, completed=1)
        self.bars.stop_task(task)
