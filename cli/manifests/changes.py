"""What applying a manifest would change in a stored cotlab resource, field by field (pure; `cotctl diff` uses it).

Specs are immutable once created, except the fields each kind lists as mutable (`spec.suspend`): a change to
any other spec field is refused by the API server's CEL rule. Labels and annotations are compared only for the
keys the manifest sets, since others (Argo CD's tracking label, the operator's) may add their own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cotlab.api.resources import KINDS_BY_NAME


class Action(StrEnum):
    """What applying one manifest would do."""

    create = "create"  # it does not exist yet
    update = "update"  # only fields that may change: spec.suspend, labels, annotations
    unchanged = "unchanged"
    refused = "refused"  # the API server would reject it (a changed spec of an existing run, or an invalid one)


class _Unset:
    """A field that is absent on one side (distinct from an explicit null)."""

    def __repr__(self) -> str:
        return "(unset)"


UNSET: Any = _Unset()
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FieldChange:
    """One field that differs: its path as the API server names it, the stored value and the manifest's."""

    path: str  # "spec.training.learningRate", 'metadata.labels["cotlab.dev/arm"]'
    before: Any  # UNSET when the stored object lacks it
    after: Any  # UNSET when the manifest drops it

    def __str__(self) -> str:
        return f"{self.path}: {_show(self.before)} -> {_show(self.after)}"

    def as_json(self) -> dict[str, Any]:
        """{"path", "from", "to"}, a side left out when the field is absent there."""
        found: dict[str, Any] = {"path": self.path}
        if self.before is not UNSET:
            found["from"] = self.before
        if self.after is not UNSET:
            found["to"] = self.after
        return found


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value) if value is UNSET else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if _PLAIN_KEY.match(key) else f'{path}["{key}"]'


def field_changes(before: Any, after: Any, path: str) -> list[FieldChange]:
    """Every leaf that differs between two JSON values; a list of another length differs as a whole."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = list(after) + [k for k in before if k not in after]
        return [c for k in keys for c in field_changes(before.get(k, UNSET), after.get(k, UNSET), _child(path, k))]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            c for i, (b, a) in enumerate(zip(before, after, strict=True)) for c in field_changes(b, a, f"{path}[{i}]")
        ]
    return [] if before == after else [FieldChange(path, before, after)]


def metadata_changes(stored: dict[str, Any], desired: dict[str, Any]) -> list[FieldChange]:
    """Labels and annotations the manifest sets that the stored object lacks or holds with another value."""
    changes = []
    for part in ("labels", "annotations"):
        have, want = stored.get(part) or {}, desired.get(part) or {}
        changes += [
            FieldChange(_child(f"metadata.{part}", key), have.get(key, UNSET), value)
            for key, value in want.items()
            if have.get(key, UNSET) != value
        ]
    return changes


def immutable_changes(kind: str, changes: list[FieldChange]) -> list[FieldChange]:
    """The changes the immutability rule refuses: spec fields other than the kind's mutable ones."""
    mutable = [f"spec.{field}" for field in KINDS_BY_NAME[kind].mutable_fields]

    def allowed(path: str) -> bool:
        return not path.startswith("spec") or any(path == m or path.startswith((f"{m}.", f"{m}[")) for m in mutable)

    return [c for c in changes if not allowed(c.path)]


def replacement(stored: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The object a sync would leave: the stored one with the manifest's spec and its labels and annotations.

    Sent as a dry-run update, so the API server judges the whole new spec (defaults, schema, the immutability
    rule) whatever merge a GitOps tool would use to get there."""
    meta = {k: v for k, v in stored["metadata"].items() if k != "managedFields"}
    for part in ("labels", "annotations"):
        merged = (stored["metadata"].get(part) or {}) | (desired["metadata"].get(part) or {})
        if merged:
            meta[part] = merged
    found = {"apiVersion": desired["apiVersion"], "kind": desired["kind"], "metadata": meta}
    return found | ({"spec": desired["spec"]} if "spec" in desired else {})


def defaults_probe(desired: dict[str, Any]) -> dict[str, Any]:
    """The manifest under a name the server picks: a dry-run create of it returns the spec with the server's
    defaults filled in, which is what the immutability rule compares (`self`) with the stored spec (`oldSelf`)."""
    meta = desired["metadata"]
    probe_meta = {"generateName": f"{meta['name'][:200]}-", "namespace": meta["namespace"]}
    return {k: v for k, v in desired.items() if k != "metadata"} | {"metadata": probe_meta}
