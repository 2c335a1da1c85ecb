"""Parsing and matching placement constraints and preferences."""

from __future__ import annotations

import pytest

from agent.errors import InvalidArgument
from controller.api.types import Placement
from controller.scheduler import (
    Constraint,
    Preference,
    parse_constraint,
    parse_preference,
    validate_placement,
)
from tests.unit.test_scheduler_fixtures import node


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("node.id==n1", Constraint("id", "", "==", "n1")),
        ("node.hostname != web-1", Constraint("hostname", "", "!=", "web-1")),
        ("  node.labels.disk==ssd ", Constraint("label", "disk", "==", "ssd")),
        ("NODE.LABELS.Zone==eu west", Constraint("label", "Zone", "==", "eu west")),
        ("node.labels.com.example.rack==r1", Constraint("label", "com.example.rack", "==", "r1")),
    ],
)
def test_good_constraints_parse(text: str, expected: Constraint) -> None:
    assert parse_constraint(text) == expected


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("node.id=n1", "expected <key>==<value>"),
        ("node.id==", "expected <key>==<value>"),
        ("node.id==a==b", "expected <key>==<value>"),
        ("==x", "expected <key>==<value>"),
        ("node.labels.==x", "label name"),
        ("node.platform.os==linux", "key must be node.id, node.hostname or node.labels.<name>"),
        ("engine.labels.x==y", "key must be"),
        ("node.role==manager", "node.role is not supported"),
    ],
)
def test_bad_constraints_are_invalid_argument_naming_the_text(text: str, rule: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_constraint(text)
    message = str(caught.value)
    assert message.startswith(f"invalid placement.constraints {text!r}: ")
    assert rule in message


def test_constraint_text_is_canonical() -> None:
    assert parse_constraint(" node.labels.disk == ssd").text == "node.labels.disk==ssd"


def test_matching_is_case_insensitive_and_a_missing_label_is_empty() -> None:
    n = node("n1", labels={"disk": "SSD"})
    assert parse_constraint("node.labels.disk==ssd").matches(n)
    assert not parse_constraint("node.labels.disk!=ssd").matches(n)
    assert not parse_constraint("node.labels.zone==a").matches(n)
    assert parse_constraint("node.labels.zone!=a").matches(n)
    assert parse_constraint("node.id==N1").matches(n)
    assert parse_constraint("node.hostname==host-n1").matches(n)
    assert parse_constraint("node.hostname!=host-n2").matches(n)


def test_preferences_parse_and_group_nodes() -> None:
    pref = parse_preference("spread=node.labels.zone")
    assert pref == Preference("zone")
    assert pref.text == "spread=node.labels.zone"
    assert pref.group(node("a", labels={"zone": "eu"})) == "eu"
    assert pref.group(node("b")) is None


@pytest.mark.parametrize("text", ["spread=node.id", "binpack=node.labels.x", "spread=", "node.labels.x"])
def test_bad_preferences_are_invalid_argument(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"invalid placement\.preferences .*spread=node\.labels"):
        parse_preference(text)


def test_validate_placement() -> None:
    validate_placement(Placement(constraints=["node.labels.a==b"], preferences=["spread=node.labels.z"]))
    with pytest.raises(InvalidArgument, match="constraints"):
        validate_placement(Placement(constraints=["node.labels.a==b", "bogus"]))
    with pytest.raises(InvalidArgument, match="max_replicas_per_node"):
        validate_placement(Placement(max_replicas_per_node=-1))
