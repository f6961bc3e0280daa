"""`cotctl delete KIND/NAME`: delete resources; the garbage collector removes their Jobs, pods and spec ConfigMaps.

Outputs in the artifact store are kept: a resource recreated under the same name writes under its new uid.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ..cluster.kube import Cluster, Target
from ..resources.completion import complete_ref
from ..resources.refs import parse_ref
from ..terminal.durations import parse_duration
from ..terminal.errors import CliError, reported
from ..terminal.options import ContextOpt, KubeconfigOpt, NamespaceOpt, RequestTimeoutOpt
from ..terminal.output import stdout

POLL_SECONDS = 0.5


def delete(
    what: Annotated[list[str], typer.Argument(help="KIND/NAME ...", autocompletion=complete_ref)],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Return only once the resources are gone.")] = True,
    timeout: Annotated[str, typer.Option("--timeout", help="How long --wait waits, e.g. 60s.")] = "60s",
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """Delete TraceDatasets, FineTuneRuns or EvalRuns (their children go with them; their outputs stay)."""
    with reported():
        refs = [parse_ref(w, need_name=True) for w in what]
        seconds = parse_duration(timeout, flag="--timeout")
        cluster = Cluster.connect(Target(kubeconfig, context, namespace, False, request_timeout))
        for ref in refs:
            assert ref.name is not None
            cluster.delete_resource(ref.kind, cluster.namespace, ref.name)
            stdout.out(f'{ref.kind.lower()}.cotlab.dev "{ref.name}" deleted', highlight=False)
        deadline = time.monotonic() + seconds
        left = list(refs)
        while wait and left:
            left = [r for r in left if cluster.find_resource(r.kind, cluster.namespace, r.name or "") is not None]
            if left and time.monotonic() > deadline:
                raise CliError(f"{', '.join(map(str, left))} still exist after {timeout}", "check its finalizers")
            if left:
                time.sleep(POLL_SECONDS)
