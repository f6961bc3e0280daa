"""`cotctl diff -f/-k`: what applying the manifests to the current context would do, before a merge does it.

For each cotlab resource: create, update (only what may change: `spec.suspend`, labels, annotations), unchanged,
or refused, the last naming the fields that differ. The verdict comes from the API server itself: a new resource
is created and an existing one updated with `dryRun=All` (nothing is persisted), so its CRD schema, its CEL
immutability rule and admission all answer. The update sends the stored object with the manifest's whole spec,
which is what any sync (client-side apply, server-side apply, replace) ends with. The rights it needs are get,
create and update of the three kinds (a dry run needs the rights of the real request): see `cotctl init`'s
`ci/diff-access.yaml`.

Exit codes follow `kubectl diff` (0: no differences, 1: differences, 2 or more: an error), with one more, so a CI
job can tell "this merge would fail to sync" from "the cluster could not be asked":

    0  nothing would change
    1  something would be created or updated, and all of it would be accepted
    2  an error: invalid manifests, no usable kubeconfig, cluster unreachable, CRDs missing, forbidden
    3  refused: applying would be rejected, e.g. a changed spec of a run that exists (give the new run a new name)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import typer

from cotlab.api.validation import validate_document

from ..cluster.kube import Cluster, ClusterError, Target
from ..manifests.changes import (
    Action,
    FieldChange,
    defaults_probe,
    field_changes,
    immutable_changes,
    metadata_changes,
    replacement,
)
from ..manifests.documents import ManifestError, describe_document, is_cotlab_document, skipped_summary
from ..manifests.kustomize import read_inputs
from ..terminal.errors import CliError
from ..terminal.options import (
    ContextOpt,
    KubeconfigOpt,
    KustomizeOpt,
    NamespaceOpt,
    OptionalFilesOpt,
    OutputFormat,
    OutputOpt,
    RequestTimeoutOpt,
)
from ..terminal.output import error, note, render
from .apply import prepare

RENAME_HINT = (
    "a run's spec cannot change once it exists (only spec.suspend can): give the changed run a new name, "
    "and keep the old one or delete it on purpose"
)
OFFLINE_HINT = (
    "check --kubeconfig (or $KUBECONFIG) and --context; without a cluster, cotctl validate checks the manifests offline"
)
CONFLICT_RETRIES = 3  # the operator may write status between our read and the dry-run update


class DiffExit(IntEnum):
    """`cotctl diff`'s exit codes (kubectl diff's, plus REFUSED)."""

    NO_CHANGES = 0
    CHANGES = 1
    ERROR = 2
    REFUSED = 3


@dataclass(frozen=True)
class ResourceDiff:
    """What applying one manifest would do to its resource."""

    kind: str
    namespace: str
    name: str
    action: Action
    changes: list[FieldChange] = field(default_factory=list)
    message: str = ""  # the API server's words when it refuses

    @property
    def resource(self) -> str:
        return f"{self.kind.lower()}.cotlab.dev/{self.name}"

    def row(self) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "resource": self.resource,
            "action": str(self.action),
            "changes": "; ".join(str(c) for c in self.changes),
        }

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"kind": self.kind, "namespace": self.namespace, "name": self.name}
        found |= {"action": str(self.action), "changes": [c.as_json() for c in self.changes]}
        return found | ({"message": self.message} if self.message else {})


def exit_code(diffs: list[ResourceDiff]) -> DiffExit:
    actions = {d.action for d in diffs}
    if Action.refused in actions:
        return DiffExit.REFUSED
    return DiffExit.CHANGES if actions & {Action.create, Action.update} else DiffExit.NO_CHANGES


def _refusal(err: ClusterError) -> bool:
    """The API server answered that it would not accept the object (schema, CEL rule, admission)."""
    if err.http_status in (400, 422):
        return True
    # 403 is also RBAC's answer ("User ... cannot create ..."), which is an error, not a verdict on the object.
    return err.http_status == 403 and any(w in err.server_message for w in ("denied", "exceeded quota"))


def diff_resource(cluster: Cluster, desired: dict[str, Any]) -> ResourceDiff:
    """Ask the API server (dry run) what applying `desired` (namespace set) would do."""
    kind, meta = desired["kind"], desired["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    stored = cluster.find_resource(kind, namespace, name)
    if stored is None:
        try:
            cluster.create_resource(desired, dry_run=True)
        except ClusterError as err:
            if not _refusal(err):
                raise
            return ResourceDiff(kind, namespace, name, Action.refused, message=err.server_message)
        return ResourceDiff(kind, namespace, name, Action.create)
    if stored.get("spec") == desired.get("spec") and not metadata_changes(stored["metadata"], meta):
        return ResourceDiff(kind, namespace, name, Action.unchanged)
    for attempt in range(CONFLICT_RETRIES):
        try:
            result = cluster.replace_resource(replacement(stored, desired), dry_run=True)
        except ClusterError as err:
            if err.http_status == 409 and attempt + 1 < CONFLICT_RETRIES:
                stored = cluster.get_resource(kind, namespace, name)
                continue
            if not _refusal(err):
                raise
            spec = _server_defaulted_spec(cluster, desired)
            changes = field_changes(stored.get("spec"), spec, "spec")
            refused = immutable_changes(kind, changes) or changes
            return ResourceDiff(kind, namespace, name, Action.refused, refused, err.server_message)
        changes = field_changes(stored.get("spec"), result.get("spec"), "spec")
        changes += metadata_changes(stored["metadata"], meta)
        return ResourceDiff(kind, namespace, name, Action.update if changes else Action.unchanged, changes)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _server_defaulted_spec(cluster: Cluster, desired: dict[str, Any]) -> Any:
    """The manifest's spec with the server's defaults, from a dry-run create under a generated name (nothing is
    stored); the manifest's own spec if the server will not say."""
    try:
        return cluster.create_resource(defaults_probe(desired), dry_run=True).get("spec")
    except ClusterError:
        return desired.get("spec")


