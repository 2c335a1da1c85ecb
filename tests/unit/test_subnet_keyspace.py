"""flannel's subnet keys and lease JSON, byte for byte."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest

from agent.errors import IntegrityError, InvalidArgument
from netplugin.subnet import keyspace
from netplugin.subnet.model import SubnetLease

P = "/coreos.com/network"
SN = IPv4Network("10.244.3.0/24")


def test_keys() -> None:
    assert keyspace.config_key(P) == "/coreos.com/network/config"
    assert keyspace.subnets_prefix(P) == "/coreos.com/network/subnets/"
    assert keyspace.subnet_key(P, SN) == "/coreos.com/network/subnets/10.244.3.0-24"
    assert keyspace.parse_subnet_key(P, "/coreos.com/network/subnets/10.244.3.0-24") == SN


@pytest.mark.parametrize(
    "key",
    [
        "/coreos.com/network/subnets/10.244.3.0_24",
        "/coreos.com/network/subnets/10.244.3.1-24",  # host bits
        "/coreos.com/network/subnets/10.244.300.0-24",
        "/coreos.com/network/subnets/10.244.3.0-33",
        "/other/subnets/10.244.3.0-24",
    ],
)
def test_bad_keys_are_integrity_errors(key: str) -> None:
    with pytest.raises(IntegrityError, match="subnet lease key"):
        keyspace.parse_subnet_key(P, key)


@pytest.mark.parametrize(
    ("prefix", "normal"),
    [("/coreos.com/network", "/coreos.com/network"), ("/shoal/net/", "/shoal/net")],
)
def test_prefixes_are_normalized(prefix: str, normal: str) -> None:
    assert keyspace.normalize_prefix(prefix) == normal


@pytest.mark.parametrize("prefix", ["coreos.com/network", "/", "/a b"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidArgument, match="--prefix"):
        keyspace.normalize_prefix(prefix)


def test_vxlan_lease_json_is_flannels() -> None:
    lease = SubnetLease(SN, IPv4Address("10.250.0.2"), "vxlan", 1, "0a:58:0a:f4:03:00")
    raw = keyspace.encode_lease(lease)
    assert raw == (
        b'{"PublicIP":"10.250.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:0a:f4:03:00"}}'
    )
    assert keyspace.decode_lease(SN, "k", raw) == lease


def test_host_gw_lease_has_no_backend_data() -> None:
    lease = SubnetLease(SN, IPv4Address("10.250.0.2"), "host-gw")
    assert json.loads(keyspace.encode_lease(lease)) == {"PublicIP": "10.250.0.2", "BackendType": "host-gw"}
    assert keyspace.decode_lease(SN, "k", keyspace.encode_lease(lease)) == lease


def test_a_lease_written_by_flannel_decodes() -> None:
    raw = (
        b'{"PublicIP":"192.168.1.5","BackendType":"vxlan",'
        b'"BackendData":{"VNI":1,"VtepMAC":"AE:1F:00:11:22:33"}}'
    )
    lease = keyspace.decode_lease(SN, "k", raw)
    assert (lease.public_ip, lease.vni, lease.vtep_mac) == (
        IPv4Address("192.168.1.5"),
        1,
        "ae:1f:00:11:22:33",
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"nope",
        b"[]",
        b"{}",
        b'{"PublicIP": "x"}',
        b'{"PublicIP": 167772161}',
        b'{"PublicIP": "10.0.0.1", "BackendType": 3}',
        b'{"PublicIP": "10.0.0.1", "BackendData": []}',
        b'{"PublicIP": "10.0.0.1", "BackendData": {"VNI": "1"}}',
        b'{"PublicIP": "10.0.0.1", "BackendData": {"VNI": 1, "VtepMAC": "zz"}}',
        b"\xff",
    ],
)
def test_unreadable_leases_name_their_key(raw: bytes) -> None:
    with pytest.raises(IntegrityError, match="subnet lease '/k' is unreadable"):
        keyspace.decode_lease(SN, "/k", raw)
