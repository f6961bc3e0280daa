"""A FineTuneRun over two nodes on the real control plane: an Indexed Job and a headless Service, two pods that
meet through the Service's DNS names (the pod executor resolves them to the loopback) and train with gloo."""

from __future__ import annotations

from pathlib import Path

import kubernetes.client
from operator_process import OperatorProcess
from pod_executor import PodExecutor
from test_operator import claim_file, fine_tune_run, jobs_of, run_kubectl, trace_dataset, wait_phase

from cotlab.api.children import child_name


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
