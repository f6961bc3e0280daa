"""Kueue's manager (v0.17.0, built from source by `build-kueue.sh`) beside the test control plane.

It runs out of cluster with `KUBECONFIG` and a v1beta2 Configuration: no leader election, no internal cert
management, health, metrics and webhook ports on loopback, only the `batch/job` integration, and the
VisibilityOnDemand gate off. No webhook is registered with the API server, so Jobs must be created suspended
with the queue label (cotlab's builder does) and only the v1beta2 API is served. With internal cert management
off, Kueue still wants a webhook serving certificate in its cert directory and reads a metrics certificate from
the fixed path /etc/kueue/metrics/certs (cmd/kueue/main.go): the fixture writes self-signed pairs to both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import kube_pki
from kube_controlplane import free_port

KUEUE_VERSION = "v0.17.0"
BUILD_SCRIPT = Path(__file__).resolve().parent / "build-kueue.sh"
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")  # fixed in Kueue's main.go


def kueue_dir() -> Path | None:
    """`<cache>/kueue/v0.17.0` when `build-kueue.sh` built it (binary and CRDs), else None."""
    cache = Path(os.environ.get("COTLAB_CACHE") or Path.home() / ".cache" / "cotlab")
    path = cache / "kueue" / KUEUE_VERSION
    return path if (path / "bin" / "kueue").exists() and (path / "crds" / ".complete").exists() else None


def _certificates(workdir: Path) -> Path:
    """Self-signed serving pairs: the webhook's cert directory, and the metrics path Kueue hard-codes."""
    ca = kube_pki.make_ca(workdir / "pki")
    pair = kube_pki.issue_cert(
        ca, workdir / "pki", "kueue-serving", common_name="kueue", server=True,
        dns_names=("localhost",), ip_addresses=("127.0.0.1",),
    )  # fmt: skip
    certs = workdir / "webhook-certs"
    for target in (certs, METRICS_CERT_DIR):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(pair.cert, target / "tls.crt")
        shutil.copy(pair.key, target / "tls.key")
    return certs


class KueueManager:
    """One Kueue manager process; `start()` waits for its readiness endpoint."""

    def __init__(self, directory: Path, kubeconfig: Path, workdir: Path) -> None:
        self.binary = directory / "bin" / "kueue"
        self.kubeconfig, self.workdir = kubeconfig, workdir
        self.health_port, self.metrics_port, self.webhook_port = free_port(), free_port(), free_port()
        self.log = workdir / "kueue.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def _config(self, certs: Path) -> Path:
        config = self.workdir / "kueue-config.yaml"
        config.write_text(
            "\n".join([
                "apiVersion: config.kueue.x-k8s.io/v1beta2",
                "kind: Configuration",
                "namespace: kueue-system",
                "leaderElection: {leaderElect: false}",
                "internalCertManagement: {enable: false}",
                f"health: {{healthProbeBindAddress: '127.0.0.1:{self.health_port}'}}",
                f"metrics: {{bindAddress: '127.0.0.1:{self.metrics_port}'}}",
                f"webhook: {{port: {self.webhook_port}, host: 127.0.0.1, certDir: '{certs}'}}",
                "integrations: {frameworks: [batch/job]}",
                "featureGates: {VisibilityOnDemand: false}",
                "",
            ])
        )  # fmt: skip
        return config

    def start(self, timeout: float = 60) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._config(_certificates(self.workdir))
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [str(self.binary), f"--config={config}", "--zap-log-level=2"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"kueue exited with {self.popen.returncode}:\n{self.tail()}")
            ready = f"http://127.0.0.1:{self.health_port}/readyz"
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(ready, timeout=2) as answer,
            ):
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"kueue not ready within {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
