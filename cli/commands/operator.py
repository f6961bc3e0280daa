"""`cotctl operator run`: the operator outside a cluster, against the current kubeconfig."""

from __future__ import annotations

import typer

operator_app = typer.Typer(name="operator", help="Run the cotlab operator.", no_args_is_help=True)


@operator_app.command(
    "run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
)
def run_operator(ctx: typer.Context) -> None:
    """Run the operator (the flags of `python -m cotlab.operator`; `cotctl operator run --help` lists them)."""
    from cotlab.operator.main import main  # kopf and the kubernetes client load only for this command

    raise typer.Exit(main(ctx.args))
