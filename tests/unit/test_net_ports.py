"""Published ports: parsing, and the pure conflict check against what is already published."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from agent.errors import Conflict, InvalidArgument
from netplugin.ports import PortMapping, Published, owned_by, parse_port, plan_publish

A = IPv4Address("10.44.1.2")
B = IPv4Address("10.44.1.3")


def test_parse_forms() -> None:
    assert parse_port("8080:80") == PortMapping(8080, 80, "tcp")
    assert parse_port("8080:80/tcp") == PortMapping(8080, 80, "tcp")
    assert parse_port(" 53:5353/udp ") == PortMapping(53, 5353, "udp")
    assert str(parse_port("1:65535/udp")) == "1:65535/udp"


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ("8080", "must be HOST_PORT:CONTAINER_PORT"),
        ("8080:", "must be HOST_PORT:CONTAINER_PORT"),
        ("a:80", "must be HOST_PORT:CONTAINER_PORT"),
        ("127.0.0.1:8080:80", "must be HOST_PORT:CONTAINER_PORT"),
        ("8080-8081:80", "must be HOST_PORT:CONTAINER_PORT"),
        ("0:80", "between 1 and 65535"),
        ("8080:65536", "between 1 and 65535"),
        ("8080:80/sctp", "protocol must be tcp or udp"),
    ],
)
def test_parse_refuses_with_field_value_and_rule(spec: str, rule: str) -> None:
    with pytest.raises(InvalidArgument, match=r"invalid publish") as err:
        parse_port(spec)
    assert rule in str(err.value)
    assert "\n" not in str(err.value)


def test_plan_adds_only_what_is_missing() -> None:
    published = [Published(8080, "tcp", A, 80)]
    wanted = [PortMapping(8080, 80), PortMapping(8080, 80, "udp"), PortMapping(9090, 90)]
    assert plan_publish(A, wanted, published) == [
        Published(8080, "udp", A, 80),
        Published(9090, "tcp", A, 90),
    ]
    assert plan_publish(A, [PortMapping(8080, 80)], published) == []  # re-publish is a no-op


def test_a_taken_host_port_is_a_conflict_and_nothing_is_planned() -> None:
    published = [Published(8080, "tcp", A, 80)]
    with pytest.raises(
        Conflict, match=r"port 8080/tcp is already published on this node \(to 10.44.1.2:80\)"
    ):
        plan_publish(B, [PortMapping(9090, 90), PortMapping(8080, 80)], published)
    with pytest.raises(Conflict, match="already published"):
        plan_publish(A, [PortMapping(8080, 81)], published)  # same container, other target port


def test_the_same_host_port_twice_in_one_request_is_a_conflict() -> None:
    with pytest.raises(Conflict, match=r"port 8080/tcp is asked for twice \(to container ports 80 and 81\)"):
        plan_publish(A, [PortMapping(8080, 80), PortMapping(8080, 81)], [])
    assert plan_publish(A, [PortMapping(8080, 80), PortMapping(8080, 80)], []) == [
        Published(8080, "tcp", A, 80)
    ]


def test_owned_by() -> None:
    published = [Published(8080, "tcp", A, 80), Published(53, "udp", B, 53), Published(80, "tcp", A, 8)]
    assert owned_by(A, published) == [Published(80, "tcp", A, 8), Published(8080, "tcp", A, 80)]
