"""The cluster network's configuration: flannel's JSON at `<prefix>/config`, validated.

Field names are flannel's (Network, SubnetLen, SubnetMin, SubnetMax, Backend {Type, VNI, Port,
DirectRouting, MTU}); like Go's encoding/json, keys match case-insensitively. Defaults follow
flannel's CheckNetworkConfig: SubnetLen 24 (or the network's prefix + 2 when it is smaller than a
/22), SubnetMin the SECOND subnet (the first would hold the network's own address), SubnetMax the
last. Values are checked strictly (a string is not a number), and every refusal is one line naming
the field, the value and the rule.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.errors import InvalidArgument, invalid

BACKEND_TYPES = ("vxlan", "host-gw")
VXLAN_OVERHEAD = 50
"""Bytes VXLAN adds to each packet (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14)."""
MAX_SUBNET_LEN = 30  # a host subnet needs room for the bridge's gateway and one container
MIN_MTU, MAX_MTU = 576, 9000
_RANGES = {"vni": (1, 16_777_215), "port": (1, 65_535), "mtu": (MIN_MTU, MAX_MTU)}

# Keys flannel knows that we accept only with values that describe what we do (IPv4 only; our
# rules are in nftables whichever flannel would use): a kube-flannel net-conf.json often spells them out.
_ACCEPTED_AS_IS: dict[str, tuple[bool, ...]] = {
    "EnableIPv4": (True,),
    "EnableIPv6": (False,),
    "EnableNFTables": (False, True),
}


def _canonical_keys(data: object, names: tuple[str, ...]) -> object:
    """Go's encoding/json matches field names case-insensitively: so do we."""
    if not isinstance(data, dict):
        return data
    by_lower = {n.lower(): n for n in names}
    return {by_lower.get(k.lower(), k) if isinstance(k, str) else k: v for k, v in data.items()}


class BackendConfig(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid", strict=True)

    type: Literal["vxlan", "host-gw"] = Field("vxlan", alias="Type")
    vni: int = Field(1, alias="VNI")
    port: int = Field(8472, alias="Port")
    direct_routing: bool = Field(False, alias="DirectRouting")
    mtu: int | None = Field(None, alias="MTU")

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: object) -> object:
        return _canonical_keys(data, ("Type", "VNI", "Port", "DirectRouting", "MTU"))

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: object) -> object:
        if value not in BACKEND_TYPES:
            raise ValueError(f"unknown backend type; expected one of {', '.join(BACKEND_TYPES)}")
        return value

    @field_validator("vni", "port", "mtu", mode="after")
    @classmethod
    def _in_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        low, high = _RANGES[str(info.field_name)]
        if value is not None and not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    def mtu_for(self, underlay_mtu: int) -> int:
        """The MTU of every container-side interface: set, or derived from the underlay's."""
        if self.mtu is not None:
            return self.mtu
        # DirectRouting still sends to some peers through VXLAN: size for the worst path.
        return underlay_mtu - VXLAN_OVERHEAD if self.type == "vxlan" else underlay_mtu


