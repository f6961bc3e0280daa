"""The test cluster behaves like a real one for what cotlab uses: Jobs, GPUs, logs, deletion."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import kube_wait
import kubernetes.client
import pod_executor
import pytest
from kubernetes.client.exceptions import ApiException

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def python_container(code: str, **extra: Any) -> dict[str, Any]:
    return {"name": "main", "image": "cotlab/none:test", "command": ["python", "-c", textwrap.dedent(code)], **extra}


def make_job(name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def job_condition(batch: kubernetes.client.BatchV1Api, namespace: str, name: str, kind: str) -> Any:
    job = batch.read_namespaced_job(name, namespace)
    return next((c for c in (job.status.conditions or []) if c.type == kind and c.status == "True"), None)


def job_pods(core: kubernetes.client.CoreV1Api, namespace: str, job: str) -> list[kubernetes.client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}").items)


def terminated(pod: kubernetes.client.V1Pod) -> kubernetes.client.V1ContainerStateTerminated:
    return pod.status.container_statuses[0].state.terminated


def test_job_completes_with_termination_message_and_logs(kube_api: kubernetes.client.ApiClient, namespace: str) -> None:
    core, batch = kubernetes.client.CoreV1Api(kube_api), kubernetes.client.BatchV1Api(kube_api)
    code = """
        print("hello from the job", flush=True)
        with open("/dev/termination-log", "w") as f:
            f.write('{"summary": "ok"}')
    """
    batch.create_namespaced_job(namespace, make_job("hello", python_container(code)))

    kube_wait.wait_for(lambda: job_condition(batch, namespace, "hello", "Complete"), timeout=60, what="Job Complete")
    [pod] = job_pods(core, namespace, "hello")
    assert pod.status.phase == "Succeeded"
    state = terminated(pod)
    assert (state.exit_code, state.reason, state.message) == (0, "Completed", '{"summary": "ok"}')
    assert core.read_namespaced_pod_log(pod.metadata.name, namespace) == "hello from the job\n"
    assert core.read_namespaced_pod_log(pod.metadata.name, namespace, container="main", tail_lines=1) == (
        "hello from the job\n"
    )

    batch.delete_namespaced_job("hello", namespace, propagation_policy="Background")
    kube_wait.wait_for(lambda: not job_pods(core, namespace, "hello"), timeout=30, what="pod garbage-collected")


def test_indexed_job_runs_every_index(kube_api: kubernetes.client.ApiClient, namespace: str) -> None:
    core, batch = kubernetes.client.CoreV1Api(kube_api), kubernetes.client.BatchV1Api(kube_api)
    code = """
        import os
        open("/dev/termination-log", "w").write("index=" + os.environ["JOB_COMPLETION_INDEX"])
    """
    job = make_job("indexed", python_container(code), completions=2, parallelism=2, completionMode="Indexed")
    batch.create_namespaced_job(namespace, job)

    kube_wait.wait_for(lambda: job_condition(batch, namespace, "indexed", "Complete"), timeout=60, what="Job Complete")
    messages = sorted(terminated(p).message for p in job_pods(core, namespace, "indexed"))
    assert messages == ["index=0", "index=1"]


def test_gpu_requests_beyond_a_node_stay_pending(kube_api: kubernetes.client.ApiClient, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)

    def gpu_pod(name: str, gpus: int) -> dict[str, Any]:
        limits = {pod_executor.GPU_RESOURCE: str(gpus)}
        container = python_container("print('gpu')", resources={"limits": limits})
        return {"metadata": {"name": name}, "spec": {"restartPolicy": "Never", "containers": [container]}}

    core.create_namespaced_pod(namespace, gpu_pod("too-big", 16))
    core.create_namespaced_pod(namespace, gpu_pod("one-gpu", 1))

    kube_wait.wait_for(
        lambda: core.read_namespaced_pod("one-gpu", namespace).status.phase == "Succeeded",
        timeout=60,
        what="the 1-GPU pod to succeed",
    )

    def unschedulable() -> bool:
        status = core.read_namespaced_pod("too-big", namespace).status
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in status.conditions or [])

    kube_wait.wait_for(unschedulable, timeout=30, what="the 16-GPU pod to be Unschedulable")
    pod = core.read_namespaced_pod("too-big", namespace)
    assert (pod.status.phase, pod.spec.node_name) == ("Pending", None)


def test_failing_container_fails_pod_and_job(kube_api: kubernetes.client.ApiClient, namespace: str) -> None:
    core, batch = kubernetes.client.CoreV1Api(kube_api), kubernetes.client.BatchV1Api(kube_api)
    container = python_container(
        "import sys; print('about to fail'); sys.exit(3)", terminationMessagePolicy="FallbackToLogsOnError"
    )
    batch.create_namespaced_job(namespace, make_job("fails", container))

    failed = kube_wait.wait_for(
        lambda: job_condition(batch, namespace, "fails", "Failed"), timeout=60, what="Job Failed"
    )
    assert failed.reason == "BackoffLimitExceeded"
    [pod] = job_pods(core, namespace, "fails")
    state = terminated(pod)
    assert (pod.status.phase, state.exit_code, state.reason, state.message) == ("Failed", 3, "Error", "about to fail\n")


def test_deleting_a_running_pod_kills_its_process(
    kube_api: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    done = tmp_path / "done"
    code = f"""
        import pathlib, time
        print("sleeping", flush=True)
        time.sleep(30)
        pathlib.Path({str(done)!r}).write_text("should never happen")
    """
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": "sleeper"}, "spec": {"containers": [python_container(code)]}}
    )

    def running_pid() -> int | None:
        statuses = core.read_namespaced_pod("sleeper", namespace).status.container_statuses or []
        if statuses and statuses[0].state.running:
            return int(statuses[0].container_id.removeprefix("executor://"))
        return None

    pid = kube_wait.wait_for(running_pid, timeout=60, what="the sleeper to run")
    os.kill(pid, 0)  # it is a real local process

    core.delete_namespaced_pod("sleeper", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("sleeper", namespace)
            return False
        except ApiException as err:
            return err.status == 404

    kube_wait.wait_for(gone, timeout=30, what="the pod to be deleted")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not done.exists()


def test_volumes_env_and_claims_reach_the_process(
    kube_api: kubernetes.client.ApiClient, namespace: str, pod_executor: pod_executor.PodExecutor
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "spec"}, "data": {"spec.yaml": "steps: 3\n"}})
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "artifacts"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    code = """
        import os, sys
        spec = open(sys.argv[1]).read()
        open("/data/out.txt", "w").write(spec + os.environ["POD"] + " " + os.environ["SPEC_PATH"])
    """
    container = python_container(
        code,
        args=["/etc/cotlab/spec.yaml"],
        env=[
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "SPEC_PATH", "value": "/etc/cotlab/spec.yaml"},
        ],
        volumeMounts=[{"name": "spec", "mountPath": "/etc/cotlab"}, {"name": "artifacts", "mountPath": "/data"}],
    )
    pod = {
        "metadata": {"name": "reader"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [
                {"name": "spec", "configMap": {"name": "spec"}},
                {"name": "artifacts", "persistentVolumeClaim": {"claimName": "artifacts"}},
            ],
        },
    }
    core.create_namespaced_pod(namespace, pod)

    phase = kube_wait.wait_for(
        lambda: (
            core.read_namespaced_pod("reader", namespace).status.phase in ("Succeeded", "Failed")
            and core.read_namespaced_pod("reader", namespace).status.phase
        ),
        timeout=60,
        what="the reader pod to finish",
    )
    logs = core.read_namespaced_pod_log("reader", namespace)
    assert phase == "Succeeded", logs
    spec_path = pod_executor.pod_dir(namespace, "reader") / "fs" / "etc" / "cotlab" / "spec.yaml"
    out = (pod_executor.claim_dir(namespace, "artifacts") / "out.txt").read_text()
    assert out == f"steps: 3\nreader {spec_path}"
