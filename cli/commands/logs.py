"""`cotctl logs KIND/NAME`: the stage's log, waiting for its pod, one prefix per rank, following retries.

The pods of a resource are found by the labels every child carries; a rank is the pod's completion index (0
for a single-node run). After a retry the Job (or, over several nodes, the next attempt's Job) makes a new pod:
`-f` follows the newest pod of each rank until the resource is done, so a crash and the attempt after it read as
one story, with the switch noted on stderr.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from cotlab.api.podcontract import STAGE_BY_KIND

from ..cluster.kube import Cluster, ClusterError, Target
from ..cluster.pods import container_state, has_started, is_finished, newest_by_rank, pod_selector
from ..resources.completion import complete_ref
from ..resources.refs import parse_ref
from ..terminal.durations import parse_duration
from ..terminal.errors import CliError, UsageError, reported
from ..terminal.options import ContextOpt, KubeconfigOpt, NamespaceOpt, RequestTimeoutOpt
from ..terminal.output import note

POLL_SECONDS = 0.5


class LinePrinter:
    """Writes whole lines to stdout from several threads, each with its rank's prefix."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, prefix: str, line: str) -> None:
        with self.lock:
            sys.stdout.write(prefix + line + "\n")
            sys.stdout.flush()


def _run_finished(cluster: Cluster, namespace: str, kind: str, name: str) -> str | None:
    """ "Succeeded" or "Failed (reason)" once the resource is done; None while a retry may follow.

    The resource's phase, not its Job's: a multi-node run ends an attempt by failing that attempt's Job and the
    operator then starts the next attempt's Job, so a failed Job does not mean that no pod follows."""
    status = cluster.get_resource(kind, namespace, name).get("status") or {}
    phase = status.get("phase")
    if phase not in ("Succeeded", "Failed"):
        return None
    failed = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Failed" and c.get("status") == "True"), None
    )
    return f"Failed ({failed['reason']})" if failed and failed.get("reason") else str(phase)


class PodLogs:
    """One resource's pods in one namespace: wait for them, print their logs, follow them through retries."""

    def __init__(self, cluster: Cluster, namespace: str, kind: str, name: str, print_line: Callable[[str, str], None]):
        self.cluster, self.namespace, self.kind, self.name = cluster, namespace, kind, name
        self.container = STAGE_BY_KIND[kind]
        self.selector = pod_selector(kind, name)
        self.print_line = print_line

    def _finished(self) -> str | None:
        try:
            return _run_finished(self.cluster, self.namespace, self.kind, self.name)
        except ClusterError as err:
            if err.not_found:
                return "deleted"
            raise

    def _ranks(self) -> dict[int, dict[str, Any]]:
        return newest_by_rank(self.cluster.list_pods(self.namespace, self.selector))

    def wait_for_pods(self, timeout: float) -> dict[int, dict[str, Any]]:
        """The newest started pod of each rank, once at least one has started; says on stderr what it waits for."""
        deadline = time.monotonic() + timeout
        said = None
        while True:
            started = {rank: pod for rank, pod in self._ranks().items() if has_started(pod, self.container)}
            if started:
                return started
            body = self.cluster.get_resource(self.kind, self.namespace, self.name)
            status = body.get("status") or {}
            phase = status.get("phase") or "Pending"
            waiting = next(
                (c for c in status.get("conditions") or [] if c.get("status") == "True" and c.get("message")), None
            )
            why = f"{phase}: {waiting['message']}" if waiting else phase
            if phase in ("Failed", "Succeeded"):
                raise CliError(
                    f"{self.kind.lower()}/{self.name} has no pod with a log ({why})",
                    f"see why with: cotctl describe {self.kind.lower()}/{self.name} -n {self.namespace}",
                )
            if why != said:
                note(f"waiting for the pod of {self.kind.lower()}/{self.name} ({why})")
                said = why
            if time.monotonic() > deadline:
                raise CliError(
                    f"no pod of {self.kind.lower()}/{self.name} started within {timeout:g} s ({why})",
                    "wait longer with --pod-running-timeout, or see why with: cotctl describe "
                    f"{self.kind.lower()}/{self.name}",
                )
            time.sleep(POLL_SECONDS)

    def print_once(self, pod: dict[str, Any], prefix: str, *, tail: int | None, since: int | None) -> None:
        text = self.cluster.pod_log(self.namespace, pod["metadata"]["name"], self.container, tail=tail, since=since)
        for line in text.splitlines():
            self.print_line(prefix, line)

    def follow(self, rank: int, pod: dict[str, Any], prefix: str, *, tail: int | None, since: int | None) -> None:
        """Follow `pod` and, after a retry, each newer pod of the same rank, until the Job is done."""
        name = pod["metadata"]["name"]
        new_lines_only = False
        while True:
            for line in self.cluster.follow_log(
                self.namespace, name, self.container, tail=0 if new_lines_only else tail, since=since
            ):
                self.print_line(prefix, line)
            tail = since = None  # only the first pod is cut; a retry's log is read whole
            name, new_lines_only = self._next(rank, name)
            if name is None:
                return

    def _next(self, rank: int, current: str) -> tuple[str | None, bool]:
        """What to follow after the log of `current` ended: a newer pod (a retry), the same one again, or nothing."""
        announced = False
        while True:
            newest = self._ranks().get(rank)
            if newest is None:
                # Deleted: with the resource, or (over several nodes) with its failed attempt, before the next.
                if self._finished() is not None:
                    return None, False
                time.sleep(POLL_SECONDS)
                continue
            newest_name = newest["metadata"]["name"]
            if newest_name != current:
                if has_started(newest, self.container):
                    note(f"following pod {newest_name} (rank {rank}): the Job started it after {current} ended")
                    return newest_name, False
                if is_finished(newest) or self._finished() is not None:
                    return None, False  # the retry never ran (the Job was deleted or failed around it)
            elif newest["metadata"].get("deletionTimestamp"):
                pass  # being deleted (a failed attempt's other ranks): wait for it to go, or for the next attempt
            else:
                state = container_state(newest, self.container)
                if not is_finished(newest) and "running" in state:
                    return current, True  # the stream dropped while the pod runs: go on with new lines only
                terminated = state.get("terminated") or {}
                if is_finished(newest) and terminated.get("exitCode", 0) == 0:
                    return None, False
                done = self._finished()
                if done is not None:
                    code = terminated.get("exitCode")
                    what = f"{self.kind.lower()}/{self.name}"
                    note(f"pod {current} exited with code {code}; {what} is {done}: no retry follows")
                    return None, False
                if not announced:
                    note(f"pod {current} exited with code {terminated.get('exitCode')}; waiting for the retry")
                    announced = True
            time.sleep(POLL_SECONDS)


