"""Shared pydantic base classes and small value types for the cotlab resources."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SerializationInfo, SerializerFunctionWrapHandler, model_serializer
from pydantic.alias_generators import to_camel

# A Kubernetes quantity such as 8, "16Gi" or "500m": int-or-string in the CRD schema.
Quantity = int | str

# Kubernetes object names (RFC 1123 subdomain), the shape every *Ref.name must have.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
Name = Annotated[str, Field(min_length=1, max_length=253, pattern=NAME_PATTERN)]
# Free-form strings are bounded so that CEL cost estimation on the CRD stays within budget.
ShortStr = Annotated[str, Field(max_length=256)]
LongStr = Annotated[str, Field(max_length=16384)]
Uri = Annotated[str, Field(min_length=1, max_length=2048)]


class CamelModel(BaseModel):
    """Base for every spec/status model: camelCase on the wire, unknown fields are errors."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True)

    @model_serializer(mode="wrap")
    def _drop_unset_optionals(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # A None whose default is None means "unset" and is left out, as Kubernetes omits empty fields.
        # A None whose default is a value (fields.answer: null) is a choice, and must survive a round trip.
        data = handler(self)
        if isinstance(data, dict):
            for name, field in type(self).model_fields.items():
                key = field.alias if info.by_alias and field.alias else name
                if key in data and data[key] is None and field.default is None:
                    del data[key]
        return data

    def to_wire(self) -> dict[str, Any]:
        """The JSON shape Kubernetes stores: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True)


class StatusModel(CamelModel):
    """Base for status and what it holds: a field this version does not know (written by a newer operator) is
    kept and written back as it was, never an error (a spec's unknown field still is one)."""

    model_config = CamelModel.model_config | {"extra": "allow"}


class ObjectMeta(BaseModel):
    """The part of metadata cotlab reads; the rest of Kubernetes' metadata passes through."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", defer_build=True)

    name: Name
    namespace: Name | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None


class LocalObjectRef(CamelModel):
    """A reference to another cotlab resource in the same namespace."""

    name: Name


class SecretKeyRef(CamelModel):
    """A key of a Secret in the resource's namespace; secrets are only ever passed by reference."""

    name: Name
    key: ShortStr = "token"


class ConfigMapKeyRef(CamelModel):
    """A key of a ConfigMap in the resource's namespace."""

    name: Name
    # Kubernetes' own rule for ConfigMap keys (no "/", not only dots): a key never names a path outside the mount.
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]*[-_a-zA-Z0-9][-._a-zA-Z0-9]*$")]


class ResourceRequirements(CamelModel):
    """Container resources, as in a Pod spec (e.g. {"nvidia.com/gpu": 8, "memory": "512Gi"})."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class Toleration(CamelModel):
    """A pod toleration, as in a Pod spec."""

    key: ShortStr | None = None
    operator: ShortStr | None = None
    value: ShortStr | None = None
    effect: ShortStr | None = None
    toleration_seconds: int | None = None
