"""What a spec may reach is refused three times, each naming the field: by the API server (the install's
ValidatingAdmissionPolicy reading the operator's settings ConfigMap), by `cotctl validate --operator-settings` with
that ConfigMap, and by the operator itself when it is about to make a child.

The session's operator settings allow local files anywhere (the pods are local processes reading pytest's temp
files, see operator_process.TEST_SETTINGS), so this test binds the install's policy a second time, to its own
namespace, with settings that confine files to /data, and runs an operator of its own with those settings.
The environment variable allow-list is not a setting: the CRD refuses those (tests/data/invalid_manifests.yaml,
checked on the API server by test_api_server.py and through `cotctl validate` by tests/unit/test_cli_validate.py).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from kube_wait import wait_for
from kubernetes.client.exceptions import ApiException
from operator_process import SETTINGS_CONFIG_MAP, TEST_SETTINGS, OperatorProcess
from test_operator import condition, jobs_of, wait_phase

from cotlab.api import GROUP, VERSION

STRICT = {**TEST_SETTINGS, "COTLAB_FILE_ROOT": "/data", "COTLAB_ALLOWED_ANNOTATION_PREFIXES": "prometheus.io/"}
POLICY = "cotlab-spec-policy"


def eval_run(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EvalRun",
        "metadata": {"name": name},
        "spec": {"model": {"source": {"hub": "Qwen/Qwen2.5-0.5B"}}, "benchmarks": [{"name": "aime24"}], **spec},
    }


def trace_dataset(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TraceDataset",
        "metadata": {"name": name},
        "spec": {"source": {"uri": "pvc://data/traces.jsonl"}, **spec},
    }


APPARMOR = "container.apparmor.security.beta.kubernetes.io/evaluate"
# (id, manifest, the field the API server names, the field cotctl validate names, words both say)
CASES = [
    ("annotation-unconfines-apparmor",
     eval_run("apparmor", podTemplateOverrides={"annotations": {APPARMOR: "unconfined"}}),
     "spec.podTemplateOverrides.annotations", "spec.podTemplateOverrides.annotations",
     f"key '{APPARMOR}' is not under an allowed prefix"),
    ("annotation-steers-kueue", eval_run("kueue", podTemplateOverrides={"annotations": {"kueue.x-k8s.io/x": "y"}}),
     "spec.podTemplateOverrides.annotations", "spec.podTemplateOverrides.annotations",
     "key 'kueue.x-k8s.io/x' is not under an allowed prefix"),
    ("file-outside-the-root", eval_run("environ", model={"source": {"uri": "file:///proc/self/environ"}}),
     "spec.model.source.uri", "spec.model.source.uri",
     "'file:///proc/self/environ' is outside the operator's file root"),
    ("plain-path-outside-the-root",
     eval_run("passwd", benchmarks=[{"name": "custom", "uri": "/data/../etc/passwd"}]),
     "spec.benchmarks[].uri", "spec.benchmarks[0].uri", "'/data/../etc/passwd' is outside the operator's file root"),
    ("output-in-another-namespace", trace_dataset("elsewhere", output="pvc://cotlab-artifacts/team-b/traces"),
     "spec.output", "spec.output", "is outside this namespace's part of the artifact store"),
    ("toleration-outside-the-set", eval_run("tolerant", tolerations=[{"key": "dedicated", "operator": "Exists"}]),
     "spec.tolerations", "spec.tolerations", "'dedicated' is not allowed (COTLAB_ALLOWED_TOLERATIONS"),
    ("node-selector-outside-the-set", eval_run("pinned", nodeSelector={"kubernetes.io/hostname": "gpu-node-0"}),
     "spec.nodeSelector", "spec.nodeSelector", "'kubernetes.io/hostname=gpu-node-0' is not allowed"),
]  # fmt: skip


@pytest.fixture
def strict_binding(kube_api: kubernetes.client.ApiClient, namespace: str, operator_kubeconfig: Path) -> Iterator[str]:
    """The install's policy bound once more, to this namespace only, with STRICT settings from a ConfigMap here."""
    core = kubernetes.client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": SETTINGS_CONFIG_MAP}, "data": STRICT})  # type: ignore[arg-type]
    name = f"{POLICY}-{namespace}"[:253]
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": POLICY,
            "validationActions": ["Deny"],
            "paramRef": {"name": SETTINGS_CONFIG_MAP, "namespace": namespace, "parameterNotFoundAction": "Deny"},
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }
    admission = kubernetes.client.AdmissionregistrationV1Api(kube_api)
    admission.create_validating_admission_policy_binding(binding)  # type: ignore[arg-type]
    probe = eval_run("probe", model={"source": {"uri": "file:///etc/hostname"}})  # the session's binding allows it

    def enforced() -> bool:  # a new binding takes a moment to reach the API server's admission
        try:
            _create(kube_api, namespace, probe)
        except ApiException as err:
            return err.status in (403, 422)
        return False

    wait_for(enforced, timeout=30, what="the strict binding to be enforced")
    yield namespace
    admission.delete_validating_admission_policy_binding(name)


