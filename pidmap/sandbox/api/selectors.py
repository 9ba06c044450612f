"""Label and field selectors (``-l app=kubia``, ``--field-selector spec.nodeName=...``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pidmap.sandbox.api.errors import bad_request
from pidmap.sandbox.api.meta import Obj


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "=":
            return present and value == self.values[0]
        if self.operator == "!=":
            return not present or value != self.values[0]
        if self.operator == "in":
            return present and value in self.values
        if self.operator == "notin":
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        return not present  # "!"


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( )`` (set-based requirements hold commas)."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


_SET_REQUIREMENT = re.compile(r"^(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)$")
_EQUALITY = re.compile(r"^(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_KEY = re.compile(r"^(?P<bang>!?)\s*(?P<key>[^\s!=(),]+)$")


def parse_label_selector(text: str | None) -> list[Requirement]:
    """labels.Parse: equality (``=``, ``==``, ``!=``), ``in``/``notin`` sets, ``key`` and ``!key``."""
    requirements: list[Requirement] = []
    for part in _split_top_level(text or ""):
        if match := _SET_REQUIREMENT.match(part):
            values = tuple(value.strip() for value in match["values"].split(",") if value.strip())
            requirements.append(Requirement(match["key"], match["op"], values))
        elif match := _EQUALITY.match(part):
            operator = "!=" if match["op"] == "!=" else "="
            requirements.append(Requirement(match["key"], operator, (match["value"],)))
        elif match := _KEY.match(part):
            requirements.append(Requirement(match["key"], "!" if match["bang"] else "exists"))
        else:
            raise bad_request(f"unable to parse requirement: {part!r}")
    return requirements


def labels_match(requirements: Sequence[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(requirement.matches(labels or {}) for requirement in requirements)


POD_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
NAMED_FIELDS = ("metadata.name", "metadata.namespace")


def parse_field_selector(text: str | None, allowed: Iterable[str]) -> list[Requirement]:
    """fields.Parse: only ``=``, ``==`` and ``!=``, on the fields the resource supports."""
    allowed_set = set(allowed)
    requirements: list[Requirement] = []
    for part in _split_top_level(text or ""):
        match = re.match(r"^(?P<key>[^=!]+?)\s*(?P<op>==|=|!=)\s*(?P<value>.*)$", part)
        if match is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key = match["key"].strip()
        if key not in allowed_set:
            raise bad_request(f"field label not supported: {key}")
        requirements.append(Requirement(key, "!=" if match["op"] == "!=" else "=", (match["value"].strip(),)))
    return requirements


def field_value(obj: Obj, path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def fields_match(requirements: Sequence[Requirement], obj: Obj) -> bool:
    return all(
        requirement.matches({requirement.key: field_value(obj, requirement.key)})
        for requirement in requirements
    )
