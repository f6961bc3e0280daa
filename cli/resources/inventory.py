"""Resources as the commands read them: from a cluster's API server or from this machine's state, typed.

Both places answer the same two questions (list some kinds, get one resource) with the stored object and its
typed model, so `status`, `describe`, `results` and `compare` show local and cluster runs the same way. An
object that no longer parses (written under an older CRD) is still listed, with the reason it cannot be read.

The typed model is built on first use: `cotctl status` reads only the stored objects' status (which the API server
has already checked against the CRD schema), so it never imports pydantic or builds a model schema, the bulk of
its start-up time (bench/cli_status.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cotlab.api.kinds import KIND_ORDER, KINDS

from ..cluster.kube import Cluster, Target
from ..terminal.errors import CliError
from .selectors import label_matcher

if TYPE_CHECKING:
    from cotlab.api import Resource

    from ..local.store import LocalStore


@dataclass(frozen=True)
class Listed:
    """One stored object; its typed model, or the reason it does not parse, on first use."""

    body: dict[str, Any]
    parsed: Resource | None = None  # the model, when the reader already has it (local state)

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"].get("namespace") or "default")

    @property
    def resource(self) -> Resource | None:
        """The typed model, or None when the object does not parse (`problem` says why)."""
        return self._typed[0]

    @property
    def problem(self) -> str | None:
        return self._typed[1]

    @cached_property
    def _typed(self) -> tuple[Resource | None, str | None]:
        if self.parsed is not None:
            return self.parsed, None
        # Imported here, not at the top: only commands that read typed models pay for pydantic (see above).
        from pydantic import ValidationError

        from cotlab.api.validation import format_loc, parse_resource

        try:
            return parse_resource(self.body), None
        except ValidationError as err:
            first = err.errors()[0]
            return None, f"{format_loc(first['loc'])}: {first['msg']} ({err.error_count()} errors)"
        except ValueError as err:
            return None, str(err)


def _order(item: Listed) -> tuple[str, int, str]:
    return (item.namespace, KIND_ORDER[item.kind], item.name)


class Inventory(Protocol):
    """Where resources are read from; `namespace` None means every namespace."""

    namespace: str | None

    def list(self, kinds: Sequence[str], selector: str | None = None) -> list[Listed]: ...

    def get(self, kind: str, name: str, namespace: str | None = None) -> Listed: ...


ALL_KINDS = tuple(k.kind for k in KINDS)


class ClusterInventory:
    """Resources on a cluster; the kinds are listed concurrently (one request each)."""

    def __init__(self, cluster: Cluster, namespace: str | None) -> None:
        self.cluster, self.namespace = cluster, namespace

    def list(self, kinds: Sequence[str], selector: str | None = None) -> list[Listed]:
        def one(kind: str) -> list[dict[str, Any]]:
            return self.cluster.list_resources(kind, namespace=self.namespace, selector=selector)

        with ThreadPoolExecutor(max_workers=max(1, len(kinds))) as pool:
            bodies = [body for found in pool.map(one, kinds) for body in found]
        return sorted((Listed(body) for body in bodies), key=_order)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Listed:
        """One resource, in `namespace` (a dependency's, which is its dependant's) or the inventory's."""
        return Listed(self.cluster.get_resource(kind, namespace or self.namespace or self.cluster.namespace, name))


class LocalInventory:
    """Resources that `cotctl run --local` ran on this machine."""

    def __init__(self, store: LocalStore, namespace: str | None) -> None:
        self.store, self.namespace = store, namespace

    def list(self, kinds: Sequence[str], selector: str | None = None) -> list[Listed]:
        matches = label_matcher(selector)
        found = []
        for resource in self.store.all():
            ns = resource.metadata.namespace or "default"
            if resource.kind in kinds and self.namespace in (None, ns) and matches(resource.metadata.labels):
                found.append(Listed(resource.to_wire(), resource))
        return sorted(found, key=_order)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Listed:
        namespace = namespace or self.namespace or "default"
        resource = self.store.load(kind, namespace, name)
        if resource is None:
            raise CliError(
                f'{kind.lower()} "{name}" not found in local state {Path(self.store.root).resolve()} '
                f'(namespace "{namespace}")',
                "list what ran here with: cotctl status --local",
            )
        return Listed(resource.to_wire(), resource)


def open_inventory(*, local: bool, root: Path | None, target: Target) -> Inventory:
    """This machine's state with --local, else the cluster of the kubeconfig context.

    Namespaces: -A means all, -n one; without either a cluster uses the context's namespace (as kubectl does),
    while local state shows every namespace (local runs rarely set one)."""
    if local:
        from ..local.store import LocalStore, default_root  # local state is read typed; a cluster's is not

        return LocalInventory(LocalStore(root or default_root()), None if target.all_namespaces else target.namespace)
    cluster = Cluster.connect(target)
    return ClusterInventory(cluster, None if target.all_namespaces else cluster.namespace)
