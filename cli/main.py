"""cotctl: compose the command modules; nothing else lives here."""

from __future__ import annotations

import typer

from .apply import apply
from .compare import compare
from .delete import delete
from .describe import describe
from .init import init
from .logs import logs
from .operator import operator_app
from .results import results
from .run import run
from .status import status
from .suspend import resume, suspend
from .validate import validate
from .wait import wait

app = typer.Typer(
    name="cotctl",
    help="cotlab: curate long chain-of-thought traces, fine-tune, and evaluate on competition math.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(validate)
app.command()(run)
app.command()(results)
app.command()(status)
app.command()(describe)
app.command()(logs)
app.command()(compare)
app.command()(wait)
app.command()(suspend)
app.command()(resume)
app.command()(delete)
app.command()(apply)
app.command()(init)
app.add_typer(operator_app)


@app.callback()
def _root() -> None:
    """cotlab's command line."""


def main() -> None:
    app()