def report(diffs: list[ResourceDiff], output: OutputFormat) -> None:
    counts = Counter(str(d.action) for d in diffs)
    data = {
        "resources": [d.as_json() for d in diffs],
        "counts": {str(a): counts.get(str(a), 0) for a in Action},
        "exitCode": int(exit_code(diffs)),
    }
    render(data, [d.row() for d in diffs], output)
    for d in diffs:
        if d.action is Action.refused:
            fields = ", ".join(c.path for c in d.changes)
            what = f"it changes {fields}" if fields else "the API server rejects it"
            error(f"{d.resource} would be refused: {what}" + (f" ({d.message})" if d.message else ""))
    if counts[Action.refused]:
        note(f"  {RENAME_HINT}")
    note(", ".join(f"{counts.get(str(a), 0)} {a}" for a in Action) + f" ({len(diffs)} resources)")


def diff(
    files: OptionalFilesOpt = None,
    kustomize: KustomizeOpt = None,
    namespace: NamespaceOpt = None,
    output: OutputOpt = OutputFormat.table,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """What applying the manifests (-f) or the kustomization (-k) would do: create, update, unchanged, refused.

    Asks the current context's API server with dry runs; nothing is changed. Exit code: 0 no differences, 1
    differences that would be accepted, 2 an error, 3 refused (e.g. the changed spec of a run that exists)."""
    try:
        try:
            documents = read_inputs(files, kustomize)
        except ManifestError as exc:
            raise CliError(str(exc)) from None
        cotlab = [(source, doc) for source, doc in documents if is_cotlab_document(doc)]
        skipped = [(source, describe_document(doc)) for source, doc in documents if not is_cotlab_document(doc)]
        if skipped:
            note(skipped_summary(skipped, "cotctl diff compares cotlab resources only"))
        problems = [e for source, doc in cotlab for e in validate_document(doc, source)]
        for problem in problems:
            error(str(problem))
        if problems:
            raise CliError(f"{len(problems)} error(s): nothing was compared", "cotctl validate shows them")
        if not cotlab:
            raise CliError("no cotlab resources found", "check the paths given with -f or -k")
        cluster = Cluster.connect(Target(kubeconfig, context, namespace, False, request_timeout))
        bodies = [prepare(doc, namespace or cluster.namespace, explicit=namespace is not None) for _, doc in cotlab]
        diffs = [diff_resource(cluster, body) for body in bodies]
    except CliError as err:
        unanswered = isinstance(err, ClusterError) and err.http_status is None
        error(err.message, OFFLINE_HINT if unanswered else err.hint)
        raise typer.Exit(DiffExit.ERROR) from None
    report(diffs, output)
    raise typer.Exit(exit_code(diffs))
