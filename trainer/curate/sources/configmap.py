"""Traces from a ConfigMap key (JSONL), which the operator mounts as a file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from cotlab.api.tracedataset import TraceDatasetSpec
from cotlab.trainer.core.errors import InvalidSpecError
from cotlab.trainer.core.jsonl import jsonl_rows
from cotlab.trainer.curate.sources.base import Row, SourceContext

CONFIGMAP_ROOT = "/etc/cotlab/configmaps"
# Overrides CONFIGMAP_ROOT outside a pod (the local runner, tests).
CONFIGMAP_ROOT_ENV = "COTLAB_CONFIGMAP_ROOT"


def configmap_path(name: str, key: str) -> Path:
    """Where the operator mounts key `key` of ConfigMap `name`: `<root>/<name>/<key>`."""
    return Path(os.environ.get(CONFIGMAP_ROOT_ENV, CONFIGMAP_ROOT)) / name / key


def load(spec: TraceDatasetSpec, context: SourceContext) -> Iterator[Row]:
    """The key's JSONL lines; `where` is "configMap NAME key KEY line N"."""
    ref = spec.source.config_map
    assert ref is not None  # the one-of validator guarantees it for this loader
    path = configmap_path(ref.name, ref.key)
    if not path.is_file():
        raise InvalidSpecError(
            f"spec.source.configMap: {path} does not exist; is key {ref.key!r} in ConfigMap {ref.name!r}"
            " and the ConfigMap mounted?"
        )
    return jsonl_rows(str(path), name=f"configMap {ref.name} key {ref.key}")
