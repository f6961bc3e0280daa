"""CustomResourceDefinitions generated from the pydantic models: the models are the one source of truth.

Pydantic emits JSON Schema (2020-12, with $refs and anyOf for optionals); Kubernetes wants a *structural*
OpenAPI v3 schema: no $ref, a type on every node, boolean exclusive bounds, int-or-string as an extension.
`structural_schema` does that translation; `build_crd` adds printer columns, short names and the CEL rules
that make the spec immutable after creation.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from .kinds import GROUP, VERSION
from .resources import RESOURCE_KINDS, ResourceKind

# propertyNames (map key constraints) is not part of Kubernetes' structural schemas; keys are checked by the
# pydantic models and, where it matters, by CEL rules on the map.
_DROP = {"title", "additionalProperties", "$defs", "propertyNames"}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of `model`, as the CRD's openAPIV3Schema needs it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Any] = raw.get("$defs", {})
    return _convert(raw, defs)


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = copy.deepcopy(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**copy.deepcopy(target), **node}
    if "anyOf" in node:
        node = _collapse_any_of(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema's numeric form becomes OpenAPI v3.0's boolean flag beside minimum/maximum.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "default" and (value is None or isinstance(value, dict | list)):
            continue  # nested defaults come from each field; None means "unset", not a value
        else:
            out[key] = value
    additional = node.get("additionalProperties")
    if isinstance(additional, dict) and "properties" not in node:
        out["additionalProperties"] = _convert(additional, defs)
    if "type" not in out and "x-kubernetes-int-or-string" not in out:
        out["type"] = "object"
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in node:
        out["type"] = "string"
    return out


def _collapse_any_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    given = node.pop("anyOf")
    options = [o for o in given if o.get("type") != "null"]
    # An explicit null must survive for a field whose default is not null (fields.answer: null means
    # "no answer column"); the apiserver prunes nulls of non-nullable fields and would re-apply the default.
    nullable = len(options) < len(given) and node.get("default") is not None
    types = sorted(o.get("type", "") for o in options)
    if types == ["integer", "string"]:
        return {**node, "x-kubernetes-int-or-string": True}
    if len(options) != 1:
        raise ValueError(f"cannot express anyOf {options} in a structural schema")
    only = options[0]
    if "$ref" in only:
        only = {**copy.deepcopy(defs[only["$ref"].rsplit("/", 1)[-1]])}
    return {**only, **node, **({"nullable": True} if nullable else {})}


def _immutability_rule(kind: ResourceKind, spec_schema: dict[str, Any]) -> dict[str, str]:
    if not kind.mutable_fields:
        return {"rule": "self == oldSelf", "message": "spec is immutable; delete and re-create the resource"}
    fields = [f for f in spec_schema["properties"] if f not in kind.mutable_fields]
    rule = " && ".join(
        f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})" for f in fields
    )
    allowed = ", ".join(f"spec.{f}" for f in kind.mutable_fields)
    return {"rule": rule, "message": f"spec is immutable except {allowed}; delete and re-create the resource"}


def build_crd(kind: ResourceKind) -> dict[str, Any]:
    """The CustomResourceDefinition manifest for one kind."""
    fields = kind.model.model_fields
    spec_schema = structural_schema(fields["spec"].annotation)  # type: ignore[arg-type]
    status_model = next(a for a in fields["status"].annotation.__args__ if a is not type(None))  # type: ignore[union-attr]
    status_schema = structural_schema(status_model)
    spec_schema.setdefault("x-kubernetes-validations", []).append(_immutability_rule(kind, spec_schema))
    for schema in (spec_schema, status_schema):
        conditions = schema["properties"].get("conditions")
        if conditions:
            conditions.update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        # The install's label, here rather than from kustomize, so the Helm chart's copy is the same object.
        "metadata": {"name": f"{kind.plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "cotlab"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": ["cotlab"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": c.name,
                            "type": c.type,
                            "jsonPath": c.json_path,
                            **({"priority": c.priority} if c.priority else {}),
                            **({"description": c.description} if c.description else {}),
                        }
                        for c in kind.columns
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (kind.model.__doc__ or kind.kind).strip().splitlines()[0],
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def build_crds() -> list[dict[str, Any]]:
    """Every CRD, in registry order."""
    return [build_crd(kind) for kind in RESOURCE_KINDS]


def write_crds(directory: str) -> list[str]:
    """Write one YAML file per CRD into `directory`; returns the paths written."""
    import pathlib

    import yaml

    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for crd in build_crds():
        path = out / f"{crd['metadata']['name']}.yaml"
        header = "# Generated by `python -m cotlab.api.crd` from cotlab.api; do not edit.\n"
        path.write_text(header + yaml.safe_dump(crd, sort_keys=False, width=120), encoding="utf-8")
        written.append(str(path))
    return written


# Where the CRDs are committed: the kustomize base and the Helm chart (which installs crds/ before its templates).
CRD_DIRECTORIES = ("manifests/crds", "charts/cotlab/crds")

if __name__ == "__main__":
    import sys

    for directory in sys.argv[1:] or CRD_DIRECTORIES:
        for written_path in write_crds(directory):
            sys.stdout.write(written_path + "\n")
