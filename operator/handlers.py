"""kopf's part: log in, start and stop the controller, answer the liveness probe.

The controller's informers do the listing and watching (see `informers` for why not kopf's watches), so kopf
registers no resource handlers at all: it keeps no bookkeeping on the resources (no annotations that a GitOps tool
would show as a diff, no finalizers that would make a deletion wait), scans no namespaces or CRDs, and sends no
request of its own. The storages still point at status, so that a handler added later never writes annotations.
"""

from __future__ import annotations

from typing import Any

import kopf

from cotlab.api import GROUP
from cotlab.api.resources import RESOURCE_KINDS

from .controller import Controller

registry = kopf.OperatorRegistry()


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
    settings.posting.level = 100  # kopf posts no events of its own: the controller posts one per transition
    settings.scanning.disabled = True  # no resource handlers: nothing to discover (nor RBAC to list namespaces)
    await controller.start()
    # kopf says nothing at INFO about what it watches; this line is what an admin checks after an install.
    kinds = ", ".join(f"{k.plural}.{GROUP}" for k in RESOURCE_KINDS)
    named = [n for n in controller.namespaces if n is not None]
    scope = f"namespaces {', '.join(named)}" if named else "all namespaces"
    logger.info(f"watching {kinds} in {scope}")


@kopf.on.cleanup(registry=registry)
async def stop(memo: Any, **_: Any) -> None:
    await _controller(memo).stop()


@kopf.on.probe(id="queue", registry=registry)
def queue_length(memo: Any, **_: Any) -> int:
    return len(_controller(memo).queue)
