"""`cotctl wait KIND/NAME --for=condition=Ready`: block until a condition holds, fail fast when the run failed.

Exit codes: 0 when every resource meets the condition, 1 when one Failed (or was deleted) first, 124 on timeout
(as `timeout(1)`), 2 for a bad flag. A condition counts only when it describes the current spec
(`observedGeneration`), so a Ready left over from before a change is not taken for the new one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from ..cluster.kube import Cluster, Target
from ..resources.completion import complete_ref
from ..resources.refs import Ref, parse_ref
from ..terminal.durations import parse_duration
from ..terminal.errors import CliError, UsageError, reported
from ..terminal.options import ContextOpt, KubeconfigOpt, NamespaceOpt, RequestTimeoutOpt, SelectorOpt
from ..terminal.output import stdout

TIMEOUT_EXIT = 124
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class WaitFor:
    """What --for asks: a condition type and the status it must have, or the resource's deletion."""

    condition: str | None
    status: str = "True"

    @property
    def delete(self) -> bool:
        return self.condition is None


def parse_for(text: str) -> WaitFor:
    """`condition=Ready`, `condition=Ready=False`, `delete`."""
    if text == "delete":
        return WaitFor(None)
    kind, _, rest = text.partition("=")
    condition, _, status = rest.partition("=")
    if kind != "condition" or not condition:
        raise UsageError(
            f"--for: cannot read {text!r}", "use --for=condition=Ready, --for=condition=Failed or --for=delete"
        )
    if status and status not in ("True", "False", "Unknown"):
        raise UsageError(f"--for: condition status must be True, False or Unknown, got {status!r}")
    return WaitFor(condition, status or "True")


def verdict(body: dict[str, Any] | None, wanted: WaitFor) -> tuple[bool, str | None]:
    """(met, why it never will be): a pure function of the resource as stored (None: it does not exist)."""
    if body is None:
        return (True, None) if wanted.delete else (False, "it was deleted")
    if wanted.delete:
        return False, None
    generation = (body.get("metadata") or {}).get("generation")
    conditions = (body.get("status") or {}).get("conditions") or []

    def current(c: dict[str, Any]) -> bool:
        seen = c.get("observedGeneration")
        return seen is None or generation is None or seen >= generation

    for condition in conditions:
        if (
            condition.get("type") == wanted.condition
            and condition.get("status") == wanted.status
            and current(condition)
        ):
            return True, None
    failed = next(
        (c for c in conditions if c.get("type") == "Failed" and c.get("status") == "True" and current(c)), None
    )
    if failed is not None and wanted.condition != "Failed":
        return False, f"it failed ({failed.get('reason')}): {failed.get('message') or 'no message'}"
    return False, None


def wait(
    what: Annotated[list[str], typer.Argument(help="KIND/NAME ... (or KIND with -l).", autocompletion=complete_ref)],
    for_: Annotated[str, typer.Option("--for", help="condition=TYPE[=STATUS] or delete.")] = "condition=Ready",
    timeout: Annotated[str, typer.Option("--timeout", help="Give up after this long, e.g. 30s, 10m, 2h.")] = "30s",
    selector: SelectorOpt = None,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """Wait until resources meet a condition (default Ready); exit 1 as soon as one fails, 124 on timeout."""
    with reported():
        wanted = parse_for(for_)
        seconds = parse_duration(timeout, flag="--timeout")
        refs = [parse_ref(w, need_name=selector is None) for w in what]
        if selector and (len(refs) != 1 or refs[0].name):
            raise UsageError("-l selects within one KIND: cotctl wait evalrun -l cotlab.dev/experiment=study")
        cluster = Cluster.connect(Target(kubeconfig, context, namespace, False, request_timeout))
        ns = cluster.namespace
        deadline = time.monotonic() + seconds
        if selector:
            bodies = cluster.list_resources(refs[0].kind, namespace=ns, selector=selector)
            if not bodies:
                raise CliError(f"no {refs[0].kind.lower()} matches -l {selector} in namespace {ns!r}")
            refs = [Ref(refs[0].kind, b["metadata"]["name"]) for b in bodies]
        pending = list(refs)
        while pending:
            for ref in list(pending):
                assert ref.name is not None
                body = cluster.find_resource(ref.kind, ns, ref.name)
                met, never = verdict(body, wanted)
                shown = f"{ref.kind.lower()}.cotlab.dev/{ref.name}"
                if met:
                    stdout.out(f"{shown} {'deleted' if wanted.delete else 'condition met'}", highlight=False)
                    pending.remove(ref)
                elif never is not None:
                    raise CliError(
                        f"{shown}: {never}", f"see why with: cotctl describe {ref.kind.lower()}/{ref.name} -n {ns}"
                    )
            if pending and time.monotonic() >= deadline:
                names = ", ".join(str(r) for r in pending)
                raise CliError(
                    f"timed out after {timeout} waiting for {for_} on {names}",
                    "wait longer with --timeout, or see where it is with: cotctl status",
                    exit_code=TIMEOUT_EXIT,
                )
            if pending:
                time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
