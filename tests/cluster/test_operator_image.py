"""The operator image against the real control plane: started with the install's own Deployment pod template
(its command, environment, uid 65532, read-only root, no capabilities) under podman, it reconciles a TraceDataset
to Ready. This is what proves the image's entry point, its imports and the Kubernetes client inside it; the
other cluster tests run the operator from this checkout instead.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes.client
import pytest
from operator_process import OperatorProcess
from pod_executor import PodExecutor
from test_operator import apply, jobs_of, trace_dataset, wait_phase

from tests.images.podman import built_images


@pytest.fixture(scope="module")
def operator_image() -> str:
    return built_images("operator")["operator"]


def test_the_operator_image_reconciles_a_tracedataset_to_succeeded(
    operator_image: str,
    operator_kubeconfig: Path,
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    artifact_claim: str,
    pod_executor: PodExecutor,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    operator = OperatorProcess(operator_kubeconfig, namespace, tmp_path / "operator.log", image=operator_image)
    operator.start(timeout=120)
    try:
        apply(kubeconfig, namespace, tmp_path, trace_dataset("traces", tiny_model_dir))
        body = wait_phase(kube_api, namespace, "TraceDataset", "traces", "Succeeded")
        [job] = jobs_of(kube_api, namespace, "traces")
        assert job.spec.template.spec.containers[0].image == "ghcr.io/cotlab/trainer:test"
        assert body["status"]["count"] == 4 and body["status"]["artifact"]["digest"].startswith("sha256:")
        assert "cotlab_operator_reconciles_total" in operator.metrics()
    finally:
        operator.stop()
        print(f"--- operator container log ---\n{operator.tail(200)}")
