"""Queued runs with the real Kueue manager (built from source) beside the control plane and the operator.

These tests get a control plane of their own, with Kueue's CRDs installed before kube-controller-manager starts
(its garbage collector then knows Workloads at once), so that the session's plane stays one without Kueue.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kube_apply
import kube_controlplane
import kubernetes.client
import pod_executor as pod_executor_module
import pytest
from conftest import cluster_required
from kube_wait import wait_for
from kueue_manager import KueueManager, kueue_dir
from operator_process import OperatorProcess, install_operator_identity
from test_operator import RUN_TIMEOUT, apply, condition, eval_run, fine_tune_run, get, trace_dataset, wait_phase
from test_operator import write_benchmark as write_sums

GPU = "nvidia.com/gpu"
EIGHT_GPUS = {"resources": {"requests": {GPU: 8}}}
# A fine-tune here trains on CPU (gpusPerNode 0 must match its GPU request), so preemption contends for CPU quota.
MOST_CPUS = {"resources": {"requests": {"cpu": 40}}}


@pytest.fixture(scope="module")
def kueue_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kube_controlplane.ControlPlane]:
    bin_dir, kueue = kube_controlplane.controlplane_bin_dir(), kueue_dir()
    if bin_dir is None or kueue is None:
        message = "control plane or Kueue not built: bash tests/cluster/build-controlplane.sh && build-kueue.sh"
        if cluster_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    plane = kube_controlplane.ControlPlane(
        bin_dir=bin_dir, workdir=tmp_path_factory.mktemp("kueue-plane"), early_crd_dir=kueue / "crds"
    )
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def kueue_api(kueue_plane: kube_controlplane.ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    with kueue_plane.api_client() as api:
        yield api


@pytest.fixture(scope="module")
def kueue_executor(
    kueue_plane: kube_controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[pod_executor_module.PodExecutor]:
    with kueue_plane.api_client() as api:
        executor = pod_executor_module.PodExecutor(
            api, root=tmp_path_factory.mktemp("kueue-pods"), tls=kueue_plane.kubelet_serving
        )
        executor.start()
        yield executor
        executor.stop()


@pytest.fixture(scope="module")
def kueue(
    kueue_plane: kube_controlplane.ControlPlane,
    kueue_executor: pod_executor_module.PodExecutor,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KueueManager]:
    directory = kueue_dir()
    assert directory is not None
    manager = KueueManager(directory, kueue_plane.kubeconfig, tmp_path_factory.mktemp("kueue"))
    manager.start()
    yield manager
    manager.stop()


@pytest.fixture(scope="module")
def kueue_operator_kubeconfig(
    kueue_plane: kube_controlplane.ControlPlane, kueue_api: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return install_operator_identity(kueue_plane, kueue_api, tmp_path_factory.mktemp("kueue-operator"))


@pytest.fixture
def queue(kueue_api: Any, kueue: KueueManager, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace with the artifact claim and a LocalQueue `team` on an 8-GPU ClusterQueue of its own."""
    core = kubernetes.client.CoreV1Api(kueue_api)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:30].strip("-")
    name = f"kq-{slug}"
    core.create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]
    wait_for(lambda: core.list_namespaced_service_account(name).items, timeout=30, what="default ServiceAccount")
    claim = {"metadata": {"name": "cotlab-artifacts"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip
    core.create_namespaced_persistent_volume_claim(name, claim)  # type: ignore[arg-type]
    docs = [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": "default"}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "WorkloadPriorityClass", "metadata": {"name": "low"},
         "value": 100},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "WorkloadPriorityClass", "metadata": {"name": "high"},
         "value": 1000},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": name},
         "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}},
                  "preemption": {"withinClusterQueue": "LowerPriority"},
                  "resourceGroups": [{"coveredResources": ["cpu", "memory", GPU], "flavors": [
                      {"name": "default", "resources": [{"name": "cpu", "nominalQuota": 64},
                                                        {"name": "memory", "nominalQuota": "512Gi"},
                                                        {"name": GPU, "nominalQuota": 8}]}]}]}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "team", "namespace": name},
         "spec": {"clusterQueue": name}},
    ]  # fmt: skip
    failed = [r for r in kube_apply.apply_manifests(kueue_api, docs) if not r.ok]
    assert not failed, failed
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def queued_operator(kueue_operator_kubeconfig: Path, queue: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(kueue_operator_kubeconfig, queue, tmp_path / "operator.log")
    process.start()
    yield process
    process.stop()
    print(f"--- operator log ---\n{process.tail(200)}")


def reason(body: dict[str, Any] | None, type_: str) -> str | None:
    found = condition(body, type_)
    return found["reason"] if found and found["status"] == "True" else None


def test_a_second_eight_gpu_run_waits_for_quota_then_runs(
    kueue_api: Any, kueue_plane: Any, queue: str, queued_operator: OperatorProcess, tiny_model_dir: Path, tmp_path: Path
) -> None:
    bench = write_sums(tmp_path)
    longer = {"sampling": {"samples": 8, "temperature": 1.0, "maxTokens": 48, "seed": 0}}
    runs = [eval_run(n, bench, model=tiny_model_dir, queueName="team", **EIGHT_GPUS, **longer) for n in ("one", "two")]
    apply(kueue_plane.kubeconfig, queue, tmp_path, *runs)

    def one_runs_one_queued() -> tuple[dict[str, Any], dict[str, Any]] | None:
        bodies = [get(kueue_api, queue, "EvalRun", n) for n in ("one", "two")]
        phases = [((b or {}).get("status") or {}).get("phase") for b in bodies]
        if sorted(str(p) for p in phases) == ["Running", "Waiting"]:
            running, waiting = (bodies[0], bodies[1]) if phases[0] == "Running" else (bodies[1], bodies[0])
            # Queued at once; Kueue's own words once its Workload is read (at the next event or resync).
            said = (condition(waiting, "Waiting") or {}).get("message", "")
            if reason(waiting, "Waiting") == "Queued" and "insufficient unused quota" in said:
                return running, waiting  # type: ignore[return-value]
        return None

    running, waiting = wait_for(one_runs_one_queued, timeout=RUN_TIMEOUT, what="one run admitted, one queued")
    message = (condition(waiting, "Waiting") or {})["message"]
    assert "insufficient unused quota" in message and "nvidia.com/gpu" in message, message
    admitted = running["status"]["queue"]
    assert (admitted["localQueue"], admitted["clusterQueue"], admitted["flavors"][GPU]) == ("team", queue, "default")
    assert admitted["evictions"] == 0
    for name in ("one", "two"):
        done = wait_phase(kueue_api, queue, "EvalRun", name, "Succeeded")
        assert done["status"]["queue"]["clusterQueue"] == queue
        assert done["status"]["queue"]["flavors"][GPU] == "default"


def test_a_preempted_fine_tune_resumes_from_its_checkpoint(
    kueue_api: Any, kueue_plane: Any, queue: str, queued_operator: OperatorProcess, tiny_model_dir: Path, tmp_path: Path
) -> None:
    bench = write_sums(tmp_path)
    training = {"maxSteps": 300, "saveEverySteps": 20, "perDeviceBatchSize": 2, "maxSeqLength": 1024,
                "precision": "fp32", "gradientCheckpointing": False, "learningRate": 1.0e-4}  # fmt: skip
    apply(
        kueue_plane.kubeconfig, queue, tmp_path,
        trace_dataset("traces", tiny_model_dir),
        fine_tune_run("low", "traces", tiny_model_dir, training=training, queueName="team", priorityClass="low",
                      **MOST_CPUS),
    )  # fmt: skip

    def trained_past_a_checkpoint() -> bool:
        progress = ((get(kueue_api, queue, "FineTuneRun", "low") or {}).get("status") or {}).get("progress") or {}
        return int(progress.get("step") or 0) >= 25

    wait_for(trained_past_a_checkpoint, timeout=RUN_TIMEOUT, what="FineTuneRun/low past its step-20 checkpoint")
    apply(
        kueue_plane.kubeconfig,
        queue,
        tmp_path,
        eval_run("urgent", bench, model=tiny_model_dir, queueName="team", priorityClass="high", **MOST_CPUS),
    )

    def preempted() -> dict[str, Any] | None:
        body = get(kueue_api, queue, "FineTuneRun", "low")
        assert ((body or {}).get("status") or {}).get("phase") != "Failed", condition(body, "Failed")
        return body if reason(body, "Waiting") == "Preempted" else None

    shown = wait_for(preempted, timeout=60, what="FineTuneRun/low shown as preempted", interval=0.5)
    assert "evict" in (condition(shown, "Waiting") or {})["message"].lower()
    wait_phase(kueue_api, queue, "EvalRun", "urgent", "Succeeded")
    done = wait_phase(kueue_api, queue, "FineTuneRun", "low", "Succeeded")
    assert done["status"]["queue"]["evictions"] >= 1
    assert done["status"]["progress"]["step"] == 300

    # The readmitted pod started from the checkpoint, not from step 0: its first progress marker says so.
    core = kubernetes.client.CoreV1Api(kueue_api)
    pods = core.list_namespaced_pod(queue, label_selector="cotlab.dev/name=low").items
    newest = max(pods, key=lambda p: p.metadata.creation_timestamp)
    log = core.read_namespaced_pod_log(newest.metadata.name, queue, container="finetune")
    steps = [json.loads(line)["step"] for line in log.splitlines() if line.startswith('{"cotlab":"progress"')]
    assert steps and steps[0] > 20 and steps[-1] == 300, steps[:3]


def test_suspend_on_a_queued_run_goes_through_kueue(
    kueue_api: Any, kueue_plane: Any, queue: str, queued_operator: OperatorProcess, tiny_model_dir: Path, tmp_path: Path
) -> None:
    bench = write_sums(tmp_path)
    apply(
        kueue_plane.kubeconfig,
        queue,
        tmp_path,
        eval_run("held", bench, model=tiny_model_dir, queueName="team", suspend=True, **EIGHT_GPUS),
    )
    held = wait_phase(kueue_api, queue, "EvalRun", "held", "Suspended", timeout=60)
    assert reason(held, "Suspended") == "DeactivatedInKueue"
    custom = kubernetes.client.CustomObjectsApi(kueue_api)

    def deactivated() -> bool:  # once Kueue has made the Workload (its watch event), the operator deactivates it
        found = custom.list_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", queue, "workloads")["items"]
        return len(found) == 1 and found[0]["spec"]["active"] is False

    wait_for(deactivated, timeout=30, what="the Workload to be deactivated")

    def says_so() -> bool:
        said = (condition(get(kueue_api, queue, "EvalRun", "held"), "Suspended") or {}).get("message")
        return "its Kueue Workload is deactivated" in str(said)

    wait_for(says_so, timeout=30, what="status to say the Workload is deactivated")

    kubernetes.client.CustomObjectsApi(kueue_api).patch_namespaced_custom_object(
        "cotlab.dev", "v1alpha1", queue, "evalruns", "held", {"spec": {"suspend": False}}
    )
    done = wait_phase(kueue_api, queue, "EvalRun", "held", "Succeeded")
    assert done["status"]["queue"]["clusterQueue"] == queue
    [workload] = custom.list_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", queue, "workloads")["items"]
    assert workload["spec"]["active"] is True
