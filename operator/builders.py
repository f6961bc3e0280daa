"""What a resource becomes: its pod spec file in a ConfigMap, and a Job that runs the stage on it.

A FineTuneRun over several nodes becomes an Indexed Job (completions = parallelism = nodes) and a headless
Service of the same name, as Kubeflow Trainer and JobSet do it: Kubernetes names each pod's host
`<job>-<index>` and, with the Service as subdomain, gives it the DNS name `<job>-<index>.<service>.<ns>.svc`
(`publishNotReadyAddresses`: the name resolves before the pod is ready, which it never is during rendezvous).
The pods get the index-0 pod's name as MASTER_ADDR; the node rank is the completion index Kubernetes puts in
JOB_COMPLETION_INDEX.

Pure functions of the resource, its resolved inputs and the operator settings: no I/O, no clock, deterministic
names (`cotlab.api.children.child_name`), so a restarted operator rebuilds exactly what it made before.

Every pod meets the Pod Security Standard "restricted" profile: non-root, no privilege escalation, all
capabilities dropped, seccomp RuntimeDefault, a read-only root filesystem with emptyDirs for scratch and caches,
and no service-account token (the pods never talk to the API server). The container runs the pod contract's
command as an argv list; spec values only ever reach it through the mounted spec file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cotlab.api import API_VERSION, EvalRun, FineTuneRun, FineTuneRunStatus, Resource, TraceDataset
from cotlab.api.children import (
    PRIORITY_CLASS_LABEL,
    QUEUE_NAME_LABEL,
    RESTART_ATTEMPT_LABEL,
    attempt_job_name,
    child_labels,
    child_name,
)
from cotlab.api.overrides import ExtraVolume, PodOverrides
from cotlab.api.podcontract import (
    HF_TOKEN_ENV,
    PERMANENT_EXIT_CODES,
    RENDEZVOUS_PORT,
    SPEC_DIR,
    SPEC_FILE,
    SPEC_PATH,
    STAGE_BY_KIND,
    TERMINATION_LOG,
    TERMINATION_LOG_ENV,
    Inputs,
    PodSpecFile,
    ResourceRef,
)
from cotlab.api.resources import KINDS_BY_NAME

from .settings import OperatorSettings

PVC_MOUNT_ROOT = "/mnt/pvc"  # `pvc://CLAIM/path` is read at /mnt/pvc/CLAIM/path (cotlab.trainer.core.storage)
PVC_ROOT_ENV = "COTLAB_PVC_ROOT"
FILE_ROOT_ENV = "COTLAB_FILE_ROOT"  # cotlab.trainer.core.storage: `file://` and plain paths stay under it
SCRATCH, CACHE, SHM = "/tmp", "/cache", "/dev/shm"
# Resources Kubernetes lets a container ask for without a limit; any other (nvidia.com/gpu) needs limit == request.
_OVERCOMMITTABLE = ("cpu", "memory", "ephemeral-storage")


@dataclass(frozen=True)
class Children:
    """The objects one resource owns, ready to create."""

    config_map: dict[str, Any]
    job: dict[str, Any]
    service: dict[str, Any] | None = None  # the rendezvous Service of a multi-node FineTuneRun


def output_base(resource: Resource, settings: OperatorSettings) -> str:
    """The resource's folder in the artifact store: `<root>/<namespace>/<plural>/<name>/<uid prefix>`.

    The uid keeps a deleted-and-recreated resource (specs are immutable, so that is how GitOps changes one)
    from resuming another run's checkpoints or samples.
    """
    meta = resource.metadata
    plural = KINDS_BY_NAME[resource.kind].plural
    uid = (meta.uid or "local")[:8]
    return "/".join([settings.artifact_root.rstrip("/"), meta.namespace or "default", plural, meta.name, uid])


def _spec_output(resource: Resource) -> str | None:
    if isinstance(resource, TraceDataset):
        return resource.spec.output
    return resource.spec.output.uri


def build_pod_spec_file(resource: Resource, inputs: Inputs, settings: OperatorSettings) -> PodSpecFile:
    """The resolved spec the stage reads: the resource's spec, its inputs, and where to write."""
    base = output_base(resource, settings)
    return PodSpecFile(
        stage=STAGE_BY_KIND[resource.kind],
        resource=ResourceRef(
            kind=resource.kind,
            name=resource.metadata.name,
            namespace=resource.metadata.namespace or "default",
            uid=resource.metadata.uid,
            generation=resource.metadata.generation,
        ),
        spec=resource.spec.to_wire(),
        inputs=inputs,
        output=_spec_output(resource) or f"{base}/output",
        # A stable place per resource: a restarted or preempted pod resumes from it.
        checkpoint_dir=base if isinstance(resource, FineTuneRun) else None,
    )


