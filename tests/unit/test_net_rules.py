"""The pure parts of rules.py: the nftables script, the FORWARD chain and reading published ports
back from the `ports` map.

The same functions run against real nft and iptables in tests/integration/test_net_node.py.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest

from agent.errors import InvalidArgument
from netplugin.ports import Published
from netplugin.rules import Vxlan, cluster_rules, cluster_script, forward_rules, parse_ports, port_element

NETWORK = IPv4Network("10.44.0.0/16")
SUBNET = IPv4Network("10.44.3.0/24")
ROUTED = "ip daddr 10.44.0.0/16 ip saddr 10.44.0.0/16 ip daddr != 10.44.3.0 ip daddr != 10.44.3.1 notrack"

# What `nft -j list map ip shoal ports` prints (nftables 1.0.6).
LISTING = json.dumps(
    {
        "nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {
                "map": {
                    "family": "ip",
                    "name": "ports",
                    "table": "shoal",
                    "type": ["inet_proto", "inet_service"],
                    "map": "ipv4_addr . inet_service",
                    "elem": [
                        [{"concat": ["udp", 53]}, {"concat": ["10.44.3.9", 5353]}],
                        [{"concat": ["tcp", 8080]}, {"concat": ["10.44.3.2", 80]}],
                    ],
                }
            },
        ]
    }
)


def test_masquerade_only_what_leaves_the_cluster_network_and_forward_the_network() -> None:
    rules = cluster_rules(NETWORK, SUBNET)
    assert rules["nat-postrouting"] == [
        "ip saddr 10.44.0.0/16 ip daddr 10.44.3.0/24 ct status dnat masquerade",
        "ip saddr 10.44.3.0/24 ip daddr 10.44.0.0/16 return",
        "ip saddr 10.44.3.0/24 ip daddr != 224.0.0.0/4 masquerade fully-random",
    ]
    assert forward_rules(NETWORK) == [
        "SHOAL-FORWARD -s 10.44.0.0/16 -j ACCEPT",
        "SHOAL-FORWARD -d 10.44.0.0/16 -j ACCEPT",
    ]


def test_routed_cluster_traffic_and_own_vxlan_frames_skip_conntrack() -> None:
    hostgw = cluster_rules(NETWORK, SUBNET)
    assert hostgw["raw-prerouting"] == [ROUTED]
    assert hostgw["raw-output"] == []  # no frames to skip: the chain is not even hooked
    vxlan = cluster_rules(NETWORK, SUBNET, Vxlan(IPv4Address("10.9.0.3"), 8472))
    assert vxlan["raw-prerouting"] == [ROUTED, "ip daddr 10.9.0.3 udp dport 8472 notrack"]
    assert vxlan["raw-output"] == ["ip saddr 10.9.0.3 udp dport 8472 notrack"]


def test_the_script_keeps_the_port_map_and_drops_chains_without_rules() -> None:
    script = cluster_script(NETWORK, SUBNET).splitlines()
    assert "  map ports { type inet_proto . inet_service : ipv4_addr . inet_service; }" in script
    assert not any(line.startswith(("flush map", "delete map", "delete table")) for line in script)
    assert "flush chain ip shoal raw-prerouting" in script
    assert f"add rule ip shoal raw-prerouting {ROUTED}" in script
    flush = script.index("flush chain ip shoal raw-output")
    assert script[flush + 1] == "delete chain ip shoal raw-output"
    with_vxlan = cluster_script(NETWORK, SUBNET, Vxlan(IPv4Address("10.9.0.3"), 8472))
    assert "delete chain" not in with_vxlan


def test_a_subnet_outside_the_network_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"invalid subnet '10\.45\.0\.0/24': must lie inside .*10\.44"):
        cluster_rules(NETWORK, IPv4Network("10.45.0.0/24"))


def test_published_ports_are_read_back_from_the_map() -> None:
    assert parse_ports(LISTING) == [
        Published(53, "udp", IPv4Address("10.44.3.9"), 5353),
        Published(8080, "tcp", IPv4Address("10.44.3.2"), 80),
    ]
    assert port_element(Published(8080, "tcp", IPv4Address("10.44.3.2"), 80)) == "tcp . 8080 : 10.44.3.2 . 80"
