"""Where a resource's pods run, which queue admits them, and what a spec may change in them."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from .base import CamelModel, Name, ResourceRequirements, ShortStr, StatusModel, Toleration
from .overrides import PodOverrides

# CEL rules of every spec. A subclass that sets its own json_schema_extra replaces these: it must list them too.
WORKLOAD_RULES: list[Any] = [
    {"rule": "!has(self.priorityClass) || has(self.queueName)", "message": "priorityClass needs queueName"}
]


class WorkloadSpec(CamelModel):
    """Where a resource's pods run and which queue admits them; the base of the three specs."""

    model_config = CamelModel.model_config | {"json_schema_extra": {"x-kubernetes-validations": WORKLOAD_RULES}}

    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: Annotated[list[Toleration], Field(max_length=32)] = Field(default_factory=list)
    queue_name: Name | None = Field(
        default=None, description="Kueue LocalQueue; set as the kueue.x-k8s.io/queue-name label of the Job."
    )
    priority_class: Name | None = Field(
        default=None, description="Kueue WorkloadPriorityClass (kueue.x-k8s.io/priority-class); needs queueName."
    )
    image: ShortStr | None = Field(default=None, description="Overrides the operator's default pod image.")
    service_account_name: Name | None = None
    pod_template_overrides: PodOverrides | None = Field(
        default=None, description="Allowed changes to the pods: labels, annotations, env, extra volumes."
    )

    @model_validator(mode="after")
    def _priority_needs_a_queue(self) -> Self:
        if self.priority_class is not None and self.queue_name is None:
            raise ValueError("priorityClass needs queueName")
        return self


class QueueStatus(StatusModel):
    """What Kueue did with the resource's Job: where it was admitted, and how often it was evicted."""

    local_queue: Name | None = None
    cluster_queue: Name | None = None
    flavors: dict[str, ShortStr] = Field(default_factory=dict, description="Resource name -> ResourceFlavor.")
    evictions: int = Field(default=0, description="Evictions (preemption, deactivation): not failed attempts.")
