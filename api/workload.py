"""Where a resource's pods run, which queue admits them, and what a spec may change in them."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import CamelModel, Name, ResourceRequirements, ShortStr, Toleration
from .overrides import PodOverrides


class WorkloadSpec(CamelModel):
    """Where a resource's pods run and which queue admits them; the base of the three specs."""

    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: Annotated[list[Toleration], Field(max_length=32)] = Field(default_factory=list)
    queue_name: Name | None = Field(
        default=None, description="Kueue LocalQueue; set as the kueue.x-k8s.io/queue-name label of the Job."
    )
    image: ShortStr | None = Field(default=None, description="Overrides the operator's default pod image.")
    service_account_name: Name | None = None
    pod_template_overrides: PodOverrides | None = Field(
        default=None, description="Allowed changes to the pods: labels, annotations, env, extra volumes."
    )
