"""`cotctl validate`: check manifests against the cotlab models, without a cluster."""

from __future__ import annotations

import typer

from cotlab.api.validation import FieldError, validate_document

from .manifests import ManifestError, read_documents
from .options import FilesOpt, OutputFormat, OutputOpt
from .output import error, render, stderr


def document_rows(results: list[tuple[str, str, list[FieldError]]]) -> list[dict[str, object]]:
    """One row per document: where it is, what it is, whether it is valid."""
    return [
        {"source": source, "resource": name, "valid": not errors, "errors": len(errors)}
        for source, name, errors in results
    ]


def validate(files: FilesOpt, output: OutputOpt = OutputFormat.table) -> None:
    """Validate cotlab manifests (TraceDataset, FineTuneRun, EvalRun): exit 1 if any is invalid."""
    if not files:
        error("no manifests given", "pass one or more with -f FILE (a directory, or - for stdin)")
        raise typer.Exit(2)
    results: list[tuple[str, str, list[FieldError]]] = []
    try:
        for source, doc in read_documents(files):
            if doc is None:
                continue
            errors = validate_document(doc, source)
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