def owner_reference(resource: Resource) -> dict[str, Any]:
    """The controller reference every child carries: the garbage collector deletes children with the resource."""
    return {
        "apiVersion": API_VERSION,
        "kind": resource.kind,
        "name": resource.metadata.name,
        "uid": resource.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(resource: Resource) -> dict[str, Any]:
    return {
        "name": child_name(resource.kind, resource.metadata.name),
        "namespace": resource.metadata.namespace or "default",
        "labels": child_labels(resource.kind, resource.metadata.name),
        "ownerReferences": [owner_reference(resource)],
    }


def build_spec_configmap(resource: Resource, pod: PodSpecFile) -> dict[str, Any]:
    """The ConfigMap that carries the pod spec file, mounted read-only at the contract's SPEC_DIR."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(resource),
        "data": {SPEC_FILE: json.dumps(pod.model_dump(mode="json", by_alias=True), indent=2, sort_keys=True)},
    }


def claims_of(pod: PodSpecFile) -> list[str]:
    """Every PersistentVolumeClaim a `pvc://` URI in the pod spec file names: each is mounted into the pod."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and value.startswith("pvc://"):
            claim = value[len("pvc://") :].split("/", 1)[0]
            if claim:
                found.add(claim)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(pod.model_dump(mode="json", by_alias=True))
    return sorted(found)


def _token_ref(resource: Resource) -> dict[str, str] | None:
    """The hub token's Secret key: the first tokenSecretRef among the models and datasets the spec reads."""
    refs = []
    if isinstance(resource, FineTuneRun):
        refs.append(resource.spec.base_model.token_secret_ref)
    if isinstance(resource, EvalRun) and resource.spec.model.source is not None:
        refs.append(resource.spec.model.source.token_secret_ref)
    if isinstance(resource, TraceDataset):
        source = resource.spec.source
        if source.huggingface is not None:
            refs.append(source.huggingface.token_secret_ref)
        if source.generate is not None:
            refs.append(source.generate.teacher.token_secret_ref)
        if resource.spec.tokenizer is not None:
            refs.append(resource.spec.tokenizer.token_secret_ref)
    ref = next((r for r in refs if r is not None), None)
    return {"name": ref.name, "key": ref.key} if ref is not None else None


def _tracking_env(resource: Resource) -> list[dict[str, Any]]:
    """MLflow's credential variables from the Secret that spec.tracking.mlflow.credentials names, by reference."""
    if not isinstance(resource, FineTuneRun) or resource.spec.tracking is None:
        return []
    mlflow = resource.spec.tracking.mlflow
    if mlflow is None or mlflow.credentials is None:
        return []
    secret = mlflow.credentials.secret_name
    return [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for variable, key in mlflow.credentials.secret_env().items()
    ]


def _resources(resource: Resource, settings: OperatorSettings) -> dict[str, Any]:
    wanted = resource.spec.resources
    if not wanted.requests and not wanted.limits:
        return {k: dict(v) for k, v in settings.resources[STAGE_BY_KIND[resource.kind]].items()}
    # Quantities are strings on the wire (a spec may write `cpu: 2`); the kubernetes client refuses an int.
    requests = {k: str(v) for k, v in wanted.requests.items()}
    limits = {k: str(v) for k, v in wanted.limits.items()}
    for key, value in requests.items():
        if key not in _OVERCOMMITTABLE:
            limits.setdefault(key, value)  # extended resources (GPUs) are requested through their limit
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _env(resource: Resource, overrides: PodOverrides, settings: OperatorSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": TERMINATION_LOG_ENV, "value": TERMINATION_LOG},
        {"name": PVC_ROOT_ENV, "value": PVC_MOUNT_ROOT},
        {"name": FILE_ROOT_ENV, "value": settings.file_root},
        {"name": "HOME", "value": SCRATCH},
        {"name": "TMPDIR", "value": SCRATCH},
        {"name": "HF_HOME", "value": f"{CACHE}/huggingface"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    token = _token_ref(resource)
    if token is not None:
        env.append({"name": HF_TOKEN_ENV, "valueFrom": {"secretKeyRef": token}})
    env += _tracking_env(resource)
    for var in overrides.env:
        if var.value is not None:
            env.append({"name": var.name, "value": var.value})
        elif var.value_from is not None and var.value_from.secret_key_ref is not None:
            ref = var.value_from.secret_key_ref
            env.append({"name": var.name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
        elif var.value_from is not None and var.value_from.config_map_key_ref is not None:
            ref_cm = var.value_from.config_map_key_ref
            env.append({"name": var.name, "valueFrom": {"configMapKeyRef": {"name": ref_cm.name, "key": ref_cm.key}}})
    return env


def _extra_volume(volume: ExtraVolume) -> dict[str, Any]:
    """One allowed volume kind, copied field by field: nothing outside the allow-list can pass through."""
    if volume.persistent_volume_claim is not None:
        claim = volume.persistent_volume_claim
        return {
            "name": volume.name,
            "persistentVolumeClaim": {"claimName": claim.claim_name, "readOnly": claim.read_only},
        }
    if volume.config_map is not None:
        return {
            "name": volume.name,
            "configMap": {"name": volume.config_map.name, "optional": volume.config_map.optional},
        }
    if volume.secret is not None:
        secret = volume.secret
        return {"name": volume.name, "secret": {"secretName": secret.secret_name, "optional": secret.optional}}
    assert volume.empty_dir is not None  # the model's validator guarantees exactly one source
    empty: dict[str, Any] = {"medium": volume.empty_dir.medium} if volume.empty_dir.medium else {}
    if volume.empty_dir.size_limit:
        empty["sizeLimit"] = volume.empty_dir.size_limit
    return {"name": volume.name, "emptyDir": empty}


def _volumes(pod: PodSpecFile, resource: Resource, overrides: PodOverrides) -> tuple[list[Any], list[Any]]:
    """(volumes, mounts): the spec file, scratch and caches, the artifact claims, then the spec's extra volumes."""
    name = child_name(resource.kind, resource.metadata.name)
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": name, "items": [{"key": SPEC_FILE, "path": SPEC_FILE}]}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "cache", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": SCRATCH},
        {"name": "cache", "mountPath": CACHE},
    ]
    if pod.stage != "curate":  # torch's data loaders and NCCL need more shared memory than a container's 64 MiB
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "dshm", "mountPath": SHM})
    for index, claim in enumerate(claims_of(pod)):
        volumes.append({"name": f"pvc-{index}", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": f"pvc-{index}", "mountPath": f"{PVC_MOUNT_ROOT}/{claim}"})
    for extra in overrides.volumes:
        volumes.append(_extra_volume(extra))
        mounts.append({"name": extra.name, "mountPath": extra.mount_path, "readOnly": extra.read_only})
    return volumes, mounts


def _security(settings: OperatorSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod, container) security contexts that pass the "restricted" Pod Security Standard."""
    uid = settings.run_as_user
    pod = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        # Re-own a volume's files only when its root is not already ours: a large checkpoint claim would
        # otherwise be walked file by file on every pod start (and every retry).
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def uses_vllm(resource: Resource) -> bool:
    """Whether the pod generates with vLLM: an EvalRun on the vLLM engine, or a TraceDataset sampling a teacher
    (the curate stage's teacher runs on vLLM wherever it is installed)."""
    if isinstance(resource, EvalRun):
        return resource.spec.engine.name == "vllm"
    return isinstance(resource, TraceDataset) and resource.spec.source.generate is not None


def image_of(resource: Resource, settings: OperatorSettings) -> str:
    """The spec's image (if the settings allow it: see `policy`), else the image of the pod's engine: the
    evaluator image (vLLM, with its own torch) for vLLM generation, the trainer image for everything else
    (curation, fine-tuning, and evaluation with the transformers engine, which the trainer image has)."""
    if resource.spec.image:
        return resource.spec.image
    return settings.evaluator_image if uses_vllm(resource) else settings.trainer_image


def max_retries(resource: Resource, settings: OperatorSettings) -> int:
    return settings.default_max_retries if isinstance(resource, TraceDataset) else resource.spec.max_retries


def suspended(resource: Resource) -> bool:
    """Whether the spec asks for the Job to be suspended (TraceDatasets cannot be suspended)."""
    return False if isinstance(resource, TraceDataset) else resource.spec.suspend


def nodes_of(resource: Resource) -> int:
    """How many pods train together: `spec.distributed.nodes` of a FineTuneRun, 1 for everything else."""
    return resource.spec.distributed.nodes if isinstance(resource, FineTuneRun) else 1


def rendezvous_address(resource: Resource) -> str:
    """The DNS name of the current attempt's node-rank-0 pod: its hostname (`<job>-0`) under the Service."""
    service = child_name(resource.kind, resource.metadata.name)
    return f"{job_name(resource)}-0.{service}.{resource.metadata.namespace or 'default'}.svc"


def build_rendezvous_service(resource: Resource) -> dict[str, Any]:
    """The headless Service that gives the Indexed Job's pods their DNS names."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(resource),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": child_labels(resource.kind, resource.metadata.name),
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
        },
    }


def restarts_of(resource: Resource) -> int:
    """Which attempt of a multi-node run is current: status.restarts (0 until an attempt ended)."""
    status = resource.status
    return status.restarts if isinstance(status, FineTuneRunStatus) and nodes_of(resource) > 1 else 0


def job_name(resource: Resource) -> str:
    """The name of the resource's current Job: one per attempt over several nodes (`attempt_job_name`)."""
    return attempt_job_name(resource.kind, resource.metadata.name, restarts_of(resource))


def _multi_node(job: dict[str, Any], resource: Resource) -> None:
    """Turn a one-pod Job into the Indexed Job of `nodes` pods that meet through the rendezvous Service.

    The Job is one attempt: a rank restarted alone could not rejoin the others' collectives, so any failed pod
    fails the Job (backoffLimit 0), and a disrupted one too (FailJob on DisruptionTarget instead of Ignore: the
    Job controller would replace only that pod). A failed Job's remaining pods are deleted by the Job controller
    (`syncJob`: a finished condition calls `deleteActivePods`, kubernetes v1.37 pkg/controller/job), so no rank
    is left blocked in a collective. The operator then starts the next attempt as JobSet does
    (`failurePolicy.maxRestarts`, `jobset.sigs.k8s.io/restart-attempt`): it raises status.restarts and makes
    the next attempt's Job, labelled with it. Unlike JobSet it keeps the ended Job under its own name (`-r<N>`
    after the first) instead of deleting it: the operator needs no delete verb, and the failed rank's pod and
    log stay to be read. A pod deleted by a suspension (Kueue's preemption) is not counted as failed: the Job
    controller removes its tracking finalizer first (`deleteJobPods`).
    """
    nodes = nodes_of(resource)
    spec, pod_spec = job["spec"], job["spec"]["template"]["spec"]
    spec.update(completionMode="Indexed", completions=nodes, parallelism=nodes, backoffLimit=0)
    for rule in spec["podFailurePolicy"]["rules"]:
        if "onPodConditions" in rule:
            rule["action"] = "FailJob"
    attempt = str(restarts_of(resource))
    job["metadata"]["labels"][RESTART_ATTEMPT_LABEL] = attempt
    job["spec"]["template"]["metadata"]["labels"][RESTART_ATTEMPT_LABEL] = attempt
    pod_spec["subdomain"] = child_name(resource.kind, resource.metadata.name)
    pod_spec["containers"][0]["env"] += [
        {"name": "MASTER_ADDR", "value": rendezvous_address(resource)},
        {"name": "MASTER_PORT", "value": str(RENDEZVOUS_PORT)},
    ]


def build_job(resource: Resource, pod: PodSpecFile, settings: OperatorSettings) -> dict[str, Any]:
    """The Job that runs the stage once, retried up to maxRetries; permanent exit codes fail it at once.

    Over several nodes the Job is one attempt and the operator makes the retries (see `_multi_node`).
    """
    spec = resource.spec
    stage = pod.stage
    overrides = spec.pod_template_overrides or PodOverrides()
    volumes, mounts = _volumes(pod, resource, overrides)
    env = _env(resource, overrides, settings)
    pod_security, container_security = _security(settings)
    container: dict[str, Any] = {
        "name": stage,
        "image": image_of(resource, settings),
        # The pod contract's command, as argv: no shell, no spec value on the command line.
        "command": ["python", "-m", "cotlab.trainer"],
        "args": [stage, "--spec", SPEC_PATH],
        "env": env,
        "resources": _resources(resource, settings),
        "volumeMounts": mounts,
        "securityContext": container_security,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if settings.artifact_secret:
        container["envFrom"] = [{"secretRef": {"name": settings.artifact_secret}}]
    labels = child_labels(resource.kind, resource.metadata.name)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # the Job retries (podFailurePolicy needs Never)
        "serviceAccountName": spec.service_account_name or settings.service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "containers": [container],
        "volumes": volumes,
    }
    if stage == "finetune":
        pod_spec["terminationGracePeriodSeconds"] = settings.finetune_grace_seconds
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in spec.tolerations]
    job_metadata = {**_metadata(resource), "name": job_name(resource)}
    queued = spec.queue_name is not None
    if queued:
        job_metadata["labels"][QUEUE_NAME_LABEL] = spec.queue_name
        if spec.priority_class:
            job_metadata["labels"][PRIORITY_CLASS_LABEL] = spec.priority_class
    template_metadata: dict[str, Any] = {"labels": {**overrides.labels, **labels}}
    if overrides.annotations:
        template_metadata["annotations"] = dict(overrides.annotations)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_metadata,
        "spec": {
            "backoffLimit": max_retries(resource, settings),
            "completions": 1,
            "parallelism": 1,
            # Kueue admits a queued Job by unsuspending it; it must never start before that.
            "suspend": queued or suspended(resource),
            "podFailurePolicy": {
                "rules": [
                    {
                        # A spec or input that can never work: retrying would only fail again.
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": stage,
                            "operator": "In",
                            "values": sorted(int(c) for c in PERMANENT_EXIT_CODES),
                        },
                    },
                    # Preemption, eviction, node drain: not the pod's fault, so not an attempt.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {"metadata": template_metadata, "spec": pod_spec},
        },
    }
    if nodes_of(resource) > 1:
        _multi_node(job, resource)
    return job


def build_children(resource: Resource, inputs: Inputs, settings: OperatorSettings) -> Children:
    """Everything `resource` owns, given the inputs its dependencies resolved to."""
    pod = build_pod_spec_file(resource, inputs, settings)
    service = build_rendezvous_service(resource) if nodes_of(resource) > 1 else None
    return Children(
        config_map=build_spec_configmap(resource, pod), job=build_job(resource, pod, settings), service=service
    )
