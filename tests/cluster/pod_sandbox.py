"""How the test pod executor turns a container spec into a local process.

No image is pulled and nothing is mounted. Instead, per pod:

* every volume is materialised as a directory (configMap/secret keys as files,
  emptyDir empty, persistentVolumeClaim a directory per claim name shared by all
  pods of the namespace, downwardAPI/projected files, hostPath the host path);
* each volumeMount appears as a symlink at `<pod dir>/fs/<mountPath>`, and the
  container's `terminationMessagePath` is a per-container file;
* any argument, environment value or working directory that names a mount path
  (or the termination message path) is rewritten to the materialised path, and an
  environment value that is exactly a directory above mounts (`/mnt/pvc` above
  `/mnt/pvc/<claim>`) becomes that directory under `fs/`,
  wherever the path starts a token: `/etc/cotlab/spec.yaml`,
  `--spec=/etc/cotlab/spec.yaml` and `open('/dev/termination-log')` inside a
  `python -c` string are all rewritten. Paths hard-coded inside programs are
  not; pass them on the command line or in the environment instead.
* `python`/`python3` as the command runs the test's own interpreter
  (`sys.executable`); other commands are looked up on the host PATH.
* The environment is the test process's own, overlaid with the container's
  `envFrom`/`env` (values, configMap/secret keys, field and resource refs),
  with `$(VAR)` references expanded as the kubelet does.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

logger = logging.getLogger(__name__)

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")
_FIELD_SUBSCRIPT = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")
LOOPBACK = "127.0.0.1"
POD_DNS_NAME = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[a-z0-9-]+\.svc(\.cluster\.local)?"
)


class VolumeNotReady(Exception):
    """A volume's source (ConfigMap, Secret) does not exist yet; the kubelet would keep retrying."""


