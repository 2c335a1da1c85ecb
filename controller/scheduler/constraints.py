"""Placement constraints and preferences: parsed once per spec, matched against many nodes.

Grammar (Swarm's, minus what Shoal nodes do not have):
  constraint  `node.id|node.hostname|node.labels.<name>` `==|!=` `value`
  preference  `spread=node.labels.<name>`
Values compare case-insensitively, as in swarmkit; a node without the label counts as having
the value "" so `node.labels.x!=y` matches it. Parse errors are `InvalidArgument` naming the
text, so the API can reject a spec before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from agent.errors import invalid
from controller.api.types import NodeInfo, Placement

Attribute = Literal["id", "hostname", "label"]
Operator = Literal["==", "!="]

_CONSTRAINT_FIELD = "placement.constraints"
_PREFERENCE_FIELD = "placement.preferences"
_LABELS = "node.labels."

# The value may hold spaces inside but no '=' or '!', so `a==b==c` and `a=!b` are refused.
_CONSTRAINT = re.compile(r"^\s*(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)\s*(?P<op>==|!=)\s*(?P<value>[^=!]+?)\s*$")
_PREFERENCE = re.compile(r"^\s*spread\s*=\s*(?P<key>\S+)\s*$", re.IGNORECASE)
_LABEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True, slots=True)
class Constraint:
    attribute: Attribute
    label: str
    """The label name when `attribute == "label"`, else ""."""
    op: Operator
    value: str

    @property
    def key(self) -> str:
        return _LABELS + self.label if self.attribute == "label" else f"node.{self.attribute}"

    @property
    def text(self) -> str:
        """Canonical form, used in reasons: `node.labels.disk==ssd`."""
        return f"{self.key}{self.op}{self.value}"

    def matches(self, node: NodeInfo) -> bool:
        if self.attribute == "id":
            actual = node.id
        elif self.attribute == "hostname":
            actual = node.hostname
        else:
            actual = node.labels.get(self.label, "")
        equal = actual.casefold() == self.value.casefold()
        return equal if self.op == "==" else not equal


@dataclass(frozen=True, slots=True)
class Preference:
    """`spread=node.labels.<label>`: spread tasks evenly over the label's values."""

    label: str

    @property
    def text(self) -> str:
        return f"spread={_LABELS}{self.label}"

    def group(self, node: NodeInfo) -> str | None:
        """The node's group; nodes without the label share the group `None`, as in Swarm."""
        return node.labels.get(self.label)


def _label_name(key: str, field: str, text: str) -> str:
    name = key[len(_LABELS) :]
    if not _LABEL_NAME.match(name):
        raise invalid(field, text, "label name must be non-empty letters, digits, '.', '_' or '-'")
    return name


def parse_constraint(text: str) -> Constraint:
    match = _CONSTRAINT.match(text)
    if match is None:
        raise invalid(_CONSTRAINT_FIELD, text, "expected <key>==<value> or <key>!=<value>")
    key, value = match["key"], match["value"]
    op: Operator = "==" if match["op"] == "==" else "!="
    lowered = key.lower()
    if lowered == "node.id":
        return Constraint("id", "", op, value)
    if lowered == "node.hostname":
        return Constraint("hostname", "", op, value)
    if lowered.startswith(_LABELS):
        return Constraint("label", _label_name(key, _CONSTRAINT_FIELD, text), op, value)
    if lowered == "node.role":
        # Refused rather than ignored: a silently dropped constraint would place tasks anywhere.
        raise invalid(_CONSTRAINT_FIELD, text, "node.role is not supported: Shoal nodes have no role")
    raise invalid(_CONSTRAINT_FIELD, text, "key must be node.id, node.hostname or node.labels.<name>")


def parse_preference(text: str) -> Preference:
    match = _PREFERENCE.match(text)
    if match is None or not match["key"].lower().startswith(_LABELS):
        raise invalid(_PREFERENCE_FIELD, text, "expected spread=node.labels.<name>")
    return Preference(_label_name(match["key"], _PREFERENCE_FIELD, text))


def parse_constraints(texts: Iterable[str]) -> tuple[Constraint, ...]:
    return tuple(parse_constraint(text) for text in texts)


def parse_preferences(texts: Iterable[str]) -> tuple[Preference, ...]:
    return tuple(parse_preference(text) for text in texts)


def validate_placement(placement: Placement) -> None:
    """Raise `InvalidArgument` for the first bad field; for the API, before a spec is stored."""
    parse_constraints(placement.constraints)
    parse_preferences(placement.preferences)
    if placement.max_replicas_per_node < 0:
        raise invalid(
            "placement.max_replicas_per_node", placement.max_replicas_per_node, "must be >= 0 (0: no limit)"
        )
