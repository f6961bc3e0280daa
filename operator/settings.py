"""The operator's settings: images, the artifact store, what a spec may choose, timings.

Read from `COTLAB_*` environment variables (the Deployment sets them) and overridable by flags of
`python -m cotlab.operator`. Each field says its unit and why it has its default, as kopf's settings do.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_RESOURCES: dict[str, dict[str, dict[str, Any]]] = {
    # Asked for when a spec names no resources: enough for the CPU path, never a GPU by surprise.
    "curate": {"requests": {"cpu": "1", "memory": "4Gi"}},
    "finetune": {"requests": {"cpu": "2", "memory": "16Gi"}},
    "evaluate": {"requests": {"cpu": "2", "memory": "16Gi"}},
}


@dataclass(frozen=True)
class OperatorSettings:
    trainer_image: str = "ghcr.io/cotlab/trainer:0.1.0"
    """Image of the curate and finetune pods, and of evaluations with the transformers engine (torch,
    transformers, peft, accelerate)."""

    evaluator_image: str = "ghcr.io/cotlab/evaluator:0.1.0"
    """Image of the pods that generate with vLLM: evaluations on the vLLM engine and teacher sampling (vLLM brings
    its own torch, so it is a separate image)."""

    artifact_root: str = "pvc://cotlab-artifacts/"
    """Where outputs and checkpoints go when a spec names none: `pvc://CLAIM/prefix` (the claim, in each
    resource's namespace, is mounted into the pods) or an object-store URI (`s3://bucket/prefix`)."""

    artifact_secret: str | None = None
    """A Secret in each resource's namespace whose keys become the pods' environment (object-store credentials,
    e.g. AWS_ACCESS_KEY_ID); only its name is ever known to the operator."""

    allowed_images: tuple[str, ...] = ()
    """Patterns (fnmatch) of images a spec's `image` may name; empty: a spec may not choose its image."""

    allowed_service_accounts: tuple[str, ...] = ()
    """Service accounts a spec's `serviceAccountName` may name; empty: a spec may not choose one."""

    allowed_annotation_prefixes: tuple[str, ...] = ()
    """Prefixes a pod annotation from `podTemplateOverrides.annotations` must start with; empty: none allowed
    (an annotation can unconfine AppArmor, inject a sidecar or steer Kueue)."""

    allowed_tolerations: tuple[str, ...] = ("nvidia.com/gpu",)
    """Tolerations a spec may ask for: `key` (any value, or Exists) or `key=value`. GPU nodes carry this taint."""

    allowed_node_selectors: tuple[str, ...] = ("nvidia.com/gpu.product", "nvidia.com/gpu.memory")
    """Node selector entries a spec may ask for: `key` (any value) or `key=value` (GPU feature discovery labels)."""

    file_root: str = "/data"
    """`file://` URIs and plain paths in a spec must be under this directory (the pods get it as COTLAB_FILE_ROOT):
    mount data there with podTemplateOverrides.volumes. Elsewhere in the container are the image and /proc."""

    service_account: str = "default"
    """The pods' service account when the spec names none. The pods never talk to the API server, so their
    token is not mounted either way."""

    run_as_user: int = 65532
    """The non-root uid and gid of every pod (the images' `cotlab` user)."""

    default_max_retries: int = 3
    """Job backoffLimit for kinds without spec.maxRetries (TraceDataset)."""

    finetune_grace_seconds: int = 600
    """terminationGracePeriodSeconds of fine-tune pods: time to finish a checkpoint after SIGTERM (preemption)."""

    resync_seconds: float = 10.0
    """Every resource is reconciled again at least this often, whatever the watches said (level-based)."""

    progress_interval_seconds: float = 15.0
    """A running pod's log is read for its newest progress marker at most this often, per resource."""

    progress_tail_lines: int = 200
    """How many log lines are read to find the newest progress marker."""

    workers: int = 4
    """Reconciles that run at once (each takes one key; a key is never reconciled twice at the same time)."""

    retry_seconds: float = 5.0
    """Delay before a reconcile that raised is tried again (doubling up to retry_max_seconds); the resync skips
    a key while it waits."""

    watch_server_timeout: int = 300
    """Seconds the API server keeps a watch open before kopf restarts it (guards against silent stalls)."""

    watch_client_timeout: int = 330
    """Seconds without a byte after which the client drops a watch itself."""

    api_timeout_seconds: float = 30.0
    """Every API request but a watch gives up after this long (a watch: watch_client_timeout without a byte)."""

    api_qps: float = 100.0
    """Requests a second the operator sends at most, on average (client-side, as client-go's QPS): 200 runs applied
    at once cost about 950 requests, so this holds them to about 10 s. The API server's own priority and fairness
    still applies; lower this on a small shared control plane..."""

    api_burst: int = 200
    """...and at once after a quiet spell (client-go's burst)."""

    list_page_size: int = 500
    """Objects per page when a watch (re)lists: memory stays bounded by a page, not the cluster."""

    watch_retry_seconds: float = 1.0
    """First pause before a failed list or watch is tried again; doubles up to retry_max_seconds."""

    retry_max_seconds: float = 60.0
    """Longest pause between two tries of a failing reconcile or watch (per key, with jitter)."""

    workload_selector: str = "kueue.x-k8s.io/job-uid"
    """Label selector of the Kueue Workloads watched. Kueue labels every Job's Workload with its uid; with
    `app.kubernetes.io/managed-by` in Kueue's `integrations.labelKeysToCopy`, select
    `app.kubernetes.io/managed-by=cotlab-operator` to see only cotlab's."""

    metrics_port: int = 9090
    """Port of the Prometheus /metrics endpoint (0: no endpoint)."""

    resources: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=lambda: DEFAULT_RESOURCES)
    """Default container resources per stage, used when a spec sets none."""

    def __post_init__(self) -> None:
        if not self.file_root.startswith("/"):  # unset in a pod would mean "anywhere"
            raise ValueError(f"COTLAB_FILE_ROOT={self.file_root!r}: must be an absolute directory, e.g. /data")

    def image_allowed(self, image: str) -> bool:
        return any(fnmatch.fnmatchcase(image, pattern) for pattern in self.allowed_images)

    def service_account_allowed(self, name: str) -> bool:
        return name in self.allowed_service_accounts


