"""Where a pod's training processes meet: the launch plan from the spec and the environment, and the exit code."""

from __future__ import annotations

from typing import Any

import pytest

from cotlab.api.finetunerun import Distributed
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.finetune.launch import LaunchPlan, launch_plan, worker_exit_code, worker_signal

TWO_NODES = Distributed(nodes=2, gpus_per_node=8)


@pytest.mark.parametrize(
    ("distributed", "env", "want"),
    [
        (Distributed(), {}, None),
        (Distributed(nodes=1, gpus_per_node=1), {}, None),
        (TWO_NODES, {"LOCAL_RANK": "3", "MASTER_ADDR": "a"}, None),  # a worker trains itself
        (
            TWO_NODES,
            {"JOB_COMPLETION_INDEX": "1", "MASTER_ADDR": "run-0.run", "MASTER_PORT": "29400"},
            LaunchPlan(2, 8, 1, "run-0.run", 29400, "run"),
        ),
        (
            Distributed(nodes=2, gpus_per_node=0, cpu_processes_per_node=3, strategy="ddp"),
            {"NODE_RANK": "0", "MASTER_ADDR": "run-0.run"},
            LaunchPlan(2, 3, 0, "run-0.run", 29500, "run"),
        ),
    ],
    ids=["one-cpu-process", "one-gpu", "worker", "index-1-of-2-nodes", "node-rank-env-default-port"],
)
def test_launch_plan(distributed: Distributed, env: dict[str, str], want: LaunchPlan | None) -> None:
    assert launch_plan(distributed, env, run_id="run") == want


def test_one_node_rendezvouses_on_a_local_port() -> None:
    plan = launch_plan(Distributed(gpus_per_node=8), {}, run_id="run")
    assert plan is not None
    assert (plan.nodes, plan.processes_per_node, plan.node_rank, plan.master_addr) == (1, 8, 0, "127.0.0.1")
    assert plan.master_port > 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MASTER_ADDR": "run-0.run"}, "JOB_COMPLETION_INDEX (or NODE_RANK) must be a node rank in [0, 2), got None"),
        ({"JOB_COMPLETION_INDEX": "2", "MASTER_ADDR": "a"}, "must be a node rank in [0, 2), got 2"),
        ({"JOB_COMPLETION_INDEX": "x"}, "environment JOB_COMPLETION_INDEX: must be an integer, got 'x'"),
        ({"JOB_COMPLETION_INDEX": "0"}, "MASTER_ADDR must name the node-rank-0 pod"),
    ],
    ids=["no-rank", "rank-out-of-range", "rank-not-a-number", "no-master-addr"],
)
def test_launch_plan_refuses_an_incomplete_environment(env: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        launch_plan(TWO_NODES, env, run_id="run")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("codes", "want"),
    [
        ({0: -9}, (1, False)),  # killed: nobody wrote the termination message
        ({1: -15, 0: 4}, (4, True)),  # a trace too long on rank 0; rank 1 was stopped by the agent
        ({0: 2, 1: 2}, (2, True)),
        ({3: 139}, (1, False)),
    ],
    ids=["sigkill", "reported-code-wins", "invalid-spec", "segfault"],
)
def test_worker_exit_code(codes: dict[int, int], want: tuple[int, bool]) -> None:
    assert worker_exit_code(codes) == want


@pytest.mark.parametrize(
    ("code", "want"), [(-9, "SIGKILL"), (-11, "SIGSEGV"), (1, None), (0, None), (-200, "signal 200")]
)
def test_worker_signal_names_what_killed_a_worker(code: int, want: str | None) -> None:
    """torch's launcher reports a worker killed by a signal as the negative signal number."""
    assert worker_signal(code) == want
