"""flannel's etcd layout, the only place that knows it.

    <prefix>/config                 the network config (netplugin.config)
    <prefix>/subnets/<ip>-<len>     a lease: {"PublicIP": ..., "BackendType": ...,
                                    "BackendData": {"VNI": 1, "VtepMAC": "..."}}  (vxlan only)

The lease JSON is byte-compatible with flannel's LeaseAttrs, so flannel's tools can read it.
"""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address, IPv4Network

from agent.errors import IntegrityError, invalid
from netplugin.subnet.model import SubnetLease

DEFAULT_PREFIX = "/coreos.com/network"

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_KEY = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3})-(\d{1,2})$")


def normalize_prefix(prefix: str) -> str:
    """`/coreos.com/network/` -> `/coreos.com/network`; refuses what etcd keys cannot start with."""
    trimmed = prefix.rstrip("/")
    if not prefix.startswith("/") or not trimmed or any(ch.isspace() for ch in prefix):
        raise invalid("--prefix", prefix, "expected an absolute key prefix like /coreos.com/network")
    return trimmed


def config_key(prefix: str) -> str:
    return f"{prefix}/config"


def subnets_prefix(prefix: str) -> str:
    return f"{prefix}/subnets/"


def subnet_key(prefix: str, subnet: IPv4Network) -> str:
    return f"{subnets_prefix(prefix)}{subnet.network_address}-{subnet.prefixlen}"


def parse_subnet_key(prefix: str, key: str) -> IPv4Network:
    """`<prefix>/subnets/10.244.3.0-24` -> 10.244.3.0/24; IntegrityError for anything else."""
    name = key.removeprefix(subnets_prefix(prefix))
    match = _KEY.match(name) if name != key else None
    if match is None:
        raise IntegrityError(f"subnet lease key {key!r}: expected {subnets_prefix(prefix)}<ip>-<len>")
    try:
        return IPv4Network(f"{match[1]}/{match[2]}")
    except ValueError as e:
        raise IntegrityError(f"subnet lease key {key!r}: {e}") from None


def encode_lease(lease: SubnetLease) -> bytes:
    attrs: dict[str, object] = {"PublicIP": str(lease.public_ip), "BackendType": lease.backend_type}
    if lease.vtep_mac:  # flannel omits BackendData for backends without one (host-gw)
        attrs["BackendData"] = {"VNI": lease.vni, "VtepMAC": lease.vtep_mac}
    return json.dumps(attrs, separators=(",", ":")).encode()


def decode_lease(subnet: IPv4Network, key: str, value: bytes) -> SubnetLease:
    """A lease value -> SubnetLease; IntegrityError naming the key for anything unreadable."""
    try:
        attrs = json.loads(value)
        if not isinstance(attrs, dict):
            raise ValueError("expected a JSON object")
        ip_text = attrs["PublicIP"]
        if not isinstance(ip_text, str):
            raise ValueError(f"PublicIP {ip_text!r} is not an address string")
        public_ip = IPv4Address(ip_text)
        backend_type = attrs.get("BackendType", "")
        if not isinstance(backend_type, str):
            raise ValueError(f"BackendType {backend_type!r} is not a string")
        data = attrs.get("BackendData")
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ValueError(f"BackendData {data!r} is not an object")
        vni = data.get("VNI", 0)
        mac = data.get("VtepMAC", "")
        if not isinstance(vni, int) or isinstance(vni, bool) or not 0 <= vni <= 16_777_215:
            raise ValueError(f"VNI {vni!r} is not a VXLAN id")
        if not isinstance(mac, str) or (mac and not _MAC.match(mac.lower())):
            raise ValueError(f"VtepMAC {mac!r} is not a MAC address")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise IntegrityError(f"subnet lease {key!r} is unreadable: {e}") from None
    return SubnetLease(subnet, public_ip, backend_type, vni, mac.lower())
