"""What a spec may change in its pods: an explicit allow-list, because a spec becomes a pod.

Labels, annotations, environment variables (values, or keys of a Secret or ConfigMap by reference) and extra
volumes of four safe kinds (PersistentVolumeClaim, ConfigMap, Secret, emptyDir), each with its mount. No host
paths, no privileges, no other service account: those are not expressible. The same rules are CEL on the CRD
(the API server refuses a bad spec) and checked again by the operator's builder before it builds a pod.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from .base import CamelModel, ConfigMapKeyRef, Name, SecretKeyRef, ShortStr

# Pod label keys a user may not set: cotlab's own and those the Job controller and Kueue set or read.
RESERVED_LABEL_PREFIXES = ("cotlab.dev/", "kueue.x-k8s.io/", "batch.kubernetes.io/")
RESERVED_LABELS = ("job-name", "controller-uid", "app.kubernetes.io/managed-by")

# Paths cotlab's pods mount themselves (spec file, scratch, caches, artifact claims, shared memory).
RESERVED_MOUNT_PATHS = ("/etc/cotlab", "/tmp", "/cache", "/dev/shm", "/mnt/pvc")
# Volume names cotlab's pods use; artifact claims are mounted as `pvc-<n>`.
RESERVED_VOLUME_NAMES = ("spec", "tmp", "cache", "dshm")
RESERVED_VOLUME_PREFIX = "pvc-"
# Variables the operator sets: the pod contract, the hub token (by tokenSecretRef only) and the rendezvous.
RESERVED_ENV_PREFIX = "COTLAB_"
RESERVED_ENV = ("HF_TOKEN", "HF_HOME", "HOME", "TMPDIR", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")

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


ENV_RESERVED_MESSAGE = f"is set by cotlab ({RESERVED_ENV_PREFIX}*, {', '.join(RESERVED_ENV)})"


class EnvVar(CamelModel):
    """An environment variable: a plain value or a reference."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "has(self.value) != has(self.valueFrom)", "message": "set exactly one of value or valueFrom"},
                {
                    "rule": f"!self.name.startsWith('{RESERVED_ENV_PREFIX}') "
                    f"&& !(self.name in {_cel_list(RESERVED_ENV)})",
                    "message": f"name {ENV_RESERVED_MESSAGE}",
                },
            ]
        }
    }

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=ENV_NAME_PATTERN)]
    value: Annotated[str, Field(max_length=4096)] | None = None
    value_from: EnvSource | None = None

    @model_validator(mode="after")
    def _checked(self) -> Self:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("set exactly one of value or valueFrom")
        if self.name.startswith(RESERVED_ENV_PREFIX) or self.name in RESERVED_ENV:
            raise ValueError(f"name {ENV_RESERVED_MESSAGE}")
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
