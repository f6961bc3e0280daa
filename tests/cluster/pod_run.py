"""One pod's life on the test pod executor, reported like a kubelet would.

A `PodRun` thread materialises the pod's sandbox (see `pod_sandbox`), runs the
init containers one by one and then the containers side by side as local
process groups, restarts them as `restartPolicy` says, enforces
`activeDeadlineSeconds`, and writes `pods/status` at every change: phase
Pending -> Running -> Succeeded/Failed, the PodScheduled, PodReadyToStartContainers,
Initialized, ContainersReady and Ready conditions, and container statuses with
running/terminated states, exit codes, reasons (Completed/Error) and the
termination message (`terminationMessagePolicy: FallbackToLogsOnError` falls
back to the log tail). `kill()` stops every process group (SIGTERM, then
SIGKILL after the grace period).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubelet_logs
import kubernetes.client
import pod_sandbox
from kubernetes.client.exceptions import ApiException

logger = logging.getLogger(__name__)

# Kubelet limits: 4 KiB of termination message, 80 lines / 2 KiB of log fallback.
_MESSAGE_BYTES = 4096
_FALLBACK_LINES = 80
_FALLBACK_BYTES = 2048
_POLL_SECONDS = 0.05
_MAX_GRACE_SECONDS = 10.0
_MAX_RESTART_BACKOFF = 10.0


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRun:
    """A container's local process and what the kubelet would report about it."""

    spec: Mapping[str, Any]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    terminated: dict[str, Any] | None = None
    last_terminated: dict[str, Any] | None = None
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    restart_count: int = 0
    restart_at: float = 0.0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.proc is not None and self.terminated is None

    def status(self) -> dict[str, Any]:
        running = self.running
        state: dict[str, Any]
        if running:
            state = {"running": {"startedAt": self.started_at}}
        elif self.terminated is not None:
            state = {"terminated": self.terminated}
        else:
            state = {
                "waiting": {
                    "reason": self.waiting_reason,
                    **({"message": self.waiting_message} if self.waiting_message else {}),
                }
            }
        result: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image") or "",
            "imageID": "",
            "ready": running,
            "started": running,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.proc is not None:
            result["containerID"] = f"executor://{self.proc.pid}"
        return result


