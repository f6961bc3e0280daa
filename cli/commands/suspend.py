"""`cotctl suspend` / `cotctl resume`: set spec.suspend (the one spec field that may change after creation).

The operator suspends the child Job, so a fine-tune or evaluation stops its pods and keeps its place:
a resumed FineTuneRun restarts from its last checkpoint, a resumed EvalRun skips the samples it recorded.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..cluster.kube import Cluster, Target
from ..resources.completion import complete_ref
from ..resources.refs import parse_ref
from ..terminal.errors import UsageError, reported
from ..terminal.options import ContextOpt, KubeconfigOpt, NamespaceOpt, RequestTimeoutOpt
from ..terminal.output import stdout

SUSPENDABLE = ("FineTuneRun", "EvalRun")
WhatArg = Annotated[
    list[str], typer.Argument(help="KIND/NAME ... (finetunerun/NAME, evalrun/NAME).", autocompletion=complete_ref)
]


def set_suspend(what: list[str], value: bool, target: Target) -> None:
    refs = [parse_ref(w, need_name=True) for w in what]
    for ref in refs:
        if ref.kind not in SUSPENDABLE:
            raise UsageError(
                f"{ref}: a {ref.kind} cannot be suspended (only FineTuneRuns and EvalRuns can)",
                "delete it instead: cotctl delete " + str(ref),
            )
    cluster = Cluster.connect(target)
    for ref in refs:
        assert ref.name is not None
        cluster.patch_resource(ref.kind, cluster.namespace, ref.name, {"spec": {"suspend": value}})
        stdout.out(f"{ref.kind.lower()}.cotlab.dev/{ref.name} {'suspended' if value else 'resumed'}", highlight=False)


def suspend(
    what: WhatArg,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """Pause FineTuneRuns or EvalRuns: their pods stop; resume continues from the last checkpoint or sample."""
    with reported():
        set_suspend(what, True, Target(kubeconfig, context, namespace, False, request_timeout))


def resume(
    what: WhatArg,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """Resume suspended FineTuneRuns or EvalRuns."""
    with reported():
        set_suspend(what, False, Target(kubeconfig, context, namespace, False, request_timeout))
