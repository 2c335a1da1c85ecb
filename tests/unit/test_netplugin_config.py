"""flannel's network config: defaults as flannel computes them, and one clear line per refusal."""

from __future__ import annotations

import json
from ipaddress import IPv4Network

import pytest

from agent.errors import InvalidArgument
from netplugin.config import NetworkConfig, parse_config, validate_config


def parse(data: object) -> NetworkConfig:
    return parse_config(json.dumps(data).encode())


@pytest.mark.parametrize(
    ("network", "subnet_len", "first", "last", "count"),
    [
        ("10.244.0.0/16", 24, "10.244.1.0/24", "10.244.255.0/24", 255),
        ("10.0.0.0/8", 24, "10.0.1.0/24", "10.255.255.0/24", 65535),
        ("10.244.0.0/22", 24, "10.244.1.0/24", "10.244.3.0/24", 3),
        ("10.244.0.0/23", 25, "10.244.0.128/25", "10.244.1.128/25", 3),  # smaller than /22: prefix + 2
        ("10.244.0.0/28", 30, "10.244.0.4/30", "10.244.0.12/30", 3),
    ],
)
def test_defaults_follow_flannel(network: str, subnet_len: int, first: str, last: str, count: int) -> None:
    config = parse({"Network": network})
    assert config.subnet_len == subnet_len
    assert (config.first_subnet, config.last_subnet) == (IPv4Network(first), IPv4Network(last))
    assert config.subnet_count == count == len(list(config.subnets()))
    assert config.backend.type == "vxlan"
    assert (config.backend.vni, config.backend.port, config.backend.direct_routing) == (1, 8472, False)
    assert config.backend.mtu is None


def test_flannel_config_with_every_field() -> None:
    config = parse(
        {
            "Network": "10.1.0.0/16",
            "SubnetLen": 28,
            "SubnetMin": "10.1.10.0",
            "SubnetMax": "10.1.50.0",
            "Backend": {"Type": "vxlan", "VNI": 4096, "Port": 4789, "DirectRouting": True, "MTU": 1400},
        }
    )
    assert (config.first_subnet, config.last_subnet) == (
        IPv4Network("10.1.10.0/28"),
        IPv4Network("10.1.50.0/28"),
    )
    assert config.subnet_count == (0x32 - 0x0A) * 16 + 1
    b = config.backend
    assert (b.type, b.vni, b.port, b.direct_routing, b.mtu) == ("vxlan", 4096, 4789, True, 1400)
    assert b.mtu_for(1500) == 1400


def test_keys_match_case_insensitively_like_go() -> None:
    config = parse({"network": "10.244.0.0/16", "subnetlen": 26, "backend": {"type": "host-gw"}})
    assert (config.subnet_len, config.backend.type) == (26, "host-gw")


def test_kube_flannel_switches_are_accepted_when_they_describe_what_we_do() -> None:
    for nftables in (False, True):  # either way, Shoal's own rules are an nftables table
        config = parse({"Network": "10.244.0.0/16", "EnableIPv4": True, "EnableNFTables": nftables})
        assert config.network == IPv4Network("10.244.0.0/16")


def test_mtu_derives_from_the_underlay_per_backend() -> None:
    assert parse({"Network": "10.244.0.0/16"}).backend.mtu_for(1500) == 1450
    assert parse({"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}).backend.mtu_for(1500) == 1500


def test_to_json_round_trips_through_flannels_names() -> None:
    config = parse({"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}})
    assert json.loads(config.to_json()) == {
        "Network": "10.244.0.0/16",
        "SubnetLen": 24,
        "Backend": {"Type": "host-gw"},
    }
    assert parse_config(config.to_json()) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "invalid network config: Network is required"),
        ({"Network": "bogus"}, "invalid Network 'bogus': expected an IPv4 network in CIDR form"),
        ({"Network": 10}, "invalid Network 10: expected an IPv4 network"),
        ({"Network": "fd00::/64"}, "invalid Network 'fd00::/64': expected an IPv4 network"),
        (
            {"Network": "10.244.1.0/16"},
            "invalid Network '10.244.1.0/16': host bits are set; did you mean 10.244.0.0/16?",
        ),
        ({"Network": "10.244.0.0/29"}, "invalid Network '10.244.0.0/29': too small"),
        ({"Network": "10.244.0.0/16", "SubnetLen": 17}, "invalid SubnetLen 17: must be between 18 and 30"),
        ({"Network": "10.244.0.0/16", "SubnetLen": 31}, "invalid SubnetLen 31: must be between 18 and 30"),
        (
            {"Network": "10.244.0.0/16", "SubnetLen": "24"},
            "invalid SubnetLen '24': Input should be a valid integer",
        ),
        (
            {"Network": "10.244.0.0/16", "SubnetMin": "10.245.0.0"},
            "invalid SubnetMin '10.245.0.0': must be inside",
        ),
        (
            {"Network": "10.244.0.0/16", "SubnetMax": "10.244.3.7"},
            "invalid SubnetMax '10.244.3.7': must start a /24",
        ),
        (
            {"Network": "10.244.0.0/16", "SubnetMin": "nope"},
            "invalid SubnetMin 'nope': expected an IPv4 address",
        ),
        (
            {"Network": "10.244.0.0/16", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.8.0"},
            "invalid SubnetMin '10.244.9.0': must not be above SubnetMax 10.244.8.0",
        ),
        (
            {"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}},
            "invalid Backend.Type 'udp': unknown backend type; expected one of vxlan, host-gw",
        ),
        (
            {"Network": "10.244.0.0/16", "Backend": {"VNI": 0}},
            "invalid Backend.VNI 0: must be between 1 and 16777215",
        ),
        (
            {"Network": "10.244.0.0/16", "Backend": {"VNI": 1 << 24}},
            "invalid Backend.VNI 16777216: must be between 1 and 16777215",
        ),
        (
            {"Network": "10.244.0.0/16", "Backend": {"Port": 70000}},
            "invalid Backend.Port 70000: must be between 1 and 65535",
        ),
        (
            {"Network": "10.244.0.0/16", "Backend": {"MTU": 100}},
            "invalid Backend.MTU 100: must be between 576 and 9000",
        ),
        (
            {"Network": "10.244.0.0/16", "Backend": {"DirectRouting": "yes"}},
            "invalid Backend.DirectRouting 'yes'",
        ),
        ({"Network": "10.244.0.0/16", "Backend": {"GBP": True}}, "invalid Backend.GBP True: unknown field"),
        ({"Network": "10.244.0.0/16", "Backend": "vxlan"}, "invalid Backend 'vxlan'"),
        ({"Network": "10.244.0.0/16", "Nework": "x"}, "invalid Nework 'x': unknown field"),
        (
            {"Network": "10.244.0.0/16", "EnableIPv6": True},
            "invalid EnableIPv6 True: only false is supported",
        ),
        (
            {"Network": "10.244.0.0/16", "EnableNFTables": "yes"},
            "invalid EnableNFTables 'yes': only false or true is supported",
        ),
    ],
)
def test_invalid_configs_are_refused_naming_field_value_and_rule(data: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse(data)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{nope", "invalid network config '{nope': is not JSON"),
        (b"[1]", "invalid network config '[1]': expected"),
    ],
)
def test_non_objects_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match="^" + message.replace("[", r"\[")):
        parse_config(raw)


def test_validate_config_takes_a_dict() -> None:
    assert validate_config({"Network": "10.9.0.0/16"}).network == IPv4Network("10.9.0.0/16")