class PodRun:
    """Runs one pod to completion (or until killed) in its own thread."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        pod: dict[str, Any],
        pod_dir: Path,
        claims_root: Path,
        env_base: Mapping[str, str],
        on_finished: Callable[[PodRun], None],
    ) -> None:
        self.pod = pod
        self.pod_dir = pod_dir
        self.on_finished = on_finished
        self.core = kubernetes.client.CoreV1Api(api)
        self.phase = "Pending"
        self._kill = threading.Event()
        self._grace = 0.0
        self._conditions: dict[str, dict[str, Any]] = {}
        self._reason = ""
        self._message = ""
        self._start_time = now_rfc3339()
        spec = pod["spec"]
        logs = pod_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.init_containers = [ContainerRun(c, logs / f"{c['name']}.log") for c in spec.get("initContainers") or []]
        self.containers = [ContainerRun(c, logs / f"{c['name']}.log") for c in spec.get("containers") or []]
        self.sandbox = pod_sandbox.PodSandbox(api, pod, pod_dir, claims_root, env_base)
        self.thread = threading.Thread(target=self.run, name=f"pod-{self.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def killed(self) -> bool:
        return self._kill.is_set()

    def kill(self, grace_seconds: float) -> None:
        """Ask the run to stop its processes (SIGTERM, SIGKILL after `grace_seconds`, capped)."""
        self._grace = min(grace_seconds, _MAX_GRACE_SECONDS)
        self._kill.set()

    def container(self, name: str) -> ContainerRun | None:
        return next((c for c in [*self.init_containers, *self.containers] if c.name == name), None)

    # -- the pod's life --------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception as err:  # report, never crash the executor
            logger.exception("pod run failed", extra={"pod": self.name})
            self._stop_all()
            self.phase, self._reason, self._message = "Failed", "ExecutorError", str(err)
            self._report()
        finally:
            self.on_finished(self)

    @property
    def name(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    def _run(self) -> None:
        self._set_condition("PodScheduled", True)
        self._set_condition("PodReadyToStartContainers", False)
        self._set_condition(
            "Initialized",
            not self.init_containers,
            reason="" if not self.init_containers else "ContainersNotInitialized",
        )
        self._set_condition("ContainersReady", False, reason="ContainersNotReady")
        self._set_condition("Ready", False, reason="ContainersNotReady")
        self._report()
        if not self._prepare():
            return self._finish_killed()
        self._set_condition("PodReadyToStartContainers", True)
        for init in self.init_containers:
            if not self._run_to_completion(init):
                if self._kill.is_set():
                    return self._finish_killed()
                self._stop_all()  # the deadline may have passed with the init container still running
                return self._finish("Failed")
        self._set_condition("Initialized", True)
        self.phase = "Running"
        for c in self.containers:
            self._start(c)
        self._report()
        self._supervise()

    def _prepare(self) -> bool:
        """Materialise volumes, retrying while a ConfigMap/Secret is missing; False if killed meanwhile."""
        while True:
            try:
                self.sandbox.materialise_volumes()
                return True
            except pod_sandbox.VolumeNotReady as err:
                for c in self.init_containers + self.containers:
                    c.waiting_message = str(err)
                self._report()
                if self._kill.wait(0.5):
                    return False

    def _start(self, c: ContainerRun) -> None:
        spec = c.spec
        if c.log.exists() and c.restart_count:
            c.log.replace(c.log.with_suffix(".previous.log"))
        try:
            mapping = self.sandbox.path_map(spec)
            env = self.sandbox.environment(spec)
            argv = self.sandbox.argv(spec, env, mapping)
            cwd = self.sandbox.working_dir(spec, mapping)
            parents = pod_sandbox.parent_dirs(mapping, self.sandbox.fs)
            env = {k: parents.get(v) or pod_sandbox.rewrite_paths(v, mapping) for k, v in env.items()}
            self.sandbox.termination_file(spec).write_bytes(b"")
            with c.log.open("ab") as out:
                c.proc = subprocess.Popen(
                    argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
        except (OSError, pod_sandbox.VolumeNotReady) as err:
            now = now_rfc3339()
            c.terminated = {
                "exitCode": 128,
                "reason": "StartError",
                "message": str(err),
                "startedAt": now,
                "finishedAt": now,
            }
            return
        c.started_at, c.terminated = now_rfc3339(), None

    def _collect(self, c: ContainerRun) -> bool:
        """Record a container's exit if its process ended; True if it did."""
        if c.proc is None or c.terminated is not None or c.proc.poll() is None:
            return False
        code = c.proc.returncode
        code = 128 - code if code < 0 else code  # killed by a signal: 128 + signal number
        c.terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": f"executor://{c.proc.pid}",
        }
        message = self._termination_message(c, code)
        if message:
            c.terminated["message"] = message
        return True

    def _termination_message(self, c: ContainerRun, code: int) -> str:
        path = self.sandbox.termination_file(c.spec)
        message = path.read_bytes()[:_MESSAGE_BYTES] if path.exists() else b""
        if not message and code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            tail = kubelet_logs.tail_lines(c.log.read_bytes() if c.log.exists() else b"", _FALLBACK_LINES)
            message = tail[-_FALLBACK_BYTES:]
        return message.decode(errors="replace")

    def _run_to_completion(self, c: ContainerRun) -> bool:
        """Run an init container, restarting it on failure unless restartPolicy is Never; True on success."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            self._start(c)
            self._report()
            while not self._collect(c) and c.terminated is None:
                if self._kill.wait(_POLL_SECONDS) or self._deadline_exceeded():
                    return False
            self._report()
            if c.terminated and c.terminated["exitCode"] == 0:
                return True
            if policy == "Never" or self._kill.wait(self._backoff(c)):
                return False
            c.last_terminated, c.restart_count = c.terminated, c.restart_count + 1

    def _backoff(self, c: ContainerRun) -> float:
        return min(_MAX_RESTART_BACKOFF, 2.0**c.restart_count)

    def _supervise(self) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            changed = any([self._collect(c) for c in self.containers])
            for c in self.containers:
                if c.terminated is None:
                    continue
                failed = c.terminated["exitCode"] != 0
                if policy == "Always" or (policy == "OnFailure" and failed):
                    if not c.restart_at:
                        c.restart_at = time.monotonic() + self._backoff(c)
                    elif time.monotonic() >= c.restart_at:
                        c.last_terminated, c.restart_count, c.restart_at = c.terminated, c.restart_count + 1, 0.0
                        self._start(c)
                        changed = True
            if all(c.terminated is not None and not c.restart_at for c in self.containers):
                codes = [c.terminated["exitCode"] for c in self.containers if c.terminated]
                return self._finish("Succeeded" if all(code == 0 for code in codes) else "Failed")
            if changed:
                ready = all(c.running for c in self.containers)
                self._set_condition("ContainersReady", ready, reason="" if ready else "ContainersNotReady")
                self._set_condition("Ready", ready, reason="" if ready else "ContainersNotReady")
                self._report()
            if self._deadline_exceeded():
                self._stop_all()
                self._reason, self._message = (
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline",
                )
                return self._finish("Failed")
            if self._kill.wait(_POLL_SECONDS):
                return self._finish_killed()

    def _deadline_exceeded(self) -> bool:
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        started = datetime.datetime.strptime(self._start_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
        return bool(deadline) and (datetime.datetime.now(datetime.UTC) - started).total_seconds() > float(deadline)

    def _stop_all(self) -> None:
        runs = [c for c in self.init_containers + self.containers if c.running and c.proc is not None]
        for c in runs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        end = time.monotonic() + self._grace
        for c in runs:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait(timeout=5)
            self._collect(c)

    def _finish_killed(self) -> None:
        self._stop_all()
        for c in self.containers:
            if c.terminated is None and c.proc is None:
                now = now_rfc3339()
                c.terminated = {
                    "exitCode": 137,
                    "reason": "ContainerStatusUnknown",
                    "startedAt": now,
                    "finishedAt": now,
                }
        codes = [c.terminated["exitCode"] for c in self.containers if c.terminated]
        self._finish("Succeeded" if codes and all(code == 0 for code in codes) else "Failed")

    def _finish(self, phase: str) -> None:
        self.phase = phase
        self._set_condition("ContainersReady", False, reason="PodCompleted")
        self._set_condition("Ready", False, reason="PodCompleted")
        self._report()

    # -- status ------------------------------------------------------------------

    def _set_condition(self, kind: str, value: bool, reason: str = "") -> None:
        status = "True" if value else "False"
        old = self._conditions.get(kind)
        if old is not None and old["status"] == status and old.get("reason", "") == reason:
            return
        changed = old is None or old["status"] != status
        self._conditions[kind] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": now_rfc3339() if changed else old["lastTransitionTime"],  # type: ignore[index]
            **({"reason": reason} if reason else {}),
        }

    def _report(self) -> None:
        status: dict[str, Any] = {
            "phase": self.phase,
            "conditions": list(self._conditions.values()),
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self._start_time,
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        if self._reason:
            status["reason"], status["message"] = self._reason, self._message
        meta = self.pod["metadata"]
        try:
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})
        except ApiException as err:
            if err.status != 404:  # a deleted pod needs no status
                logger.warning("pod status update failed", extra={"pod": self.name, "error": err.body})
