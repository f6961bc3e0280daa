"""`cotctl apply -f`: the same validation as `cotctl validate`, then server-side apply (field manager `cotctl`).

Nothing is sent when any document is invalid: an experiment is applied whole or not at all, so a FineTuneRun
never waits for a TraceDataset that a typo kept out. `--dry-run=server` asks the API server to validate and
default everything (CRD schema, CEL rules, admission) without persisting it; `--dry-run=client` stops after
the local validation.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from cotlab.api.kinds import KIND_ORDER
from cotlab.api.validation import validate_document

from ..cluster.kube import Cluster, Target
from ..manifests.documents import ManifestError, read_documents
from ..terminal.errors import CliError, UsageError, reported
from ..terminal.options import (
    ContextOpt,
    FilesOpt,
    KubeconfigOpt,
    ListFormat,
    ListOutputOpt,
    NamespaceOpt,
    RequestTimeoutOpt,
)
from ..terminal.output import error, render


class DryRun(StrEnum):
    none = "none"
    client = "client"
    server = "server"


def outcome(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """kubectl's words for what an apply did: created, configured, or unchanged (same resourceVersion)."""
    if before is None:
        return "created"
    same = (before.get("metadata") or {}).get("resourceVersion") == (after.get("metadata") or {}).get("resourceVersion")
    return "unchanged" if same else "configured"


def prepare(doc: dict[str, Any], namespace: str, *, explicit: bool) -> dict[str, Any]:
    """The body to apply: the document as written (never defaults it left out, or apply would own them), in its
    namespace; status is the operator's and is never sent."""
    meta = dict(doc.get("metadata") or {})
    given = meta.get("namespace")
    if given and explicit and given != namespace:
        raise UsageError(
            f"{doc['kind']}/{meta.get('name')}: its namespace {given!r} does not match --namespace {namespace!r}"
        )
    meta["namespace"] = given or namespace
    return {k: v for k, v in doc.items() if k != "status"} | {"metadata": meta}


def apply(
    files: FilesOpt,
    dry_run: Annotated[DryRun, typer.Option("--dry-run", help="none, client (validate only) or server.")] = DryRun.none,
    force_conflicts: Annotated[
        bool, typer.Option("--force-conflicts", help="Take over fields another manager owns.")
    ] = False,
    namespace: NamespaceOpt = None,
    output: ListOutputOpt = ListFormat.table,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: RequestTimeoutOpt = 30.0,
) -> None:
    """Validate manifests like `cotctl validate`, then apply them server-side in dependency order."""
    with reported():
        if not files:
            raise UsageError("no manifests given", "pass one or more with -f FILE (a directory, or - for stdin)")
        try:
            docs = [(source, doc) for source, doc in read_documents(files) if doc is not None]
        except ManifestError as exc:
            raise CliError(str(exc)) from None
        problems = [e for source, doc in docs for e in validate_document(doc, source)]
        if problems:
            for problem in problems:
                error(str(problem))
            raise CliError(f"{len(problems)} error(s): nothing was applied", "fix them; cotctl validate -f shows them")
        if not docs:
            raise CliError("no documents found", "check the paths given with -f")
        ordered = sorted((doc for _, doc in docs), key=lambda d: KIND_ORDER[d["kind"]])
        rows, applied, names = [], [], []
        cluster = (
            None
            if dry_run is DryRun.client
            else Cluster.connect(Target(kubeconfig, context, namespace, False, request_timeout))
        )
        for doc in ordered:
            ns = namespace or (cluster.namespace if cluster else "default")
            body = prepare(doc, ns, explicit=namespace is not None)
            meta = body["metadata"]
            if cluster is None:
                result, stored = "validated (client dry run)", body
            else:
                before = cluster.find_resource(body["kind"], meta["namespace"], meta["name"])
                stored = cluster.apply_resource(body, dry_run=dry_run is DryRun.server, force=force_conflicts)
                result = outcome(before, stored) + (" (server dry run)" if dry_run is DryRun.server else "")
            name = f"{body['kind'].lower()}.cotlab.dev/{meta['name']}"
            rows.append({"namespace": meta["namespace"], "resource": name, "result": result})
            applied.append(stored)
            names.append(name)
        if output in (ListFormat.table, ListFormat.wide):
            for row in rows:  # kubectl apply's own lines
                render({}, [], "name", names=[f"{row['resource']} {row['result']}"])
        else:
            render({"apiVersion": "v1", "kind": "List", "items": applied}, rows, output, names=names)
