"""cotctl: compose the command modules; nothing else lives here.

A command's module is imported only when it runs: `cotctl status` never loads what `compare`, `run` or `describe`
need (numpy, the typed models, the local runner). Help and shell completion list every command, so they build
the whole app; so does `app`, which tests drive with typer's CliRunner.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import typer

# name -> (module, function), in the order `cotctl --help` lists them.
COMMANDS = {
    "validate": ("commands.validate", "validate"),
    "run": ("commands.run", "run"),
    "results": ("commands.results", "results"),
    "status": ("commands.status", "status"),
    "describe": ("commands.describe", "describe"),
    "logs": ("commands.logs", "logs"),
    "compare": ("commands.compare", "compare"),
    "report": ("commands.report", "report"),
    "wait": ("commands.wait", "wait"),
    "suspend": ("commands.suspend", "suspend"),
    "resume": ("commands.suspend", "resume"),
    "delete": ("commands.delete", "delete"),
    "apply": ("commands.apply", "apply"),
    "diff": ("commands.diff", "diff"),
    "init": ("commands.init", "init"),
}
GROUPS = {"operator": ("commands.operator", "operator_app")}


def _load(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f".{module}", __package__), name)


def build_app(only: str | None = None) -> typer.Typer:
    """cotctl with every command, or with just `only` (the one about to run)."""
    app = typer.Typer(
        name="cotctl",
        help="cotlab: curate long chain-of-thought traces, fine-tune, and evaluate on competition math.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root() -> None:
        """cotlab's command line."""

    for name, (module, function) in COMMANDS.items():
        if only in (None, name):
            app.command(name)(_load(module, function))
    for name, (module, attribute) in GROUPS.items():
        if only in (None, name):
            app.add_typer(_load(module, attribute))
    return app


def __getattr__(name: str) -> typer.Typer:
    if name == "app":
        app = globals()["app"] = build_app()  # built once, on first use
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# `kubectl cotlab ...` runs the first `kubectl-cotlab` on PATH (kubectl's plugin convention): the same entry point.
PLUGIN = "kubectl-cotlab"
COMPLETE_VAR = "_COTCTL_COMPLETE"  # typer's completion variable, f"_{prog_name}_COMPLETE", for both names


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else None
    completing = COMPLETE_VAR in os.environ
    known = command in COMMANDS.keys() | GROUPS.keys() and not completing
    prog_name = "kubectl cotlab" if os.path.basename(sys.argv[0]) == PLUGIN else "cotctl"
    build_app(command if known else None)(prog_name=prog_name, complete_var=COMPLETE_VAR)
