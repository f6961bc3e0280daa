"""What a spec may change in its pods: an explicit allow-list, because a spec becomes a pod.

Labels, annotations, environment variables from `ALLOWED_ENV` (values, or keys of a Secret or ConfigMap by
reference) and extra volumes of four safe kinds (PersistentVolumeClaim, ConfigMap, Secret, emptyDir), each with its
mount. No host paths, no privileges, no other service account: those are not expressible. The same rules are CEL on
the CRD (the API server refuses a bad spec) and pydantic validators (`cotctl validate`). What depends on the
cluster (annotation prefixes, tolerations, node selectors, where files and outputs may be) is the operator's
settings: its ValidatingAdmissionPolicy and `cotlab.operator.policy` check those.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator

from .base import CamelModel, ConfigMapKeyRef, Name, SecretKeyRef, ShortStr

# Pod label keys a user may not set: cotlab's own and those the Job controller and Kueue set or read.
RESERVED_LABEL_PREFIXES = ("cotlab.dev/", "kueue.x-k8s.io/", "batch.kubernetes.io/")
RESERVED_LABELS = ("job-name", "controller-uid", "app.kubernetes.io/managed-by")

# Paths cotlab's pods mount themselves (spec file, scratch, caches, artifact claims, shared memory).
RESERVED_MOUNT_PATHS = ("/etc/cotlab", "/tmp", "/cache", "/dev/shm", "/mnt/pvc")
# Volume names cotlab's pods use; artifact claims are mounted as `pvc-<n>`.
RESERVED_VOLUME_NAMES = ("spec", "tmp", "cache", "dshm")
RESERVED_VOLUME_PREFIX = "pvc-"
# Environment variables a spec may set: an allow-list of knobs that tune threads, collectives, logging and the
# hub client's offline mode, and never name code, a library, a path or an endpoint. A deny-list cannot keep up:
# besides PYTHONPATH and LD_PRELOAD, PYTHONWARNINGS imports a module, GCONV_PATH loads a library, NCCL_NET_PLUGIN
# and TORCHINDUCTOR_CACHE_DIR load compiled code from a mounted volume, PATH picks the `python` that runs, and
# HF_ENDPOINT, HTTPS_PROXY or AWS_ENDPOINT_URL send the hub token or the store's credentials elsewhere.
ALLOWED_ENV = (
    # threads and memory
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TOKENIZERS_PARALLELISM",
    "PYTORCH_CUDA_ALLOC_CONF", "CUDA_LAUNCH_BLOCKING", "CUDA_DEVICE_MAX_CONNECTIONS", "CUBLAS_WORKSPACE_CONFIG",
    # collectives
    "NCCL_DEBUG", "NCCL_DEBUG_SUBSYS", "NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE", "NCCL_IB_HCA", "NCCL_IB_GID_INDEX",
    "NCCL_IB_TIMEOUT", "NCCL_IB_RETRY_CNT", "NCCL_P2P_DISABLE", "NCCL_P2P_LEVEL", "NCCL_SHM_DISABLE",
    "NCCL_NET_GDR_LEVEL", "NCCL_CROSS_NIC", "NCCL_NVLS_ENABLE", "NCCL_ALGO", "NCCL_PROTO", "NCCL_MIN_NCHANNELS",
    "NCCL_MAX_NCHANNELS", "NCCL_BUFFSIZE", "GLOO_SOCKET_IFNAME", "TORCH_NCCL_ASYNC_ERROR_HANDLING",
    "TORCH_NCCL_BLOCKING_WAIT", "TORCH_NCCL_TRACE_BUFFER_SIZE", "TORCH_DISTRIBUTED_DEBUG", "TORCH_CPP_LOG_LEVEL",
    "TORCH_SHOW_CPP_STACKTRACES",
    # libraries' logging and offline switches (the hub's endpoint and token are the operator's)
    "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS",
    "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_ENABLE_HF_TRANSFER",
    "TRANSFORMERS_VERBOSITY", "VLLM_LOGGING_LEVEL", "VLLM_ATTENTION_BACKEND", "VLLM_WORKER_MULTIPROC_METHOD",
    "VLLM_ENGINE_ITERATION_TIMEOUT_S",
    # the object store's region (its endpoint and credentials come from the operator's artifact Secret)
    "AWS_REGION", "AWS_DEFAULT_REGION",
    "TZ",
)  # fmt: skip

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
LabelKey = Annotated[str, Field(min_length=1, max_length=253)]


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


class EnvSource(CamelModel):
    """A value from a Secret's or ConfigMap's key, never the value itself."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                    "message": "set exactly one of secretKeyRef or configMapKeyRef",
                }
            ]
        }
    }

    secret_key_ref: SecretKeyRef | None = None
    config_map_key_ref: ConfigMapKeyRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("set exactly one of secretKeyRef or configMapKeyRef")
        return self


ENV_NOT_ALLOWED_MESSAGE = (
    "is not a variable a spec may set (names that choose code, libraries, paths or endpoints are refused); "
    f"allowed: {', '.join(ALLOWED_ENV)}"
)


