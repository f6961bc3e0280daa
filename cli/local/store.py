"""The local runner's state: one folder per resource under a root, holding the object (with status) and outputs.

Layout: `<root>/<namespace>/<plural>/<name>/` with `resource.json` (the manifest plus its status, as the API
server would store it), `spec.json` (the pod spec file), `inputs.json` (what the run was given: the dataset
artifact or the model, with digests), `output/` (the stage's artifacts), `stage.log` (the stage's stdout and
stderr) and `termination-log` (its summary).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cotlab.api import KINDS_BY_NAME, Resource
from cotlab.api.validation import parse_resource

ROOT_ENV = "COTLAB_LOCAL_ROOT"
DEFAULT_ROOT = ".cotlab"


def default_root() -> Path:
    """`COTLAB_LOCAL_ROOT`, else `.cotlab` in the current directory (like `.terraform`)."""
    return Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT))


def namespace_of(resource: Resource) -> str:
    return resource.metadata.namespace or "default"


@dataclass(frozen=True)
class LocalStore:
    """Resources and their outputs on this machine."""

    root: Path

    def folder(self, kind: str, namespace: str, name: str) -> Path:
        return self.root / namespace / KINDS_BY_NAME[kind].plural / name

    def folder_of(self, resource: Resource) -> Path:
        return self.folder(resource.kind, namespace_of(resource), resource.metadata.name)

    def load(self, kind: str, namespace: str, name: str) -> Resource | None:
        path = self.folder(kind, namespace, name) / "resource.json"
        if not path.is_file():
            return None
        return parse_resource(json.loads(path.read_text(encoding="utf-8")))

    def save(self, resource: Resource) -> None:
        folder = self.folder_of(resource)
        folder.mkdir(parents=True, exist_ok=True)
        body = resource.to_wire()
        tmp = folder / "resource.json.tmp"
        tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        tmp.replace(folder / "resource.json")  # atomic: `cotctl results` may read while a stage runs

    def all(self) -> list[Resource]:
        """Every stored resource, sorted by namespace, kind and name."""
        found = []
        for path in sorted(self.root.glob("*/*/*/resource.json")):
            found.append(parse_resource(json.loads(path.read_text(encoding="utf-8"))))
        return found
