"""What a resource becomes: whole Job and ConfigMap manifests, built from real example resources."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from cotlab.api import FineTuneRunStatus, Resource
from cotlab.api.children import attempt_job_name, child_name
from cotlab.api.podcontract import Inputs, PodSpecFile
from cotlab.api.tracedataset import Artifact
from cotlab.api.validation import parse_resource
from cotlab.operator.builders import build_children, build_job, build_pod_spec_file, claims_of
from cotlab.operator.policy import refusal
from cotlab.operator.settings import OperatorSettings, settings_from
from tests.conftest import EXAMPLES

SETTINGS = OperatorSettings()
UID = "0123456789abcdef"
DIGEST = "sha256:" + "ab" * 32


def example(name: str, **spec: Any) -> Resource:
    """A resource from manifests/examples as the API server would hand it over (namespace, uid, generation)."""
    for path in EXAMPLES.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["metadata"]["name"] == name:
                doc = copy.deepcopy(doc)
                doc["metadata"].update(namespace="team-a", uid=UID, generation=1)
                doc["spec"].update(spec)
                return parse_resource(doc)
    raise KeyError(name)


LABELS = {
    "cotlab.dev/kind": "FineTuneRun",
    "cotlab.dev/name": "quickstart-lora",
    "cotlab.dev/stage": "finetune",
    "app.kubernetes.io/managed-by": "cotlab-operator",
}
OWNER = {
    "apiVersion": "cotlab.dev/v1alpha1", "kind": "FineTuneRun", "name": "quickstart-lora", "uid": UID,
    "controller": True, "blockOwnerDeletion": True,
}  # fmt: skip

QUICKSTART_LORA_JOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": "quickstart-lora-finetune", "namespace": "team-a", "labels": LABELS, "ownerReferences": [OWNER],
    },
    "spec": {
        "backoffLimit": 3,
        "completions": 1,
        "parallelism": 1,
        "suspend": False,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob",
             "onExitCodes": {"containerName": "finetune", "operator": "In", "values": [2, 3, 4]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "template": {
            "metadata": {"labels": LABELS},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": "default",
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": {
                    "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                    "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [{
                    "name": "finetune",
                    "image": "ghcr.io/cotlab/trainer:0.1.0",
                    "command": ["python", "-m", "cotlab.trainer"],
                    "args": ["finetune", "--spec", "/etc/cotlab/spec.json"],
                    "env": [
                        {"name": "COTLAB_TERMINATION_LOG", "value": "/dev/termination-log"},
                        {"name": "COTLAB_PVC_ROOT", "value": "/mnt/pvc"},
                        {"name": "COTLAB_FILE_ROOT", "value": "/data"},
                        {"name": "HOME", "value": "/tmp"},
                        {"name": "TMPDIR", "value": "/tmp"},
                        {"name": "HF_HOME", "value": "/cache/huggingface"},
                        {"name": "PYTHONUNBUFFERED", "value": "1"},
                    ],
                    "resources": {"requests": {"cpu": "1", "memory": "8Gi"}},
                    "volumeMounts": [
                        {"name": "spec", "mountPath": "/etc/cotlab", "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "cache", "mountPath": "/cache"},
                        {"name": "dshm", "mountPath": "/dev/shm"},
                        {"name": "pvc-0", "mountPath": "/mnt/pvc/cotlab-artifacts"},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }],
                "volumes": [
                    {"name": "spec", "configMap": {
                        "name": "quickstart-lora-finetune", "items": [{"key": "spec.json", "path": "spec.json"}]}},
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "cache", "emptyDir": {}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory"}},
                    {"name": "pvc-0", "persistentVolumeClaim": {"claimName": "cotlab-artifacts"}},
                ],
                "terminationGracePeriodSeconds": 600,
            },
        },
    },
}  # fmt: skip


def with_changes(base: dict[str, Any], change: Any) -> dict[str, Any]:
    want = copy.deepcopy(base)
    change(want)
    return want


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _container(job: dict[str, Any]) -> dict[str, Any]:
    return _pod(job)["containers"][0]  # type: ignore[no-any-return]


def _gpus(job: dict[str, Any]) -> None:
    _container(job)["resources"] = {
        "requests": {"nvidia.com/gpu": "8", "memory": "64Gi"},
        "limits": {"nvidia.com/gpu": "8"},
    }
    _pod(job)["nodeSelector"] = {"nvidia.com/gpu.product": "H200"}
    _pod(job)["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def _queued(job: dict[str, Any]) -> None:
    job["metadata"]["labels"] = {**LABELS, "kueue.x-k8s.io/queue-name": "team-a-gpus"}
    job["spec"]["suspend"] = True


def _suspended(job: dict[str, Any]) -> None:
    job["spec"]["suspend"] = True


def _overrides(job: dict[str, Any]) -> None:
    job["spec"]["template"]["metadata"] = {"labels": {"team": "math", **LABELS}, "annotations": {"note": "a"}}
    _container(job)["env"] += [
        {"name": "NCCL_DEBUG", "value": "INFO"},
        {"name": "NCCL_SOCKET_IFNAME", "valueFrom": {"configMapKeyRef": {"name": "fabric", "key": "interface"}}},
    ]
    _container(job)["volumeMounts"].append({"name": "data", "mountPath": "/data", "readOnly": True})
    _pod(job)["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": "shared", "readOnly": True}})


def _token(job: dict[str, Any]) -> None:
    _container(job)["env"].append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}})


def _mlflow_credentials(job: dict[str, Any]) -> None:
    # Only the Secret's name and keys reach the Job; the server and experiment travel in the spec file.
    _container(job)["env"] += [
        {"name": "MLFLOW_TRACKING_USERNAME", "valueFrom": {"secretKeyRef": {"name": "mlflow-auth", "key": "user"}}},
        {"name": "MLFLOW_TRACKING_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mlflow-auth", "key": "pass"}}},
    ]


def _two_nodes(job: dict[str, Any], *, attempt: int = 0) -> None:
    # One Job per attempt: any failed or disrupted rank fails it at once; the operator starts the next attempt.
    job["spec"].update(completionMode="Indexed", completions=2, parallelism=2, backoffLimit=0)
    job["spec"]["podFailurePolicy"]["rules"][1]["action"] = "FailJob"
    job["metadata"]["labels"] = {**LABELS, "cotlab.dev/restart-attempt": str(attempt)}
    job["spec"]["template"]["metadata"]["labels"] = {**LABELS, "cotlab.dev/restart-attempt": str(attempt)}
    name = "quickstart-lora-finetune" + (f"-r{attempt}" if attempt else "")
    job["metadata"]["name"] = name
    _pod(job)["subdomain"] = "quickstart-lora-finetune"
    _container(job)["env"] += [
        {"name": "MASTER_ADDR", "value": f"{name}-0.quickstart-lora-finetune.team-a.svc"},
        {"name": "MASTER_PORT", "value": "29500"},
    ]


def test_a_restarted_multi_node_run_gets_the_next_attempts_job_and_rendezvous_name() -> None:
    two = example("quickstart-lora", distributed={"nodes": 2, "gpusPerNode": 0, "strategy": "ddp"})
    restarted = two.model_copy(update={"status": FineTuneRunStatus(restarts=2)})
    job = build_children(restarted, Inputs(), SETTINGS).job
    assert job == with_changes(QUICKSTART_LORA_JOB, lambda j: _two_nodes(j, attempt=2))
    # The spec ConfigMap and the rendezvous Service keep their names over attempts.
    children = build_children(restarted, Inputs(), SETTINGS)
    assert children.service is not None
    assert children.config_map["metadata"]["name"] == children.service["metadata"]["name"] == "quickstart-lora-finetune"
    # Under Kueue every attempt's Job is queued like the first: it starts suspended, in the run's LocalQueue.
    queued = example("quickstart-lora", distributed=two.spec.distributed.to_wire(), queueName="team-a-gpus")
    queued = queued.model_copy(update={"status": FineTuneRunStatus(restarts=1)})
    queued_job = build_children(queued, Inputs(), SETTINGS).job
    assert queued_job["metadata"]["name"] == "quickstart-lora-finetune-r1"
    assert queued_job["spec"]["suspend"] is True
    assert queued_job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-gpus"
    # A single-node run keeps one Job, whatever status says: the Job controller retries its pod.
    one = example("quickstart-lora").model_copy(update={"status": FineTuneRunStatus(restarts=2)})
    assert build_children(one, Inputs(), SETTINGS).job["metadata"]["name"] == "quickstart-lora-finetune"


def test_attempt_job_names_never_collide_and_fit_a_label() -> None:
    assert attempt_job_name("FineTuneRun", "tune", 0) == "tune-finetune"
    assert attempt_job_name("FineTuneRun", "tune", 1) == "tune-finetune-r1"
    assert attempt_job_name("FineTuneRun", "tune-r1", 0) == "tune-r1-finetune"  # not "tune" restarted once
    long = "a" * 60
    names = {attempt_job_name("FineTuneRun", n, k) for n in (long, long + "b") for k in (0, 1, 12)}
    assert len(names) == 6
    assert all(len(n) <= 63 and n.endswith(("-finetune", "-r1", "-r12")) for n in names), names


JOB_CASES = [
    ("as-given", {}, lambda job: None),
    ("two-nodes-indexed", {"distributed": {"nodes": 2, "gpusPerNode": 0, "strategy": "ddp"}}, _two_nodes),
    (
        "gpus-node-selector-tolerations",
        {
            "resources": {"requests": {"nvidia.com/gpu": 8, "memory": "64Gi"}},
            "distributed": {"gpusPerNode": 8},
            "nodeSelector": {"nvidia.com/gpu.product": "H200"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
        _gpus,
    ),
    ("queued-starts-suspended", {"queueName": "team-a-gpus"}, _queued),
    ("suspended-by-user", {"suspend": True}, _suspended),
    ("retries", {"maxRetries": 0}, lambda job: job["spec"].update(backoffLimit=0)),
    (
        "allowed-overrides",
        {
            "podTemplateOverrides": {
                "labels": {"team": "math"},
                "annotations": {"note": "a"},
                "env": [
                    {"name": "NCCL_DEBUG", "value": "INFO"},
                    {
                        "name": "NCCL_SOCKET_IFNAME",
                        "valueFrom": {"configMapKeyRef": {"name": "fabric", "key": "interface"}},
                    },
                ],
                "volumes": [
                    {
                        "name": "data",
                        "mountPath": "/data",
                        "readOnly": True,
                        "persistentVolumeClaim": {"claimName": "shared", "readOnly": True},
                    },
                ],
            }
        },
        _overrides,
    ),  # fmt: skip
    (
        "hub-token-by-reference",
        {"baseModel": {"hub": "Qwen/Qwen2.5-32B", "tokenSecretRef": {"name": "hf"}}},
        _token,
    ),
    (
        "mlflow-credentials-by-reference",
        {
            "tracking": {
                "mlflow": {
                    "uri": "https://mlflow.example.com",
                    "experiment": "teaching-reasoning",
                    "credentials": {"secretName": "mlflow-auth", "usernameKey": "user", "passwordKey": "pass"},
                }
            }
        },
        _mlflow_credentials,
    ),
    (
        "mlflow-without-credentials",
        {"tracking": {"mlflow": {"uri": "http://mlflow.team-a.svc:5000", "experiment": "teaching-reasoning"}}},
        lambda job: None,
    ),
]


@pytest.mark.parametrize(("spec", "change"), [c[1:] for c in JOB_CASES], ids=[c[0] for c in JOB_CASES])
def test_finetune_job(spec: dict[str, Any], change: Any) -> None:
    resource = example("quickstart-lora", **spec)
    job = build_children(resource, Inputs(), SETTINGS).job
    assert job == with_changes(QUICKSTART_LORA_JOB, change)


def test_a_multi_node_run_gets_a_headless_rendezvous_service_and_a_single_node_run_none() -> None:
    two = example("quickstart-lora", distributed={"nodes": 2, "gpusPerNode": 0, "strategy": "ddp"})
    assert build_children(two, Inputs(), SETTINGS).service == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "quickstart-lora-finetune",
            "namespace": "team-a",
            "labels": LABELS,
            "ownerReferences": [OWNER],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": LABELS,
            "ports": [{"name": "rendezvous", "port": 29500, "targetPort": 29500}],
        },
    }
    assert build_children(example("quickstart-lora"), Inputs(), SETTINGS).service is None


def test_spec_configmap_carries_the_pod_spec_file_with_inputs_and_stable_paths() -> None:
    resource = example("quickstart-lora")
    inputs = Inputs(dataset=Artifact(uri="pvc://datasets/team-a/traces.jsonl", digest=DIGEST))
    children = build_children(resource, inputs, SETTINGS)
    config_map = children.config_map
    assert config_map["metadata"] == {**QUICKSTART_LORA_JOB["metadata"]}
    pod = PodSpecFile.model_validate_json(config_map["data"]["spec.json"])
    base = f"pvc://cotlab-artifacts/team-a/finetuneruns/quickstart-lora/{UID[:8]}"
    assert pod.model_dump(mode="json", by_alias=True, exclude_none=True) == {
        "stage": "finetune",
        "resource": {"kind": "FineTuneRun", "name": "quickstart-lora", "namespace": "team-a", "uid": UID,
                     "generation": 1},
        "spec": resource.spec.to_wire(),
        "inputs": {"dataset": {"uri": "pvc://datasets/team-a/traces.jsonl", "digest": DIGEST}},
        "output": f"{base}/output",
        "checkpointDir": base,
    }  # fmt: skip
    # Both claims the pod reads or writes are mounted, each once.
    mounts = {m["mountPath"] for m in _container(children.job)["volumeMounts"]}
    assert {"/mnt/pvc/cotlab-artifacts", "/mnt/pvc/datasets"} <= mounts
    assert claims_of(pod) == ["cotlab-artifacts", "datasets"]


TEACHER = {"generate": {"teacher": {"hub": "Qwen/QwQ-32B-Preview"}, "problems": {"benchmark": "math500"}}}


@pytest.mark.parametrize(
    ("name", "spec", "image"),
    [
        ("qwq-50", {}, SETTINGS.trainer_image),
        ("qwq-50", {"source": TEACHER}, SETTINGS.evaluator_image),  # teacher sampling runs on vLLM
        ("qwen2.5-32b-qwq-50-s0", {}, SETTINGS.trainer_image),
        ("qwen2.5-32b-qwq-50-s0-comp-math", {}, SETTINGS.evaluator_image),  # engine: vllm (the default)
        ("quickstart-after", {}, SETTINGS.trainer_image),  # engine: transformers, which the trainer image has
    ],
    ids=["curate", "curate-with-teacher", "finetune", "evaluate-vllm", "evaluate-transformers"],
)
def test_the_image_follows_the_pods_engine(name: str, spec: dict[str, Any], image: str) -> None:
    resource = example(name, **spec)
    job = build_job(resource, build_pod_spec_file(resource, Inputs(), SETTINGS), SETTINGS)
    assert _container(job)["image"] == image


def test_no_spec_value_of_an_evalrun_reaches_the_command_line() -> None:
    resource = example("quickstart-after")
    pod = build_pod_spec_file(resource, Inputs(), SETTINGS)
    job = build_job(resource, pod, SETTINGS)
    container = _container(job)
    assert container["name"] == "evaluate"
    assert container["command"] + container["args"] == [
        "python", "-m", "cotlab.trainer", "evaluate", "--spec", "/etc/cotlab/spec.json"
    ]  # fmt: skip
    assert "terminationGracePeriodSeconds" not in _pod(job)
    text = json.dumps(job)
    assert "gsm8k" not in text  # the benchmark, the sampling, the model: only in the mounted spec file


def test_long_names_give_short_distinct_children() -> None:
    long_a, long_b = "a" * 200 + "-one", "a" * 200 + "-two"
    names = {child_name("EvalRun", long_a), child_name("EvalRun", long_b)}
    assert len(names) == 2 and all(len(n) <= 63 and n.endswith("-evaluate") for n in names)
    assert child_name("TraceDataset", "qwq-20") == "qwq-20-curate"


REFUSALS = [
    ("default-image", {}, (), (), None),
    ("image-not-allowed", {"image": "evil/miner:1"}, (), (), "ImageNotAllowed"),
    ("image-allowed-by-pattern", {"image": "ghcr.io/team/trainer:2"}, ("ghcr.io/team/*",), (), None),
    ("account-not-allowed", {"serviceAccountName": "admin"}, (), (), "ServiceAccountNotAllowed"),
    ("account-allowed", {"serviceAccountName": "trainer"}, (), ("trainer",), None),
]


@pytest.mark.parametrize(
    ("spec", "images", "accounts", "want"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_policy(spec: dict[str, Any], images: tuple[str, ...], accounts: tuple[str, ...], want: str | None) -> None:
    settings = OperatorSettings(allowed_images=images, allowed_service_accounts=accounts)
    got = refusal(example("quickstart-lora", **spec), settings)
    assert (got.reason if got else None) == want
    if got is not None:
        assert ("spec.image" if "image" in spec else "spec.serviceAccountName") in got.message


def test_an_allowed_spec_account_and_image_reach_the_pod() -> None:
    settings = OperatorSettings(allowed_images=("ghcr.io/team/*",), allowed_service_accounts=("trainer",))
    resource = example("quickstart-lora", image="ghcr.io/team/trainer:2", serviceAccountName="trainer")
    job = build_children(resource, Inputs(), settings).job
    assert _container(job)["image"] == "ghcr.io/team/trainer:2" and _pod(job)["serviceAccountName"] == "trainer"


def test_settings_from_the_environment_name_a_bad_variable() -> None:
    settings = settings_from(
        {"COTLAB_ALLOWED_IMAGES": "a/*, b/c:1", "COTLAB_RESYNC_SECONDS": "2.5", "COTLAB_ARTIFACT_ROOT": "s3://b/p"}
    )
    assert settings.allowed_images == ("a/*", "b/c:1") and settings.resync_seconds == 2.5
    assert settings.artifact_root == "s3://b/p"
    with pytest.raises(ValueError, match="COTLAB_WORKERS='many'"):
        settings_from({"COTLAB_WORKERS": "many"})
