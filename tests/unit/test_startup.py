"""Start-up cost as structure: cotlab.api's names load on first use, and a cotctl command loads only its own module.

Timing lives in bench/cli_status.py; these tests pin the structure that the timing depends on, in fresh
interpreters, so that an eager import added anywhere on the way fails here with the module that brought it.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys

import pytest

import cotlab.api
from cotlab.cli import main as cli_main
from tests.conftest import REPO


def loaded_after(code: str, *watched: str) -> list[str]:
    """Which of `watched` a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint([m for m in {list(watched)!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_api_names_need_no_models() -> None:
    code = "import cotlab.api.kinds, cotlab.api.phases, cotlab.api.metrics"
    assert loaded_after(code, "pydantic", "cotlab.api.resources", "cotlab.api.conditions") == []
    # ...while the package's names still load their models on first use.
    assert loaded_after("from cotlab.api import EvalRun", "pydantic", "cotlab.api.resources") == [
        "pydantic",
        "cotlab.api.resources",
    ]


def test_api_exports_one_list_of_names() -> None:
    """`__all__`, the lazy table and the TYPE_CHECKING imports (what type checkers see) name the same things."""
    tree = ast.parse((REPO / "api" / "__init__.py").read_text())
    checked = next(node for node in tree.body if isinstance(node, ast.If))  # if TYPE_CHECKING:
    typed = {
        (node.module, alias.name) for node in checked.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    homes = {(module, name) for module, names in cotlab.api._HOMES.items() for name in names}
    assert typed == homes
    assert sorted(cotlab.api.__all__) == sorted(name for _, name in homes)


@pytest.mark.parametrize("name", cotlab.api.__all__)
def test_each_api_name_is_its_home_modules(name: str) -> None:
    home = importlib.import_module(f"cotlab.api.{cotlab.api._MODULE_OF[name]}")
    assert getattr(cotlab.api, name) is getattr(home, name)


def test_an_unknown_api_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'EvalRunn'"):
        cotlab.api.EvalRunn  # noqa: B018


def test_a_command_loads_only_its_own_module() -> None:
    every = [f"cotlab.cli.{module}" for module, _ in cli_main.COMMANDS.values()]
    loaded = loaded_after("from cotlab.cli.main import build_app; build_app('status')", "pydantic", *every)
    assert loaded == ["cotlab.cli.commands.status"]


def test_the_whole_app_has_every_command_in_help_order() -> None:
    app = cli_main.build_app()
    assert [c.name for c in app.registered_commands] == list(cli_main.COMMANDS)
    assert [g.typer_instance.info.name for g in app.registered_groups] == list(cli_main.GROUPS)
    only = cli_main.build_app("resume")
    assert [c.name for c in only.registered_commands] == ["resume"] and not only.registered_groups


def test_cotctl_runs_the_named_command_and_help_lists_them_all() -> None:
    cotctl = [sys.executable, "-c", "from cotlab.cli.main import main; main()"]
    listed = subprocess.run([*cotctl, "--help"], capture_output=True, text=True, check=True)
    assert all(name in listed.stdout for name in [*cli_main.COMMANDS, *cli_main.GROUPS])
    usage = subprocess.run([*cotctl, "status", "--help"], capture_output=True, text=True, check=True)
    assert "Usage: " in usage.stdout and " status [OPTIONS] [what]" in usage.stdout
    wrong = subprocess.run([*cotctl, "stauts"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "No such command 'stauts'" in wrong.stderr
