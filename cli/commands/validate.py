"""`cotctl validate`: check manifests against the cotlab models, without a cluster.

A GitOps repository holds other kinds beside cotlab's (a kustomization, an Argo CD Application, ConfigMaps, CI
workflows): those are skipped, said in one line on stderr (listed with -v, and under "skipped" in -o json), and
fail only with --strict. `-k DIR` checks what kustomize renders from DIR, which is what Argo CD applies.

With `--operator-settings FILE` (the operator's settings ConfigMap, as `kubectl get configmap -n cotlab-system
cotlab-operator-settings -o yaml` prints it) a manifest is also checked against what that cluster's operator lets a
spec reach (`cotlab.operator.policy`): the checks its API server makes with the same ConfigMap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from cotlab.api.validation import FieldError, parse_resource, validate_document

from ..manifests.documents import ManifestError, describe_document, is_cotlab_document, skipped_summary
from ..manifests.kustomize import files_left_out, read_inputs
from ..terminal.errors import CliError, reported
from ..terminal.options import KustomizeOpt, OptionalFilesOpt, OutputFormat, OutputOpt
from ..terminal.output import note, render, stderr

StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Fail on documents that are not cotlab resources instead of skipping them.")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="List the documents that were skipped.")]
SettingsOpt = Annotated[
    Path | None,
    typer.Option(
        "--operator-settings",
        help="The operator's settings ConfigMap (YAML): also check what it lets a spec reach (files, outputs, "
        "annotations, tolerations, node selectors, images).",
    ),
]


def document_rows(results: list[tuple[str, str, list[FieldError]]]) -> list[dict[str, object]]:
    """One row per document: where it is, what it is, whether it is valid."""
    return [
        {"source": source, "resource": name, "valid": not errors, "errors": len(errors)}
        for source, name, errors in results
    ]


def read_operator_settings(path: Path) -> Any:
    """OperatorSettings from a ConfigMap manifest's data (the COTLAB_* variables the operator reads)."""
    from cotlab.operator.settings import settings_from

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CliError(f"--operator-settings {path}: {err}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "ConfigMap":
        raise CliError(f"--operator-settings {path}: expected a ConfigMap manifest")
    try:
        return settings_from({str(k): str(v) for k, v in (doc.get("data") or {}).items()})
    except ValueError as err:
        raise CliError(f"--operator-settings {path}: {err}") from None


def policy_errors(doc: dict[str, Any], source: str, settings: Any) -> list[FieldError]:
    """What the operator with `settings` refuses in a valid document, each naming its field."""
    from cotlab.operator.policy import refusals

    resource = parse_resource(doc)
    name = f"{resource.kind}/{resource.metadata.name}"
    return [
        FieldError(source, name, r.path, r.message.removeprefix(f"{r.path}: ")) for r in refusals(resource, settings)
    ]


def validate(
    files: OptionalFilesOpt = None,
    kustomize: KustomizeOpt = None,
    strict: StrictOpt = False,
    verbose: VerboseOpt = False,
    output: OutputOpt = OutputFormat.table,
    operator_settings: SettingsOpt = None,
) -> None:
    """Validate cotlab manifests (TraceDataset, FineTuneRun, EvalRun): exit 1 if any is invalid.

    Other kinds are skipped (--strict: they fail). With -k DIR, what kustomize renders from DIR is checked."""
    with reported():
        settings = read_operator_settings(operator_settings) if operator_settings is not None else None
        try:
            documents = read_inputs(files, kustomize)
        except ManifestError as exc:
            raise CliError(str(exc)) from None
        results: list[tuple[str, str, list[FieldError]]] = []
        skipped: list[tuple[str, str]] = []
        for source, doc in documents:
            if strict or is_cotlab_document(doc):
                errors = validate_document(doc, source)
                if not errors and settings is not None:
                    errors = policy_errors(doc, source, settings)
                results.append((source, errors[0].document if errors else describe_document(doc), errors))
            else:
                skipped.append((source, describe_document(doc)))
        all_errors = [e for _, _, errs in results for e in errs]
        data: dict[str, Any] = {
            "valid": not all_errors and bool(results),
            "documents": document_rows(results),
            "errors": [
                {"source": e.source, "resource": e.document, "path": e.path, "message": e.message} for e in all_errors
            ],
            "skipped": [{"source": source, "resource": resource} for source, resource in skipped],
        }
        render(data, document_rows(results), output)
        for e in all_errors:
            stderr.print(str(e), highlight=False, markup=False)
        if skipped:
            note(skipped_summary(skipped, "-v lists them, --strict fails on them"))
        if skipped and verbose:
            for source, resource in skipped:
                note(f"  {source} {resource}")
        if kustomize is not None:
            for path in files_left_out(kustomize, {source for source, _ in documents}):
                note(f"{path}: holds cotlab resources that {kustomize}'s kustomization leaves out, so they are "
                     "never applied: add the file to its resources, or delete it")  # fmt: skip
        if not results:
            where = f" ({len(skipped)} other documents skipped)" if skipped else ""
            raise CliError(f"no cotlab resources found{where}", "check the paths given with -f or -k")
        if all_errors:
            raise typer.Exit(1)
