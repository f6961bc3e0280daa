"""cotctl: compose the command modules; nothing else lives here."""

from __future__ import annotations

import typer

from .operator import operator_app
from .results import results
from .run import run
from .validate import validate

app = typer.Typer(
    name="cotctl",
    help="cotlab: curate long chain-of-thought traces, fine-tune, and evaluate on competition math.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(validate)
app.command()(run)
app.command()(results)
app.add_typer(operator_app)


@app.callback()
def _root() -> None:
    """cotlab's command line."""


def main() -> None:
    app()