_ENV: dict[str, tuple[str, type]] = {
    "trainer_image": ("COTLAB_TRAINER_IMAGE", str),
    "evaluator_image": ("COTLAB_EVALUATOR_IMAGE", str),
    "artifact_root": ("COTLAB_ARTIFACT_ROOT", str),
    "artifact_secret": ("COTLAB_ARTIFACT_SECRET", str),
    "allowed_images": ("COTLAB_ALLOWED_IMAGES", tuple),
    "allowed_service_accounts": ("COTLAB_ALLOWED_SERVICE_ACCOUNTS", tuple),
    "service_account": ("COTLAB_SERVICE_ACCOUNT", str),
    "resync_seconds": ("COTLAB_RESYNC_SECONDS", float),
    "progress_interval_seconds": ("COTLAB_PROGRESS_INTERVAL_SECONDS", float),
    "workers": ("COTLAB_WORKERS", int),
    "metrics_port": ("COTLAB_METRICS_PORT", int),
    "finetune_grace_seconds": ("COTLAB_FINETUNE_GRACE_SECONDS", int),
    "allowed_annotation_prefixes": ("COTLAB_ALLOWED_ANNOTATION_PREFIXES", tuple),
    "allowed_tolerations": ("COTLAB_ALLOWED_TOLERATIONS", tuple),
    "allowed_node_selectors": ("COTLAB_ALLOWED_NODE_SELECTORS", tuple),
    "file_root": ("COTLAB_FILE_ROOT", str),
    "api_timeout_seconds": ("COTLAB_API_TIMEOUT_SECONDS", float),
    "api_qps": ("COTLAB_API_QPS", float),
    "api_burst": ("COTLAB_API_BURST", int),
    "list_page_size": ("COTLAB_LIST_PAGE_SIZE", int),
    "retry_seconds": ("COTLAB_RETRY_SECONDS", float),
    "retry_max_seconds": ("COTLAB_RETRY_MAX_SECONDS", float),
    "workload_selector": ("COTLAB_WORKLOAD_SELECTOR", str),
}


def settings_from(env: Mapping[str, str] = os.environ, **overrides: Any) -> OperatorSettings:
    """Settings from `COTLAB_*` variables, then `overrides` (flags); a bad value names its variable."""
    values: dict[str, Any] = {}
    for name, (variable, kind) in _ENV.items():
        raw = env.get(variable)
        if raw is None or (raw == "" and kind is not tuple):  # an empty list is a choice: allow none
            continue
        try:
            values[name] = tuple(v.strip() for v in raw.split(",") if v.strip()) if kind is tuple else kind(raw)
        except ValueError as err:
            raise ValueError(f"{variable}={raw!r}: {err}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return OperatorSettings(**values)  # raises ValueError naming the variable for a value it refuses
