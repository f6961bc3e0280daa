"""What the operator makes and keeps, on a real control plane with the operator as a process.

- A finished resource keeps what it recorded, whatever happens to its children afterwards (PodGC, a TTL, kubectl).
- Children are the resource's only by uid: a re-created resource waits for the old one's children to go.
- A spec ConfigMap deleted while its Job exists is made again; a child the API server refuses (a quota) shows in
  status instead of failing the reconcile in silence.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kubernetes.client
from kube_wait import wait_for
from kubernetes.client.exceptions import ApiException
from operator_process import OperatorProcess
from test_operator import (
    RUN_TIMEOUT,
    apply,
    condition,
    eval_run,
    get,
    jobs_of,
    trace_dataset,
    wait_phase,
    write_benchmark,
)

from cotlab.api import GROUP, VERSION
from cotlab.api.children import LABEL_NAME, child_name

RESYNCS = 6  # seconds: three resyncs of the test operator (2 s each) and its watch events


def _no_pods(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> bool:
    return not core.list_namespaced_pod(namespace, label_selector=f"{LABEL_NAME}={name}").items


def test_a_finished_resource_keeps_its_result_when_its_pods_and_job_are_deleted(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    bench = write_benchmark(tmp_path)
    apply(kubeconfig, namespace, tmp_path, trace_dataset("traces", tiny_model_dir),
          eval_run("scored", bench, model=tiny_model_dir))  # fmt: skip
    finished = {
        ("TraceDataset", "traces"): wait_phase(kube_api, namespace, "TraceDataset", "traces", "Succeeded"),
        ("EvalRun", "scored"): wait_phase(kube_api, namespace, "EvalRun", "scored", "Succeeded"),
    }
    assert finished[("TraceDataset", "traces")]["status"]["count"] == 4
    assert finished[("EvalRun", "scored")]["status"]["scores"]["sums"]["problems"] == 3
    core, batch = kubernetes.client.CoreV1Api(kube_api), kubernetes.client.BatchV1Api(kube_api)

    def unchanged() -> None:
        for (kind, name), before in finished.items():
            after = get(kube_api, namespace, kind, name)
            assert after is not None and after["status"] == before["status"], f"{kind}/{name} changed"

    # PodGC, a drained node, `kubectl delete pod`: every pod goes.
    for (_, name), _body in finished.items():
        core.delete_collection_namespaced_pod(namespace, label_selector=f"{LABEL_NAME}={name}")
        wait_for(lambda name=name: _no_pods(core, namespace, name), timeout=60, what=f"{name}'s pods to go")
    time.sleep(RESYNCS)
    unchanged()

    # A TTL, or `kubectl delete job`: the Job goes too. No new one is made, status says what it said.
    for (kind, name), _body in finished.items():
        batch.delete_namespaced_job(child_name(kind, name), namespace, propagation_policy="Background")
        wait_for(lambda name=name: not jobs_of(kube_api, namespace, name), timeout=60, what=f"{name}'s Job to go")
    time.sleep(RESYNCS)
    unchanged()
    assert [jobs_of(kube_api, namespace, name) for _, name in finished] == [[], []]


HOLD = "cotlab.dev/test-hold"  # a finalizer that keeps a deleted child around, as a slow garbage collector would


def _hold(api: kubernetes.client.ApiClient, namespace: str, kind: str, name: str, hold: bool) -> None:
    patch = {"metadata": {"finalizers": [HOLD] if hold else None}}
    if kind == "Job":
        kubernetes.client.BatchV1Api(api).patch_namespaced_job(name, namespace, patch)
    else:
        kubernetes.client.CoreV1Api(api).patch_namespaced_config_map(name, namespace, patch)


def test_a_recreated_dataset_waits_for_the_old_children_then_reports_its_own_count(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    apply(kubeconfig, namespace, tmp_path, trace_dataset("traces", tiny_model_dir))
    old = wait_phase(kube_api, namespace, "TraceDataset", "traces", "Succeeded")
    assert old["status"]["count"] == 4
    children = [("Job", child_name("TraceDataset", "traces")), ("ConfigMap", child_name("TraceDataset", "traces"))]
    for kind, name in children:
        _hold(kube_api, namespace, kind, name, True)

    # The documented way to change an immutable spec: delete, re-create with the change. The old children are
    # still there (the garbage collector has not got to them), under the same names.
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "tracedatasets", "traces")
    wait_for(lambda: get(kube_api, namespace, "TraceDataset", "traces") is None, timeout=30, what="the old one gone")
    changed = trace_dataset("traces", tiny_model_dir)
    changed["spec"]["select"]["count"] = 3
    apply(kubeconfig, namespace, tmp_path, changed)
    waiting = wait_phase(kube_api, namespace, "TraceDataset", "traces", "Waiting", timeout=30)
    reason = condition(waiting, "Waiting")
    assert reason is not None and reason["reason"] == "ChildNameTaken", reason
    assert old["metadata"]["uid"] in reason["message"]
    time.sleep(RESYNCS)  # it keeps waiting: nothing of the old run is adopted
    assert (get(kube_api, namespace, "TraceDataset", "traces") or {})["status"]["phase"] == "Waiting"

    for kind, name in children:  # the garbage collector finishes
        _hold(kube_api, namespace, kind, name, False)
    new = wait_phase(kube_api, namespace, "TraceDataset", "traces", "Succeeded", timeout=RUN_TIMEOUT)
    assert new["status"]["count"] == 3
    assert new["status"]["artifact"]["uri"] != old["status"]["artifact"]["uri"]  # its own folder (uid prefix)
    [job] = jobs_of(kube_api, namespace, "traces")
    assert [ref.uid for ref in job.metadata.owner_references] == [new["metadata"]["uid"]]


def test_a_deleted_spec_config_map_is_made_again_while_its_job_exists(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """A suspended run's Job waits; a pod it starts later needs the ConfigMap to mount its spec."""
    apply(kubeconfig, namespace, tmp_path,
          eval_run("paused", write_benchmark(tmp_path), model=tiny_model_dir, suspend=True))  # fmt: skip
    body = wait_phase(kube_api, namespace, "EvalRun", "paused", "Suspended", timeout=30)
    core = kubernetes.client.CoreV1Api(kube_api)
    name = child_name("EvalRun", "paused")
    first = core.read_namespaced_config_map(name, namespace)
    core.delete_namespaced_config_map(name, namespace)

    def remade() -> Any:
        try:
            again = core.read_namespaced_config_map(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return again if again.metadata.uid != first.metadata.uid else None

    again = wait_for(remade, timeout=30, what="the spec ConfigMap to be made again")
    assert again.data == first.data
    assert [ref.uid for ref in again.metadata.owner_references] == [body["metadata"]["uid"]]


def test_a_child_refused_by_a_quota_shows_in_status(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    quota = {"metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}}
    core = kubernetes.client.CoreV1Api(kube_api)
    core.create_namespaced_resource_quota(namespace, quota)  # type: ignore[arg-type]
    wait_for(lambda: (core.read_namespaced_resource_quota("no-jobs", namespace).status.hard or {}) != {},
             timeout=30, what="the quota to be counted")  # fmt: skip
    apply(kubeconfig, namespace, tmp_path, eval_run("over-quota", write_benchmark(tmp_path), model=tiny_model_dir))
    waiting = condition(wait_phase(kube_api, namespace, "EvalRun", "over-quota", "Waiting", timeout=30), "Waiting")
    assert waiting is not None and waiting["reason"] == "ChildRejected", waiting
    assert "exceeded quota: no-jobs" in waiting["message"] and "(403)" in waiting["message"], waiting

    core.delete_namespaced_resource_quota("no-jobs", namespace)  # room again: it is retried, and runs
    wait_phase(kube_api, namespace, "EvalRun", "over-quota", "Succeeded")
