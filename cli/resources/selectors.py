"""Kubernetes label selectors, read the way the API server reads them, for state that has no API server (--local)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from ..terminal.errors import UsageError

Requirement = Callable[[Mapping[str, str]], bool]

_SET = re.compile(r"^\s*(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQUALITY = re.compile(r"^\s*(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s,=!]*)\s*$")
_EXISTS = re.compile(r"^\s*(?P<not>!?)\s*(?P<key>[^\s!=(),]+)\s*$")


def _split(selector: str) -> list[str]:
    """Requirements split on commas outside parentheses (`a in (x,y),b` is two)."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Requirement:
    if found := _SET.match(text):
        key, values = found["key"], {v.strip() for v in found["values"].split(",") if v.strip()}
        if found["op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if found := _EQUALITY.match(text):
        key, value = found["key"], found["value"]
        if found["op"] == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if found := _EXISTS.match(text):
        key, negated = found["key"], bool(found["not"])
        return lambda labels: (key in labels) != negated
    raise UsageError(
        f"--selector: cannot read {text.strip()!r}", "use key=value, key!=value, key, !key or key in (a,b)"
    )


def label_matcher(selector: str | None) -> Requirement:
    """A predicate over labels that is true when every requirement of `selector` holds (None: everything)."""
    if not selector:
        return lambda labels: True
    requirements = [_requirement(part) for part in _split(selector)]
    return lambda labels: all(requirement(labels) for requirement in requirements)
