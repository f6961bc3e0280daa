"""A FineTuneRun over two nodes on the real control plane: an Indexed Job and a headless Service, two pods that
meet through the Service's DNS names (the pod executor resolves them to the loopback) and train with gloo.

A rank killed mid-run fails its attempt (the Job, whose controller then stops the other rank); the operator
starts the next attempt's Job, whose ranks resume from the newest (FSDP-sharded) checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import kubernetes.client
import psutil
from kube_wait import wait_for
from operator_process import OperatorProcess
from pod_executor import PodExecutor
from test_cli_cluster import COTCTL, spawn
from test_operator import RUN_TIMEOUT, claim_file, fine_tune_run, jobs_of, run_kubectl, trace_dataset, wait_phase

from cotlab.api.children import RESTART_ATTEMPT_LABEL, child_name
from cotlab.api.podcontract import parse_marker


def test_two_nodes_meet_through_the_headless_service_and_write_one_model(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    pod_executor: PodExecutor,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    import yaml

    experiment = tmp_path / "experiment.yaml"
    run = fine_tune_run("tune", "traces", tiny_model_dir, distributed={"nodes": 2, "gpusPerNode": 0, "strategy": "ddp"})
    experiment.write_text(yaml.safe_dump_all([trace_dataset("traces", tiny_model_dir), run]))
    run_kubectl(kubeconfig, namespace, "apply", "-f", str(experiment))

    tune = wait_phase(kube_api, namespace, "FineTuneRun", "tune", "Succeeded")

    name = child_name("FineTuneRun", "tune")
    [job] = jobs_of(kube_api, namespace, "tune")
    assert (job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == ("Indexed", 2, 2)
    assert job.spec.template.spec.subdomain == name
    service = kubernetes.client.CoreV1Api(kube_api).read_namespaced_service(name, namespace)
    assert service.spec.cluster_ip == "None" and service.spec.publish_not_ready_addresses is True
    assert service.metadata.owner_references[0].uid == tune["metadata"]["uid"]
    pods = kubernetes.client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector=f"job-name={name}")
    indexes = sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods.items)
    assert indexes == ["0", "1"]
    assert {p.status.phase for p in pods.items} == {"Succeeded"}
    assert tune["status"]["progress"]["step"] == 2 and tune["status"]["attempts"] == 1
    model = tune["status"]["outputs"]["model"]["uri"]
    assert (claim_file(pod_executor, namespace, model) / "config.json").is_file()


def _pods(api: kubernetes.client.ApiClient, namespace: str, job: str) -> list[Any]:
    core = kubernetes.client.CoreV1Api(api)
    return list(core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}").items)


def _rank_pod(api: kubernetes.client.ApiClient, namespace: str, job: str, index: int) -> Any:
    def found() -> Any:
        for pod in _pods(api, namespace, job):
            if pod.metadata.annotations.get("batch.kubernetes.io/job-completion-index") == str(index):
                return pod
        return None

    return wait_for(found, timeout=RUN_TIMEOUT, what=f"the index-{index} pod of Job {job}", interval=0.5)


def _log_lines(executor: PodExecutor, namespace: str, pod: str) -> list[str]:
    log = executor.pod_dir(namespace, pod) / "logs" / "finetune.log"
    return log.read_text(errors="replace").splitlines() if log.exists() else []


def _steps(lines: list[str]) -> list[int]:
    return [int(m["step"]) for m in map(parse_marker, lines) if m is not None and "step" in m]


def test_a_killed_rank_fails_the_attempt_and_the_next_attempt_resumes_every_rank_from_the_checkpoint(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    pod_executor: PodExecutor,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    import yaml

    training = {"maxSteps": 40, "saveEverySteps": 2, "perDeviceBatchSize": 2, "maxSeqLength": 1024,
                "precision": "fp32", "gradientCheckpointing": False, "learningRate": 1.0e-4}  # fmt: skip
    run = fine_tune_run(
        "restart", "traces", tiny_model_dir, training=training,
        distributed={"nodes": 2, "gpusPerNode": 0, "strategy": "fsdp"}, maxRetries=1,
    )  # fmt: skip
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump_all([trace_dataset("traces", tiny_model_dir), run]))
    run_kubectl(kubeconfig, namespace, "apply", "-f", str(experiment))

    first = child_name("FineTuneRun", "restart")
    rank0, rank1 = (_rank_pod(kube_api, namespace, first, i).metadata.name for i in (0, 1))
    # What a user watching would see: every rank, prefixed, through the end of the attempt and into the next.
    follow = spawn(kubeconfig, namespace, "logs", "finetunerun/restart", "-f", "--all")
    # Step 3's marker is printed after step 2's checkpoint was saved: there is one to resume from.
    wait_for(lambda: max(_steps(_log_lines(pod_executor, namespace, rank0)), default=0) >= 3,
             timeout=RUN_TIMEOUT, what="rank 0 to report step 3", interval=0.1)  # fmt: skip
    launcher = int(_rank_pod(kube_api, namespace, first, 1).status.container_statuses[0].container_id.split("//")[1])
    [worker] = [p for p in psutil.Process(launcher).children(recursive=True) if p.environ().get("RANK") == "1"]
    os.kill(worker.pid, signal.SIGKILL)
    killed_at = max(_steps(_log_lines(pod_executor, namespace, rank0)))

    tune = wait_phase(kube_api, namespace, "FineTuneRun", "restart", "Succeeded", timeout=2 * RUN_TIMEOUT)
    try:
        followed, said = follow.communicate(timeout=RUN_TIMEOUT)
    finally:
        if follow.poll() is None:
            os.killpg(follow.pid, signal.SIGKILL)

    jobs = {j.metadata.name: j for j in jobs_of(kube_api, namespace, "restart")}
    assert sorted(jobs) == [first, f"{first}-r1"]
    assert any(c.type == "Failed" and c.status == "True" for c in jobs[first].status.conditions)
    assert jobs[first].metadata.labels[RESTART_ATTEMPT_LABEL] == "0"
    assert jobs[f"{first}-r1"].metadata.labels[RESTART_ATTEMPT_LABEL] == "1"
    # The first attempt's rank 0 was stopped by the Job controller, not left blocked in a collective.
    assert not [p for p in _pods(kube_api, namespace, first) if p.status.phase in ("Pending", "Running")]

    status = tune["status"]
    assert (status["attempts"], status["restarts"]) == (2, 1)
    [ended] = status["endedAttempts"]
    assert ended["attempt"] == 1 and ended["reason"] == "RankFailed"
    assert f"(pod {rank1})" in ended["message"] and "rank 1 failed" in ended["message"], ended

    # Every rank of the second attempt resumed from the newest checkpoint before the kill, not from step 0.
    second = [_rank_pod(kube_api, namespace, f"{first}-r1", i).metadata.name for i in (0, 1)]
    resumed = _steps(_log_lines(pod_executor, namespace, second[0]))
    checkpoint = resumed[0] - 1
    assert 2 <= checkpoint <= killed_at and checkpoint % 2 == 0, (resumed, killed_at)
    assert resumed == list(range(checkpoint + 1, 41))
    for pod in second:
        assert any("resuming from a checkpoint" in line for line in _log_lines(pod_executor, namespace, pod)), pod
    assert status["progress"]["step"] == 40

    # `cotctl logs -f --all` followed both ranks from the first attempt's pods into the second attempt's.
    assert follow.returncode == 0, said
    for rank, (old, new) in enumerate(zip((rank0, rank1), second, strict=True)):
        assert f"following pod {new} (rank {rank})" in said, said
        prefix = f"[rank {rank}] "
        mine = [line.removeprefix(prefix) for line in followed.splitlines() if line.startswith(prefix)]
        # The old pod's log, then the new one's (which alone resumes), to the new one's last line.
        first_old, last_new = _log_lines(pod_executor, namespace, old)[0], _log_lines(pod_executor, namespace, new)[-1]
        resuming = next(i for i, line in enumerate(mine) if "resuming from a checkpoint" in line)
        assert mine.index(first_old) < resuming and last_new in mine[-1], (mine[:3], mine[-3:])
    only = subprocess.run([COTCTL, "logs", "finetunerun/restart", "--rank", "1", "--kubeconfig", str(kubeconfig),
                           "-n", namespace], capture_output=True, text=True, check=True)  # fmt: skip
    assert only.stdout.splitlines() == _log_lines(pod_executor, namespace, second[1])
    model = claim_file(pod_executor, namespace, status["outputs"]["model"]["uri"])
    assert (model / "config.json").is_file()
    print({"killed_after_step": killed_at, "resumed_from_checkpoint": checkpoint})