class NetworkConfig(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid", strict=True)

    network: IPv4Network = Field(alias="Network")
    subnet_len: int = Field(24, alias="SubnetLen")
    subnet_min: IPv4Address | None = Field(None, alias="SubnetMin")
    subnet_max: IPv4Address | None = Field(None, alias="SubnetMax")
    backend: BackendConfig = Field(default_factory=lambda: BackendConfig(), alias="Backend")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: object) -> object:
        data = _canonical_keys(data, ("Network", "SubnetLen", "SubnetMin", "SubnetMax", "Backend"))
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key, accepted in _ACCEPTED_AS_IS.items():
            if key in data:
                if not any(data[key] is value for value in accepted):
                    allowed = " or ".join(json.dumps(v) for v in accepted)
                    raise invalid(key, data[key], f"only {allowed} is supported")
                del data[key]
        network = _try_network(data.get("Network", data.get("network")))
        if "SubnetLen" not in data and "subnet_len" not in data and network is not None:
            if network.prefixlen <= 28:  # flannel's default: /24, or four subnets of a smaller network
                data["SubnetLen"] = 24 if network.prefixlen <= 22 else network.prefixlen + 2
        return data

    @field_validator("network", mode="before")
    @classmethod
    def _network(cls, value: object) -> object:
        if isinstance(value, IPv4Network):
            return value
        if not isinstance(value, str):
            raise ValueError("expected an IPv4 network in CIDR form like 10.244.0.0/16")
        try:
            return IPv4Network(value)
        except ValueError:
            pass
        try:
            loose = IPv4Network(value, strict=False)
        except ValueError:
            raise ValueError("expected an IPv4 network in CIDR form like 10.244.0.0/16") from None
        raise ValueError(f"host bits are set; did you mean {loose}?")

    @field_validator("subnet_min", "subnet_max", mode="before")
    @classmethod
    def _address(cls, value: object) -> object:
        if value is None or isinstance(value, IPv4Address):
            return value
        if isinstance(value, str):
            try:
                return IPv4Address(value)
            except ValueError:
                pass
        raise ValueError("expected an IPv4 address like 10.244.1.0")

    @model_validator(mode="after")
    def _coherent(self) -> NetworkConfig:
        net = self.network
        lowest = net.prefixlen + 2
        if lowest > MAX_SUBNET_LEN:
            raise invalid(
                "Network", str(net), "too small: the smallest network that holds four subnets is a /28"
            )
        if not lowest <= self.subnet_len <= MAX_SUBNET_LEN:
            raise invalid(
                "SubnetLen",
                self.subnet_len,
                f"must be between {lowest} and {MAX_SUBNET_LEN} for Network {net} "
                "(the network must hold at least four subnets, the first of which is never used)",
            )
        size = 1 << (32 - self.subnet_len)
        for name, value in (("SubnetMin", self.subnet_min), ("SubnetMax", self.subnet_max)):
            if value is None:
                continue
            if value not in net:
                raise invalid(name, str(value), f"must be inside Network {net}")
            if int(value) % size:
                raise invalid(name, str(value), f"must start a /{self.subnet_len} subnet (SubnetLen)")
        first, last = self.first_subnet, self.last_subnet
        if first.network_address > last.network_address:
            raise invalid(
                "SubnetMin", str(first.network_address), f"must not be above SubnetMax {last.network_address}"
            )
        return self

    # -- derived ---------------------------------------------------------------------------

    @property
    def first_subnet(self) -> IPv4Network:
        """The lowest subnet a node may lease (flannel skips the network's own first subnet)."""
        size = 1 << (32 - self.subnet_len)
        start = self.subnet_min or self.network.network_address + size
        return IPv4Network((start, self.subnet_len))

    @property
    def last_subnet(self) -> IPv4Network:
        size = 1 << (32 - self.subnet_len)
        start = self.subnet_max or self.network.broadcast_address + 1 - size
        return IPv4Network((start, self.subnet_len))

    @property
    def subnet_count(self) -> int:
        size = 1 << (32 - self.subnet_len)
        return (int(self.last_subnet.network_address) - int(self.first_subnet.network_address)) // size + 1

    def subnets(self) -> Iterator[IPv4Network]:
        """Every leasable subnet, lowest first."""
        size = 1 << (32 - self.subnet_len)
        start = int(self.first_subnet.network_address)
        for i in range(self.subnet_count):
            yield IPv4Network((start + i * size, self.subnet_len))

    def leasable(self, subnet: IPv4Network) -> bool:
        """A subnet of this configuration: the right length, inside SubnetMin..SubnetMax."""
        return (
            subnet.prefixlen == self.subnet_len
            and self.first_subnet.network_address
            <= subnet.network_address
            <= self.last_subnet.network_address
        )

    def range_text(self) -> str:
        return f"{self.first_subnet}..{self.last_subnet}"

    def to_json(self) -> bytes:
        """flannel's JSON, with only the fields that were given (plus the computed SubnetLen)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
        data.setdefault("Backend", {"Type": self.backend.type})
        data["Backend"].setdefault("Type", self.backend.type)
        return json.dumps(data, sort_keys=False).encode()


def _try_network(value: object) -> IPv4Network | None:
    if not isinstance(value, str):
        return None
    try:
        return IPv4Network(value)
    except ValueError:
        return None


def parse_config(data: bytes) -> NetworkConfig:
    """flannel's config JSON -> NetworkConfig; InvalidArgument naming the field, value and rule."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise invalid("network config", _preview(data), f"is not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise invalid("network config", _preview(data), 'expected a JSON object like {"Network": ...}')
    return validate_config(raw)


def validate_config(raw: dict[str, Any]) -> NetworkConfig:
    try:
        return NetworkConfig.model_validate(raw)
    except ValidationError as e:
        raise _invalid_from(e) from None


def _invalid_from(err: ValidationError) -> InvalidArgument:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "network config"
    kind = first["type"]
    if kind == "missing":
        return InvalidArgument(f"invalid network config: {field} is required")
    if kind == "extra_forbidden":
        return invalid(
            field,
            first["input"],
            "unknown field (flannel's names: Network, SubnetLen, "
            "SubnetMin, SubnetMax, Backend {Type, VNI, Port, DirectRouting, MTU})",
        )
    message = str(first["msg"]).removeprefix("Value error, ")
    value = first["input"]
    return invalid(field, str(value) if isinstance(value, ipaddress.IPv4Network) else value, message)


def _preview(data: bytes) -> str:
    text = data.decode(errors="replace")
    return text if len(text) <= 60 else text[:57] + "..."
