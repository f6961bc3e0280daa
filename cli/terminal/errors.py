"""Errors a command reports as one line on stderr (with the next step), and the one place that reports them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from .output import error


class CliError(Exception):
    """Something the user can act on: the message says what and where, the hint what to run next."""

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message, self.hint, self.exit_code = message, hint, exit_code


class UsageError(CliError):
    """A flag or argument that cannot work (exit code 2, as for Typer's own usage errors)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint, exit_code=2)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Run a command body; a `CliError` becomes its one line on stderr and the command's exit code."""
    try:
        yield
    except CliError as err:
        error(err.message, err.hint)
        raise typer.Exit(err.exit_code) from None
