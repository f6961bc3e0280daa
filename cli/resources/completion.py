"""Shell completion of kinds and names: `cotctl describe ev<TAB>` -> `evalrun/`, `evalrun/q<TAB>` -> the names.

Names come from where the command would read them: the cluster of the flags typed so far (a short request
timeout, so a slow cluster never hangs the shell), or this machine's state with --local. Any failure completes
nothing rather than printing an error into the prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..cluster.kube import Target
from ..terminal.errors import CliError
from .inventory import open_inventory
from .refs import KIND_ALIASES, KIND_NAMES

COMPLETION_TIMEOUT = 3.0


def _path(value: Any) -> Path | None:
    return None if value is None else Path(value)


def _names(ctx: typer.Context, kind: str) -> list[str]:
    # While completing, click parses resiliently and leaves values as typed (strings): convert the paths here.
    params: dict[str, Any] = dict(ctx.params)
    kubeconfig, root = _path(params.get("kubeconfig")), _path(params.get("root"))
    target = Target(kubeconfig, params.get("context"), params.get("namespace"), False, COMPLETION_TIMEOUT)
    try:
        inventory = open_inventory(local=bool(params.get("local")), root=root, target=target)
        return [item.name for item in inventory.list((kind,))]
    except (CliError, OSError, ValueError):
        return []


def complete_ref(ctx: typer.Context, incomplete: str) -> list[str]:
    """Kinds (as `kind/`) until a slash is typed, then that kind's names."""
    kind_text, slash, prefix = incomplete.partition("/")
    if not slash:
        return [f"{k}/" for k in KIND_NAMES if k.startswith(incomplete.lower())]
    kind = KIND_ALIASES.get(kind_text.lower())
    if kind is None:
        return []
    return [f"{kind_text}/{n}" for n in _names(ctx, kind) if n.startswith(prefix)]


def complete_evalrun(ctx: typer.Context, incomplete: str) -> list[str]:
    """EvalRun names (for results and compare)."""
    return [n for n in _names(ctx, "EvalRun") if n.startswith(incomplete)]
