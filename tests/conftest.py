"""Shared test data: the example manifests, the invalid-manifest table (used by unit and cluster tests), a small
file in the format of NeMo-Skills' comp-math-24-25 and a loopback HTTP server to fetch it from; and `actionlint`,
the GitHub Actions workflow linter, as a fixture."""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "manifests" / "examples"


def load_script(path: str) -> ModuleType:
    """A script of the repository that is not part of the package (bench/, images/), imported as a module named
    after its path (bench/finetune_mfu.py: `bench_finetune_mfu`); registered in sys.modules, as dataclasses look
    their module up by name."""
    spec = importlib.util.spec_from_file_location(path.removesuffix(".py").replace("/", "_"), REPO / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    """(id, document) for every document in manifests/examples."""
    docs = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((f"{path.relative_to(EXAMPLES)}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


def invalid_cases() -> list[dict[str, Any]]:
    """The invalid manifests every validator must reject, with the field each error must name."""
    cases: list[dict[str, Any]] = yaml.safe_load((REPO / "tests" / "data" / "invalid_manifests.yaml").read_text())
    return cases


COMP_MATH_SAMPLE = REPO / "tests" / "data" / "comp-math-24-25-sample.txt"
"""Seven made-up rows in the shape of NeMo-Skills' comp-math-24-25 test.txt: aime25 2, aime24 2, hmmt-24-25 3."""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (never beyond the machine); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            thread.join(timeout=5)


ACTIONLINT = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"


@pytest.fixture(scope="session")
def actionlint() -> Path:
    """actionlint, built once from the Go module proxy by scripts/go-tool.sh and cached (15 s cold on 2 cores).
    Without Go it is skipped on a developer's machine and fails in CI."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "go-tool.sh"), ACTIONLINT], capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        message = f"cannot build {ACTIONLINT}: {done.stderr.strip()[-400:]}"
        if os.environ.get("CI") or os.environ.get("COTLAB_REQUIRE_CLUSTER") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return Path(done.stdout.splitlines()[-1])