class EnvVar(CamelModel):
    """An environment variable from the allow-list: a plain value or a reference."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "has(self.value) != has(self.valueFrom)", "message": "set exactly one of value or valueFrom"},
                {
                    "rule": f"self.name in {_cel_list(ALLOWED_ENV)}",
                    "message": ENV_NOT_ALLOWED_MESSAGE,
                    "messageExpression": f'"\'" + self.name + "\' {ENV_NOT_ALLOWED_MESSAGE}"',
                    "fieldPath": ".name",
                },
            ]
        }
    }

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=ENV_NAME_PATTERN)]
    value: Annotated[str, Field(max_length=4096)] | None = None
    value_from: EnvSource | None = None

    @field_validator("name")
    @classmethod
    def _allowed(cls, name: str) -> str:
        if name not in ALLOWED_ENV:
            raise ValueError(f"{name!r} {ENV_NOT_ALLOWED_MESSAGE}")
        return name

    @model_validator(mode="after")
    def _checked(self) -> Self:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("set exactly one of value or valueFrom")
        return self


class ClaimSource(CamelModel):
    claim_name: Name
    read_only: bool = False


class ConfigMapSource(CamelModel):
    name: Name
    optional: bool = False


class SecretSource(CamelModel):
    secret_name: Name
    optional: bool = False


class EmptyDirSource(CamelModel):
    medium: Annotated[str, Field(pattern=r"^(|Memory)$")] = ""
    size_limit: ShortStr | None = None


MOUNT_RESERVED_MESSAGE = f"mountPath may not be {', '.join(RESERVED_MOUNT_PATHS)} or below them, nor contain '..'"
VOLUME_NAME_MESSAGE = f"name is used by cotlab ({', '.join(RESERVED_VOLUME_NAMES)}, {RESERVED_VOLUME_PREFIX}*)"


class ExtraVolume(CamelModel):
    """A volume of a safe kind, mounted into the stage's container."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.persistentVolumeClaim), has(self.configMap), has(self.secret), "
                    "has(self.emptyDir)].filter(x, x).size() == 1",
                    "message": "set exactly one of persistentVolumeClaim, configMap, secret, emptyDir",
                },
                {
                    "rule": f"!self.mountPath.contains('..') && !{_cel_list(RESERVED_MOUNT_PATHS)}"
                    ".exists(p, self.mountPath == p || self.mountPath.startsWith(p + '/'))",
                    "message": MOUNT_RESERVED_MESSAGE,
                },
                {
                    "rule": f"!(self.name in {_cel_list(RESERVED_VOLUME_NAMES)}) "
                    f"&& !self.name.startsWith('{RESERVED_VOLUME_PREFIX}')",
                    "message": VOLUME_NAME_MESSAGE,
                },
            ]
        }
    }

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    mount_path: Annotated[str, Field(min_length=2, max_length=1024, pattern=r"^/[^:]*$")]
    read_only: bool = False
    persistent_volume_claim: ClaimSource | None = None
    config_map: ConfigMapSource | None = None
    secret: SecretSource | None = None
    empty_dir: EmptyDirSource | None = None

    @model_validator(mode="after")
    def _checked(self) -> Self:
        sources = [self.persistent_volume_claim, self.config_map, self.secret, self.empty_dir]
        if sum(s is not None for s in sources) != 1:
            raise ValueError("set exactly one of persistentVolumeClaim, configMap, secret, emptyDir")
        path = self.mount_path.rstrip("/")
        if ".." in self.mount_path or any(path == p or path.startswith(p + "/") for p in RESERVED_MOUNT_PATHS):
            raise ValueError(MOUNT_RESERVED_MESSAGE)
        if self.name in RESERVED_VOLUME_NAMES or self.name.startswith(RESERVED_VOLUME_PREFIX):
            raise ValueError(VOLUME_NAME_MESSAGE)
        return self


LABEL_RESERVED_MESSAGE = (
    f"label keys under {', '.join(RESERVED_LABEL_PREFIXES)} and {', '.join(RESERVED_LABELS)} are set by cotlab"
)


def is_reserved_label(key: str) -> bool:
    """Whether a pod label key belongs to cotlab, Kubernetes' Job controller or Kueue."""
    return key in RESERVED_LABELS or any(key.startswith(p) for p in RESERVED_LABEL_PREFIXES)


class PodOverrides(CamelModel):
    """The allowed changes to a stage's pod (see the module docstring for what is deliberately absent)."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.labels) || self.labels.all(k, "
                    f"!{_cel_list(RESERVED_LABEL_PREFIXES)}.exists(p, k.startsWith(p)) "
                    f"&& !(k in {_cel_list(RESERVED_LABELS)}))",
                    "message": LABEL_RESERVED_MESSAGE,
                },
                {
                    "rule": "!has(self.volumes) || self.volumes.all(v, self.volumes.exists_one(w, w.name == v.name))",
                    "message": "volume names must be unique",
                },
            ]
        }
    }

    labels: Annotated[dict[LabelKey, Annotated[str, Field(max_length=63)]], Field(max_length=64)] = Field(
        default_factory=dict
    )
    annotations: Annotated[dict[LabelKey, Annotated[str, Field(max_length=4096)]], Field(max_length=64)] = Field(
        default_factory=dict
    )
    env: Annotated[list[EnvVar], Field(max_length=64)] = Field(default_factory=list)
    volumes: Annotated[list[ExtraVolume], Field(max_length=16)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checked(self) -> Self:
        reserved = sorted(k for k in self.labels if is_reserved_label(k))
        if reserved:
            raise ValueError(f"{LABEL_RESERVED_MESSAGE}: {', '.join(reserved)}")
        names = [v.name for v in self.volumes]
        if len(set(names)) != len(names):
            raise ValueError("volume names must be unique")
        return self
