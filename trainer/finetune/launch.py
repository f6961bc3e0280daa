"""Start the training processes of one pod with torch's elastic launcher, the rendezvous read from the environment.

The pod runs `python -m cotlab.trainer finetune`; when the spec asks for more than one process in all, that process
becomes the launcher (the agent of `torchrun`, through its Python API `elastic_launch`) and starts
`distributed.processesPerNode` workers running the same command. The workers see `LOCAL_RANK`, `RANK` and
`WORLD_SIZE`, which accelerate reads, and do the training; the launcher only waits and returns their exit code.

Rendezvous is torchrun's `static` backend (what `torchrun --node-rank --master-addr --master-port` uses, and what
Kubeflow's PyTorchJob sets through MASTER_ADDR/MASTER_PORT): the global ranks are fixed by the node rank, so a
restarted attempt gets the same ranks and can load its sharded checkpoint. The node rank is the Indexed Job's
completion index (`JOB_COMPLETION_INDEX`, set by Kubernetes) or `NODE_RANK`; the address is `MASTER_ADDR` (the
operator sets the index-0 pod's DNS name), the port `MASTER_PORT` (default 29500). One node needs none of them and
rendezvouses on a free local port.

`max_restarts=0`: a failed worker fails the pod and so the attempt; the retry starts every rank again from the
newest complete checkpoint, because a rank restarted alone could not rejoin the others' collectives.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cotlab.api.finetunerun import Distributed
from cotlab.api.podcontract import RENDEZVOUS_PORT, ExitCode
from cotlab.trainer.core.errors import InvalidSpecError

logger = logging.getLogger(__name__)

DEFAULT_MASTER_PORT = RENDEZVOUS_PORT
# Set by the elastic agent in every worker it starts: a process that has it is a worker, never a launcher.
WORKER_ENV = "LOCAL_RANK"
_REPORTED_EXIT_CODES = frozenset(int(code) for code in ExitCode)


@dataclass(frozen=True)
class LaunchPlan:
    """Where this pod's workers meet the others and which ranks they take."""

    nodes: int
    processes_per_node: int
    node_rank: int
    master_addr: str
    master_port: int
    run_id: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidSpecError(f"environment {name}: must be an integer, got {value!r}") from None


def launch_plan(distributed: Distributed, env: Mapping[str, str], *, run_id: str) -> LaunchPlan | None:
    """The launch for this pod, or None when this process should train itself (one process in all, or a worker)."""
    if WORKER_ENV in env or distributed.world_size == 1:
        return None
    if distributed.nodes == 1:
        return LaunchPlan(1, distributed.processes_per_node, 0, "127.0.0.1", _free_port(), run_id)
    node_rank = _int_env(env, "JOB_COMPLETION_INDEX")
    node_rank = node_rank if node_rank is not None else _int_env(env, "NODE_RANK")
    if node_rank is None or not 0 <= node_rank < distributed.nodes:
        raise InvalidSpecError(
            f"spec.distributed.nodes is {distributed.nodes}: JOB_COMPLETION_INDEX (or NODE_RANK) must be a node rank"
            f" in [0, {distributed.nodes}), got {node_rank}; run the pods as an Indexed Job"
        )
    master_addr = env.get("MASTER_ADDR")
    if not master_addr:
        raise InvalidSpecError(
            f"spec.distributed.nodes is {distributed.nodes}: MASTER_ADDR must name the node-rank-0 pod"
            " (the operator sets it to that pod's DNS name)"
        )
    port = _int_env(env, "MASTER_PORT")
    return LaunchPlan(
        distributed.nodes,
        distributed.processes_per_node,
        node_rank,
        master_addr,
        port if port is not None else DEFAULT_MASTER_PORT,
        run_id,
    )


def worker_exit_code(exit_codes: Mapping[int, int]) -> tuple[int, bool]:
    """The pod's exit code from its failed workers' (global rank -> exit code), and whether a worker reported it.

    A worker that exits with one of the entry point's codes has written the termination message itself; one
    killed by a signal (negative code) or crashing otherwise has not, and counts as a retryable failure.
    """
    for rank in sorted(exit_codes):
        code = exit_codes[rank]
        if code in _REPORTED_EXIT_CODES and code != int(ExitCode.OK):
            return code, True
    return int(ExitCode.RETRYABLE), False


def worker_signal(exit_code: int) -> str | None:
    """The signal that killed a worker ("SIGKILL"), which torch's launcher reports as a negative exit code."""
    if exit_code >= 0:
        return None
    try:
        return signal.Signals(-exit_code).name
    except ValueError:
        return f"signal {-exit_code}"


@dataclass(frozen=True)
class Launched:
    """How the workers ended: the pod's exit code, and what the launcher must report itself (None when the
    workers succeeded or a worker reported its own failure), with the signal that killed the first failed one."""

    code: int
    message: str | None = None
    signal: str | None = None


def launch_workers(plan: LaunchPlan, worker_argv: Sequence[str]) -> Launched:
    """Run `python <worker_argv>` in `plan.processes_per_node` workers and wait for them."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=plan.nodes,
        max_nodes=plan.nodes,
        nproc_per_node=plan.processes_per_node,
        run_id=plan.run_id,
        role="finetune",
        rdzv_backend="static",
        rdzv_endpoint=f"{plan.master_addr}:{plan.master_port}",
        rdzv_configs={"rank": plan.node_rank},
        max_restarts=0,
    )
    logger.info(
        "launching workers",
        extra={
            "nodes": plan.nodes,
            "processes_per_node": plan.processes_per_node,
            "node_rank": plan.node_rank,
            "rendezvous": config.rdzv_endpoint,
        },
    )
    try:
        elastic_launch(config, sys.executable)(*worker_argv)
    except ChildFailedError as exc:
        codes = {rank: failure.exitcode for rank, failure in exc.failures.items()}
        code, reported = worker_exit_code(codes)
        if reported:
            return Launched(code)
        rank, first = exc.get_first_failure()
        message = f"rank {rank} failed with exit code {first.exitcode}: {first.message}"
        return Launched(code, message, worker_signal(first.exitcode))
    return Launched(int(ExitCode.OK))
