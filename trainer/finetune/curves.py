"""Training curves from rank 0: one `StepMetrics` per optimizer step to JSONL, TensorBoard and (if named) MLflow.

The JSONL file is what `cotctl report` reads; TensorBoard files are written with torch's own `SummaryWriter`
(TensorBoard's event format, read back by TensorBoard's reader in the tests) so `tensorboard --logdir` shows a run
as it trains. A resumed attempt replays the steps after its checkpoint, so it first cuts the JSONL back to the
checkpoint's step and opens TensorBoard with `purge_step`, which hides the replayed steps' older events.

MLflow is an optional side channel: a server that cannot be reached when the run starts fails the stage (a wrong
URI or credentials should not go unnoticed for a whole run), but one that fails mid-run only stops the logging to
it, with a warning, instead of stalling or killing training (its client retries for minutes per call).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cotlab.api.tracking import METRICS_DIR, MLFLOW_KEYS, STEPS_FILE, TENSORBOARD_TAGS, MlflowTracking, StepMetrics

logger = logging.getLogger(__name__)

MLFLOW_RUN_FILE = "mlflow-run.json"  # the MLflow run id, so a resumed attempt logs to the same run


def metrics_dir(output: Path) -> Path:
    return output / METRICS_DIR


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def resume_steps(directory: Path, first_step: int) -> int:
    """Cut `steps.jsonl` back to the steps up to `first_step` (the checkpoint's) and return the trained tokens by
    then (0 when the file has no record of that step: the count then starts again at this attempt)."""
    path = directory / STEPS_FILE
    if not path.exists():
        return 0
    kept: list[StepMetrics] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = StepMetrics.model_validate_json(line)
        except ValidationError:
            continue  # a line cut by a kill mid-write
        if record.step <= first_step:
            kept.append(record)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(r.model_dump_json(by_alias=True) + "\n" for r in kept), encoding="utf-8")
    tmp.replace(path)
    at_start = [r for r in kept if r.step == first_step]
    return at_start[-1].trained_tokens if at_start else 0


class _Mlflow:
    """One MLflow run for the FineTuneRun, through MlflowClient (no process-global active run)."""

    def __init__(self, spec: MlflowTracking, directory: Path, *, run_name: str, params: Mapping[str, Any]) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        self.client = MlflowClient(tracking_uri=spec.uri)
        state_file = directory / MLFLOW_RUN_FILE
        try:
            state = json.loads(state_file.read_text()) if state_file.exists() else {}
            if state.get("uri") == spec.uri and state.get("experiment") == spec.experiment:
                self.run_id = state["runId"]
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                experiment = self.client.get_experiment_by_name(spec.experiment)
                experiment_id = (
                    experiment.experiment_id if experiment else self.client.create_experiment(spec.experiment)
                )
                run = self.client.create_run(experiment_id, run_name=spec.run_name or run_name)
                self.run_id = run.info.run_id
                self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())])
                state_file.write_text(
                    json.dumps({"uri": spec.uri, "experiment": spec.experiment, "runId": self.run_id}) + "\n"
                )
        except MlflowException as err:
            # Retryable (exit 1, not a spec error): the server may be down for now.
            raise RuntimeError(f"spec.tracking.mlflow: {spec.uri} experiment {spec.experiment!r}: {err}") from None
        self.failed = False

    def write(self, record: StepMetrics) -> None:
        from mlflow.entities import Metric
        from mlflow.exceptions import MlflowException

        if self.failed:
            return
        when = int(record.wall_time * 1000)
        metrics = [
            Metric(MLFLOW_KEYS[field], float(value), when, record.step) for field, value in _scalars(record).items()
        ]
        try:
            self.client.log_batch(self.run_id, metrics=metrics)
        except (MlflowException, OSError) as err:
            self.failed = True
            logger.warning(
                "MLflow logging stopped; the curves still go to the metrics directory", extra={"error": str(err)}
            )

    def close(self, *, finished: bool) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.set_terminated(self.run_id, status="FINISHED" if finished else "FAILED")
        except (MlflowException, OSError) as err:
            logger.warning("MLflow run not closed", extra={"error": str(err)})


def _scalars(record: StepMetrics) -> dict[str, float]:
    """The record's curve values by field, in TENSORBOARD_TAGS order (a non-finite gradient norm is left out)."""
    values = record.model_dump()
    return {field: float(values[field]) for field in TENSORBOARD_TAGS if values[field] is not None}


class TrainingCurves:
    """Rank 0's writers for one attempt: open with `open_curves`, `write` each step, `close` at the end."""

    def __init__(
        self,
        directory: Path,
        *,
        first_step: int,
        mlflow: MlflowTracking | None,
        run_name: str,
        params: Mapping[str, Any],
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.trained_tokens = resume_steps(directory, first_step)
        # purge_step: TensorBoard's reader drops older events at or after it, the steps this attempt replays.
        self.tensorboard = SummaryWriter(log_dir=str(directory), purge_step=first_step + 1)
        self.steps = (directory / STEPS_FILE).open("a", encoding="utf-8")
        self.mlflow = _Mlflow(mlflow, directory, run_name=run_name, params=params) if mlflow else None

    def add_step(
        self, marker: Mapping[str, Any], *, trained_tokens: int, grad_norm: float, learning_rate: float
    ) -> StepMetrics:
        """Record the step of progress marker `marker` (its loss, epoch and throughput, exactly as printed)."""
        self.trained_tokens += trained_tokens
        record = StepMetrics(
            step=marker["step"],
            epoch=marker["epoch"],
            loss=marker["loss"],
            learning_rate=learning_rate,
            grad_norm=finite_or_none(grad_norm),
            tokens_per_second=marker["tokensPerSecond"],
            trained_tokens=self.trained_tokens,
            wall_time=time.time(),
        )
        self.write(record)
        return record

    def write(self, record: StepMetrics) -> None:
        self.steps.write(record.model_dump_json(by_alias=True) + "\n")
        self.steps.flush()
        for field, value in _scalars(record).items():
            self.tensorboard.add_scalar(TENSORBOARD_TAGS[field], value, record.step, walltime=record.wall_time)
        self.tensorboard.flush()  # a step takes seconds on a GPU; a crash should lose none of the curve
        if self.mlflow is not None:
            self.mlflow.write(record)

    def close(self, *, finished: bool) -> None:
        self.steps.close()
        self.tensorboard.close()
        if self.mlflow is not None:
            self.mlflow.close(finished=finished)