def _create(api: kubernetes.client.ApiClient, namespace: str, doc: dict[str, Any]) -> Any:
    plural = {"EvalRun": "evalruns", "TraceDataset": "tracedatasets"}[doc["kind"]]
    custom = kubernetes.client.CustomObjectsApi(api)
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, doc, dry_run="All")


def test_each_refused_override_is_refused_by_the_api_server_and_cotctl_validate(
    kube_api: kubernetes.client.ApiClient, strict_binding: str, tmp_path: Path
) -> None:
    namespace = strict_binding
    settings_file = tmp_path / "settings.yaml"
    core = kubernetes.client.CoreV1Api(kube_api)
    data = core.read_namespaced_config_map(SETTINGS_CONFIG_MAP, namespace).data
    settings_file.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                             "metadata": {"name": SETTINGS_CONFIG_MAP}, "data": data}))  # fmt: skip
    for case_id, manifest, server_field, local_field, words in CASES:
        doc = copy.deepcopy(manifest)
        doc["metadata"]["namespace"] = namespace
        with pytest.raises(ApiException) as refused:
            _create(kube_api, namespace, doc)
        body = str(refused.value.body)
        assert refused.value.status in (403, 422) and f"{server_field}: " in body and words in body, (case_id, body)

        path = tmp_path / f"{case_id}.yaml"
        path.write_text(yaml.safe_dump(doc))
        cotctl = [str(Path(sys.executable).parent / "cotctl"), "validate", "-f", str(path)]
        done = subprocess.run([*cotctl, "--operator-settings", str(settings_file)], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 1 and f"{local_field}: " in done.stderr and words in done.stderr, (case_id, done)
        # Without the settings, the same manifest is a valid spec: the limits are the cluster's, not the API's.
        assert subprocess.run(cotctl, capture_output=True, timeout=60).returncode == 0, case_id

    # What both bindings allow passes (the session's allows no annotations at all).
    allowed = eval_run("fine", tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}],
                       nodeSelector={"nvidia.com/gpu.product": "H200"},
                       model={"source": {"uri": "file:///data/models/qwen"}})  # fmt: skip
    assert _create(kube_api, namespace, allowed)["metadata"]["name"] == "fine"


@pytest.fixture
def strict_operator(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(operator_kubeconfig, namespace, tmp_path / "operator.log", env=STRICT)
    process.start()
    yield process
    process.stop()
    print(f"--- operator log ({process.log}) ---\n{process.tail(200)}")


def test_the_operator_refuses_a_file_outside_its_root_when_no_admission_policy_did(
    kube_api: kubernetes.client.ApiClient, namespace: str, strict_operator: OperatorProcess
) -> None:
    """The session's binding allows any file; this namespace's operator (file root /data) does not."""
    doc = eval_run("environ", model={"source": {"uri": "file:///proc/self/environ"}})
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "evalruns", doc)
    failed = condition(wait_phase(kube_api, namespace, "EvalRun", "environ", "Failed", timeout=30), "Failed")
    assert failed is not None and failed["reason"] == "LocationNotAllowed", failed
    assert failed["message"].startswith("spec.model.source.uri: 'file:///proc/self/environ' is outside"), failed
    assert jobs_of(kube_api, namespace, "environ") == []
