"""Run resources on this machine with the pods' own entry point: `python -m cotlab.trainer <stage> --spec FILE`.

The runner does what the operator does, minus Kubernetes: resolve a resource's inputs from the resources it
depends on, write the pod spec file, run the stage as a child process (no shell), read its progress markers
and summary, and record a status built by the same mapping the operator uses (`cotlab.api.summaries`).
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cotlab.api import (
    ConditionType,
    Phase,
    Reason,
    Resource,
)
from cotlab.api.dependencies import Blocked, dependency, resolve_inputs
from cotlab.api.podcontract import (
    STAGE_BY_KIND,
    TERMINATION_LOG_ENV,
    Inputs,
    PodSpecFile,
    ResourceRef,
    decode_summary,
    parse_marker,
)
from cotlab.api.summaries import failed_status, succeeded_status, with_condition

from .store import LocalStore, namespace_of

LOG_TAIL_LINES = 20
INPUTS_FILE = "inputs.json"
MarkerCallback = Callable[[Resource, dict[str, Any]], None]


@dataclass(frozen=True)
class StageResult:
    """How a stage process ended."""

    exit_code: int
    summary: dict[str, Any] | None
    log_tail: str
    seconds: float


def run_stage(
    python: str, stage: str, spec_path: Path, folder: Path, on_marker: Callable[[dict[str, Any]], None]
) -> StageResult:
    """Run one stage to completion; stdout markers go to `on_marker`, everything goes to `stage.log`."""
    termination_log = folder / "termination-log"
    termination_log.unlink(missing_ok=True)
    env = {**os.environ, TERMINATION_LOG_ENV: str(termination_log)}
    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    started = time.monotonic()
    with open(folder / "stage.log", "a", encoding="utf-8") as log:
        log.write(f"--- {datetime.now(UTC).isoformat()} {stage}\n")
        log.flush()
        # stderr joins stdout so the log keeps their order; markers are picked out line by line.
        process = subprocess.Popen(
            [python, "-m", "cotlab.trainer", stage, "--spec", str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            marker = parse_marker(line)
            if marker is not None:
                on_marker(marker)
            else:
                tail.append(line.rstrip("\n"))
        exit_code = process.wait()
    summary = decode_summary(termination_log.read_text(encoding="utf-8")) if termination_log.exists() else None
    return StageResult(exit_code, summary, "\n".join(tail), time.monotonic() - started)


class LocalRunner:
    """Runs resources in order against a `LocalStore`."""

    def __init__(
        self,
        store: LocalStore,
        *,
        python: str = sys.executable,
        on_marker: MarkerCallback | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.python, self.now = store, python, now
        self.on_marker: MarkerCallback = on_marker or (lambda resource, marker: None)

    def run(self, resource: Resource, *, force: bool = False) -> tuple[Resource, bool]:
        """Run `resource` unless an earlier run with the same spec and inputs succeeded; returns it and whether it
        ran. The inputs count: an EvalRun whose FineTuneRun was trained again must be evaluated again."""
        resource = resource.model_copy(deep=True)
        resource.metadata.generation = resource.metadata.generation or 1
        resource.metadata.namespace = namespace_of(resource)
        folder = self.store.folder_of(resource)
        previous = self.store.load(resource.kind, namespace_of(resource), resource.metadata.name)
        if previous is not None and previous.spec == resource.spec:
            resource.status = previous.status  # keep the history

        inputs = self._resolve_inputs(resource)
        if isinstance(inputs, Blocked):
            condition = ConditionType.FAILED if inputs.failed else ConditionType.WAITING
            resource.status = with_condition(resource, condition, True, inputs.reason, inputs.message, now=self.now())
            self.store.save(resource)
            return resource, False

        unchanged = previous is not None and previous.spec == resource.spec and _inputs_of(folder) == inputs
        if unchanged and previous is not None and previous.status is not None:
            if previous.status.phase == Phase.SUCCEEDED and not force:
                return previous, False
            if force:  # a run from scratch: the stages would otherwise resume from what they find
                shutil.rmtree(folder / "output", ignore_errors=True)
        elif previous is not None:
            # Outputs of another spec or other inputs never mix with this run's: the stage starts clean.
            shutil.rmtree(folder / "output", ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / INPUTS_FILE).write_text(inputs.model_dump_json(by_alias=True, indent=2), encoding="utf-8")

        pod = PodSpecFile(
            stage=STAGE_BY_KIND[resource.kind],
            resource=ResourceRef(
                kind=resource.kind,
                name=resource.metadata.name,
                namespace=namespace_of(resource),
                generation=resource.metadata.generation,
            ),
            spec=resource.spec.to_wire(),
            inputs=inputs,
            output=(folder / "output").resolve().as_uri(),
        )
        spec_path = folder / "spec.json"
        spec_path.write_text(pod.model_dump_json(by_alias=True, indent=2), encoding="utf-8")
        if resource.status is not None:  # a re-run starts with no verdict: neither the old Ready nor Failed
            resource.status.conditions = [
                c for c in resource.status.conditions if c.type not in (ConditionType.FAILED, ConditionType.READY)
            ]
        resource.status = with_condition(resource, ConditionType.WAITING, False, Reason.POD_RUNNING, now=self.now())
        resource.status = with_condition(resource, ConditionType.RUNNING, True, Reason.POD_RUNNING, now=self.now())
        self.store.save(resource)

        result = run_stage(self.python, pod.stage, spec_path, folder, lambda m: self.on_marker(resource, m))
        if result.exit_code == 0 and result.summary is not None:
            resource.status = succeeded_status(resource, result.summary, now=self.now())
        else:
            error = (result.summary or {}).get("error") or result.log_tail or "no output"
            message = f"{pod.stage} exited with code {result.exit_code}: {error} (log: {folder / 'stage.log'})"
            resource.status = failed_status(resource, result.exit_code, message, now=self.now())
        self.store.save(resource)
        return resource, True

    def _resolve_inputs(self, resource: Resource) -> Inputs | Blocked:
        """The inputs the stage needs (the dataset artifact, the fine-tuned model), or why it cannot run."""
        needed = dependency(resource)
        upstream = None if needed is None else self.store.load(needed[0], namespace_of(resource), needed[1])
        return resolve_inputs(resource, upstream)


def _inputs_of(folder: Path) -> Inputs | None:
    """The inputs the previous run in `folder` was given, if any."""
    path = folder / INPUTS_FILE
    return Inputs.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None
