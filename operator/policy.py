"""What the operator refuses to run: images and service accounts a spec may only choose when settings allow.

A refusal is permanent for the spec (specs are immutable): the resource fails with a condition that says
which field and which setting, and no child is made.
"""

from __future__ import annotations

from dataclasses import dataclass

from cotlab.api import Reason, Resource

from .settings import OperatorSettings


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


def refusal(resource: Resource, settings: OperatorSettings) -> Refusal | None:
    """Why the operator will not build pods for `resource` under `settings`, or None."""
    spec = resource.spec
    if spec.image is not None and not settings.image_allowed(spec.image):
        allowed = ", ".join(settings.allowed_images) or "none"
        return Refusal(
            Reason.IMAGE_NOT_ALLOWED,
            f"spec.image {spec.image!r} is not allowed by the operator's settings "
            f"(COTLAB_ALLOWED_IMAGES: {allowed}); remove spec.image or ask an admin to allow it",
        )
    account = spec.service_account_name
    if account is not None and not settings.service_account_allowed(account):
        allowed = ", ".join(settings.allowed_service_accounts) or "none"
        return Refusal(
            Reason.SERVICE_ACCOUNT_NOT_ALLOWED,
            f"spec.serviceAccountName {account!r} is not allowed by the operator's settings "
            f"(COTLAB_ALLOWED_SERVICE_ACCOUNTS: {allowed}); remove it or ask an admin to allow it",
        )
    return None
