"""What the operator refuses to run: the parts of a spec whose limits are the cluster's, set in the operator settings.

Images and service accounts a spec may only choose when the settings allow them; pod annotations only under the
allowed prefixes; tolerations and node selectors only from the allowed sets; local files (`file://`, plain paths)
only under the file root; outputs only under `<artifact root>/<namespace>/`. The same rules run three times:
here, when the operator is about to make a resource's children (a refusal fails the resource, naming the field);
in `cotctl validate --operator-settings`; and in the API server, as the ValidatingAdmissionPolicy of
manifests/install (`admission-policy.yaml`), which reads the same settings ConfigMap as the operator.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cotlab.api import Reason, Resource, TraceDataset

from .settings import OperatorSettings


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str
    path: str = ""  # the field refused, e.g. spec.podTemplateOverrides.annotations


def _refused(reason: str, path: str, problem: str) -> Refusal:
    return Refusal(reason, f"{path}: {problem}", path)


def refusals(resource: Resource, settings: OperatorSettings) -> list[Refusal]:
    """Every reason the operator will not build pods for `resource` under `settings` (empty: none)."""
    return [*_chosen(resource, settings), *_overrides(resource, settings), *_locations(resource, settings)]


def refusal(resource: Resource, settings: OperatorSettings) -> Refusal | None:
    """The first of `refusals`, or None."""
    return next(iter(refusals(resource, settings)), None)


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(values) or "none"


def _chosen(resource: Resource, settings: OperatorSettings) -> Iterator[Refusal]:
    spec = resource.spec
    if spec.image is not None and not settings.image_allowed(spec.image):
        yield _refused(
            Reason.IMAGE_NOT_ALLOWED, "spec.image",
            f"{spec.image!r} is not allowed by the operator's settings (COTLAB_ALLOWED_IMAGES: "
            f"{_listed(settings.allowed_images)}); remove spec.image or ask an admin to allow it",
        )  # fmt: skip
    account = spec.service_account_name
    if account is not None and not settings.service_account_allowed(account):
        yield _refused(
            Reason.SERVICE_ACCOUNT_NOT_ALLOWED, "spec.serviceAccountName",
            f"{account!r} is not allowed by the operator's settings (COTLAB_ALLOWED_SERVICE_ACCOUNTS: "
            f"{_listed(settings.allowed_service_accounts)}); remove it or ask an admin to allow it",
        )  # fmt: skip


def _entry_allowed(key: str, value: str | None, allowed: tuple[str, ...]) -> bool:
    """`key` alone allows any value; `key=value` allows that value only."""
    return key in allowed or (value is not None and f"{key}={value}" in allowed)


def _overrides(resource: Resource, settings: OperatorSettings) -> Iterator[Refusal]:
    spec = resource.spec
    annotations = spec.pod_template_overrides.annotations if spec.pod_template_overrides else {}
    prefixes = settings.allowed_annotation_prefixes
    for key in sorted(annotations):
        if not any(key.startswith(p) for p in prefixes):
            yield _refused(
                Reason.OVERRIDE_NOT_ALLOWED, "spec.podTemplateOverrides.annotations",
                f"key {key!r} is not under an allowed prefix (COTLAB_ALLOWED_ANNOTATION_PREFIXES: {_listed(prefixes)})",
            )  # fmt: skip
    for toleration in spec.tolerations:
        key = toleration.key or ""
        value = None if toleration.operator == "Exists" else (toleration.value or "")
        if not key or not _entry_allowed(key, value, settings.allowed_tolerations):
            shown = f"{key or '<every taint>'}{'' if value is None else '=' + value}"
            yield _refused(
                Reason.OVERRIDE_NOT_ALLOWED, "spec.tolerations",
                f"{shown!r} is not allowed (COTLAB_ALLOWED_TOLERATIONS: {_listed(settings.allowed_tolerations)})",
            )  # fmt: skip
    for key, value in sorted(spec.node_selector.items()):
        if not _entry_allowed(key, value, settings.allowed_node_selectors):
            yield _refused(
                Reason.OVERRIDE_NOT_ALLOWED, "spec.nodeSelector",
                f"'{key}={value}' is not allowed (COTLAB_ALLOWED_NODE_SELECTORS: "
                f"{_listed(settings.allowed_node_selectors)})",
            )  # fmt: skip


def _uris(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(field path, value) of every `uri` and `output` string in a wire-shaped spec."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if key in ("uri", "output") and isinstance(item, str):
                yield where, item
            else:
                yield from _uris(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _uris(item, f"{path}[{index}]")


def _climbs(location: str) -> bool:
    return ".." in location.split("/")


def _with_slash(root: str) -> str:
    return root if root.endswith("/") else root + "/"


def local_path(uri: str) -> str | None:
    """The container path a spec URI names (`file://PATH`, or a plain path), or None for any other scheme."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return None if "://" in uri else uri


def output_prefix(settings: OperatorSettings, namespace: str) -> str:
    """Where a namespace's outputs may go: `<artifact root>/<namespace>/`."""
    return f"{_with_slash(settings.artifact_root)}{namespace}/"


def _locations(resource: Resource, settings: OperatorSettings) -> Iterator[Refusal]:
    root = settings.file_root
    for path, uri in _uris(resource.spec.to_wire(), "spec"):
        local = local_path(uri)
        if local is not None and (_climbs(local) or not (local == root or local.startswith(_with_slash(root)))):
            yield _refused(
                Reason.LOCATION_NOT_ALLOWED, path,
                f"{uri!r} is outside the operator's file root (COTLAB_FILE_ROOT: {root}); "
                "mount the data under it, or use a pvc:// or s3:// URI",
            )  # fmt: skip
    output = resource.spec.output if isinstance(resource, TraceDataset) else resource.spec.output.uri
    prefix = output_prefix(settings, resource.metadata.namespace or "default")
    if output is not None and (_climbs(output) or not output.startswith(prefix)):
        yield _refused(
            Reason.LOCATION_NOT_ALLOWED, "spec.output" if isinstance(resource, TraceDataset) else "spec.output.uri",
            f"{output!r} is outside this namespace's part of the artifact store: it must start with {prefix!r} "
            "(or leave it unset)",
        )  # fmt: skip
