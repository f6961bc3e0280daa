"""Fixtures for the cluster tests: a real control plane, fake GPU nodes and the pod executor.

The binaries come from `bash tests/cluster/build-controlplane.sh` (cached by
version). Without them the tests are skipped locally, but fail when `CI` is
set or `COTLAB_REQUIRE_CLUSTER=1`, so CI never passes by skipping.

Fixtures:
    control_plane (session)  `kube_controlplane.ControlPlane`, started once
    kubeconfig (session)     path of the admin kubeconfig
    kube_api (session)       a `kubernetes.client.ApiClient` for the admin user
    crds (session)           names of the CRDs installed from manifests/crds (fails if any was rejected)
    pod_executor (session)   `pod_executor.PodExecutor` with nodes gpu-node-0/1 (8 GPUs each)
    namespace (function)     a fresh namespace (default ServiceAccount present), deleted afterwards
    operator_kubeconfig (session)  manifests/install's RBAC applied, a kubeconfig with the operator's token
    tiny_model_dir (session) a random tiny Qwen2 saved to disk, for the pods to load
    artifact_claim (function) the namespace's `cotlab-artifacts` PersistentVolumeClaim
    operator (function)      `python -m cotlab.operator` watching the test's namespace, as its ServiceAccount
    real_cluster (session)   a second control plane with a real node (kubelet, containerd, CNI, kube-proxy,
                             CoreDNS, a registry holding the operator and trainer images); needs root
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also under --import-mode=importlib

import kube_controlplane  # noqa: E402
import kube_wait  # noqa: E402
import operator_process  # noqa: E402
import pod_executor as pod_executor_module  # noqa: E402
import real_cluster as real_cluster_module  # noqa: E402

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/cluster is a `cluster` test."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cluster)


def cluster_required() -> bool:
    """Whether a missing control plane (or Kueue) fails the tests instead of skipping them: in CI, or when asked."""
    return bool(os.environ.get("CI")) or os.environ.get("COTLAB_REQUIRE_CLUSTER") == "1"


def _report(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():  # fixtures run with output captured
        reporter.write_line(line)


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[kube_controlplane.ControlPlane]:
    bin_dir = kube_controlplane.controlplane_bin_dir()
    if bin_dir is None:
        message = (
            f"control-plane binaries ({kube_controlplane.K8S_VERSION}) not built: "
            "run `bash tests/cluster/build-controlplane.sh` (about 5 minutes cold)"
        )
        if cluster_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    plane = kube_controlplane.ControlPlane(bin_dir=bin_dir, workdir=tmp_path_factory.mktemp("controlplane"))
    try:
        plane.start()
    except Exception as err:
        pytest.fail(f"control plane did not start: {err}", pytrace=False)
    _report(request.config, f"\ncontrol plane {kube_controlplane.K8S_VERSION} up in {plane.startup_seconds:.1f}s")
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: kube_controlplane.ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def kube_api(control_plane: kube_controlplane.ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    with control_plane.api_client() as api:
        yield api


@pytest.fixture(scope="session")
def crds(control_plane: kube_controlplane.ControlPlane) -> list[str]:
    if control_plane.crd_errors:
        lines = [f"{e.name}: {e.status} {e.message}" for e in control_plane.crd_errors]
        pytest.fail("CRDs rejected by the API server:\n" + "\n".join(lines), pytrace=False)
    return control_plane.crd_names


@pytest.fixture(scope="session")
def pod_executor(
    control_plane: kube_controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[pod_executor_module.PodExecutor]:
    # Its own ApiClient: the executor's threads should not share a connection pool with the tests.
    with control_plane.api_client() as api:
        executor = pod_executor_module.PodExecutor(
            api, root=tmp_path_factory.mktemp("pods"), tls=control_plane.kubelet_serving
        )
        executor.start()
        yield executor
        executor.stop()


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest,
    kube_api: kubernetes.client.ApiClient,
    pod_executor: pod_executor_module.PodExecutor,
) -> Iterator[str]:
    core = kubernetes.client.CoreV1Api(kube_api)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"cotlab.dev/test": "true"}}})  # type: ignore[arg-type]

    def default_service_account() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
            return True
        except ApiException as err:
            if err.status == 404:
                return False
            raise

    kube_wait.wait_for(default_service_account, timeout=30, what=f"ServiceAccount {name}/default")
    yield name
    # Not awaited: the namespace controller deletes the contents (and the
    # executor kills their processes) while the next test runs.
    core.delete_namespace(name, propagation_policy="Background")


# -- the operator ------------------------------------------------------------------------------------------

ARTIFACT_CLAIM = "cotlab-artifacts"


@pytest.fixture(scope="session")
def operator_kubeconfig(
    control_plane: kube_controlplane.ControlPlane,
    kube_api: kubernetes.client.ApiClient,
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A kubeconfig with a token of the operator's ServiceAccount (manifests/install's RBAC applied)."""
    return operator_process.install_operator_identity(control_plane, kube_api, tmp_path_factory.mktemp("operator"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Qwen2 (seeded) with a ChatML tokenizer, saved where pods (local processes) can read it."""
    from tests.workload.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture
def artifact_claim(kube_api: kubernetes.client.ApiClient, namespace: str) -> str:
    """The namespace's `cotlab-artifacts` claim: the operator's default artifact root lives on it."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": ARTIFACT_CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    kubernetes.client.CoreV1Api(kube_api).create_namespaced_persistent_volume_claim(namespace, claim)  # type: ignore[arg-type]
    return ARTIFACT_CLAIM


@pytest.fixture
def operator(
    operator_kubeconfig: Path, namespace: str, artifact_claim: str, tmp_path: Path
) -> Iterator[operator_process.OperatorProcess]:
    """`python -m cotlab.operator -n <namespace>` as its ServiceAccount; its log is printed if the test fails."""
    process = operator_process.OperatorProcess(operator_kubeconfig, namespace, tmp_path / "operator.log")
    process.start()
    yield process
    process.stop()
    print(f"--- operator log ({process.log}) ---\n{process.tail(200)}")  # shown by pytest for a failed test


# -- the real node -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[real_cluster_module.RealCluster]:
    """Its own control plane, so that the fake GPU nodes and the pod executor never take its pods."""
    problem = None
    bin_dir = kube_controlplane.controlplane_bin_dir()
    if bin_dir is None:
        problem = "control-plane binaries not built: run `bash tests/cluster/build-controlplane.sh`"
    elif os.geteuid() != 0:
        problem = "the real node needs root (kubelet, containerd, bridges and iptables rules)"
    if problem is not None:
        if cluster_required():
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    assert bin_dir is not None
    began = time.monotonic()
    try:
        cluster = real_cluster_module.RealCluster.start(bin_dir, tmp_path_factory.mktemp("real-node"))
    except Exception as err:
        pytest.fail(f"the real node did not start: {err}", pytrace=False)
    _report(
        request.config,
        f"\nreal node up in {time.monotonic() - began:.1f}s (node {cluster.node.startup_seconds:.1f}s, "
        f"images pushed: {', '.join(cluster.images.values())})",
    )
    yield cluster
    cluster.stop()
