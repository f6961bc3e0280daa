"""kopf's part: watch the three kinds and the operator's Jobs and pods, and hand every event to the controller.

Only stateless event watchers are registered (no create/update handlers, no timers, no daemons), so kopf keeps
no bookkeeping on the resources at all: no annotations that a GitOps tool would show as a diff, no finalizers
that would make a deletion wait for the operator. The storages still point at status, so that a handler added
later never writes annotations either.
"""

from __future__ import annotations

from typing import Any, cast

import kopf

from cotlab.api import GROUP, VERSION
from cotlab.api.children import LABEL_MANAGED_BY, MANAGED_BY
from cotlab.api.resources import RESOURCE_KINDS

from .controller import Controller

registry = kopf.OperatorRegistry()
_OURS = {LABEL_MANAGED_BY: MANAGED_BY}


def _body(event: kopf.RawEvent) -> dict[str, Any]:
    """The event's object as the plain dict it is (kopf types it as a TypedDict)."""
    return cast(dict[str, Any], event["object"])


def _controller(memo: Any) -> Controller:
    controller: Controller = memo.controller
    return controller


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> Any:
    return kopf.login_via_client(**kwargs)


@kopf.on.startup(registry=registry)
async def start(settings: kopf.OperatorSettings, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    controller = _controller(memo)
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.last-handled-configuration")
    settings.persistence.finalizer = "cotlab.dev/unused"  # never added: no handler needs one (see the module doc)
    settings.watching.server_timeout = controller.settings.watch_server_timeout
    settings.watching.client_timeout = controller.settings.watch_client_timeout
    settings.watching.connect_timeout = 30
    settings.posting.level = 100  # kopf posts no events of its own: the controller posts one per transition
    # Watching named namespaces needs no list of all namespaces (nor the RBAC for it): skip kopf's scanning.
    settings.scanning.disabled = bool(memo.namespaced)
    await controller.start()
    # kopf says nothing at INFO about what it watches; this line is what an admin checks after an install.
    kinds = ", ".join(f"{k.plural}.{GROUP}" for k in RESOURCE_KINDS)
    scope = f"namespaces {', '.join(memo.namespaces)}" if memo.namespaced else "all namespaces"
    logger.info(f"watching {kinds} in {scope}")


@kopf.on.cleanup(registry=registry)
async def stop(memo: Any, **_: Any) -> None:
    await _controller(memo).stop()


@kopf.on.probe(id="queue", registry=registry)
def queue_length(memo: Any, **_: Any) -> int:
    return len(_controller(memo).queue)


def _watch(kind: str, plural: str) -> None:
    @kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"observe-{plural}")
    async def observe(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        _controller(memo).observe_resource(kind, event["type"], _body(event))


for _kind in RESOURCE_KINDS:
    _watch(_kind.kind, _kind.plural)


@kopf.on.event("batch", "v1", "jobs", labels=_OURS, registry=registry)
async def observe_job(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    _controller(memo).observe_job(event["type"], _body(event))


@kopf.on.event("", "v1", "pods", labels=_OURS, registry=registry)
async def observe_pod(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    _controller(memo).observe_pod(event["type"], _body(event))