def expand_vars(value: str, env: Mapping[str, str]) -> str:
    """Kubelet-style `$(VAR)` expansion: known names are substituted, `$$` is a literal `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, value)


def rewrite_paths(value: str, mapping: Mapping[str, str]) -> str:
    """Replace every in-container path in `mapping` that starts a token in `value` by its local path."""
    if not mapping:
        return value
    keys = sorted((k for k in mapping if k not in ("", "/")), key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.\-/])(" + "|".join(re.escape(k) for k in keys) + r")(?=$|/|[^\w.\-])")
    return pattern.sub(lambda m: mapping[m.group(1)], value)


def parent_dirs(mapping: Mapping[str, str], fs: Path) -> dict[str, str]:
    """Directories above the mount paths (not mounts themselves), each mapped to its place under `fs/`.

    A container sees `/mnt/pvc` as the folder holding its claim mounts; under `fs/` it is exactly that.
    """
    parents: dict[str, str] = {}
    for path in mapping:
        parent = os.path.dirname(path.rstrip("/"))
        while parent not in ("", "/") and parent not in mapping:
            parents[parent] = str(fs / parent.lstrip("/"))
            parent = os.path.dirname(parent)
    return parents


def resolve_command(argv: list[str]) -> list[str]:
    """Map the container's argv[0] to a host executable (`python*` is the test's interpreter)."""
    head = argv[0]
    if _PYTHON.fullmatch(os.path.basename(head)):
        return [sys.executable, *argv[1:]]
    if os.path.isabs(head) and os.access(head, os.X_OK):
        return argv
    found = shutil.which(os.path.basename(head))
    if found is None:
        raise FileNotFoundError(f'executable file "{head}" not found on the host PATH')
    return [found, *argv[1:]]


def field_value(pod: Mapping[str, Any], field_path: str) -> str:
    """A downward-API `fieldRef.fieldPath` of `pod`."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    subscript = _FIELD_SUBSCRIPT.fullmatch(field_path)
    if subscript:
        return str((meta.get(subscript.group(1)) or {}).get(subscript.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
    }
    if field_path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(field_path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    return str(simple.get(field_path) or "")


def _resource_value(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    kind, _, name = str(ref.get("resource", "")).partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(name)
    return str(value) if value is not None else "0"


class PodSandbox:
    """The local stand-in for one pod's containers: volumes, paths and environment."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        pod: Mapping[str, Any],
        pod_dir: Path,
        claims_root: Path,
        env_base: Mapping[str, str],
    ) -> None:
        self.core = kubernetes.client.CoreV1Api(api)
        self.pod = pod
        self.namespace = str(pod["metadata"]["namespace"])
        self.dir = pod_dir
        self.fs = pod_dir / "fs"
        self.claims_root = claims_root
        self.env_base = env_base
        self.volumes: dict[str, Path] = {}

    # -- volumes -------------------------------------------------------------

    def materialise_volumes(self) -> None:
        """Create every pod volume's directory; raises VolumeNotReady when a source is missing."""
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            self.volumes[volume["name"]] = self._volume(volume)

    def _volume(self, volume: Mapping[str, Any]) -> Path:
        name = str(volume["name"])
        target: Path = self.dir / "volumes" / name
        if "persistentVolumeClaim" in volume:
            path = self.claims_root / self.namespace / str(volume["persistentVolumeClaim"]["claimName"])
            path.mkdir(parents=True, exist_ok=True)
            return path
        if "hostPath" in volume:
            path = Path(str(volume["hostPath"]["path"]))
            path.mkdir(parents=True, exist_ok=True)
            return path
        target.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            self._write_files(target, self._configmap_data(volume["configMap"]), volume["configMap"].get("items"))
        elif "secret" in volume:
            source = {"name": volume["secret"].get("secretName"), "optional": volume["secret"].get("optional")}
            self._write_files(target, self._secret_data(source), volume["secret"].get("items"))
        elif "downwardAPI" in volume:
            self._write_downward(target, volume["downwardAPI"].get("items") or [])
        elif "projected" in volume:
            for source in volume["projected"].get("sources") or []:
                self._write_projection(target, source)
        elif "emptyDir" not in volume:
            logger.warning("volume type not supported; using an empty directory", extra={"volume": name})
        return target

    def _configmap_data(self, source: Mapping[str, Any]) -> dict[str, bytes]:
        try:
            cm = self.core.read_namespaced_config_map(source["name"], self.namespace)
        except ApiException as err:
            if err.status == 404 and source.get("optional"):
                return {}
            raise VolumeNotReady(f'configmap "{source["name"]}" not found') from err
        data = {k: v.encode() for k, v in (cm.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        return data

    def _secret_data(self, source: Mapping[str, Any]) -> dict[str, bytes]:
        try:
            secret = self.core.read_namespaced_secret(source["name"], self.namespace)
        except ApiException as err:
            if err.status == 404 and source.get("optional"):
                return {}
            raise VolumeNotReady(f'secret "{source["name"]}" not found') from err
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        data.update({k: v.encode() for k, v in (secret.string_data or {}).items()})
        return data

    @staticmethod
    def _write_files(target: Path, data: Mapping[str, bytes], items: list[dict[str, Any]] | None) -> None:
        pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
        for key, rel in pairs:
            if key not in data:
                continue
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[key])

    def _write_downward(self, target: Path, items: list[dict[str, Any]]) -> None:
        for item in items:
            if "fieldRef" in item:
                path = target / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(field_value(self.pod, item["fieldRef"]["fieldPath"]))

    def _write_projection(self, target: Path, source: Mapping[str, Any]) -> None:
        try:
            if "configMap" in source:
                self._write_files(target, self._configmap_data(source["configMap"]), source["configMap"].get("items"))
            elif "secret" in source:
                self._write_files(target, self._secret_data(source["secret"]), source["secret"].get("items"))
            elif "downwardAPI" in source:
                self._write_downward(target, source["downwardAPI"].get("items") or [])
            elif "serviceAccountToken" in source:
                (target / source["serviceAccountToken"]["path"]).write_text(self._service_account_token(source))
        except VolumeNotReady:
            # The auto-mounted kube-api-access volume's kube-root-ca.crt may lag
            # behind a fresh namespace; nothing the tests run reads it.
            logger.debug("projected source missing; skipped", extra={"source": dict(source)})

    def _service_account_token(self, source: Mapping[str, Any]) -> str:
        sa = (self.pod.get("spec") or {}).get("serviceAccountName") or "default"
        spec = source["serviceAccountToken"]
        body = {
            "spec": {
                "audiences": [spec["audience"]] if spec.get("audience") else [],
                "expirationSeconds": spec.get("expirationSeconds", 3600),
                "boundObjectRef": {
                    "apiVersion": "v1", "kind": "Pod",
                    "name": self.pod["metadata"]["name"], "uid": self.pod["metadata"]["uid"],
                },
            }
        }  # fmt: skip
        try:
            response = self.core.create_namespaced_service_account_token(sa, self.namespace, body)  # type: ignore[arg-type]
            return str(response.status.token if response.status else "")
        except ApiException:
            logger.debug("token request failed", extra={"serviceAccount": sa})
            return ""

    # -- per container -------------------------------------------------------

    def termination_file(self, container: Mapping[str, Any]) -> Path:
        return self.dir / "termination" / str(container["name"])

    def path_map(self, container: Mapping[str, Any]) -> dict[str, str]:
        """In-container path -> local path, for this container's mounts and termination message file."""
        mapping: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            source = self.volumes[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
                if not source.exists():
                    source.mkdir(parents=True, exist_ok=True)
            mount_path = mount["mountPath"].rstrip("/") or "/"
            link = self.fs / mount_path.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(source)
            mapping[mount_path] = str(link)
        termination = self.termination_file(container)
        termination.parent.mkdir(parents=True, exist_ok=True)
        termination.touch()
        mapping[container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH] = str(termination)
        return mapping

    def environment(self, container: Mapping[str, Any]) -> dict[str, str]:
        """The process environment: the test's own, then envFrom, then env (later wins), `$(VAR)` expanded."""
        own: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self._configmap_data(source["configMapRef"])
            else:
                data = self._secret_data(source["secretRef"])
            own.update({prefix + k: v.decode(errors="replace") for k, v in data.items()})
        for var in container.get("env") or []:
            own[var["name"]] = self._env_value(container, var, own)
        # Every pod is a local process, so cluster DNS names of pods (`<host>.<service>.<namespace>.svc`, as in
        # a multi-node FineTuneRun's MASTER_ADDR) resolve to the loopback address.
        own = {k: LOOPBACK if POD_DNS_NAME.fullmatch(v) else v for k, v in own.items()}
        return {**self.env_base, **own}

    def _env_value(self, container: Mapping[str, Any], var: Mapping[str, Any], defined: Mapping[str, str]) -> str:
        if "valueFrom" not in var:
            return expand_vars(str(var.get("value", "")), defined)
        ref = var["valueFrom"]
        if "fieldRef" in ref:
            return field_value(self.pod, ref["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in ref:
            return _resource_value(container, ref["resourceFieldRef"])
        if "configMapKeyRef" in ref:
            key_ref = ref["configMapKeyRef"]
            data = self._configmap_data(key_ref)
        else:
            key_ref = ref["secretKeyRef"]
            data = self._secret_data(key_ref)
        if key_ref["key"] not in data and not key_ref.get("optional"):
            raise VolumeNotReady(f"couldn't find key {key_ref['key']} in {key_ref['name']}")
        return data.get(key_ref["key"], b"").decode(errors="replace")

    def argv(self, container: Mapping[str, Any], env: Mapping[str, str], mapping: Mapping[str, str]) -> list[str]:
        """The container's command + args, expanded and path-rewritten, with a host executable first."""
        raw = [*(container.get("command") or []), *(container.get("args") or [])]
        if not container.get("command"):
            raise FileNotFoundError("no command: the pod executor cannot run an image's entrypoint")
        return resolve_command([rewrite_paths(expand_vars(a, env), mapping) for a in raw])

    def working_dir(self, container: Mapping[str, Any], mapping: Mapping[str, str]) -> Path:
        """The container's workingDir (rewritten to a mount, else under `fs/`); `fs/` by default."""
        wanted = container.get("workingDir")
        if not wanted:
            self.fs.mkdir(parents=True, exist_ok=True)
            return self.fs
        rewritten = rewrite_paths(wanted, mapping)
        path = Path(rewritten) if rewritten != wanted else self.fs / wanted.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        return path