def logs(
    what: Annotated[str, typer.Argument(help="KIND/NAME, e.g. finetunerun/qwq-20.", autocompletion=complete_ref)],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream the log; follow retries.")] = False,
    rank: Annotated[int | None, typer.Option("--rank", help="Only this rank's pod (completion index).")] = None,
    all_ranks: Annotated[bool, typer.Option("--all", help="Every rank, each line prefixed [rank N].")] = False,
    tail: Annotated[int | None, typer.Option("--tail", help="Only the last N lines (of the current pod).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only lines newer than this, e.g. 10m.")] = None,
    pod_running_timeout: Annotated[
        str, typer.Option("--pod-running-timeout", help="How long to wait for a pod to start, e.g. 5m.")
    ] = "2m",
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """Print the stage's log of a TraceDataset, FineTuneRun or EvalRun (rank 0 unless --rank or --all)."""
    with reported():
        ref = parse_ref(what, need_name=True)
        assert ref.name is not None
        if rank is not None and all_ranks:
            raise UsageError(
                "--rank and --all cannot be used together", "pick one rank with --rank N, or all with --all"
            )
        if tail is not None and tail < 0:
            raise UsageError(f"--tail: must be 0 or more, got {tail}")
        since_seconds = int(parse_duration(since, flag="--since")) if since else None
        wait_seconds = parse_duration(pod_running_timeout, flag="--pod-running-timeout")
        cluster = Cluster.connect(Target(kubeconfig, context, namespace, False, request_timeout))
        namespace = cluster.namespace
        cluster.get_resource(ref.kind, namespace, ref.name)  # a wrong name fails now, not after the wait
        pod_logs = PodLogs(cluster, namespace, ref.kind, ref.name, LinePrinter())
        started = pod_logs.wait_for_pods(wait_seconds)
        wanted = rank if rank is not None else None if all_ranks else min(started)
        if wanted is not None and wanted not in started:
            ranks = ", ".join(str(r) for r in sorted(started))
            raise UsageError(f"--rank {wanted}: no such rank has started (ranks: {ranks})")
        chosen = started if wanted is None else {wanted: started[wanted]}
        prefixed = all_ranks or len(chosen) > 1

        def prefix(r: int) -> str:
            return f"[rank {r}] " if prefixed else ""

        if not follow:
            for r, pod in chosen.items():
                pod_logs.print_once(pod, prefix(r), tail=tail, since=since_seconds)
            return
        errors: list[Exception] = []

        def run(r: int, pod: dict[str, Any]) -> None:
            try:
                pod_logs.follow(r, pod, prefix(r), tail=tail, since=since_seconds)
            except Exception as err:  # noqa: BLE001 - re-raised in the main thread, where the command reports it
                errors.append(err)

        threads = [threading.Thread(target=run, args=item, daemon=True) for item in chosen.items()]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)  # short joins keep Ctrl-C working
        except KeyboardInterrupt:
            return
        if errors:
            raise errors[0]
