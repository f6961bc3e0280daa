"""`cotctl operator run` hands its flags to the operator's own parser and reports a bad setting by its name."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cotlab.cli.main import app

runner = CliRunner()


def test_help_lists_the_operator_flags() -> None:
    result = runner.invoke(app, ["operator", "run", "--help"])
    assert result.exit_code == 0
    for flag in ("--namespace", "--all-namespaces", "--standalone", "--liveness", "--artifact-root"):
        assert flag in result.stdout


def test_a_bad_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COTLAB_RESYNC_SECONDS", "often")
    result = runner.invoke(app, ["operator", "run", "-n", "team-a"])
    assert result.exit_code == 2
    assert "COTLAB_RESYNC_SECONDS='often'" in result.stderr
