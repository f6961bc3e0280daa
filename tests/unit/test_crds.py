"""The committed CRDs are what the models generate, and they have the shape Kubernetes requires."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from cotlab.api import RESOURCE_KINDS
from cotlab.api.crd import CRD_DIRECTORIES, build_crds
from tests.conftest import REPO

CRDS = {crd["metadata"]["name"]: crd for crd in build_crds()}


@pytest.mark.parametrize("directory", CRD_DIRECTORIES)
@pytest.mark.parametrize("name", sorted(CRDS), ids=sorted(CRDS))
def test_committed_crd_matches_models(name: str, directory: str) -> None:
    committed = yaml.safe_load((REPO / directory / f"{name}.yaml").read_text())
    assert committed == CRDS[name], "CRDs drifted: run `python -m cotlab.api.crd` and commit"


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        nodes += _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        nodes += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += _walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes


@pytest.mark.parametrize("name", sorted(CRDS), ids=sorted(CRDS))
def test_schema_is_structural(name: str) -> None:
    schema = CRDS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(bound, True) is True, f"{path}.{bound} must be boolean in OpenAPI v3.0"


@pytest.mark.parametrize("kind", RESOURCE_KINDS, ids=[k.kind for k in RESOURCE_KINDS])
def test_printer_columns_select_conditions_by_type(kind: Any) -> None:
    version = CRDS[f"{kind.plural}.cotlab.dev"]["spec"]["versions"][0]
    paths = [c["jsonPath"] for c in version["additionalPrinterColumns"]]
    assert ".status.conditions[?(@.type=='Ready')].status" in paths
    assert not any("[-1:]" in p for p in paths)
    assert version["subresources"] == {"status": {}}
    names = CRDS[f"{kind.plural}.cotlab.dev"]["spec"]["names"]
    assert names["categories"] == ["cotlab"] and names["shortNames"]


def test_spec_immutable_except_suspend() -> None:
    spec = CRDS["finetuneruns.cotlab.dev"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rule = next(r for r in spec["x-kubernetes-validations"] if "oldSelf" in r["rule"])
    assert "self.baseModel == oldSelf.baseModel" in rule["rule"]
    assert "suspend" not in rule["rule"] and "spec.suspend" in rule["message"]
    td = CRDS["tracedatasets.cotlab.dev"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert {"rule": "self == oldSelf", "message": "spec is immutable; delete and re-create the resource"} in td[
        "x-kubernetes-validations"
    ]


def test_conditions_are_a_map_keyed_by_type() -> None:
    status = CRDS["evalruns.cotlab.dev"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == ["type"]
