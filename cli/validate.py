"""`cotctl validate`: check manifests against the cotlab models, without a cluster.

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

from .manifests import ManifestError, read_documents
from .options import FilesOpt, OutputFormat, OutputOpt
from .output import error, render, stderr


def document_rows(results: list[tuple[str, str, list[FieldError]]]) -> list[dict[str, object]]:
    """One row per document: where it is, what it is, whether it is valid."""
    return [
        {"source": source, "resource": name, "valid": not errors, "errors": len(errors)}
        for source, name, errors in results
    ]


SettingsOpt = Annotated[
    Path | None,
    typer.Option(
        "--operator-settings",
        help="The operator's settings ConfigMap (YAML): also check what it lets a spec reach (files, outputs, "
        "annotations, tolerations, node selectors, images).",
    ),
]


def read_operator_settings(path: Path) -> Any:
    """OperatorSettings from a ConfigMap manifest's data (the COTLAB_* variables the operator reads)."""
    from cotlab.operator.settings import settings_from

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"--operator-settings {path}: {err}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "ConfigMap":
        raise ValueError(f"--operator-settings {path}: expected a ConfigMap manifest")
    try:
        return settings_from({str(k): str(v) for k, v in (doc.get("data") or {}).items()})
    except ValueError as err:
        raise ValueError(f"--operator-settings {path}: {err}") from None


def policy_errors(doc: dict[str, Any], source: str, settings: Any) -> list[FieldError]:
    """What the operator with `settings` refuses in a valid document, each naming its field."""
    from cotlab.operator.policy import refusals

    resource = parse_resource(doc)
    name = f"{resource.kind}/{resource.metadata.name}"
    return [
        FieldError(source, name, r.path, r.message.removeprefix(f"{r.path}: ")) for r in refusals(resource, settings)
    ]


def validate(files: FilesOpt, output: OutputOpt = OutputFormat.table, operator_settings: SettingsOpt = None) -> None:
    """Validate cotlab manifests (TraceDataset, FineTuneRun, EvalRun): exit 1 if any is invalid."""
    if not files:
        error("no manifests given", "pass one or more with -f FILE (a directory, or - for stdin)")
        raise typer.Exit(2)
    try:
        settings = read_operator_settings(operator_settings) if operator_settings is not None else None
    except ValueError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    results: list[tuple[str, str, list[FieldError]]] = []
    try:
        for source, doc in read_documents(files):
            if doc is None:
                continue
            errors = validate_document(doc, source)
            if not errors and settings is not None:
                errors = policy_errors(doc, source, settings)
            name = errors[0].document if errors else f"{doc['kind']}/{doc['metadata']['name']}"
            results.append((source, name, errors))
    except ManifestError as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    all_errors = [e for _, _, errs in results for e in errs]
    data = {
        "valid": not all_errors,
        "documents": document_rows(results),
        "errors": [
            {"source": e.source, "resource": e.document, "path": e.path, "message": e.message} for e in all_errors
        ],
    }
    render(data, document_rows(results), output)
    for e in all_errors:
        stderr.print(str(e), highlight=False, markup=False)
    if not results:
        error("no documents found", "check the paths given with -f")
        raise typer.Exit(1)
    if all_errors:
        raise typer.Exit(1)
