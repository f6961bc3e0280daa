"""Training curves: rank 0's JSONL and TensorBoard files (read back with TensorBoard's own reader), a resumed
attempt's replayed steps replacing the old ones, and MLflow logging against a real `mlflow server` on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cotlab.api.tracking import (
    MLFLOW_PASSWORD_ENV,
    MLFLOW_TOKEN_ENV,
    MLFLOW_USERNAME_ENV,
    STEPS_FILE,
    TENSORBOARD_TAGS,
    MlflowTracking,
    StepMetrics,
)
from cotlab.trainer.finetune.curves import TrainingCurves
from tests.child_signals import default_sigint
from tests.conftest import REPO

pytestmark = pytest.mark.workload
# The server the tests log to: the same version as the client in cotlab's environment (mlflow-skinny).
MLFLOW_SERVER = "mlflow==3.17.2"


def tensorboard_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in `directory` as (step, value), read by TensorBoard's own EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})  # 0: keep every event
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def marker(step: int, loss: float) -> dict[str, Any]:
    return {"step": step, "totalSteps": 6, "epoch": step / 3, "loss": loss, "tokensPerSecond": 100.0 * step}


def train(curves: TrainingCurves, losses: dict[int, float]) -> None:
    for step, loss in losses.items():
        curves.add_step(marker(step, loss), trained_tokens=50, grad_norm=0.5 * step, learning_rate=1e-3 / step)


def test_curves_are_tensorboard_scalars_and_jsonl_and_a_resume_replaces_replayed_steps(tmp_path: Path) -> None:
    first = TrainingCurves(tmp_path, first_step=0, mlflow=None, run_name="tune", params={})
    train(first, {1: 2.5, 2: 2.25, 3: 2.0, 4: 1.75, 5: 1.5})
    first.close(finished=False)  # killed after step 5; the newest checkpoint is step 3's
    time.sleep(1.1)  # a new event file name (it carries the second)
    second = TrainingCurves(tmp_path, first_step=3, mlflow=None, run_name="tune", params={})
    train(second, {4: 1.7, 5: 1.4, 6: 1.2})
    second.close(finished=True)

    want = {1: 2.5, 2: 2.25, 3: 2.0, 4: 1.7, 5: 1.4, 6: 1.2}
    scalars = tensorboard_scalars(tmp_path)
    assert sorted(scalars) == sorted(TENSORBOARD_TAGS.values())
    assert scalars["train/loss"] == [(step, pytest.approx(loss)) for step, loss in want.items()]
    assert [v for _, v in scalars["train/trained_tokens"]] == [50.0 * s for s in want]  # counted on from step 3
    assert [s for s, _ in scalars["train/learning_rate"]] == list(want)
    lines = (tmp_path / STEPS_FILE).read_text().splitlines()
    records = [StepMetrics.model_validate_json(line) for line in lines]
    assert [(r.step, r.loss, r.trained_tokens, r.grad_norm) for r in records] == [
        (s, loss, 50 * s, 0.5 * s) for s, loss in want.items()
    ]


def test_mlflow_variables_are_mlflows_own() -> None:
    from mlflow import environment_variables as variables

    assert variables.MLFLOW_TRACKING_USERNAME.name == MLFLOW_USERNAME_ENV
    assert variables.MLFLOW_TRACKING_PASSWORD.name == MLFLOW_PASSWORD_ENV
    assert variables.MLFLOW_TRACKING_TOKEN.name == MLFLOW_TOKEN_ENV


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def mlflow_program() -> str:
    """The `mlflow` program of MLflow's full package, in a virtual environment of its own (scripts/py-tool.sh,
    cached; .ci/run installs it): the server's dependencies stay out of cotlab's environment."""
    installed = subprocess.run(
        ["bash", str(REPO / "scripts" / "py-tool.sh"), MLFLOW_SERVER, "mlflow"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return installed.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (SQLite store) on loopback, stopped with its process group."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    argv = [mlflow_program(), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--default-artifact-root", str(root / "artifacts"),
            "--workers", "1"]  # fmt: skip
    log = (root / "server.log").open("w")
    # cwd: not the repository, whose operator/ would shadow Python's own for the server's `python -m` workers.
    server = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True, preexec_fn=default_sigint
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            assert server.poll() is None, (root / "server.log").read_text()
            assert time.monotonic() < deadline, "mlflow server did not answer /health in 120 s"
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_curves_go_to_a_real_mlflow_server_and_a_resume_continues_its_run(mlflow_server: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    spec = MlflowTracking(uri=mlflow_server, experiment="teaching-reasoning")
    params = {"learningRate": 1e-5, "method": "lora"}
    first = TrainingCurves(tmp_path, first_step=0, mlflow=spec, run_name="qwen-qwq", params=params)
    train(first, {1: 2.5, 2: 2.25, 3: 2.0})
    first.close(finished=False)
    second = TrainingCurves(tmp_path, first_step=2, mlflow=spec, run_name="qwen-qwq", params=params)
    train(second, {3: 1.9, 4: 1.6})
    second.close(finished=True)

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("teaching-reasoning")
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id])
    assert (run.info.run_name, run.info.status) == ("qwen-qwq", "FINISHED")
    assert run.data.params == {"learningRate": "1e-05", "method": "lora"}
    history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")]
    # MLflow keeps every logged point: step 3 twice (the first attempt's, then its replay), as it happened.
    assert sorted(history) == [(1, 2.5), (2, 2.25), (3, 1.9), (3, 2.0), (4, 1.6)]
    assert set(run.data.metrics) == {
        "loss",
        "learning_rate",
        "grad_norm",
        "tokens_per_second",
        "trained_tokens",
        "epoch",
    }


def test_an_unreachable_mlflow_server_fails_the_start_naming_the_field(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    spec = MlflowTracking(uri=f"http://127.0.0.1:{_free_port()}", experiment="x")
    with pytest.raises(RuntimeError, match=r"spec\.tracking\.mlflow: http://127\.0\.0\.1:\d+ experiment 'x'"):
        TrainingCurves(tmp_path, first_step=0, mlflow=spec, run_name="tune", params={})
