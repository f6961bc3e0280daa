"""A test-only kubelet: fake GPU nodes whose pods run as local processes.

`PodExecutor.start()` registers Ready Node objects (default `gpu-node-0` and
`gpu-node-1`, each with `nvidia.com/gpu: 8`), serves their kubelet log
endpoint (`kubelet_logs`), and from a background thread polls the API for pods
the scheduler bound to those nodes. Each new pod gets a `pod_run.PodRun`
thread (how containers become processes is in `pod_sandbox`). A pod with a
deletionTimestamp has its processes killed and is then deleted with grace
period 0, as a kubelet finishes termination. Pending PersistentVolumeClaims get
a pre-bound hostPath PersistentVolume so the scheduler can place their pods
(the claim's data lives in `<root>/claims/<namespace>/<claim>`).

Polling (every 0.2 s) instead of a watch keeps the loop free of
resourceVersion bookkeeping; the tests wait in seconds, so the latency is
irrelevant.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kube_pki
import kubelet_logs
import kubernetes.client
import pod_run
from kubernetes.client.exceptions import ApiException

logger = logging.getLogger(__name__)

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_NODES = ("gpu-node-0", "gpu-node-1")
EXECUTOR_LABEL = "cotlab.dev/pod-executor"
_POLL_SECONDS = 0.2


def build_fake_gpu_node(name: str, *, kubelet_port: int, gpus: int = 8) -> dict[str, Any]:
    """A Ready Node whose kubelet endpoint is the executor's log server on 127.0.0.1."""
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti", GPU_RESOURCE: str(gpus)}
    now = pod_run.now_rfc3339()

    def condition(kind: str, status: str, reason: str) -> dict[str, str]:
        return {"type": kind, "status": status, "reason": reason, "lastHeartbeatTime": now, "lastTransitionTime": now}

    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "nvidia.com/gpu.present": "true",
                EXECUTOR_LABEL: "true",
            },
        },
        "spec": {"taints": []},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                condition("Ready", "True", "KubeletReady"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": {
                "machineID": name,
                "systemUUID": name,
                "bootID": name,
                "kernelVersion": os.uname().release,
                "osImage": "cotlab pod executor",
                "containerRuntimeVersion": "cotlab-pod-executor://1",
                "kubeletVersion": "v1.37.2",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },  # fmt: skip
        },
    }


