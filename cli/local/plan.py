"""Order an experiment's resources so each runs after what it depends on, and name what is missing."""

from __future__ import annotations

from collections.abc import Callable

from cotlab.api import Resource
from cotlab.api.dependencies import dependency
from cotlab.api.kinds import KIND_ORDER


class PlanError(ValueError):
    """A resource refers to something neither given nor already run."""


def plan(resources: list[Resource], known: Callable[[str, str, str], bool]) -> list[Resource]:
    """The resources in run order (stable within a kind); `known(kind, namespace, name)` covers earlier runs."""
    given = {(r.kind, r.metadata.namespace or "default", r.metadata.name) for r in resources}
    if len(given) != len(resources):
        raise PlanError("the same resource appears twice in the given manifests")
    for resource in resources:
        needed = dependency(resource)
        if needed is None:
            continue
        key = (*needed[:1], resource.metadata.namespace or "default", needed[1])
        if key not in given and not known(*key):
            raise PlanError(
                f"{resource.kind}/{resource.metadata.name}: needs {needed[0]}/{needed[1]}, which is neither in the "
                "given manifests nor run before; add its manifest with -f"
            )
    return sorted(resources, key=lambda r: KIND_ORDER[r.kind])
