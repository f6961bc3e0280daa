"""Options shared by several commands, defined once as Annotated aliases (kubectl's names where kubectl has one)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


class ListFormat(StrEnum):
    """How a listing is printed, as `kubectl get -o` does."""

    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"
    name = "name"


class TableFormat(StrEnum):
    """How a score table is printed: for a terminal, a spreadsheet, a report or a script."""

    table = "table"
    csv = "csv"
    markdown = "markdown"
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="Output format: table, json or yaml.", case_sensitive=False)
]
ListOutputOpt = Annotated[
    ListFormat,
    typer.Option("--output", "-o", help="Output format: table, wide, json, yaml or name.", case_sensitive=False),
]
TableOutputOpt = Annotated[
    TableFormat,
    typer.Option("--output", "-o", help="Output format: table, csv, markdown, json or yaml.", case_sensitive=False),
]
FilesOpt = Annotated[
    list[Path],
    typer.Option(
        "--filename",
        "-f",
        help="Manifest file or directory (multi-document YAML); '-' reads standard input. Repeatable.",
    ),
]
OptionalFilesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--filename",
        "-f",
        help="Manifest file or directory (multi-document YAML); '-' reads standard input. Repeatable.",
    ),
]
KustomizeOpt = Annotated[
    Path | None,
    typer.Option(
        "--kustomize",
        "-k",
        help="A folder with a kustomization.yaml: use what kustomize renders from it (what Argo CD applies).",
    ),
]

# -- where the resources are ---------------------------------------------------------------------------------

LocalOpt = Annotated[bool, typer.Option("--local", help="Read this machine's state (cotctl run --local).")]
RootOpt = Annotated[
    Path | None, typer.Option("--root", help="Local state folder (default $COTLAB_LOCAL_ROOT or .cotlab).")
]
KubeconfigOpt = Annotated[
    Path | None,
    typer.Option("--kubeconfig", help="Path to the kubeconfig file (default $KUBECONFIG, else ~/.kube/config)."),
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="The kubeconfig context to use.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Namespace (default: the context's, else 'default').")
]
AllNamespacesOpt = Annotated[bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")]
SelectorOpt = Annotated[
    str | None, typer.Option("--selector", "-l", help="Label selector, e.g. cotlab.dev/experiment=study,arm!=base.")
]
WatchOpt = Annotated[bool, typer.Option("--watch", "-w", help="Keep watching; redraw when something changes.")]
RequestTimeoutOpt = Annotated[
    float, typer.Option("--request-timeout", help="Seconds to wait for one API request before giving up.")
]
ArtifactsRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--artifacts-root",
        envvar="COTLAB_PVC_ROOT",
        help="A local copy (or mount) of the artifact claims: pvc://CLAIM/PATH is read at DIR/CLAIM/PATH.",
    ),
]

# What `compare` and `report` compare (the defaults stay with the commands: they come from the analysis modules).
BaselineOpt = Annotated[
    str | None,
    typer.Option("--baseline", help="The EvalRun (or row label) others are compared with; default first."),
]
RowsOpt = Annotated[str, typer.Option("--rows", help="Row labels: run, model, traces (the training set) or label:KEY.")]
ReplicatesOpt = Annotated[int, typer.Option("--replicates", help="Bootstrap replicates.", min=100)]
ConfidenceOpt = Annotated[float, typer.Option("--confidence", help="Interval level.", min=0.5, max=0.999)]
BootstrapSeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap (results are reproducible).")]