class PodExecutor:
    """Fake nodes plus the loop that runs their pods; `start()`/`stop()` from the test session."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        *,
        root: Path,
        tls: kube_pki.CertPair,
        node_names: tuple[str, ...] = DEFAULT_NODES,
        gpus_per_node: int = 8,
        env_base: Mapping[str, str] | None = None,
    ) -> None:
        self.api = api
        self.core = kubernetes.client.CoreV1Api(api)
        self.root = root.resolve()
        self.node_names = node_names
        self.gpus_per_node = gpus_per_node
        self.env_base = dict(os.environ if env_base is None else env_base)
        self._runs: dict[str, pod_run.PodRun] = {}  # pod uid -> run
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._logs = kubelet_logs.KubeletLogServer(self._locate_log, tls.cert, tls.key)
        self._thread = threading.Thread(target=self._loop, name="pod-executor", daemon=True)
        self._provisioned: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._logs.start()
        for name in self.node_names:
            self._register_node(name)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, kill every running pod's processes, stop the log server."""
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.kill(0)
        for run in runs:
            run.thread.join(timeout=15)
        self._logs.stop()

    def _register_node(self, name: str) -> None:
        body = build_fake_gpu_node(name, kubelet_port=self._logs.port, gpus=self.gpus_per_node)
        try:
            self.core.create_node(body)  # type: ignore[arg-type]  # the client takes plain dicts
        except ApiException as err:
            if err.status != 409:
                raise
            self.core.patch_node(name, {"spec": {"taints": []}})
        # Create keeps status for Nodes today, but the status subresource is the
        # documented way for a kubelet to report it.
        self.core.patch_node_status(name, {"status": body["status"]})

    # -- queries for tests ---------------------------------------------------------

    def pod_dir(self, namespace: str, name: str) -> Path:
        """Where a pod's logs (`logs/<container>.log`), volumes and `fs/` tree live."""
        return self.root / "pods" / namespace / name

    def claim_dir(self, namespace: str, claim: str) -> Path:
        return self.root / "claims" / namespace / claim

    def _find(self, namespace: str, name: str) -> pod_run.PodRun | None:
        with self._lock:
            return next(
                (r for r in self._runs.values()
                 if r.pod["metadata"]["namespace"] == namespace and r.pod["metadata"]["name"] == name),
                None,
            )  # fmt: skip

    def _locate_log(self, namespace: str, pod: str, container: str, previous: bool) -> tuple[Path, Any]:
        run = self._find(namespace, pod)
        if run is None:
            raise kubelet_logs.LogSourceError(404, f'pod "{pod}" not found on this node')
        c = run.container(container)
        if c is None:
            raise kubelet_logs.LogSourceError(404, f'container "{container}" not found in pod "{pod}"')
        if previous:
            path = c.log.with_suffix(".previous.log")
            if not path.exists():
                raise kubelet_logs.LogSourceError(400, f'previous terminated container "{container}" not found')
            return path, lambda: False
        if c.proc is None and c.terminated is None:
            raise kubelet_logs.LogSourceError(
                400, f'container "{container}" in pod "{pod}" is waiting to start: {c.waiting_reason}'
            )
        return c.log, lambda: c.running

    # -- the loop ----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync_pods()
                self._sync_claims()
            except Exception:  # a hiccup (apiserver restart, timeout) must not end the loop
                logger.exception("pod executor sync failed")
            self._stop.wait(_POLL_SECONDS)

    def _sync_pods(self) -> None:
        listed = self.core.list_pod_for_all_namespaces(field_selector="spec.nodeName!=", _request_timeout=10)
        seen: set[str] = set()
        for pod in self._as_dicts(listed.items):
            if pod["spec"].get("nodeName") not in self.node_names:
                continue
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            with self._lock:
                run = self._runs.get(uid)
            if pod["metadata"].get("deletionTimestamp"):
                self._terminate(pod, run)
            elif run is None and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                self._launch(pod)
        with self._lock:
            gone = [r for uid, r in self._runs.items() if uid not in seen]
            for r in gone:
                del self._runs[r.uid]
        for r in gone:  # deleted without grace (or node changed): just stop the processes
            r.kill(0)

    def _launch(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        pod_dir = self.pod_dir(meta["namespace"], meta["name"])
        if pod_dir.exists():  # an earlier pod of the same name: keep its files, out of the way
            pod_dir.rename(pod_dir.with_name(f".{meta['name']}.{time.time_ns()}"))
        run = pod_run.PodRun(self.api, pod, pod_dir, self.root / "claims", self.env_base, self._on_finished)
        with self._lock:
            self._runs[run.uid] = run
        run.start()

    def _on_finished(self, run: pod_run.PodRun) -> None:
        if run.killed:
            self._delete_now(run.pod)

    def _terminate(self, pod: dict[str, Any], run: pod_run.PodRun | None) -> None:
        if run is not None and run.thread.is_alive():
            run.kill(float(pod["metadata"].get("deletionGracePeriodSeconds") or 0))
            return  # _on_finished deletes once the processes are gone
        self._delete_now(pod)

    def _delete_now(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        body = kubernetes.client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=kubernetes.client.V1Preconditions(uid=meta["uid"])
        )
        with contextlib.suppress(ApiException):  # already gone, or a newer pod of that name
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=body)

    def _sync_claims(self) -> None:
        """Give each Pending claim a pre-bound hostPath volume; drop released ones this executor made."""
        listed = self.core.list_persistent_volume_claim_for_all_namespaces(_request_timeout=10)
        for claim in self._as_dicts(listed.items):
            uid = claim["metadata"]["uid"]
            bound = claim["spec"].get("volumeName") or claim.get("status", {}).get("phase") == "Bound"
            if not bound and uid not in self._provisioned:
                self._provision(claim)
                self._provisioned.add(uid)
        volumes = self.core.list_persistent_volume(label_selector=EXECUTOR_LABEL, _request_timeout=10)
        for volume in self._as_dicts(volumes.items):
            if volume.get("status", {}).get("phase") == "Released":
                with contextlib.suppress(ApiException):
                    self.core.delete_persistent_volume(volume["metadata"]["name"])

    def _as_dicts(self, items: list[Any]) -> list[dict[str, Any]]:
        """API models as the camelCase dicts the rest of the executor reads."""
        return [self.api.sanitize_for_serialization(item) for item in items]  # type: ignore[no-untyped-call]

    def _provision(self, claim: dict[str, Any]) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        path = self.claim_dir(meta["namespace"], meta["name"])
        path.mkdir(parents=True, exist_ok=True)
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"pvc-{meta['uid']}", "labels": {EXECUTOR_LABEL: "true"}},
            "spec": {
                "capacity": {"storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": spec.get("storageClassName") or "",
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            },
        }
        try:
            self.core.create_persistent_volume(body)  # type: ignore[arg-type]  # the client takes plain dicts
        except ApiException as err:
            if err.status != 409:
                logger.warning("volume for claim not created", extra={"claim": meta["name"], "error": err.body})
